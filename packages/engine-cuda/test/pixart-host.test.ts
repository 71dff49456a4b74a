// Host logic of the PixArt engine (no GPU): checkpoint conversion against the tiny diffusers PixArt fixture, errors
// naming the tensor at fault, input / output layouts, and the CPU side of the GPU checks.
import { join } from "node:path";
import { parsePixArtConfig } from "@svdquant/models";
import { openModelFolder, type Tensor } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import {
  EngineError,
  type EngineItem,
  engineAvailability,
  foldPatches,
  PixArtEngine,
  pixartEngineItems,
  pixartEngineLinears,
  pixartEngineTables,
  randomLinear,
  randomRule,
  textLengths,
  unfoldPatches,
} from "../src/index.js";
import { fnv1a32 } from "../src/random.js";
import { bf16Bits, memorySource, rng } from "./helpers.js";
import { buildPixArt, pixartInputs, tinyPixArtConfig } from "./pixart-checks.js";

const fixture = join(import.meta.dirname, "../../../fixtures/pipeline/pixart/transformer");

async function loadFixture() {
  const folder = await openModelFolder(fixture);
  if (!folder.config) throw new Error(`${fixture}: no config.json`);
  const config = parsePixArtConfig(folder.config);
  const all = new Map<string, Tensor>();
  for (const name of folder.weights.names()) all.set(name, await folder.weights.read(name));
  await folder.weights.close();
  return { config, all };
}

async function collect(it: AsyncGenerator<EngineItem>): Promise<Map<string, EngineItem>> {
  const out = new Map<string, EngineItem>();
  for await (const x of it) out.set(x.name, x);
  return out;
}

const bits = (t: Tensor) => bf16Bits(t.toFloat32());

describe("PixArt checkpoint → engine tensors (fixtures/pipeline/pixart/transformer, diffusers-made)", () => {
  it("names, fused q/k/v and k/v, the flattened patch conv and the tables hold the checkpoint's bf16 values", async () => {
    const { config, all } = await loadFixture();
    const items = await collect(pixartEngineItems(config, memorySource(all)));
    const d = config.numAttentionHeads * config.attentionHeadDim;
    const expected = new Set<string>();
    for (const L of pixartEngineLinears(config)) expected.add(`${L.name}.weight`).add(`${L.name}.bias`);
    for (const t of pixartEngineTables(config)) expected.add(t.name);
    expect(new Set(items.keys())).toEqual(expected);
    // every checkpoint tensor is used: each linear's sources' weights + biases, and the tables
    const used = new Set<string>();
    for (const L of pixartEngineLinears(config)) for (const s of L.sources) used.add(`${s}.weight`).add(`${s}.bias`);
    for (const t of pixartEngineTables(config)) used.add(t.name);
    expect(new Set(all.keys())).toEqual(used);
    const data = (n: string) => (items.get(n) as { data: Uint16Array }).data;
    for (let i = 0; i < config.numLayers; i++) {
      const p = `transformer_blocks.${i}.`;
      const qkv = data(`${p}attn1.qkv.weight`);
      expect(qkv.length).toBe(3 * d * d);
      for (const [j, n] of ["to_q", "to_k", "to_v"].entries())
        expect(qkv.subarray(j * d * d, (j + 1) * d * d)).toEqual(bits(all.get(`${p}attn1.${n}.weight`)!));
      const kvb = data(`${p}attn2.kv.bias`);
      expect(kvb.subarray(0, d)).toEqual(bits(all.get(`${p}attn2.to_k.bias`)!));
      expect(kvb.subarray(d)).toEqual(bits(all.get(`${p}attn2.to_v.bias`)!));
      expect(data(`${p}scale_shift_table`)).toEqual(bits(all.get(`${p}scale_shift_table`)!));
    }
    // conv [D, C, p, p] → linear [D, C·p²]: same row-major values
    expect(data("pos_embed.proj.weight")).toEqual(bits(all.get("pos_embed.proj.weight")!));
    expect(data("pos_embed.proj.weight").length).toBe(d * config.inChannels * config.patchSize ** 2);
    expect(data("caption_projection.linear_1.weight")).toEqual(bits(all.get("caption_projection.linear_1.weight")!));
  });

  it("a missing or mis-shaped tensor fails with E_CHECKPOINT naming it", async () => {
    const { config, all } = await loadFixture();
    const without = new Map(all);
    without.delete("transformer_blocks.1.attn2.to_v.weight");
    await expect(collect(pixartEngineItems(config, memorySource(without)))).rejects.toThrow(
      /transformer_blocks\.1\.attn2\.to_v: no weight/,
    );
    const t = all.get("transformer_blocks.0.scale_shift_table")!;
    const bad = new Map(all);
    bad.set("transformer_blocks.0.scale_shift_table", t.reshape([3, -1]));
    const err = await collect(pixartEngineItems(config, memorySource(bad))).catch((e) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect(err.code).toBe("E_CHECKPOINT");
    expect(err.message).toMatch(/^transformer_blocks\.0\.scale_shift_table: shape \[3, 64\], expected \[6, 32\]/);
    const conv = all.get("pos_embed.proj.weight")!;
    const bad2 = new Map(all);
    bad2.set("pos_embed.proj.weight", conv.reshape([conv.shape[0]!, -1]));
    await expect(collect(pixartEngineItems(config, memorySource(bad2)))).rejects.toThrow(
      /^pos_embed\.proj\.weight: shape \[32, 16\], expected \[32, 4, 2, 2\]/,
    );
  });

  it("PixArt-α's additional conditions are refused by name", async () => {
    const { config, all } = await loadFixture();
    const alpha = { ...config, useAdditionalConditions: true };
    await expect(collect(pixartEngineItems(alpha, memorySource(all)))).rejects.toThrow(/use_additional_conditions/);
  });
});

describe("PixArt input / output layouts", () => {
  it("unfoldPatches matches the patch-embedding conv's reading order; foldPatches inverts diffusers' unpatchify", () => {
    const r = rng(4);
    const [B, C, H, W, p] = [2, 3, 6, 10, 2];
    const x = Float32Array.from({ length: B * C * H * W }, () => r());
    const u = unfoldPatches(x, B, C, H, W, p);
    const gw = W / p;
    // patch (b, i, j), weight column (c, pi, pj) of a conv with kernel = stride = p
    for (let b = 0; b < B; b++)
      for (let i = 0; i < H / p; i++)
        for (let j = 0; j < gw; j++)
          for (let c = 0; c < C; c++)
            for (let pi = 0; pi < p; pi++)
              for (let pj = 0; pj < p; pj++)
                expect(u[(b * (H / p) * gw + i * gw + j) * C * p * p + c * p * p + pi * p + pj]).toBe(
                  x[b * C * H * W + c * H * W + (i * p + pi) * W + j * p + pj],
                );
    // fold: y row (b, patch), column (pi, pj, ch) → out[b, ch, y, x] (diffusers: reshape + einsum nhwpqc->nchpwq)
    const oc = 5;
    const y = Float32Array.from({ length: B * (H / p) * gw * p * p * oc }, () => r());
    const f = foldPatches(y, B, oc, H, W, p);
    for (let b = 0; b < B; b++)
      for (let ch = 0; ch < oc; ch++)
        for (let yy = 0; yy < H; yy++)
          for (let xx = 0; xx < W; xx++) {
            const [i, pi, j, pj] = [Math.floor(yy / p), yy % p, Math.floor(xx / p), xx % p];
            expect(f[((b * oc + ch) * H + yy) * W + xx]).toBe(
              y[(b * (H / p) * gw + i * gw + j) * p * p * oc + (pi * p + pj) * oc + ch],
            );
          }
  });

  it("textLengths: prefix masks become kept lengths; other masks fail naming the row", () => {
    expect(Array.from(textLengths(undefined, 2, 7))).toEqual([7, 7]);
    expect(Array.from(textLengths([1, 1, 1, 0, 1, 1, 1, 1], 2, 4))).toEqual([3, 4]);
    expect(() => textLengths([1, 0, 1, 1, 1, 1], 2, 3)).toThrow(/row 0 is not a prefix mask.*element 2 is 1/);
    expect(() => textLengths([1, 1, 0, 0], 2, 2)).toThrow(/row 1 keeps no text token/);
    expect(() => textLengths([1, 1, 1], 2, 2)).toThrow(/has 3 values, expected \[2, 2\]/);
  });
});

describe("PixArtEngine without a GPU", () => {
  const av = engineAvailability();
  it("refuses a mode it has no random weights for before touching a device (E_INPUT)", () => {
    const c = tinyPixArtConfig("bf16");
    const bad = { mode: "w4a4p2" } as unknown as { mode: "bf16" };
    expect(() => PixArtEngine.random(c, bad)).toThrow(/mode "w4a4p2": PixArt's random weights are "bf16" or "w4a4"/);
    try {
      PixArtEngine.random(c, bad);
    } catch (e) {
      expect((e as EngineError).code).toBe("E_INPUT");
    }
  });
  it.skipIf(av.available)(`refuses with a typed error (here: ${av.reason})`, () => {
    const c = tinyPixArtConfig("bf16");
    const err = (() => {
      try {
        PixArtEngine.random(c, { mode: "bf16" });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(EngineError);
    expect(["E_NO_ADDON", "E_NO_DEVICE"]).toContain((err as EngineError).code);
  });
});

describe("the CPU side of the PixArt GPU checks", () => {
  it("the tiny 16-bit and small W4A4 reference models run and respond to every input (mask included)", async () => {
    for (const kind of ["bf16", "w4a4"] as const) {
      const c = tinyPixArtConfig(kind);
      const { cpu, engSrc } = await buildPixArt(c, 3, kind === "w4a4");
      const inp = pixartInputs(c, 2, 5, 6, 10, [5, 2], 9);
      const y = await cpu.forward(inp);
      expect(y.length).toBe(2 * c.outChannels * 6 * 10);
      expect(y.every(Number.isFinite)).toBe(true);
      // item 1 keeps 2 of 5 text tokens: changing a masked token leaves its output alone, a kept one does not
      const enc = Float32Array.from(inp.encoderHiddenStates);
      const w = c.captionChannels!;
      enc[(5 + 3) * w] += 1;
      const y2 = await cpu.forward({ ...inp, encoderHiddenStates: enc });
      expect(y2).toEqual(y);
      enc[(5 + 1) * w] += 1;
      const y3 = await cpu.forward({ ...inp, encoderHiddenStates: enc });
      expect(y3).not.toEqual(y);
      if (kind === "w4a4") {
        expect(engSrc.has("transformer_blocks.0.attn1.to_q.qweight")).toBe(true);
        expect(engSrc.has("transformer_blocks.0.attn2.to_k.weight")).toBe(true); // recipe: cross K/V 16-bit
        expect(engSrc.has("adaln_single.linear.qweight")).toBe(true);
      }
    }
  });
});

describe("randomLinear (the random full-size models)", () => {
  function recorder() {
    const calls: unknown[][] = [];
    const allocs = new Map<string, number>();
    return {
      calls,
      allocs,
      alloc: (n: string, b: number) => void allocs.set(n, b),
      fillRandom: (...a: unknown[]) => void calls.push(a),
      upload: (n: string, d: ArrayBufferView) => void calls.push(["upload", n, d]),
      setInt: (n: string, v: number) => void calls.push(["int", n, v]),
    };
  }
  it("draws each stacked source with its own diffusers name, rule and byte offset", () => {
    const r = recorder();
    const L = { name: "b.attn2.kv", sources: ["b.attn2.to_k", "b.attn2.to_v"], N: [8, 8], K: 24 };
    randomLinear(r, L, "dense", { rank: 32, unsigned: false });
    expect(r.allocs).toEqual(
      new Map([
        ["b.attn2.kv.weight", 16 * 24 * 2],
        ["b.attn2.kv.bias", 16 * 2],
      ]),
    );
    const w = randomRule("b.attn2.to_v.weight", [8, 24]);
    expect(r.calls).toContainEqual([
      "b.attn2.kv.weight",
      "bf16",
      fnv1a32("b.attn2.to_v.weight"),
      w.center,
      w.scale,
      8 * 24 * 2,
      8 * 24,
    ]);
    const b = randomRule("b.attn2.to_k.bias", [8]);
    expect(r.calls).toContainEqual(["b.attn2.kv.bias", "bf16", fnv1a32("b.attn2.to_k.bias"), b.center, b.scale, 0, 8]);
    expect(w.scale).toBeCloseTo(2 / Math.sqrt(24), 12);
  });
  it("W4A4: packed tensors with rank R per source, smooth, the unsigned flag; W4A16: codes, scales, zeros", () => {
    const r = recorder();
    randomLinear(r, { name: "b.qkv", sources: ["q", "k", "v"], N: [128, 128, 128], K: 64 }, "w4a4", {
      rank: 32,
      unsigned: true,
    });
    expect(r.allocs.get("b.qkv.qweight")).toBe((384 * 64) / 2);
    expect(r.allocs.get("b.qkv.wscales")).toBe((384 * 64) / 32);
    expect(r.allocs.get("b.qkv.lora_down")).toBe(96 * 64 * 2);
    expect(r.allocs.get("b.qkv.lora_up")).toBe(384 * 96 * 2);
    expect(r.allocs.get("b.qkv.smooth")).toBe(64 * 2);
    expect(r.calls).toContainEqual(["int", "b.qkv.act_unsigned", 1]);
    const w = recorder();
    randomLinear(w, { name: "ada", sources: ["ada"], N: [768], K: 128 }, "w4a16", { rank: 32, unsigned: false });
    expect([...w.allocs.keys()].sort()).toEqual(["ada.bias", "ada.w4a16_codes", "ada.w4a16_scales", "ada.w4a16_zeros"]);
  });
  it("int4p2: 4-bit codes, exponents in [2, 5], low-rank columns; e4m3 operand; a shared-input layer has no branch", () => {
    const r = recorder();
    const L = { name: "s.qkv", sources: ["q", "k", "v"], N: [64, 64, 64], K: 1024 };
    randomLinear(r, L, "int4p2", { rank: 32, unsigned: false, p2: { storage: "int4", sharedInput: false } });
    expect(Object.fromEntries(r.allocs)).toEqual({
      "s.qkv.p2_codes": (192 * 1024) / 2,
      "s.qkv.p2_exps": (192 * 1024) / 64,
      "s.qkv.p2_lowrank": 192 * 96,
      "s.qkv.p2_wscale": 192 * 4,
      "s.qkv.lora_down": 32 * 1024 * 2,
      "s.qkv.p2_lr_shift": 32 * 4,
      "s.qkv.smooth": 1024 * 2,
      "s.qkv.bias": 192 * 2,
    });
    const exps = r.calls.find((c) => c[0] === "upload" && c[1] === "s.qkv.p2_exps")![2] as Int8Array;
    expect(exps.length).toBe(192 * 16);
    expect(Math.min(...exps)).toBe(2);
    expect(Math.max(...exps)).toBe(5);
    const e = recorder();
    const M = { name: "s.mlp", sources: ["s.mlp"], N: [256], K: 1024 };
    randomLinear(e, M, "int4p2", { rank: 32, unsigned: false, p2: { storage: "e4m3", sharedInput: true } });
    expect([...e.allocs.keys()].sort()).toEqual(["s.mlp.bias", "s.mlp.p2_weight", "s.mlp.p2_wscale"]);
    expect(e.allocs.get("s.mlp.p2_weight")).toBe(256 * (1024 + 96));
  });
});
