// int4p2 checkpoint layers (@svdquant/int4 packP2Layer) → the engine's device tensors (convert.ts), on the host:
// the converted items, expanded here from their definition (codes·2^e → E4M3 by @svdquant/tensor's encoder, then the
// low-rank columns), must equal @svdquant/kernels-cuda's p2WeightOperand of the same stacked layer byte for byte.
import {
  activationSpecFor,
  packP2Layer,
  packW4A4Layer,
  type Quantized,
  type QuantizedLinear,
  quantize,
  specFor,
} from "@svdquant/int4";
import { p2WeightOperand } from "@svdquant/kernels-cuda";
import { parsePixArtConfig } from "@svdquant/models";
import { f32ToE4m3Bits, type Tensor } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import {
  type ConvertOptions,
  EngineError,
  type EngineItem,
  engineLinearItems,
  fluxEngineItems,
  fluxEngineLinears,
  loadAddon,
  pixartEngineItems,
  pixartEngineLinears,
  pixartEngineTables,
} from "../src/index.js";
import { bf16Bits, bf16Tensor, memorySource, rng, tinyFluxConfig, uniformBf16 } from "./helpers.js";

const R = 32;
const anyK: ConvertOptions = { p2SupportedK: () => true }; // the tiny models' K (128, 512, 640) are not kernel sizes: convert only

const tiny = tinyFluxConfig();
const D = 128;

/** A stacked int4p2 layer [N, K] with one rank-32 branch, λ and bias (bf16 values, as a checkpoint holds them). */
function p2Layer(seed: number, N: number, K: number) {
  const r = rng(seed);
  const w = uniformBf16(r, N * K, -1 / Math.sqrt(K), 1 / Math.sqrt(K));
  for (let k = 0; k < K; k += 61) w[3 * K + k] = w[3 * K + k]! * 20; // outliers: several exponents per row
  w.fill(0, 0, 64); // one all-zero group (e = −9)
  const residual = quantize(w, N, K, specFor("int4p2"));
  return {
    residual,
    up: uniformBf16(r, N * R, -0.05, 0.05),
    down: uniformBf16(r, R * K, -0.1, 0.1),
    smooth: uniformBf16(r, K, 0.5, 2),
    bias: uniformBf16(r, N, -0.1, 0.1),
  };
}

/** Rows [r0, r1) of a stacked layer as its own QuantizedLinear (the branch's down-projection and λ shared). */
function rowsOf(l: ReturnType<typeof p2Layer>, r0: number, r1: number): QuantizedLinear {
  const q = l.residual;
  const K = q.cols;
  const G = K / 64;
  const residual: Quantized = {
    spec: q.spec,
    rows: r1 - r0,
    cols: K,
    codes: q.codes.slice(r0 * K, r1 * K),
    scales: q.scales.slice(r0 * G, r1 * G),
    rowScales: q.rowScales!.slice(r0, r1),
    exponents: q.exponents!.slice(r0 * G, r1 * G),
  };
  return {
    residual,
    rank: R,
    lowRankDown: l.down,
    lowRankUp: l.up.slice(r0 * R, r1 * R),
    smooth: l.smooth,
    bias: l.bias.slice(r0, r1),
    act: activationSpecFor("int4p2"),
  };
}

function put(m: Map<string, Tensor>, layer: string, rec: QuantizedLinear) {
  m.delete(`${layer}.weight`);
  m.delete(`${layer}.bias`);
  for (const [k, t] of Object.entries(packP2Layer(rec, { name: layer }))) m.set(`${layer}.${k}`, t);
}

/** A dense tiny FLUX state dict (bf16 weights, f32 norms). */
function denseState(seed: number): Map<string, Tensor> {
  const r = rng(seed);
  const m = new Map<string, Tensor>();
  for (const L of fluxEngineLinears(tiny))
    L.sources.forEach((s, i) => {
      m.set(`${s}.weight`, bf16Tensor([L.N[i]!, L.K], uniformBf16(r, L.N[i]! * L.K, -1, 1)));
      m.set(`${s}.bias`, bf16Tensor([L.N[i]!], uniformBf16(r, L.N[i]!, -1, 1)));
    });
  for (const b of ["transformer_blocks.0.attn.", "single_transformer_blocks.0.attn."])
    for (const n of b.startsWith("single")
      ? ["norm_q", "norm_k"]
      : ["norm_q", "norm_k", "norm_added_q", "norm_added_k"])
      m.set(`${b}${n}.weight`, bf16Tensor([64], uniformBf16(r, 64, 0.9, 1.1)));
  return m;
}

/** The int4p2 state: double-block q/k/v (one branch), single-block q/k/v + proj_mlp (one branch), ff.net.2. */
function p2State() {
  const m = denseState(1);
  const qkv = p2Layer(2, 3 * D, D);
  for (const [i, s] of ["to_q", "to_k", "to_v"].entries())
    put(m, `transformer_blocks.0.attn.${s}`, rowsOf(qkv, i * D, (i + 1) * D));
  const sgl = p2Layer(3, 7 * D, D); // to_q, to_k, to_v, proj_mlp (4D) stacked: one operand
  for (const [i, s] of ["attn.to_q", "attn.to_k", "attn.to_v"].entries())
    put(m, `single_transformer_blocks.0.${s}`, rowsOf(sgl, i * D, (i + 1) * D));
  put(m, "single_transformer_blocks.0.proj_mlp", rowsOf(sgl, 3 * D, 7 * D));
  const ff2 = p2Layer(4, D, 4 * D);
  put(m, "transformer_blocks.0.ff.net.2", rowsOf(ff2, 0, D));
  return { m, qkv, sgl, ff2 };
}

async function collect(gen: AsyncGenerator<EngineItem>): Promise<Map<string, EngineItem>> {
  const out = new Map<string, EngineItem>();
  for await (const it of gen) out.set(it.name, it);
  return out;
}
const data = (items: Map<string, EngineItem>, name: string) => {
  const it = items.get(name);
  if (it?.kind !== "tensor") throw new Error(`no tensor ${name}`);
  return it.data;
};

/** The reference expansion of a converted layer: E4M3 of code·2^e ([N, K]) then p2_lowrank ([N, 3R]). */
function expand(items: Map<string, EngineItem>, L: string, N: number, K: number, rank = R): Uint8Array {
  const codes = data(items, `${L}.p2_codes`) as Uint8Array;
  const exps = data(items, `${L}.p2_exps`) as Int8Array;
  const lowrank = rank > 0 ? (data(items, `${L}.p2_lowrank`) as Uint8Array) : new Uint8Array(0);
  expect(codes.length).toBe((N * K) / 2);
  expect(exps.length).toBe((N * K) / 64);
  expect(lowrank.length).toBe(N * 3 * rank);
  const Kx = K + 3 * rank;
  const out = new Uint8Array(N * Kx);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const byte = codes[(n * K + k) >> 1]!;
      const nib = k % 2 === 0 ? byte & 15 : byte >> 4;
      const q = nib >= 8 ? nib - 16 : nib;
      out[n * Kx + k] = q === 0 ? 0 : f32ToE4m3Bits(q * 2 ** exps[n * (K / 64) + (k >> 6)]!);
    }
    out.set(lowrank.subarray(n * 3 * rank, (n + 1) * 3 * rank), n * Kx + K);
  }
  return out;
}

describe("int4p2 checkpoint → engine tensors", async () => {
  const { m, qkv, sgl, ff2 } = p2State();
  const items = await collect(fluxEngineItems(tiny, memorySource(m), anyK));

  it("fused q/k/v: the expanded tensors equal p2WeightOperand of the stacked layer, byte for byte", () => {
    const L = "transformer_blocks.0.attn.qkv";
    const op = p2WeightOperand(qkv.residual, qkv.up, R);
    const got = expand(items, L, 3 * D, D);
    expect(Buffer.compare(Buffer.from(got), Buffer.from(op.b8))).toBe(0);
    expect(data(items, `${L}.p2_wscale`)).toEqual(op.sw);
    expect(data(items, `${L}.p2_lr_shift`)).toEqual(op.lrShift);
    expect(data(items, `${L}.lora_down`)).toEqual(bf16Bits(qkv.down));
    expect(data(items, `${L}.smooth`)).toEqual(bf16Bits(qkv.smooth));
    expect(data(items, `${L}.bias`)).toEqual(bf16Bits(qkv.bias));
    expect(items.has(`${L}.act_unsigned`)).toBe(false);
    expect(items.has(`${L}.qweight`)).toBe(false);
  });

  it("single block: attn.qkv owns the operand, proj_mlp its rows; c_r over all 7D rows", () => {
    const op = p2WeightOperand(sgl.residual, sgl.up, R);
    const a = expand(items, "single_transformer_blocks.0.attn.qkv", 3 * D, D);
    const b = expand(items, "single_transformer_blocks.0.proj_mlp", 4 * D, D);
    const both = new Uint8Array(a.length + b.length);
    both.set(a);
    both.set(b, a.length);
    expect(Buffer.compare(Buffer.from(both), Buffer.from(op.b8))).toBe(0);
    expect(data(items, "single_transformer_blocks.0.attn.qkv.p2_lr_shift")).toEqual(op.lrShift);
    for (const k of ["lora_down", "smooth", "p2_lr_shift"])
      expect(items.has(`single_transformer_blocks.0.proj_mlp.${k}`), k).toBe(false);
    // the joint shift differs from proj_mlp's own rows' shift somewhere: the joint computation matters
    const own = p2WeightOperand(rowsOf(sgl, 3 * D, 7 * D).residual, sgl.up.slice(3 * D * R), R);
    const ownQkv = p2WeightOperand(rowsOf(sgl, 0, 3 * D).residual, sgl.up.slice(0, 3 * D * R), R);
    expect(own.lrShift.some((c, r) => c !== ownQkv.lrShift[r])).toBe(true);
  });

  it("a lone int4p2 layer (ff.net.2, K = 4D) and the 16-bit layers around it", () => {
    const op = p2WeightOperand(ff2.residual, ff2.up, R);
    const got = expand(items, "transformer_blocks.0.ff.net.2", D, 4 * D);
    expect(Buffer.compare(Buffer.from(got), Buffer.from(op.b8))).toBe(0);
    expect(items.has("transformer_blocks.0.ff.net.0.proj.weight")).toBe(true);
    expect(items.has("transformer_blocks.0.attn.add_qkv.weight")).toBe(true);
  });

  it("rank 0: no low-rank columns, no lora_down / shift; the codes expand to p2WeightOperand's", async () => {
    const l = p2Layer(31, 4 * D, D);
    const r0: QuantizedLinear = {
      ...rowsOf(l, 0, 4 * D),
      rank: 0,
      lowRankDown: new Float32Array(0),
      lowRankUp: new Float32Array(0),
    };
    const m = new Map<string, Tensor>();
    put(m, "blk.ff", r0);
    const L = { name: "e.ff", sources: ["blk.ff"], N: [4 * D], K: D };
    const one = await collect(engineLinearItems(L, memorySource(m), anyK));
    expect([...one.keys()].sort()).toEqual([
      "e.ff.bias",
      "e.ff.p2_codes",
      "e.ff.p2_exps",
      "e.ff.p2_wscale",
      "e.ff.smooth",
    ]);
    const op = p2WeightOperand(l.residual);
    expect(Buffer.compare(Buffer.from(expand(one, "e.ff", 4 * D, D, 0)), Buffer.from(op.b8))).toBe(0);
  });

  it("engineLinearItems converts one layer alone, as fluxEngineItems does", async () => {
    const L = fluxEngineLinears(tiny).find((l) => l.name === "transformer_blocks.0.attn.qkv")!;
    const one = await collect(engineLinearItems(L, memorySource(m), anyK));
    expect([...one.keys()].sort()).toEqual([...items.keys()].filter((k) => k.startsWith(`${L.name}.`)).sort());
    for (const [k, v] of one) expect(v).toEqual(items.get(k));
  });
});

describe("int4p2 conversion errors: one EngineError line naming the layer", () => {
  const fail = async (m: Map<string, Tensor>, re: RegExp, opts = anyK) => {
    const e = await collect(fluxEngineItems(tiny, memorySource(m), opts)).catch((x) => x);
    expect(e).toBeInstanceOf(EngineError);
    expect((e as EngineError).code).toBe("E_CHECKPOINT");
    expect((e as Error).message).toMatch(re);
    expect((e as Error).message).not.toMatch(/\n/);
  };

  it("a K the kernels do not take (the predicate is the addon's svdq_p2_supported_k by default)", async () => {
    const { m } = p2State();
    await fail(m, /^transformer_blocks\.0\.attn\.qkv: int4p2 layer with K = 128 in-features: .*svdq_p2_supported_k/, {
      p2SupportedK: (K) => K !== 128,
    });
  });

  it("q/k/v with different branches, a proj_mlp without int4p2 q/k/v, wrong N, a rank the kernels lack", async () => {
    const a = p2State().m;
    const other = p2Layer(9, 3 * D, D);
    put(a, "transformer_blocks.0.attn.to_k", { ...rowsOf(other, D, 2 * D), smooth: p2Layer(2, 3 * D, D).smooth });
    await fail(a, /^transformer_blocks\.0\.attn\.to_k\.proj_down: .*one rank-32 branch/);

    const b = denseState(1);
    put(b, "single_transformer_blocks.0.proj_mlp", rowsOf(p2Layer(3, 7 * D, D), 3 * D, 7 * D));
    await fail(b, /^single_transformer_blocks\.0\.proj_mlp: an int4p2 proj_mlp reads attn\.qkv's activation operand/);

    const c = p2State().m;
    put(c, "transformer_blocks.0.attn.to_v", rowsOf(p2Layer(2, 3 * D, D), 0, D - 8));
    await fail(c, /^transformer_blocks\.0\.attn\.to_v\.p2_codes: int4p2 layer is \[N=120, K=128\], the model's/);

    const d = p2State().m;
    const l = rowsOf(p2Layer(4, D, 4 * D), 0, D);
    put(d, "transformer_blocks.0.ff.net.2", {
      ...l,
      rank: 16,
      lowRankDown: l.lowRankDown.slice(0, 16 * 4 * D),
      lowRankUp: l.lowRankUp.slice(0, 16 * D),
    });
    await fail(
      d,
      /^transformer_blocks\.0\.ff\.net\.2\.proj_down: rank R=16: the engine's int4p2 kernels take R = 0 or 32/,
    );

    const e = p2State().m;
    const ex = m2(e, "transformer_blocks.0.ff.net.2.p2_exponents");
    ex[3] = 9;
    await fail(e, /^transformer_blocks\.0\.ff\.net\.2\.p2_exponents: exponent 9 at 3 is outside/);

    // a fused group mixing int4p2 and W4A4
    const f = p2State().m;
    const w4: QuantizedLinear = {
      residual: quantize(uniformBf16(rng(5), D * D, -0.1, 0.1), D, D, specFor("int4")),
      rank: R,
      lowRankDown: uniformBf16(rng(6), R * D, -0.1, 0.1),
      lowRankUp: uniformBf16(rng(7), D * R, -0.1, 0.1),
      act: activationSpecFor("int4"),
    };
    for (const k of [...f.keys()]) if (k.startsWith("transformer_blocks.0.attn.to_k.")) f.delete(k);
    for (const [k, t] of Object.entries(packW4A4Layer(w4))) f.set(`transformer_blocks.0.attn.to_k.${k}`, t);
    await fail(f, /^transformer_blocks\.0\.attn\.qkv: layers .* must be packed alike \(int4p2, w4a4, int4p2\)/);
  });
});

/** The int8 data of a tensor in the map (mutable, for corrupting it). */
function m2(m: Map<string, Tensor>, name: string): Int8Array {
  return m.get(name)!.data as Int8Array;
}

describe("int4p2 PixArt layers", () => {
  const cfg = parsePixArtConfig({
    num_attention_heads: 2,
    attention_head_dim: 64,
    in_channels: 4,
    out_channels: 8,
    num_layers: 1,
    cross_attention_dim: 128,
    caption_channels: 32,
    sample_size: 8,
  });

  it("attn2 k/v fused with one branch; expansion equals p2WeightOperand", async () => {
    const r = rng(20);
    const m = new Map<string, Tensor>();
    for (const L of pixartEngineLinears(cfg))
      L.sources.forEach((s, i) => {
        m.set(`${s}.weight`, bf16Tensor([L.N[i]!, L.K], uniformBf16(r, L.N[i]! * L.K, -1, 1)));
        m.set(`${s}.bias`, bf16Tensor([L.N[i]!], uniformBf16(r, L.N[i]!, -1, 1)));
      });
    m.set("pos_embed.proj.weight", bf16Tensor([D, 4, 2, 2], uniformBf16(r, D * 16, -1, 1)));
    for (const { name, rows } of pixartEngineTables(cfg))
      m.set(name, bf16Tensor([rows, D], uniformBf16(r, rows * D, -1, 1)));
    const kv = p2Layer(21, 2 * D, 128);
    put(m, "transformer_blocks.0.attn2.to_k", rowsOf(kv, 0, D));
    put(m, "transformer_blocks.0.attn2.to_v", rowsOf(kv, D, 2 * D));
    const items = await collect(pixartEngineItems(cfg, memorySource(m), anyK));
    const op = p2WeightOperand(kv.residual, kv.up, R);
    const got = expand(items, "transformer_blocks.0.attn2.kv", 2 * D, 128);
    expect(Buffer.compare(Buffer.from(got), Buffer.from(op.b8))).toBe(0);
    expect(items.has("transformer_blocks.0.attn1.qkv.weight")).toBe(true);
  });
});

describe("the addon's list of int4p2 in-features", () => {
  const f = loadAddon().addon?.p2SupportedK;
  const why = f === undefined ? ` (skipped: ${loadAddon().reason ?? "this addon build has no p2SupportedK"})` : "";
  it.skipIf(f === undefined)(`p2SupportedK answers from kernels/cuda/p2_fp8.h${why}`, () => {
    expect(f!(3072)).toBe(true);
    expect(f!(12288)).toBe(true);
    expect(f!(128)).toBe(false);
    expect(f!(3000)).toBe(false);
  });
});
