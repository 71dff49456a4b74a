// Host logic of the engine (no GPU): random draws, checkpoint conversion, packing identities.
import {
  activationSpecFor,
  dequantizeW4A16,
  packW4A4Layer,
  packW4A4Weight,
  type QuantizedLinear,
  quantizeW4A16,
} from "@svdquant/int4";
import { Tensor } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import {
  EngineError,
  type EngineItem,
  fluxEngineItems,
  fluxEngineLinears,
  fnv1a32,
  hash32,
  randomRule,
  randomValue,
  stackW4A4,
  w4a16EngineLayout,
} from "../src/index.js";
import { bf16Bits, bf16Tensor, memorySource, rng, tinyFluxConfig, uniformBf16 } from "./helpers.js";

// Independent BigInt transcription of the hash (uint32 arithmetic spelled out).
function hashBig(i: number, seed: number): number {
  const M = 0xffffffffn;
  let x = (BigInt(i) * 0x9e3779b1n + BigInt(seed)) & M;
  x ^= x >> 16n;
  x = (x * 0x7feb352dn) & M;
  x ^= x >> 15n;
  x = (x * 0x846ca68bn) & M;
  x ^= x >> 16n;
  return Number(x);
}

describe("random draws (shared with the device fill and tools/engine/flux_diffusers.py)", () => {
  it("hash32 matches a BigInt transcription", () => {
    const r = rng(3);
    for (let j = 0; j < 2000; j++) {
      const i = Math.floor(r() * 2 ** 32);
      const s = Math.floor(r() * 2 ** 32);
      expect(hash32(i, s)).toBe(hashBig(i, s));
    }
  });
  it("fnv1a32 of known strings (FNV-1a reference values)", () => {
    expect(fnv1a32("")).toBe(0x811c9dc5);
    expect(fnv1a32("a")).toBe(0xe40c292c);
    expect(fnv1a32("foobar")).toBe(0xbf9cf968);
  });
  it("values stay in [center − scale/2, center + scale/2) and are roughly uniform", () => {
    let sum = 0;
    for (let i = 0; i < 10000; i++) {
      const v = randomValue(i, 77, 1, 0.2);
      expect(v).toBeGreaterThanOrEqual(0.9);
      expect(v).toBeLessThan(1.1);
      sum += v;
    }
    expect(Math.abs(sum / 10000 - 1)).toBeLessThan(0.005);
  });
  it("rules: ±1/√K weights, biases, norm weights, inputs", () => {
    expect(randomRule("x.weight", [8, 64])).toEqual({ center: 0, scale: 0.25 });
    expect(randomRule("x.bias", [8])).toEqual({ center: 0, scale: 0.04 });
    expect(randomRule("a.norm_q.weight", [128])).toEqual({ center: 1, scale: 0.2 });
    expect(randomRule("in.hidden", [1, 2, 3])).toEqual({ center: 0, scale: 2 });
  });
});

describe("W4A16 engine layout", () => {
  it("nibbles and scales reproduce dequantizeW4A16", () => {
    const r = rng(9);
    const N = 6;
    const K = 128;
    const w = Float32Array.from({ length: N * K }, () => r() - 0.5);
    const q = quantizeW4A16(w, N, K, { groupSize: 64, scaleDtype: "BF16" });
    const e = w4a16EngineLayout(q.codes, q.scales, q.zeros, N, K);
    const ref = dequantizeW4A16(q);
    for (let n = 0; n < N; n++)
      for (let k = 0; k < K; k++) {
        const byte = e.codes[(n * K + k) >> 1]!;
        const code = k % 2 === 0 ? byte & 15 : byte >> 4;
        const g = n * (K / 64) + (k >> 6);
        const s = new Float32Array(new Uint32Array([e.scales[g]! << 16]).buffer)[0]!;
        const z = new Float32Array(new Uint32Array([e.zeros[g]! << 16]).buffer)[0]!;
        expect(code * s + z).toBeCloseTo(ref[n * K + k]!, 6);
      }
  });
  it("rejects a K that is not a multiple of 64", () => {
    expect(() => w4a16EngineLayout(new Int8Array(32), new Float32Array(1), new Float32Array(1), 1, 32)).toThrow(
      EngineError,
    );
  });
});

describe("stacking W4A4 layers of one input group", () => {
  it("concatenated packed qweights equal the packing of the stacked codes; lora_up is block-diagonal", () => {
    const r = rng(4);
    const K = 128;
    const Ns = [128, 256];
    const codes = Ns.map((N) => Int8Array.from({ length: N * K }, () => Math.floor(r() * 16) - 8));
    const packed = Ns.map((N, i) => packW4A4Weight(codes[i]!, N, K));
    const all = new Int8Array(384 * K);
    all.set(codes[0]!, 0);
    all.set(codes[1]!, 128 * K);
    const parts = Ns.map((N, i) => ({
      N,
      R: 16,
      qweight: new Uint8Array(packed[i]!.buffer),
      wscales: new Uint16Array((N * K) / 64).fill(i + 1),
      down: new Uint16Array(16 * K).fill(10 + i),
      up: Uint16Array.from({ length: N * 16 }, (_, j) => j + 1),
      smooth: new Uint16Array(K).fill(0x3f80),
    }));
    const s = stackW4A4(parts, "g");
    expect(Array.from(s.qweight)).toEqual(Array.from(new Uint8Array(packW4A4Weight(all, 384, K).buffer)));
    expect(s.R).toBe(32);
    expect(s.N).toBe(384);
    expect(s.up[0 * 32 + 0]).toBe(1);
    expect(s.up[0 * 32 + 16]).toBe(0); // off-diagonal block
    expect(s.up[128 * 32 + 16]).toBe(1); // second layer, its own rank columns
    expect(s.up[128 * 32 + 0]).toBe(0);
    expect(s.down[16 * K]).toBe(11);
  });
  it("refuses layers of one group with different smooth factors", () => {
    const p = (v: number) => ({
      N: 128,
      R: 16,
      qweight: new Uint8Array(128 * 32),
      wscales: new Uint16Array(128),
      down: new Uint16Array(16 * 64),
      up: new Uint16Array(128 * 16),
      smooth: new Uint16Array(64).fill(v),
    });
    expect(() => stackW4A4([p(1), p(2)], "blk.attn.qkv")).toThrow(/share smooth_factor/);
  });
});

const tiny = tinyFluxConfig();

async function collect(src: ReturnType<typeof memorySource>): Promise<Map<string, EngineItem>> {
  const out = new Map<string, EngineItem>();
  for await (const it of fluxEngineItems(tiny, src)) out.set(it.name, it);
  return out;
}

function denseState(seed: number): Map<string, Tensor> {
  const r = rng(seed);
  const m = new Map<string, Tensor>();
  for (const L of fluxEngineLinears(tiny))
    L.sources.forEach((s, i) => {
      m.set(`${s}.weight`, bf16Tensor([L.N[i]!, L.K], uniformBf16(r, L.N[i]! * L.K, -1, 1)));
      m.set(`${s}.bias`, bf16Tensor([L.N[i]!], uniformBf16(r, L.N[i]!, -1, 1)));
    });
  for (const n of [
    "transformer_blocks.0.attn.norm_q",
    "transformer_blocks.0.attn.norm_k",
    "transformer_blocks.0.attn.norm_added_q",
    "transformer_blocks.0.attn.norm_added_k",
    "single_transformer_blocks.0.attn.norm_q",
    "single_transformer_blocks.0.attn.norm_k",
  ])
    m.set(
      `${n}.weight`,
      new Tensor(
        "F32",
        [64],
        Float32Array.from({ length: 64 }, () => r()),
      ),
    );
  return m;
}

describe("checkpoint → engine tensors", () => {
  it("dense: q/k/v stacked along N, f32 norms converted to bf16, every engine linear present", async () => {
    const m = denseState(1);
    const items = await collect(memorySource(m));
    const qkv = items.get("transformer_blocks.0.attn.qkv.weight");
    expect(qkv?.kind).toBe("tensor");
    const data = (qkv as { data: Uint16Array }).data;
    const q = m.get("transformer_blocks.0.attn.to_q.weight")!.data as Uint16Array;
    const v = m.get("transformer_blocks.0.attn.to_v.weight")!.data as Uint16Array;
    expect(Array.from(data.subarray(0, q.length))).toEqual(Array.from(q));
    expect(Array.from(data.subarray(2 * q.length))).toEqual(Array.from(v));
    for (const L of fluxEngineLinears(tiny)) expect(items.has(`${L.name}.weight`)).toBe(true);
    const nq = items.get("single_transformer_blocks.0.attn.norm_q.weight") as { data: Uint16Array };
    expect(nq.data).toBeInstanceOf(Uint16Array);
  });
  it("W4A4 layers from packW4A4Layer: unpacked low-rank, shared smooth, unsigned flag on ff.net.2", async () => {
    const m = denseState(2);
    const r = rng(5);
    const smooth = uniformBf16(r, 128, 0.5, 2);
    const pack = (name: string, N: number, K: number, sm: Float32Array) => {
      const l: QuantizedLinear = {
        act: activationSpecFor("int4"),
        residual: {
          spec: { format: "int4", groupSize: 64 },
          rows: N,
          cols: K,
          codes: Int8Array.from({ length: N * K }, () => Math.floor(r() * 16) - 8),
          scales: uniformBf16(r, (N * K) / 64, 0.01, 0.02),
        },
        lowRankDown: uniformBf16(r, 32 * K, -1, 1),
        lowRankUp: uniformBf16(r, N * 32, -1, 1),
        rank: 32,
        bias: uniformBf16(r, N, -1, 1),
        smooth: sm,
      };
      m.delete(`${name}.weight`);
      m.delete(`${name}.bias`);
      for (const [k, t] of Object.entries(packW4A4Layer(l, { name }))) m.set(`${name}.${k}`, t);
      return l;
    };
    const ls = ["to_q", "to_k", "to_v"].map((n) => pack(`transformer_blocks.0.attn.${n}`, 128, 128, smooth));
    pack("transformer_blocks.0.ff.net.2", 128, 512, uniformBf16(r, 512, 0.5, 2));
    const items = await collect(memorySource(m));
    const down = (items.get("transformer_blocks.0.attn.qkv.lora_down") as { data: Uint16Array }).data;
    expect(down.length).toBe(96 * 128);
    expect(Array.from(down.subarray(32 * 128, 64 * 128))).toEqual(Array.from(bf16Bits(ls[1]!.lowRankDown)));
    const up = (items.get("transformer_blocks.0.attn.qkv.lora_up") as { data: Uint16Array }).data;
    expect(up[(128 + 5) * 96 + 32 + 7]).toBe(bf16Bits(ls[1]!.lowRankUp)[5 * 32 + 7]);
    expect(up[5 * 96 + 40]).toBe(0);
    const sm = (items.get("transformer_blocks.0.attn.qkv.smooth") as { data: Uint16Array }).data;
    expect(Array.from(sm)).toEqual(Array.from(bf16Bits(smooth)));
    const bias = (items.get("transformer_blocks.0.attn.qkv.bias") as { data: Uint16Array }).data;
    expect(Array.from(bias.subarray(256))).toEqual(Array.from(bf16Bits(ls[2]!.bias!)));
    expect(items.get("transformer_blocks.0.ff.net.2.act_unsigned")).toEqual({
      kind: "int",
      name: "transformer_blocks.0.ff.net.2.act_unsigned",
      value: 1,
    });
    expect(items.get("transformer_blocks.0.attn.qkv.act_unsigned")).toMatchObject({ value: 0 });
  });
  it("a group packed unlike (to_q W4A4, to_k dense) is refused, naming the group", async () => {
    const m = denseState(3);
    const r = rng(6);
    const l: QuantizedLinear = {
      act: activationSpecFor("int4"),
      residual: {
        spec: { format: "int4", groupSize: 64 },
        rows: 128,
        cols: 128,
        codes: new Int8Array(128 * 128),
        scales: uniformBf16(r, 256, 0.01, 0.02),
      },
      lowRankDown: new Float32Array(32 * 128),
      lowRankUp: new Float32Array(128 * 32),
      rank: 32,
    };
    m.delete("transformer_blocks.0.attn.to_q.weight");
    for (const [k, t] of Object.entries(packW4A4Layer(l))) m.set(`transformer_blocks.0.attn.to_q.${k}`, t);
    await expect(collect(memorySource(m))).rejects.toThrow(/transformer_blocks\.0\.attn\.qkv: .*packed alike/);
  });
  it("a missing or mis-shaped weight is named", async () => {
    const m = denseState(4);
    m.delete("proj_out.weight");
    await expect(collect(memorySource(m))).rejects.toThrow(/^proj_out: no weight/);
    const m2 = denseState(4);
    m2.set("x_embedder.weight", bf16Tensor([128, 8], new Float32Array(1024)));
    await expect(collect(memorySource(m2))).rejects.toThrow(
      /x_embedder\.weight: shape \[128, 8\], expected \[128, 16\]/,
    );
  });
});
