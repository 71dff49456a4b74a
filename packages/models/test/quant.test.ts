import { join } from "node:path";
import { fakeQuantize } from "@svdquant/int4";
import { bf16BitsToF32, f32ToBf16Bits } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import {
  CalibrationRecorder,
  DENSE_RECIPE,
  type FakeQuantizeFn,
  FakeQuantLinear,
  type FluxInputs,
  FluxTransformer,
  LinearFactory,
  type LinearLayer,
  linearNamesOf,
  ModelError,
  matchesPattern,
  mergeRecipe,
  modelParams,
  planRecipe,
  presetConfig,
  type QuantSpec,
  registerLinearKind,
  SVDQUANT_PACKED_RECIPE,
  SVDQUANT_RECIPE,
  validateRecipe,
  W4A4_PACKED,
} from "../src/index.js";
import { FIXTURES, fluxTinyInputs, readIo, relErr } from "./helpers.js";

/**
 * Independent float64 INT4 quantize-dequantize written for this test from the SVDQuant/int4 definition:
 * groups of G along the row, scale = absmax / 7 (float32, stored as bf16, int4's default scale dtype),
 * codes = clamp(round-half-even(x / scale), -8, 7), value = code * scale.
 */
function naiveFq64(x: ArrayLike<number>, rows: number, cols: number, spec: QuantSpec): Float64Array {
  if (spec.format !== "int4") throw new Error(`naive quantizer: only int4, got ${spec.format}`);
  const g = spec.groupSize === 0 ? cols : spec.groupSize;
  const rhe = (v: number) => {
    const f = Math.floor(v);
    const d = v - f;
    return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
  };
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let c0 = 0; c0 < cols; c0 += g) {
      let amax = 0;
      for (let c = c0; c < c0 + g; c++) amax = Math.max(amax, Math.abs(x[r * cols + c]!));
      const scale = bf16BitsToF32(f32ToBf16Bits(Math.fround(amax / 7)));
      for (let c = c0; c < c0 + g; c++)
        out[r * cols + c] = scale === 0 ? 0 : Math.min(7, Math.max(-8, rhe(x[r * cols + c]! / scale))) * scale;
    }
  return out;
}
const calls: string[] = [];
/** @svdquant/int4's fakeQuantize, counting its calls. */
const countingFq: FakeQuantizeFn = (x, rows, cols, spec, name) => {
  calls.push(name ?? "");
  return fakeQuantize(x, rows, cols, spec as Parameters<typeof fakeQuantize>[3], name);
};

async function fluxIo(): Promise<FluxInputs> {
  const io = await readIo("flux-tiny-a");
  return fluxTinyInputs(io);
}
const FLUX_DIR = join(FIXTURES, "models/flux-tiny-a");

describe("recipe (data) follows the SVDQuant paper", () => {
  it("patterns: * is one segment, ** any number", () => {
    expect(matchesPattern("transformer_blocks.*.attn.to_q", "transformer_blocks.12.attn.to_q")).toBe(true);
    expect(matchesPattern("transformer_blocks.*.attn.to_q", "single_transformer_blocks.1.attn.to_q")).toBe(false);
    expect(matchesPattern("transformer_blocks.*.attn.to_q", "transformer_blocks.1.2.attn.to_q")).toBe(false);
    expect(matchesPattern("time_text_embed.**", "time_text_embed.text_embedder.linear_1")).toBe(true);
    expect(matchesPattern("**.to_out.0", "transformer_blocks.3.attn.to_out.0")).toBe(true);
    expect(matchesPattern("a.**.b", "a.b")).toBe(true);
    expect(matchesPattern("proj_out", "single_transformer_blocks.0.proj_out")).toBe(false);
  });

  it("FLUX.1-dev: embedders/final 16-bit, AdaNorm W4A16, the rest W4A4", () => {
    const names = linearNamesOf(modelParams(presetConfig("flux.1-dev")));
    const plan = planRecipe(SVDQUANT_RECIPE, names);
    const count = (t: string) => [...plan.values()].filter((v) => v === t).length;
    // 6 embedder linears (timestep, guidance, text: linear_1/2 each) + x/context embedders + proj_out
    expect(count("16bit")).toBe(9);
    expect(count("w4a16")).toBe(19 * 2 + 38 + 1); // norm1, norm1_context, single norm, norm_out
    expect(count("w4a4")).toBe(19 * 12 + 38 * 5);
    expect(plan.get("single_transformer_blocks.37.proj_out")).toBe("w4a4");
    expect(plan.get("proj_out")).toBe("16bit");
  });

  it("PixArt-Σ: cross-attention K/V 16-bit, adaln modulation W4A16, patch/caption/timestep embedders 16-bit", () => {
    const names = ["pos_embed.proj", ...linearNamesOf(modelParams(presetConfig("pixart-sigma-xl-2-1024-ms")))];
    const plan = planRecipe(SVDQUANT_RECIPE, names);
    expect(plan.get("transformer_blocks.5.attn2.to_k")).toBe("16bit");
    expect(plan.get("transformer_blocks.5.attn2.to_v")).toBe("16bit");
    expect(plan.get("transformer_blocks.5.attn2.to_q")).toBe("w4a4");
    expect(plan.get("adaln_single.linear")).toBe("w4a16");
    for (const n of [
      "pos_embed.proj",
      "caption_projection.linear_1",
      "adaln_single.emb.timestep_embedder.linear_2",
      "proj_out",
    ])
      expect(plan.get(n)).toBe("16bit");
    expect([...plan.values()].filter((v) => v === "w4a4").length).toBe(28 * 8);
  });

  it("is JSON data, overridable, and validated", () => {
    const round = validateRecipe(JSON.parse(JSON.stringify(SVDQUANT_RECIPE)));
    expect(round).toEqual(SVDQUANT_RECIPE);
    const keepFf = mergeRecipe(SVDQUANT_RECIPE, {
      rules: [{ match: "transformer_blocks.*.ff.**", treatment: "16bit" }],
    });
    expect(planRecipe(keepFf, ["transformer_blocks.0.ff.net.2"]).get("transformer_blocks.0.ff.net.2")).toBe("16bit");
    expect(() => mergeRecipe(SVDQUANT_RECIPE, { rules: [{ match: "x", treatment: "w2a2" }] })).toThrow(
      /unknown treatment "w2a2"/,
    );
    expect(() => validateRecipe({ ...SVDQUANT_RECIPE, default: "nope" })).toThrow(ModelError);
    expect(() =>
      validateRecipe({
        ...SVDQUANT_RECIPE,
        treatments: { ...SVDQUANT_RECIPE.treatments, bad: { kind: "fake", weight: { format: "int4" } } },
      }),
    ).toThrow(/"bad".weight must be null or \{format, groupSize >= 0\}/);
  });

  it("the packed recipe is the same data with native kinds, which fail clearly until kernels register them", async () => {
    expect(planRecipe(SVDQUANT_PACKED_RECIPE, ["transformer_blocks.0.attn.to_q"])).toEqual(
      planRecipe(SVDQUANT_RECIPE, ["transformer_blocks.0.attn.to_q"]),
    );
    expect(SVDQUANT_PACKED_RECIPE.treatments.w4a4!.kind).toBe(W4A4_PACKED);
    await expect(
      FluxTransformer.fromFolder(FLUX_DIR, { factory: new LinearFactory(SVDQUANT_PACKED_RECIPE) }),
    ).rejects.toThrow(/linear transformer_blocks.0.norm1.linear: no builder registered for linear kind "w4a16-packed"/);
  });

  it("packed kinds are hooks: a clear error until registered, then the registered builder runs", async () => {
    const packed = mergeRecipe(SVDQUANT_RECIPE, {
      treatments: { packed: { kind: "w4a4-packed-test", params: { rank: 32 } } },
      rules: [{ match: "transformer_blocks.*.ff.net.2", treatment: "packed" }],
    });
    await expect(
      FluxTransformer.fromFolder(FLUX_DIR, { factory: new LinearFactory(packed, { fakeQuantize: countingFq }) }),
    ).rejects.toThrow(/no builder registered for linear kind "w4a4-packed-test"/);
    const built: string[] = [];
    registerLinearKind("w4a4-packed-test", (ctx) => {
      built.push(`${ctx.name}:${String(ctx.treatment.params?.rank)}`);
      return new FakeQuantLinear(
        ctx.name,
        ctx.weight.toFloat32(),
        ctx.bias,
        ctx.weight.shape[1]!,
        ctx.weight.shape[0]!,
        { weight: null, act: null, kind: "w4a4-packed-test" },
        countingFq,
      );
    });
    await FluxTransformer.fromFolder(FLUX_DIR, { factory: new LinearFactory(packed, { fakeQuantize: countingFq }) });
    expect(built).toEqual(["transformer_blocks.0.ff.net.2:32", "transformer_blocks.1.ff.net.2:32"]);
  });
});

describe("fake-quantized model through the linear seam", () => {
  it("runs W4A4 (@svdquant/int4 fakeQuantize, int4 group 64) close to, but not equal to, dense; inputs shared by q/k/v (+MLP-in)", async () => {
    const inp = await fluxIo();
    const dense = await (await FluxTransformer.fromFolder(FLUX_DIR)).forward(inp);
    const model = await FluxTransformer.fromFolder(FLUX_DIR, {
      factory: new LinearFactory(SVDQUANT_RECIPE, { fakeQuantize: countingFq }),
    });
    calls.length = 0;
    const out = await model.forward(inp);
    const err = relErr(out, dense);
    console.log("W4A4 (int4 g64) vs dense, rel err:", err);
    expect(err).toBeGreaterThan(1e-3);
    expect(err).toBeLessThan(0.5);
    // Activation quantizations: per double block qkv(1) + add_qkv(1) + to_out, to_add_out, 2x2 FF = 8;
    // per single block [q,k,v,proj_mlp](1) + proj_out = 2. Without sharing it would be 2*12 + 3*5 = 39.
    expect(calls.filter((c) => c.endsWith(".input")).length).toBe(2 * 8 + 3 * 2);
    expect(calls).toContain("single_transformer_blocks.0.attn.to_q.input");
    expect(calls).not.toContain("single_transformer_blocks.0.proj_mlp.input");
    // Without an explicit quantizer the factory uses @svdquant/int4's fakeQuantize.
    const byDefault = await (
      await FluxTransformer.fromFolder(FLUX_DIR, { factory: new LinearFactory(SVDQUANT_RECIPE) })
    ).forward(inp);
    expect(Array.from(byDefault)).toEqual(Array.from(out));
    // The dense recipe through the same seam reproduces the dense model exactly.
    const viaSeam = await (
      await FluxTransformer.fromFolder(FLUX_DIR, { factory: new LinearFactory(DENSE_RECIPE) })
    ).forward(inp);
    expect(Array.from(viaSeam)).toEqual(Array.from(dense));
  });

  it("one fake-quantized layer equals an independent float64 Q(X)·Q(W)ᵀ + b", async () => {
    const model = await FluxTransformer.fromFolder(FLUX_DIR, {
      factory: new LinearFactory(SVDQUANT_RECIPE, { fakeQuantize: countingFq }),
    });
    let seen: { layer: LinearLayer; x: Float32Array; m: number; y?: Float32Array } | undefined;
    await model.forward(await fluxIo(), {
      observer: {
        onLinearInput(layer, x, m) {
          if (layer.name === "transformer_blocks.1.ff.net.0.proj") seen = { layer, x: x.slice(), m };
        },
      },
    });
    expect(seen).toBeDefined();
    const { layer, x, m } = seen!;
    expect(layer.kind).toBe("fake-w4a4");
    const y = layer.forward(x, m);
    const { weights } = await import("./helpers.js").then(async (h) => ({ weights: await loadWeights(h.FIXTURES) }));
    const w = weights.get("transformer_blocks.1.ff.net.0.proj.weight")!;
    const b = weights.get("transformer_blocks.1.ff.net.0.proj.bias")!;
    const k = layer.inFeatures;
    const n = layer.outFeatures;
    const wq = naiveFq64(w, n, k, { format: "int4", groupSize: 64 });
    const xq = naiveFq64(x, m, k, { format: "int4", groupSize: 64 });
    const ref = new Float64Array(m * n);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = b[j]!;
        for (let p = 0; p < k; p++) s += xq[i * k + p]! * wq[j * k + p]!;
        ref[i * n + j] = s;
      }
    expect(relErr(y, ref)).toBeLessThan(1e-6);
    // and the dense layer differs from it (quantization is really applied)
    const dense = new Float64Array(m * n);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = b[j]!;
        for (let p = 0; p < k; p++) s += x[i * k + p]! * w[j * k + p]!;
        dense[i * n + j] = s;
      }
    expect(relErr(y, dense)).toBeGreaterThan(1e-3);
  });
});

async function loadWeights(fixtures: string): Promise<Map<string, Float64Array>> {
  const { SafetensorsFile } = await import("@svdquant/tensor");
  const f = await SafetensorsFile.open(join(fixtures, "models/flux-tiny-a/diffusion_pytorch_model.safetensors"));
  const out = new Map<string, Float64Array>();
  for (const n of f.names()) out.set(n, (await f.read(n)).toFloat64());
  await f.close();
  return out;
}

describe("calibration hooks", () => {
  it("record per-channel absmax and a bounded token reservoir of every linear input", async () => {
    const model = await FluxTransformer.fromFolder(FLUX_DIR);
    const inp = await fluxIo();
    const captured = new Map<string, Float32Array[]>();
    const rec = new CalibrationRecorder({ reservoirSize: 10, seed: 7 });
    const tee = {
      onLinearInput(layer: LinearLayer, x: Float32Array, m: number) {
        rec.onLinearInput(layer, x, m);
        const rows = captured.get(layer.name) ?? [];
        for (let t = 0; t < m; t++) rows.push(x.slice(t * layer.inFeatures, (t + 1) * layer.inFeatures));
        captured.set(layer.name, rows);
      },
    };
    await model.forward(inp, { observer: tee });
    const scaled = (a: Float32Array) => a.map((v) => v * 1.5);
    await model.forward(
      {
        ...inp,
        timestep: [0.9],
        hiddenStates: scaled(inp.hiddenStates),
        encoderHiddenStates: scaled(inp.encoderHiddenStates),
        pooledProjections: scaled(inp.pooledProjections),
      },
      { observer: tee },
    );
    expect(new Set(rec.names())).toEqual(new Set(model.linearNames()));
    for (const name of rec.names()) {
      const s = rec.get(name);
      const rows = captured.get(name)!;
      expect(s.tokensSeen).toBe(rows.length);
      const am = new Float64Array(s.inFeatures);
      for (const r of rows) for (let i = 0; i < r.length; i++) am[i] = Math.max(am[i]!, Math.abs(r[i]!));
      expect(Array.from(s.absmax)).toEqual(Array.from(am).map(Math.fround));
      expect(s.rows).toBe(Math.min(10, rows.length));
      // every reservoir row is one of the real input rows, and no row is taken twice
      const keys = new Set(rows.map((r) => r.join(",")));
      const picked = new Set<string>();
      for (let i = 0; i < s.rows; i++) {
        const key = Array.from(rec.samples(name).subarray(i * s.inFeatures, (i + 1) * s.inFeatures)).join(",");
        expect(keys.has(key)).toBe(true);
        picked.add(key);
      }
      expect(picked.size).toBe(s.rows);
    }
    // x_embedder sees 16 tokens per forward; the reservoir is bounded at 10 and sampled from both runs
    expect(rec.get("x_embedder").tokensSeen).toBe(32);
    expect(rec.get("x_embedder").rows).toBe(10);
  });
});
