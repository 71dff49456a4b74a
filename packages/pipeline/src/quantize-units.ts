/**
 * Quantize the units of one block: W4A4 SVDQuant units through @svdquant/quantizer (units that read one input
 * share λ), W4A16 units through int4's AWQ-style quantizer; then pack each into the file's tensors.
 */
import {
  activationSpecFor,
  dequantizeW4A16,
  GELU_SHIFT,
  INT4_GROUP_SIZE,
  packP2Layer,
  packW4A4Layer,
  packW4A16Layer,
  type Quantized,
  type QuantizedLinear,
  type QuantSpec,
  quantizeW4A16,
  specFor,
  type W4A16Quantized,
} from "@svdquant/int4";
import * as kernels from "@svdquant/kernels";
import { type Calibration, type LinearLayer, quantizeSharedLayers } from "@svdquant/quantizer";
import type { Tensor } from "@svdquant/tensor";
import type { InputStats } from "./calibrate.js";
import { type QuantizeConfig, smoothingGrid } from "./config.js";
import { PipelineError } from "./errors.js";
import { type UnitSpec, W4A4_FILE_SUFFIX } from "./layout.js";

export const roundUp = (x: number, m: number): number => Math.ceil(x / m) * m;

/** A unit's dense weight gathered from its members: W [N, K] (members stacked along N, K-sliced), bias [N]. */
export interface UnitWeight {
  readonly n: number;
  /** Logical in-features of the model layer (before padding). */
  readonly k: number;
  readonly weight: Float32Array;
  readonly bias: Float32Array | undefined;
  /** Out-features of each member, in order. */
  readonly memberRows: readonly number[];
}

/** Per-layer report row written beside the checkpoint. */
export interface LayerReport {
  readonly layer: string;
  readonly kind: "w4a4" | "w4a16";
  readonly n: number;
  readonly k: number;
  readonly rank: number;
  readonly alpha?: number;
  readonly beta?: number;
  readonly refinementIterations?: number;
  /** ‖Y − Ŷ‖/‖Y‖ on the kept calibration tokens (W4A4) or of the weight (W4A16). */
  readonly relError: number;
  readonly sqnrDb: number;
  readonly bitsPerParam: number;
  readonly seconds: number;
}

/** Zero-pad columns of a row-major [rows, k] matrix to kp. */
export function padCols(a: Float32Array, rows: number, k: number, kp: number): Float32Array {
  if (k === kp) return a;
  const out = new Float32Array(rows * kp);
  for (let r = 0; r < rows; r++) out.set(a.subarray(r * k, (r + 1) * k), r * kp);
  return out;
}

/** Columns [k0, k1) of a row-major [rows, k] matrix. */
export function sliceCols(a: Float32Array, rows: number, k: number, k0: number, k1: number): Float32Array {
  const w = k1 - k0;
  const out = new Float32Array(rows * w);
  for (let r = 0; r < rows; r++) out.set(a.subarray(r * k + k0, r * k + k1), r * w);
  return out;
}

/** The calibration of a unit's input (K-sliced and zero-padded like its weight). */
export function unitCalibration(unit: UnitSpec, stats: InputStats, kFull: number): Calibration {
  const [k0, k1] = unit.kSlice ?? [0, kFull];
  const k = k1 - k0;
  const kp = roundUp(k, INT4_GROUP_SIZE);
  const absmax = new Float64Array(kp);
  for (let j = 0; j < k; j++) absmax[j] = stats.absmax[k0 + j]!;
  const tokens = padCols(
    k0 === 0 && k1 === kFull ? stats.tokens : sliceCols(stats.tokens, stats.rows, kFull, k0, k1),
    stats.rows,
    k,
    kp,
  );
  return { xAbsMax: absmax, tokens, count: stats.rows };
}

/** Quantizer specs of a W4A4 unit: residual weights and run-time activations as the CPU kernels compute them. */
export function w4a4Specs(format: QuantizeConfig["format"], unsigned: boolean): { weight: QuantSpec; act: QuantSpec } {
  if (format === "nvfp4") return { weight: specFor("nvfp4"), act: specFor("nvfp4") };
  // activation scales stay float32 (amax/7 or amax/15), as the kernels keep them (@svdquant/kernels quantizeActivations)
  return {
    weight: specFor("int4"),
    act: { format: unsigned ? "uint4" : "int4", groupSize: INT4_GROUP_SIZE, scaleDtype: "F32" },
  };
}

/**
 * SVDQuant for the W4A4 units of one input (one λ for all of them): λ is searched on the grid with every
 * candidate rounded to BF16 (its storage type, `lambdaDtype`), so the stored λ is the one evaluated; each unit is
 * then refined at it in the same call.
 */
export function quantizeW4A4Group(
  units: readonly { spec: UnitSpec; name: string; w: UnitWeight }[],
  calibration: Calibration,
  config: QuantizeConfig,
): { records: QuantizedLinear[]; reports: LayerReport[] } {
  if (config.format === "int4p2") return quantizeP2Group(units, calibration, config);
  const t0 = performance.now();
  const unsigned = units[0]!.spec.unsigned === true;
  if (units.some((u) => (u.spec.unsigned === true) !== unsigned))
    throw new PipelineError("E_CONFIG", "units that share an input must agree on unsigned activations", units[0]!.name);
  const kp = roundUp(units[0]!.w.k, INT4_GROUP_SIZE);
  const layers: LinearLayer[] = units.map(({ name, w }) => {
    if (roundUp(w.k, INT4_GROUP_SIZE) !== kp)
      throw new PipelineError("E_CONFIG", "units that share an input must have one K", name);
    return { name, n: w.n, k: kp, weight: padCols(w.weight, w.n, w.k, kp), bias: w.bias };
  });
  const rank = Math.min(config.rank, kp, ...layers.map((l) => l.n));
  const { weight, act } = w4a4Specs(config.format, unsigned);
  const shift = unsigned && config.format === "int4" ? GELU_SHIFT : 0;
  const base = {
    ...(config.grid === "paper" ? {} : { grid: smoothingGrid(config) }),
    ...(config.kernels ? { kernels } : {}),
    rank,
    weight,
    activation: act,
    shift,
    seed: config.seed,
  };
  const r = quantizeSharedLayers(layers, calibration, {
    ...base,
    refinement: config.refinement,
    lambdaDtype: "BF16",
  });
  const seconds = (performance.now() - t0) / 1000 / units.length;
  const records: QuantizedLinear[] = [];
  const reports: LayerReport[] = [];
  r.layers.forEach((q, i) => {
    const name = units[i]!.name;
    if (q.residual === undefined) throw new PipelineError("E_CONFIG", "the quantizer returned no 4-bit residual", name);
    const rec: QuantizedLinear = {
      name,
      residual: q.residual,
      rank: q.rank,
      lowRankDown: Float32Array.from(q.lowRankDown),
      lowRankUp: Float32Array.from(q.lowRankUp),
      ...(q.bias !== undefined ? { bias: Float32Array.from(q.bias) } : {}),
      smooth: Float32Array.from(q.smooth),
      act: config.format === "nvfp4" ? activationSpecFor("nvfp4") : activationSpecFor("int4", unsigned),
    };
    records.push(rec);
    const m = r.metrics[i]!;
    reports.push({
      layer: name,
      kind: "w4a4",
      n: q.n,
      k: units[i]!.w.k,
      rank: q.rank,
      alpha: r.candidate.alpha,
      beta: r.candidate.beta,
      refinementIterations: Number(q.info.refinementIterations ?? 0),
      relError: m.relError,
      sqnrDb: m.sqnrDb,
      bitsPerParam: m.bitsPerParam,
      seconds,
    });
  });
  return { records, reports };
}

/** Rows [r0, r1) of an int4p2 residual (codes, decoded scales, row scales, exponents). */
function residualRows(q: Quantized, r0: number, r1: number): Quantized {
  const G = q.cols / q.spec.groupSize;
  return {
    spec: q.spec,
    rows: r1 - r0,
    cols: q.cols,
    codes: q.codes.slice(r0 * q.cols, r1 * q.cols),
    scales: q.scales.slice(r0 * G, r1 * G),
    ...(q.rowScales ? { rowScales: q.rowScales.slice(r0, r1) } : {}),
    ...(q.exponents ? { exponents: q.exponents.slice(r0 * G, r1 * G) } : {}),
  };
}

/**
 * SVDQuant in the opt-in int4p2 format for the units of one input: they are quantized as one stacked layer [ΣN, K]
 * (one λ searched in BF16, one rank-R branch, int4p2 weights with per-row scales, signed int4p2 "pow2" activations,
 * no GELU shift), then split along N into one record per unit, all holding the same lowRankDown and λ. The engine
 * reads such units through one activation operand (@svdquant/engine-cuda: fused q/k/v, a FLUX single block's
 * q/k/v + proj_mlp), so they cannot have separate branches. Every unit's report carries the stacked layer's error.
 */
export function quantizeP2Group(
  units: readonly { spec: UnitSpec; name: string; w: UnitWeight }[],
  calibration: Calibration,
  config: QuantizeConfig,
): { records: QuantizedLinear[]; reports: LayerReport[] } {
  const t0 = performance.now();
  const kp = roundUp(units[0]!.w.k, INT4_GROUP_SIZE);
  let n = 0;
  for (const { name, w } of units) {
    if (roundUp(w.k, INT4_GROUP_SIZE) !== kp)
      throw new PipelineError("E_CONFIG", "units that share an input must have one K", name);
    n += w.n;
  }
  const weight = new Float32Array(n * kp);
  const hasBias = units.some((u) => u.w.bias !== undefined);
  const bias = hasBias ? new Float32Array(n) : undefined;
  let r0 = 0;
  for (const { w } of units) {
    weight.set(padCols(w.weight, w.n, w.k, kp), r0 * kp);
    if (w.bias) bias!.set(w.bias, r0);
    r0 += w.n;
  }
  const name = units.map((u) => u.name).join(" + ");
  const rank = Math.min(config.rank, kp, n);
  const r = quantizeSharedLayers([{ name, n, k: kp, weight, ...(bias ? { bias } : {}) }], calibration, {
    ...(config.grid === "paper" ? {} : { grid: smoothingGrid(config) }),
    // native f32 GEMMs in the search and refinement (the kernel path needs a branch: rank 0 searches in float64);
    // the int4p2 residual is quantized by @svdquant/int4 (no fused pass)
    ...(config.kernels && rank > 0 ? { kernels } : {}),
    rank,
    weight: specFor("int4p2"),
    activation: specFor("int4p2", { p2RowScale: "pow2" }), // as the engine's one-pass activation kernel
    shift: 0,
    seed: config.seed,
    refinement: config.refinement,
    lambdaDtype: "BF16",
  });
  const q = r.layers[0]!;
  if (q.residual === undefined) throw new PipelineError("E_CONFIG", "the quantizer returned no 4-bit residual", name);
  const m = r.metrics[0]!;
  const seconds = (performance.now() - t0) / 1000 / units.length;
  const down = Float32Array.from(q.lowRankDown);
  const up = Float32Array.from(q.lowRankUp);
  const smooth = Float32Array.from(q.smooth);
  const records: QuantizedLinear[] = [];
  const reports: LayerReport[] = [];
  r0 = 0;
  for (const { name: unitName, w } of units) {
    const r1 = r0 + w.n;
    records.push({
      name: unitName,
      residual: residualRows(q.residual, r0, r1),
      rank: q.rank,
      lowRankDown: down,
      lowRankUp: up.slice(r0 * q.rank, r1 * q.rank),
      ...(q.bias !== undefined ? { bias: Float32Array.from(q.bias.subarray(r0, r1)) } : {}),
      smooth,
      act: activationSpecFor("int4p2"),
    });
    reports.push({
      layer: unitName,
      kind: "w4a4",
      n: w.n,
      k: w.k,
      rank: q.rank,
      alpha: r.candidate.alpha,
      beta: r.candidate.beta,
      refinementIterations: Number(q.info.refinementIterations ?? 0),
      relError: m.relError,
      sqnrDb: m.sqnrDb,
      bitsPerParam: m.bitsPerParam,
      seconds,
    });
    r0 = r1;
  }
  return { records, reports };
}

/**
 * AdaNorm row order of the published checkpoints: diffusers' chunk(c) keeps each output chunk contiguous
 * (row j·D + d); the engine reads them interleaved (row d·c + j). `inverse` maps back.
 */
export function permuteAdaNormRows(
  a: Float32Array,
  rows: number,
  cols: number,
  chunks: number,
  inverse = false,
): Float32Array {
  const d = rows / chunks;
  if (!Number.isInteger(d)) throw new PipelineError("E_MODEL", `${rows} AdaNorm rows do not split into ${chunks}`);
  const out = new Float32Array(a.length);
  for (let j = 0; j < chunks; j++)
    for (let i = 0; i < d; i++) {
      const src = inverse ? i * chunks + j : j * d + i;
      const dst = inverse ? j * d + i : i * chunks + j;
      out.set(a.subarray(src * cols, (src + 1) * cols), dst * cols);
    }
  return out;
}

/** A W4A16 unit: AWQ-style asymmetric INT4 g64 weights (the reference engine's AWQW4A16Linear). */
export function quantizeW4A16Unit(
  spec: UnitSpec,
  name: string,
  w: UnitWeight,
  groupSize: number,
): { q: W4A16Quantized; bias: Float32Array | undefined; report: LayerReport } {
  const t0 = performance.now();
  const kp = roundUp(w.k, groupSize);
  let weight = padCols(w.weight, w.n, w.k, kp);
  let bias = w.bias;
  if (spec.adaNorm !== undefined) {
    const { chunks, scaleChunks } = spec.adaNorm;
    const b = Float32Array.from(bias ?? new Float32Array(w.n));
    const d = w.n / chunks;
    for (const c of scaleChunks) for (let i = 0; i < d; i++) b[c * d + i]! += 1; // norm(x)·(1 + scale): +1 folded
    weight = permuteAdaNormRows(weight, w.n, kp, chunks);
    bias = permuteAdaNormRows(b, w.n, 1, chunks);
  }
  const q = quantizeW4A16(weight, w.n, kp, { groupSize, name });
  const deq = dequantizeW4A16(q);
  let num = 0;
  let den = 0;
  for (let i = 0; i < weight.length; i++) {
    num += (deq[i]! - weight[i]!) ** 2;
    den += weight[i]! ** 2;
  }
  const rel = den > 0 ? Math.sqrt(num / den) : 0;
  return {
    q,
    bias,
    report: {
      layer: name,
      kind: "w4a16",
      n: w.n,
      k: w.k,
      rank: 0,
      relError: rel,
      sqnrDb: rel > 0 ? -20 * Math.log10(rel) : Number.POSITIVE_INFINITY,
      bitsPerParam: 4 + 32 / groupSize, // a BF16 scale and a BF16 zero per group
      seconds: (performance.now() - t0) / 1000,
    },
  };
}

/**
 * The file tensors of a W4A4 record under `prefix`: published suffixes for int4 / nvfp4, @svdquant/int4
 * packP2Layer's tensors (`p2_codes`, `p2_exponents`, `p2_wscale`, `proj_down`, `proj_up`, `smooth_factor`, `bias`)
 * for int4p2.
 */
export function w4a4FileTensors(prefix: string, rec: QuantizedLinear): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  if (rec.residual.spec.format === "int4p2") {
    for (const [k, t] of Object.entries(packP2Layer(rec, { dtype: "BF16", name: rec.name ?? prefix })))
      out[`${prefix}.${k}`] = t;
    return out;
  }
  for (const [k, t] of Object.entries(packW4A4Layer(rec, { dtype: "BF16", name: rec.name }))) {
    const suffix = W4A4_FILE_SUFFIX[k];
    if (suffix === undefined)
      throw new PipelineError("E_CHECKPOINT", `the packer wrote an unknown tensor ${k}`, prefix);
    out[`${prefix}.${suffix}`] = t;
  }
  return out;
}

/** The file tensors of a W4A16 layer under `prefix`. */
export function w4a16FileTensors(
  prefix: string,
  q: W4A16Quantized,
  bias: Float32Array | undefined,
): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(packW4A16Layer(q, bias, { dtype: "BF16", name: prefix })))
    out[`${prefix}.${k}`] = t;
  return out;
}

/** Encode a float tensor to BF16 for the file (16-bit layers of the checkpoint). */
export function toBf16(t: Tensor): Tensor {
  return t.dtype === "BF16" ? t : t.to("BF16");
}
