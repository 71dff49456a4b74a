// GPU check of the int4p2 checkpoint path, shared by p2-gpu.test.ts (vitest) and bench/p2-checkpoint-run.ts (the
// device script): one int4p2 layer packed by @svdquant/int4 packP2Layer into a safetensors file, read back and
// converted by engineLinearItems (convert.ts) into the engine's 4-bit device tensors, run by the engine's `linear`
// (expansion to FP8, activation quantizer, FP8 GEMM with the low-rank columns, bias / GELU epilogue), against
// float64 on @svdquant/int4's int4p2 numerics and the exact low-rank branch.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { activationSpecFor, dequantize, packP2Layer, type QuantizedLinear, quantize, specFor } from "@svdquant/int4";
import { p2WeightOperand } from "@svdquant/kernels-cuda";
import { parseFluxConfig } from "@svdquant/models";
import { SafetensorsFile, writeSafetensors } from "@svdquant/tensor";
import { engineLinearItems, FluxEngine } from "../src/index.js";
import { bf, bf16Bits, relErr, rng, uniformBf16 } from "./helpers.js";

export interface P2CheckResult {
  name: string;
  relL2: number;
  relMax: number;
  tol: number;
  ok: boolean;
  /** Device tensors the converter produced (names after the layer's). */
  tensors: string[];
  /**
   * The converted layer's output equals, bit for bit, the same layer uploaded as the FP8-expanded operand
   * (`L.p2_weight` = @svdquant/kernels-cuda p2WeightOperand of the in-memory record, before any file).
   */
  sameAsOperand: boolean;
}

const geluTanh = (v: number): number => 0.5 * v * (1 + Math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));

/**
 * One int4p2 layer [N, K] (rank 32, λ, bias; outlier input channels) from a packed file through the engine, vs
 * float64: Q_a(x·(1/λ))·dequant(residual)ᵀ + (x·L_downᵀ)·L_upᵀ + b (GELU-tanh when `gelu`), with Q_a the int4p2
 * "pow2" activation quantizer the engine's kernel implements. Left to differ: near-tie groups, the hi/lo E4M3
 * split of the branch (about 2^-8 of it), the bf16 output.
 */
export async function checkP2CheckpointLinear(
  M: number,
  K: number,
  N: number,
  gelu: boolean,
  seed = 13,
): Promise<P2CheckResult> {
  const r = rng(seed);
  const R = 32;
  const x = uniformBf16(r, M * K, -2, 2);
  for (let m = 0; m < M; m++) for (let k = 5; k < K; k += 97) x[m * K + k] = bf(x[m * K + k]! * 12); // outliers
  const lam = uniformBf16(r, K, 0.6, 1.6);
  const w = new Float32Array(N * K);
  for (let i = 0; i < w.length; i++) w[i] = (2 * r() - 1) / Math.sqrt(K);
  for (let n = 0; n < N; n += 7) for (let k = 0; k < K; k += 61) w[n * K + k] = w[n * K + k]! * 16; // weight outliers
  const rec: QuantizedLinear = {
    residual: quantize(w, N, K, specFor("int4p2")),
    rank: R,
    lowRankDown: uniformBf16(r, R * K, -1 / Math.sqrt(K), 1 / Math.sqrt(K)),
    lowRankUp: uniformBf16(r, N * R, -0.05, 0.05),
    bias: uniformBf16(r, N, -0.1, 0.1),
    smooth: lam,
    act: activationSpecFor("int4p2"),
  };
  // float64 reference; the kernel's v = x · (1/λ) in f32 (reciprocal, then product)
  const xs = new Float32Array(M * K);
  for (let m = 0; m < M; m++)
    for (let k = 0; k < K; k++) xs[m * K + k] = Math.fround(x[m * K + k]! * Math.fround(1 / lam[k]!));
  const dqx = dequantize(quantize(xs, M, K, specFor("int4p2", { p2RowScale: "pow2" })));
  const dw = dequantize(rec.residual);
  const lact = new Float64Array(M * R);
  for (let m = 0; m < M; m++)
    for (let q = 0; q < R; q++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k]! * rec.lowRankDown[q * K + k]!;
      lact[m * R + q] = s;
    }
  const ref = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = rec.bias![n]!;
      for (let k = 0; k < K; k++) s += dqx[m * K + k]! * dw[n * K + k]!;
      for (let q = 0; q < R; q++) s += lact[m * R + q]! * rec.lowRankUp[n * R + q]!;
      ref[m * N + n] = gelu ? geluTanh(s) : s;
    }

  const dir = await mkdtemp(join(tmpdir(), "svdq-p2-"));
  const path = join(dir, "layer.safetensors");
  const tensors: string[] = [];
  // a throwaway zero-block model: only its workspace and `linear` are used
  const cfg = parseFluxConfig({ num_attention_heads: 2, attention_head_dim: 16, axes_dims_rope: [4, 6, 6] });
  const e = FluxEngine.random(
    { ...cfg, numLayers: 0, numSingleLayers: 0, inChannels: 16, jointAttentionDim: 16, pooledProjectionDim: 16 },
    { mode: "bf16" },
  );
  try {
    const packed = packP2Layer(rec, { name: "blk.lin" });
    await writeSafetensors(path, new Map(Object.entries(packed).map(([k, t]) => [`blk.lin.${k}`, t])));
    const file = await SafetensorsFile.open(path);
    e.prepare(1, 8, M);
    const raw = e.raw;
    try {
      // the default p2SupportedK is the addon's: a K the kernels lack fails here, naming the layer
      for await (const it of engineLinearItems({ name: "p.lin", sources: ["blk.lin"], N: [N], K }, file)) {
        if (it.kind === "int") raw.setInt(it.name, it.value);
        else {
          raw.alloc(it.name, it.data.byteLength);
          raw.upload(it.name, it.data);
          tensors.push(it.name.slice("p.lin.".length));
        }
      }
    } finally {
      await file.close();
    }
    raw.alloc("p.x", M * K * 2);
    raw.upload("p.x", bf16Bits(x));
    raw.alloc("p.y", M * N * 2);
    raw.fillRandom("p.y", "bytes", 9); // poison
    raw.linear("p.lin", N, K, "p.x", "p.y", M, gelu ? 1 : 0);
    const bits = new Uint16Array(raw.download("p.y"));
    // the same layer as the FP8-expanded operand, straight from the record (no file, no converter)
    const op = p2WeightOperand(rec.residual, rec.lowRankUp, R);
    const put = (name: string, a: ArrayBufferView) => {
      raw.alloc(name, a.byteLength);
      raw.upload(name, a);
    };
    put("p.op.p2_weight", op.b8);
    put("p.op.p2_wscale", op.sw);
    put("p.op.p2_lr_shift", op.lrShift);
    put("p.op.lora_down", bf16Bits(rec.lowRankDown));
    put("p.op.smooth", bf16Bits(lam));
    put("p.op.bias", bf16Bits(rec.bias!));
    raw.alloc("p.y2", M * N * 2);
    raw.fillRandom("p.y2", "bytes", 10); // another poison
    raw.linear("p.op", N, K, "p.x", "p.y2", M, gelu ? 1 : 0);
    const bits2 = new Uint16Array(raw.download("p.y2"));
    const sameAsOperand = bits.length === bits2.length && bits.every((b, i) => b === bits2[i]);
    const got = Float32Array.from(bits, (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!);
    const err = relErr(got, ref);
    const tol = 1e-2; // as the device-tensor int4p2 check (gpu-checks.ts checkP2Linear): bf16 output, E4M3 hi/lo branch
    return {
      name: `int4p2 layer from a packed file → convert → engine linear M=${M} K=${K} N=${N}${gelu ? " +GELU" : ""} vs float64`,
      relL2: err.relL2,
      relMax: err.relMax,
      tol,
      ok: err.finite && err.relL2 <= tol && sameAsOperand,
      tensors: tensors.sort(),
      sameAsOperand,
    };
  } finally {
    e.free();
    await rm(dir, { recursive: true, force: true });
  }
}
