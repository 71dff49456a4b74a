/**
 * The quantizer's inner loops on native f32 GEMMs (SVDQuant's search and refinement at real layer sizes).
 *
 * Every large product has the big matrix as the GEMM's streamed left operand and a thin panel as its packed
 * right operand, so nothing of size N·K is ever packed, transposed or copied per candidate:
 *
 * | product                      | left operand (plain, f32) | packed right operand (f32) | result           |
 * | ---------------------------- | ------------------------- | -------------------------- | ---------------- |
 * | SVD sketch (Ŵ·Z)ᵀ            | W [N, K]                  | (Z∘λ)ᵀ [L, K]              | [N, L] → [L, N]  |
 * | SVD projection Qᵀ·Ŵ          | Wᵀ [K, N] (once a layer)  | Qᵀ [L, N]                  | [K, L] ×λ → [L, K] |
 * | branch L = L_up·L_down·diag(λ) | L_up rows [B, R]        | (L_down∘λ)ᵀ [K, R]         | [B, K] per block |
 * | reference output Yᵀ          | W [N, K]                  | X [M, K]                   | [N, M] (once)    |
 * | 4-bit path Q(R)·Q_a(P)ᵀ      | dequantized Q(R) [N, K]   | Q_a(P) [M, K]              | [N, M]           |
 * | branch output                | L_up [N, R]               | X·L_downᵀ [M, R]           | [N, M]           |
 *
 * The residual R = Ŵ − L is quantized by @svdquant/int4 in blocks of rows (float64, the same quantizer as the
 * reference path), so codes and scales are those of a float64 build up to the float32 rounding of L.
 * Refinement products use A_k = Ŵ − Q(Ŵ − L_k) materialized in float32 with its transpose.
 */
import { dequantize, type Quantized, type QuantSpec, quantize } from "@svdquant/int4";
import {
  chooseMethod,
  type LinearOperator,
  randomizedSvdOf,
  type TruncatedSvdOptions,
  truncatedSvd,
} from "@svdquant/lowrank";
import { QuantizerError } from "./errors.js";
import { type Floats, round16 } from "./linalg.js";
import {
  type ActivationFormat,
  branchBitsPerParam,
  type LayerMetrics,
  type LinearLayer,
  pathInputOf,
  type QuantizedLinear,
  quantBitsPerParam,
} from "./linear.js";
import { fusedQuantSupported, quantizeRowsFused } from "./residual-quant.js";

/** A weight packed by the kernels; opaque to the quantizer. */
export interface PackedF32Handle {
  readonly N: number;
  readonly K: number;
}

/**
 * The native operators the quantizer's inner loops run on: structurally `@svdquant/kernels` (pass
 * `await import("@svdquant/kernels")`; the quantizer does not depend on that package).
 *
 * | call                 | reads                                   | returns                  |
 * | -------------------- | --------------------------------------- | ------------------------ |
 * | `packF32(w, N, K)`   | W [N, K] f32 row-major                  | a packed weight          |
 * | `gemmF32(x, M, w)`   | X [M, K] f32 row-major, packed W [N, K] | Y = X·Wᵀ [M, N] f32      |
 */
export interface QuantizerKernels {
  packF32(w: Float32Array, N: number, K: number): PackedF32Handle;
  gemmF32(x: Float32Array, M: number, w: PackedF32Handle): Float32Array;
  /**
   * Optional, used when all four are there (as in @svdquant/kernels): the residual pass in native code
   * (`quantizeResidual`, operator 7) and each candidate's 4-bit output on the W4A4 GEMM (`gemmW4A4`); see
   * `NativeResidualOps`.
   */
  quantizeResidual?: NativeResidualOps["quantizeResidual"];
  emptyPackedF32?: NativeResidualOps["emptyPackedF32"];
  emptyPackedW4A4?: NativeResidualOps["emptyPackedW4A4"];
  gemmW4A4?: NativeResidualOps["gemmW4A4"];
  /**
   * Optional (@svdquant/kernels' operator 8): CholeskyQR of a row panel in float64 on the kernel threads, used by
   * `cholQrRows` instead of its float32-Gram version.
   */
  cholQrRowsF64?(
    p: Float64Array,
    l: number,
    d: number,
    opts: { passes: number; minPivot: number; maxDev: number },
  ): Float64Array | null;
}

/** A W4A4 weight of the kernels (layout: @svdquant/kernels' layout.ts); filled by `quantizeResidual`. */
export interface PackedW4A4Handle {
  readonly kind: "w4a4";
  readonly N: number;
  readonly K: number;
  readonly R: number;
  readonly qweight: Uint8Array;
  readonly wscales: Float32Array;
  readonly lup: Float32Array | null;
  readonly bias: Float32Array | null;
}

/**
 * The native residual pass and W4A4 GEMM, structurally @svdquant/kernels' `quantizeResidual`, `emptyPackedF32`,
 * `emptyPackedW4A4` and `gemmW4A4`:
 *
 * | call                           | reads                                              | fills / returns                        |
 * | ------------------------------ | -------------------------------------------------- | -------------------------------------- |
 * | `quantizeResidual(in, out)`    | W [N,K] f32, λ [K] f64, L_up [N,R], L_down·λ [R,K] | Q(R) codes/scales, W4A4 weight, Q(R), A = Ŵ − Q(R) [N,K] and Aᵀ as f32 panels, Σ_k Q(R)/λ_k; ‖R‖², ‖R − Q(R)‖² |
 * | `emptyPackedF32(N, K)`         |                                                    | an f32 panel weight to fill            |
 * | `emptyPackedW4A4(N, K, R)`     |                                                    | a W4A4 weight to fill                  |
 * | `gemmW4A4(act, w)`             | activation codes [M,K] + scales [M,K/64], X·L_downᵀ [M,R] | { y: [M, N] }                   |
 */
export interface NativeResidualOps {
  quantizeResidual(
    input: {
      weight: Float32Array;
      N: number;
      K: number;
      smooth: Float64Array;
      lowRankUp?: Float32Array;
      smoothedLowRankDown?: Float32Array;
      rank?: number;
      format?: "int4" | "uint4";
      groupSize: number;
      scaleDtype?: "BF16" | "F16" | "F32";
      name?: string;
    },
    out: {
      codes?: Int8Array;
      scales?: Float32Array;
      packed?: PackedW4A4Handle;
      dequantized?: Float32Array;
      difference?: Float32Array;
      differenceT?: PackedF32Handle;
      rowSumsOverSmooth?: Float64Array;
    },
  ): { norm2: number; err2: number };
  emptyPackedF32(N: number, K: number): PackedF32Handle;
  emptyPackedW4A4(N: number, K: number, R: number): PackedW4A4Handle;
  gemmW4A4(
    act: {
      M: number;
      K: number;
      R: number;
      format: "int4" | "uint4";
      shift: number;
      codes: Int8Array;
      scales: Float32Array;
      loraAct: Float32Array | null;
    },
    w: PackedW4A4Handle,
  ): { y: Float32Array };
}

/** The native ops when the kernels have all of them and the residual's format is one they quantize. */
function nativeOps(kernels: QuantizerKernels, spec: QuantSpec, k: number): NativeResidualOps | undefined {
  const { quantizeResidual, emptyPackedF32, emptyPackedW4A4, gemmW4A4 } = kernels;
  if (!quantizeResidual || !emptyPackedF32 || !emptyPackedW4A4 || !gemmW4A4) return undefined;
  if (!fusedQuantSupported(spec, k)) return undefined;
  return { quantizeResidual, emptyPackedF32, emptyPackedW4A4, gemmW4A4 };
}

/** The W4A4 GEMM computes Q(R)·Q_a(P)ᵀ exactly as the fake-quant path when both are INT4/UINT4 groups of 64. */
function w4a4Evaluable(spec: QuantSpec, activation: ActivationFormat, k: number): activation is QuantSpec {
  return (
    spec.format === "int4" &&
    spec.groupSize === 64 &&
    k % 64 === 0 &&
    typeof activation === "object" &&
    (activation.format === "int4" || activation.format === "uint4") &&
    activation.groupSize === 64 &&
    activation.globalScale === undefined
  );
}

/**
 * Power iterations of a refinement SVD warm-started from the previous iteration's right singular vectors: the
 * subspace iteration then continues across refinement steps (A_k changes little between them), so each step
 * needs 4 products instead of 6 (measured in docs/benchmarks.md: 2x faster refinement, error +0.03 %).
 */
const WARM_POWER_ITERATIONS = 1;

/** Rows of the residual handled per block (256·K float64 scratch, 6 MiB at K = 3072). */
const BLOCK_ROWS = 256;

/**
 * Row-major float32 transpose [rows, cols] → [cols, rows] in 64x64 tiles (measured on the 12288 x 3072 weight:
 * 113 ms of CPU against 175 ms with 16x16 tiles and 135 ms with 128 or 256).
 */
export function transpose32(a: Float32Array, rows: number, cols: number, out?: Float32Array): Float32Array {
  const t = out ?? new Float32Array(rows * cols);
  const T = 64;
  for (let i0 = 0; i0 < rows; i0 += T) {
    const i1 = Math.min(rows, i0 + T);
    for (let j0 = 0; j0 < cols; j0 += T) {
      const j1 = Math.min(cols, j0 + T);
      for (let j = j0; j < j1; j++) {
        const o = j * rows;
        for (let i = i0; i < i1; i++) t[o + i] = a[i * cols + j];
      }
    }
  }
  return t;
}

/**
 * One layer's fixed state for the kernel path: W and Wᵀ in float32 and the reference output on the kept tokens.
 *
 * | field  | shape  | dtype |
 * | ------ | ------ | ----- |
 * | w32    | [N, K] | f32   |
 * | wt32   | [K, N] | f32   |
 * | yRefT  | [N, M] | f32   | x·Wᵀ transposed, without bias |
 */
export class KernelLayer {
  readonly n: number;
  readonly k: number;
  readonly m: number;
  readonly w32: Float32Array;
  readonly wt32: Float32Array;
  readonly yRefT: Float32Array;
  /** Σ (x·Wᵀ + b)² over the kept tokens. */
  readonly yRefNorm2: number;
  /** Codes and Q(R) buffers the search reuses from candidate to candidate (only its errors are kept). */
  scratch: { codes: Int8Array; d32: Float32Array } | undefined;
  /** The W4A4 weight the native search refills for every candidate. */
  packedScratch: PackedW4A4Handle | undefined;
  #yRef: Float32Array | undefined;

  constructor(
    readonly kernels: QuantizerKernels,
    readonly layer: LinearLayer,
    readonly x: Floats,
    readonly x32: Float32Array,
    readonly xPacked: PackedF32Handle,
  ) {
    const { n, k } = layer;
    this.n = n;
    this.k = k;
    this.m = x32.length / k;
    this.w32 = layer.weight instanceof Float32Array ? layer.weight : Float32Array.from(layer.weight);
    if (!(layer.weight instanceof Float32Array))
      for (let i = 0; i < this.w32.length; i++)
        if (!Number.isFinite(this.w32[i]))
          throw new QuantizerError(
            "E_NONFINITE",
            `weight[${Math.floor(i / k)}, ${i % k}] = ${layer.weight[i]} does not fit float32; the kernel path needs float32 weights (leave out \`kernels\` for the float64 path)`,
            layer.name,
          );
    this.wt32 = transpose32(this.w32, n, k);
    this.yRefT = kernels.gemmF32(this.w32, n, xPacked);
    const b = layer.bias;
    let s = 0;
    for (let o = 0; o < n; o++) {
      const bo = b ? b[o] : 0;
      const row = o * this.m;
      for (let t = 0; t < this.m; t++) {
        const v = this.yRefT[row + t] + bo;
        s += v * v;
      }
    }
    this.yRefNorm2 = s;
  }

  /** x·Wᵀ [M, N] (yRefT transposed, for outputs in the W4A4 GEMM's layout). */
  get yRef(): Float32Array {
    this.#yRef ??= transpose32(this.yRefT, this.n, this.m);
    return this.#yRef;
  }
}

/** Kernel-path state shared by layers that read one input: the tokens in float32 and packed. */
export function kernelLayers(kernels: QuantizerKernels, layers: LinearLayer[], x: Floats, m: number): KernelLayer[] {
  const k = layers[0].k;
  const x32 = x instanceof Float32Array ? x : Float32Array.from(x);
  for (let i = 0; i < x32.length; i++)
    if (!Number.isFinite(x32[i]))
      throw new QuantizerError(
        "E_NONFINITE",
        `calibration token ${Math.floor(i / k)}, channel ${i % k} = ${x[i]} is not a finite float32`,
        layers[0].name,
      );
  const xPacked = kernels.packF32(x32, m, k);
  return layers.map((l) => new KernelLayer(kernels, l, x, x32, xPacked));
}

/** Smallest Cholesky pivot (squared, on unit-norm rows) CholeskyQR accepts; below it the panel goes to MGS. */
const CHOLQR_MIN_PIVOT = 1e-4;

/** Passes of CholeskyQR (the first on unit-norm rows; the later ones restore orthogonality lost to rounding). */
const CHOLQR_PASSES = 3;

/**
 * Row-panel orthonormalization on the f32 GEMM: CholeskyQR repeated (Fukaya et al. 2020, "CholeskyQR3") on the
 * rows scaled to unit norm. P [l, d] is overwritten with orthonormal rows and T [l, l] lower-triangular with
 * P_in = T·P_out is returned; null (the caller then uses modified Gram–Schmidt) when a pivot is below
 * CHOLQR_MIN_PIVOT or the last Gram matrix is not the identity within 1e-3, i.e. the panel is too
 * ill-conditioned for float32 Gram matrices.
 */
export function cholQrRows(kernels: QuantizerKernels, p: Float64Array, l: number, d: number): Float64Array | null {
  // float64 Gram matrices (native): pivots down to 1e-10 and a last Gram within 1e-6 of I hold in float64
  if (kernels.cholQrRowsF64)
    return kernels.cholQrRowsF64(p, l, d, { passes: CHOLQR_PASSES, minPivot: 1e-10, maxDev: 1e-6 });
  const t = new Float64Array(l * l);
  let cur: Float32Array = new Float32Array(l * d);
  for (let i = 0; i < l; i++) {
    let s = 0;
    for (let x = 0; x < d; x++) s += p[i * d + x] * p[i * d + x];
    const nrm = Math.sqrt(s);
    if (!(nrm > 0) || !Number.isFinite(nrm)) return null;
    t[i * l + i] = nrm;
    for (let x = 0; x < d; x++) cur[i * d + x] = p[i * d + x] / nrm;
  }
  const c = new Float64Array(l * l);
  const cinv = new Float32Array(l * l);
  for (let pass = 0; pass < CHOLQR_PASSES; pass++) {
    const g = kernels.gemmF32(cur, l, kernels.packF32(cur, l, d)); // G = P·Pᵀ [l, l]
    if (pass === CHOLQR_PASSES - 1) {
      let dev = 0;
      for (let i = 0; i < l; i++)
        for (let j = 0; j < l; j++) dev = Math.max(dev, Math.abs(g[i * l + j] - (i === j ? 1 : 0)));
      if (dev > 1e-3) return null;
    }
    // G = C·Cᵀ (float64, symmetrized)
    c.fill(0);
    for (let i = 0; i < l; i++)
      for (let j = 0; j <= i; j++) {
        let s = 0.5 * (g[i * l + j] + g[j * l + i]);
        for (let q = 0; q < j; q++) s -= c[i * l + q] * c[j * l + q];
        if (i === j) {
          if (!(s > CHOLQR_MIN_PIVOT)) return null;
          c[i * l + i] = Math.sqrt(s);
        } else c[i * l + j] = s / c[j * l + j];
      }
    // C⁻¹ (lower), by forward substitution on the columns of I
    cinv.fill(0);
    for (let col = 0; col < l; col++) {
      for (let i = col; i < l; i++) {
        let s = i === col ? 1 : 0;
        for (let q = col; q < i; q++) s -= c[i * l + q] * cinv[q * l + col];
        cinv[i * l + col] = s / c[i * l + i];
      }
    }
    // P ← C⁻¹·P: (Pᵀ·C⁻ᵀ) [d, l] on the GEMM, then back to rows
    const pt = transpose32(cur, l, d);
    const y = kernels.gemmF32(pt, d, kernels.packF32(cinv, l, l)); // [d, l]
    cur = transpose32(y, d, l);
    // T ← T·C
    const tc = new Float64Array(l * l);
    for (let i = 0; i < l; i++)
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let q = j; q <= i; q++) s += t[i * l + q] * c[q * l + j];
        tc[i * l + j] = s;
      }
    t.set(tc);
  }
  for (let i = 0; i < l * d; i++) p[i] = cur[i];
  return t;
}

/** (A·diag(scale))·Z and Qᵀ·A·diag(scale) through the kernels, A given as a32 [rows, cols] and at32 = Aᵀ. */
function operatorOf(
  kernels: QuantizerKernels,
  a32: Float32Array,
  at32: Float32Array,
  rows: number,
  cols: number,
  scale: Float64Array | undefined,
): LinearOperator {
  return {
    rows,
    cols,
    sketch(zt, l) {
      const zs = new Float32Array(l * cols);
      for (let i = 0; i < l; i++)
        for (let j = 0; j < cols; j++) zs[i * cols + j] = scale ? zt[i * cols + j] * scale[j] : zt[i * cols + j];
      const y = kernels.gemmF32(a32, rows, kernels.packF32(zs, l, cols)); // [rows, L]
      const out = new Float64Array(l * rows);
      for (let r = 0; r < rows; r++) for (let i = 0; i < l; i++) out[i * rows + r] = y[r * l + i];
      return out;
    },
    project(qt, l) {
      const b = kernels.gemmF32(at32, cols, kernels.packF32(Float32Array.from(qt), l, rows)); // [cols, L]
      const out = new Float64Array(l * cols);
      for (let j = 0; j < cols; j++) {
        const sj = scale ? scale[j] : 1;
        for (let i = 0; i < l; i++) out[i * cols + j] = b[j * l + i] * sj;
      }
      return out;
    },
  };
}

/** What one SVD-based build needs besides the layer. */
export interface KernelBuildOptions {
  rank: number;
  weight: QuantSpec;
  activation: ActivationFormat;
  shift: number;
  svd: TruncatedSvdOptions;
  branchDtype: "BF16" | "F16";
}

/** One candidate: branch, quantized residual and its output error on the kept tokens. */
export interface KernelCandidate {
  lowRankUp: Float64Array;
  lowRankDown: Float64Array;
  residual: Quantized;
  /** Q(R) dequantized, [N, K] f32 (the native path keeps it only where it is needed). */
  d32: Float32Array | undefined;
  bias: Float64Array | undefined;
  /** Σ (Y − Ŷ)² over the kept tokens. */
  err2: number;
  /** ‖Ŵ − L‖², ‖Ŵ − L − Q(R)‖² (the bound's weight terms). */
  wNorm2: number;
  wErr2: number;
}

/** Branch factors from an SVD of the smoothed matrix (as the reference path: U·S and Vᵀ/λ, rounded to 16 bits). */
function branchFrom(
  svd: { u: Float64Array; s: Float64Array; vt: Float64Array },
  n: number,
  k: number,
  rank: number,
  lambda: Float64Array,
  dtype: "BF16" | "F16",
): { up: Float64Array; down: Float64Array } {
  const up = new Float64Array(n * rank);
  for (let i = 0; i < n; i++) for (let r = 0; r < rank; r++) up[i * rank + r] = svd.u[i * rank + r] * svd.s[r];
  const down = new Float64Array(rank * k);
  for (let r = 0; r < rank; r++) for (let j = 0; j < k; j++) down[r * k + j] = svd.vt[r * k + j] / lambda[j];
  return { up: round16(up, dtype), down: round16(down, dtype) };
}

/** Pᵀ·C [d, r] for P [l, d], C [l, r] on the f32 GEMM (the SVD's U = Q·U_T and V = Q₂ᵀ·V_T). */
export function combineRows(
  kernels: QuantizerKernels,
  p: Float64Array,
  l: number,
  d: number,
  c: Float64Array,
  r: number,
): Float64Array {
  const pt = new Float32Array(d * l); // Pᵀ [d, l]
  for (let i = 0; i < l; i++) {
    const row = i * d;
    for (let x = 0; x < d; x++) pt[x * l + i] = p[row + x];
  }
  const ct = new Float32Array(r * l); // Cᵀ [r, l], packed as the GEMM's [N, K] operand
  for (let i = 0; i < l; i++) for (let j = 0; j < r; j++) ct[j * l + i] = c[i * r + j];
  return Float64Array.from(kernels.gemmF32(pt, d, kernels.packF32(ct, r, l)));
}

/** Options of a randomized SVD on the kernels (CholeskyQR on the f32 GEMM; fewer power iterations when warm). */
function randomizedOptions(kl: KernelLayer, opts: KernelBuildOptions, name: string, start?: Float64Array) {
  return {
    orthonormalize: (p: Float64Array, l: number, d: number) => cholQrRows(kl.kernels, p, l, d),
    combine: (p: Float64Array, l: number, d: number, c: Float64Array, r: number) =>
      combineRows(kl.kernels, p, l, d, c, r),
    oversample: opts.svd.oversample,
    powerIterations: start !== undefined ? WARM_POWER_ITERATIONS : opts.svd.powerIterations,
    start,
    maxPowerIterations: opts.svd.maxPowerIterations,
    tolerance: opts.svd.tolerance,
    seed: opts.svd.seed,
    name,
  };
}

/**
 * Rank-R SVD of Ŵ − D (D = Q(R) of the previous iteration, or none) for the kernel path: randomized through the
 * GEMMs, or the exact float64 SVD where `truncatedSvd` would take it (small layers).
 */
function smoothedSvd(
  kl: KernelLayer,
  lambda: Float64Array,
  d32: Float32Array | undefined,
  opts: KernelBuildOptions,
  name: string,
  start?: Float64Array,
): { u: Float64Array; s: Float64Array; vt: Float64Array } {
  const { n, k, layer, kernels } = kl;
  const { rank } = opts;
  if (chooseMethod(n, k, rank, opts.svd) === "exact") {
    const w = layer.weight;
    const a = new Float64Array(n * k);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < k; j++) a[i * k + j] = w[i * k + j] * lambda[j] - (d32 ? d32[i * k + j] : 0);
    return truncatedSvd(a, n, k, rank, { ...opts.svd, name });
  }
  const svdOpts = randomizedOptions(kl, opts, name, start);
  if (d32 === undefined) return randomizedSvdOf(operatorOf(kernels, kl.w32, kl.wt32, n, k, lambda), rank, svdOpts);
  const w = kl.w32;
  const a32 = new Float32Array(n * k); // A = Ŵ − D in float32
  for (let i = 0; i < n; i++) {
    const row = i * k;
    for (let j = 0; j < k; j++) a32[row + j] = w[row + j] * lambda[j] - d32[row + j];
  }
  const at32 = transpose32(a32, n, k);
  return randomizedSvdOf(operatorOf(kernels, a32, at32, n, k, undefined), rank, svdOpts);
}

/** Quantize R = Ŵ − L block by block, measure the output error: one full candidate for a branch. */
function candidateFor(
  kl: KernelLayer,
  lambda: Float64Array,
  up: Float64Array,
  down: Float64Array,
  opts: KernelBuildOptions,
  rep32: Float32Array,
  name: string,
  scratch?: { codes: Int8Array; d32: Float32Array },
): KernelCandidate {
  const { n, k, m, kernels, layer } = kl;
  const { rank, weight: spec, shift } = opts;
  const w = layer.weight;
  // (L_down·diag(λ))ᵀ [K, R] packed: L rows of a block = L_up[block] · that
  const dl = new Float32Array(k * rank);
  for (let r = 0; r < rank; r++) for (let j = 0; j < k; j++) dl[j * rank + r] = down[r * k + j] * lambda[j];
  const dlPacked = kernels.packF32(dl, k, rank);
  const up32 = Float32Array.from(up);
  // every element is written below, so reused buffers need no clearing
  const codes = scratch?.codes ?? new Int8Array(n * k);
  let scales: Float32Array | undefined;
  // int4p2 residuals also carry their row scales and group exponents (@svdquant/int4 p2.ts)
  let rowScales: Float32Array | undefined;
  let exponents: Int8Array | undefined;
  const d32 = scratch?.d32 ?? new Float32Array(n * k);
  let bias = layer.bias ? Float64Array.from(layer.bias) : undefined;
  if (shift !== 0) bias ??= new Float64Array(n);
  const rb = new Float64Array(Math.min(BLOCK_ROWS, n) * k);
  const fused = fusedQuantSupported(spec, k);
  let wNorm2 = 0;
  let wErr2 = 0;
  for (let i0 = 0; i0 < n; i0 += BLOCK_ROWS) {
    const b = Math.min(BLOCK_ROWS, n - i0);
    const lb = kernels.gemmF32(up32.subarray(i0 * rank, (i0 + b) * rank), b, dlPacked); // [b, K]
    const r = b * k === rb.length ? rb : rb.subarray(0, b * k);
    if (!fused)
      for (let i = 0; i < b; i++) {
        const src = (i0 + i) * k;
        for (let j = 0; j < k; j++) r[i * k + j] = w[src + j] * lambda[j] - lb[i * k + j];
      }
    const perRow = fused ? k / spec.groupSize : 0;
    if (fused) {
      scales ??= new Float32Array(n * perRow);
      const e = quantizeRowsFused(
        r,
        b,
        k,
        spec,
        codes.subarray(i0 * k, (i0 + b) * k),
        scales.subarray(i0 * perRow, (i0 + b) * perRow),
        d32.subarray(i0 * k, (i0 + b) * k),
        name,
        { w, wOffset: i0 * k, lambda, l: lb },
      );
      wNorm2 += e.norm2;
      wErr2 += e.err2;
    } else {
      const q = quantize(r, b, k, spec, name);
      const dq = dequantize(q);
      codes.set(q.codes, i0 * k);
      const qPerRow = q.scales.length / b;
      scales ??= new Float32Array(n * qPerRow);
      scales.set(q.scales, i0 * qPerRow);
      if (q.rowScales !== undefined && q.exponents !== undefined) {
        rowScales ??= new Float32Array(n);
        exponents ??= new Int8Array(n * qPerRow);
        rowScales.set(q.rowScales, i0);
        exponents.set(q.exponents, i0 * qPerRow);
      }
      d32.set(dq, i0 * k);
      for (let i = 0; i < b * k; i++) {
        const v = r[i];
        const e = v - dq[i];
        wNorm2 += v * v;
        wErr2 += e * e;
      }
    }
    const dq = d32.subarray(i0 * k, (i0 + b) * k);
    if (shift !== 0)
      for (let i = 0; i < b; i++) {
        let s = 0;
        for (let j = 0; j < k; j++) s += dq[i * k + j] / lambda[j];
        bias![i0 + i] -= shift * s;
      }
  }
  const residual: Quantized = {
    spec: { ...spec },
    rows: n,
    cols: k,
    codes,
    scales: scales!,
    ...(rowScales !== undefined && exponents !== undefined ? { rowScales, exponents } : {}),
  };
  // output: Ŷᵀ = Q(R)·Q_a(P)ᵀ + L_up·(X·L_downᵀ)ᵀ + b'
  const yq = kernels.gemmF32(d32, n, kernels.packF32(rep32, m, k)); // [N, M]
  const lora = kernels.gemmF32(kl.x32, m, kernels.packF32(Float32Array.from(down), rank, k)); // [M, R]
  const yb = kernels.gemmF32(up32, n, kernels.packF32(lora, m, rank)); // [N, M]
  const b0 = layer.bias;
  let err2 = 0;
  for (let o = 0; o < n; o++) {
    const db = (bias ? bias[o] : 0) - (b0 ? b0[o] : 0);
    const row = o * m;
    for (let t = 0; t < m; t++) {
      const d = yq[row + t] + yb[row + t] + db - kl.yRefT[row + t];
      err2 += d * d;
    }
  }
  return { lowRankUp: up, lowRankDown: down, residual, d32, bias, err2, wNorm2, wErr2 };
}

/** (A·Z)ᵀ and Qᵀ·A on A [rows, cols] (f32) and Aᵀ as f32 panels, both filled by the native residual pass. */
function panelOperator(
  kernels: QuantizerKernels,
  a: Float32Array,
  at: PackedF32Handle,
  rows: number,
  cols: number,
): LinearOperator {
  return {
    rows,
    cols,
    sketch(zt, l) {
      const y = kernels.gemmF32(a, rows, kernels.packF32(Float32Array.from(zt), l, cols)); // A·Z [rows, L]
      const out = new Float64Array(l * rows);
      for (let r = 0; r < rows; r++) for (let i = 0; i < l; i++) out[i * rows + r] = y[r * l + i];
      return out;
    },
    project: (qt, l) => Float64Array.from(kernels.gemmF32(Float32Array.from(qt), l, at)), // Qᵀ·A [L, cols]
  };
}

/** Q_a(P) of the candidate's λ as the W4A4 GEMM's activations (codes [M, K], scales [M, K/64]). */
interface PathActs {
  format: "int4" | "uint4";
  codes: Int8Array;
  scales: Float32Array;
}

function pathActs(kl: KernelLayer, lambda: Float64Array, opts: KernelBuildOptions, spec: QuantSpec): PathActs {
  const { m, k, x } = kl;
  const p = new Float64Array(m * k);
  for (let t = 0; t < m; t++) for (let j = 0; j < k; j++) p[t * k + j] = (x[t * k + j] + opts.shift) / lambda[j];
  const q = quantize(p, m, k, spec, kl.layer.name ? `${kl.layer.name}.input` : "input");
  return { format: spec.format as "int4" | "uint4", codes: q.codes, scales: q.scales };
}

/** What a native candidate keeps besides its error: codes and scales when asked, Q(R) when asked. */
interface NativeWants {
  /** Keep codes + scales (the refinement's candidates; the search keeps only the error). */
  keep: boolean;
  /** Write A = Ŵ − Q(R) and Aᵀ here (the next refinement SVD's operator). */
  panels?: { a: Float32Array; at: PackedF32Handle };
  /** Keep Q(R) as float32 (exact-SVD layers and activations the W4A4 GEMM cannot take). */
  dequantized: boolean;
}

/**
 * One candidate on the native ops: the residual pass (codes, W4A4 weight, A panels) and the output error through
 * the W4A4 GEMM, Ŷ = Q_a(P)·Q(R)ᵀ + (X·L_downᵀ)·L_upᵀ + b', or through the f32 GEMM on Q(R) when the activation
 * format is not a W4A4 one.
 */
function nativeCandidate(
  kl: KernelLayer,
  ops: NativeResidualOps,
  lambda: Float64Array,
  up: Float64Array,
  down: Float64Array,
  opts: KernelBuildOptions,
  acts: PathActs | undefined,
  rep32: Float32Array | undefined,
  name: string,
  wants: NativeWants,
): KernelCandidate {
  const { n, k, m, kernels, layer } = kl;
  const { rank, weight: spec, shift } = opts;
  const dl = new Float32Array(rank * k);
  for (let r = 0; r < rank; r++) for (let j = 0; j < k; j++) dl[r * k + j] = down[r * k + j] * lambda[j];
  const up32 = Float32Array.from(up);
  const codes = wants.keep ? new Int8Array(n * k) : undefined;
  const scales = wants.keep ? new Float32Array((n * k) / spec.groupSize) : undefined;
  const packed = acts ? (kl.packedScratch ??= ops.emptyPackedW4A4(n, k, rank)) : undefined;
  const d32 = wants.dequantized || !acts ? new Float32Array(n * k) : undefined;
  const rowInv = shift !== 0 ? new Float64Array(n) : undefined;
  const res = ops.quantizeResidual(
    {
      weight: kl.w32,
      N: n,
      K: k,
      smooth: lambda,
      lowRankUp: up32,
      smoothedLowRankDown: dl,
      rank,
      format: spec.format as "int4" | "uint4",
      groupSize: spec.groupSize,
      scaleDtype: spec.scaleDtype ?? "BF16",
      name,
    },
    {
      codes,
      scales,
      packed,
      dequantized: d32,
      difference: wants.panels?.a,
      differenceT: wants.panels?.at,
      rowSumsOverSmooth: rowInv,
    },
  );
  let bias = layer.bias ? Float64Array.from(layer.bias) : undefined;
  if (rowInv) {
    bias ??= new Float64Array(n);
    for (let o = 0; o < n; o++) bias[o] -= shift * rowInv[o];
  }
  const b0 = layer.bias;
  const db = new Float64Array(n);
  for (let o = 0; o < n; o++) db[o] = (bias ? bias[o] : 0) - (b0 ? b0[o] : 0);
  const lora = kernels.gemmF32(kl.x32, m, kernels.packF32(Float32Array.from(down), rank, k)); // X·L_downᵀ [M, R]
  let err2 = 0;
  if (acts && packed) {
    const { y } = ops.gemmW4A4(
      { M: m, K: k, R: rank, format: acts.format, shift, codes: acts.codes, scales: acts.scales, loraAct: lora },
      packed,
    ); // [M, N]
    const yRef = kl.yRef;
    for (let t = 0; t < m; t++) {
      const row = t * n;
      for (let o = 0; o < n; o++) {
        const d = y[row + o] + db[o] - yRef[row + o];
        err2 += d * d;
      }
    }
  } else {
    const yq = kernels.gemmF32(d32!, n, kernels.packF32(rep32!, m, k)); // [N, M]
    const yb = kernels.gemmF32(up32, n, kernels.packF32(lora, m, rank)); // [N, M]
    for (let o = 0; o < n; o++) {
      const row = o * m;
      for (let t = 0; t < m; t++) {
        const d = yq[row + t] + yb[row + t] + db[o] - kl.yRefT[row + t];
        err2 += d * d;
      }
    }
  }
  const residual: Quantized = {
    spec: { ...spec },
    rows: n,
    cols: k,
    codes: codes ?? new Int8Array(0),
    scales: scales ?? new Float32Array(0),
  };
  return {
    lowRankUp: up,
    lowRankDown: down,
    residual,
    d32,
    bias,
    err2,
    wNorm2: res.norm2,
    wErr2: res.err2,
  };
}

/** Q(R) in float64 [N, K]: float32(code·scale), as int4's dequantize, from the codes where Q(R) was not kept. */
function residualValuesOf(c: KernelCandidate): Float64Array {
  if (c.d32) return Float64Array.from(c.d32);
  const { codes, scales, spec } = c.residual;
  const g = spec.groupSize; // divides K (fusedQuantSupported), so flat groups follow the rows
  const out = new Float64Array(codes.length);
  for (let gi = 0; gi < scales.length; gi++) {
    const s = scales[gi];
    for (let t = gi * g, end = t + g; t < end; t++) out[t] = Math.fround(codes[t] * s);
  }
  return out;
}

/** Q_a((x + shift)/λ) as float32 [M, K] plus the exact path input (for the metrics). */
function pathRep(kl: KernelLayer, lambda: Float64Array, opts: KernelBuildOptions) {
  const p = pathInputOf(kl.x, kl.m, kl.k, lambda, opts.shift, opts.activation, kl.layer.name);
  return { ...p, rep32: Float32Array.from(p.rep) };
}

/** The search objective: Σ (Y − Ŷ)² of the unrefined build at λ (SVD options as given). */
export function kernelError2(kl: KernelLayer, lambda: Float64Array, opts: KernelBuildOptions): number {
  const name = kl.layer.name ? `${kl.layer.name}.weight` : "weight";
  checkLambda(kl, lambda);
  const { up, down } = branchFrom(
    smoothedSvd(kl, lambda, undefined, opts, name),
    kl.n,
    kl.k,
    opts.rank,
    lambda,
    opts.branchDtype,
  );
  const ops = nativeOps(kl.kernels, opts.weight, kl.k);
  if (ops) {
    const acts = w4a4Evaluable(opts.weight, opts.activation, kl.k)
      ? pathActs(kl, lambda, opts, opts.activation)
      : undefined;
    const rep32 = acts ? undefined : pathRep(kl, lambda, opts).rep32;
    return nativeCandidate(kl, ops, lambda, up, down, opts, acts, rep32, name, { keep: false, dequantized: false })
      .err2;
  }
  kl.scratch ??= { codes: new Int8Array(kl.n * kl.k), d32: new Float32Array(kl.n * kl.k) };
  return candidateFor(kl, lambda, up, down, opts, pathRep(kl, lambda, opts).rep32, name, kl.scratch).err2;
}

function checkLambda(kl: KernelLayer, lambda: Float64Array): void {
  if (lambda.length !== kl.k)
    throw new QuantizerError("E_SHAPE", `λ has ${lambda.length} values, expected K = ${kl.k}`, kl.layer.name);
}

/**
 * Build at λ with refinement L_{k+1} = SVD_r(Ŵ − Q(Ŵ − L_k)) (early stop as the reference path), on the kernels;
 * returns the layer and its metrics on the kept tokens.
 */
export function kernelBuild(
  kl: KernelLayer,
  lambda: Float64Array,
  opts: KernelBuildOptions & {
    method: string;
    refine: number;
    patience: number;
    minImprovement: number;
    /** Warm-start each refinement SVD from the previous one (see WARM_POWER_ITERATIONS). */
    warmStart?: boolean;
    info?: Record<string, number | string>;
  },
): { q: QuantizedLinear; metrics: LayerMetrics } {
  checkLambda(kl, lambda);
  const { n, k, layer } = kl;
  const name = layer.name ? `${layer.name}.weight` : "weight";
  const path = pathRep(kl, lambda, opts);
  let vt: Float64Array | undefined; // right singular vectors of the last SVD (warm start of the next one)
  const ops = nativeOps(kl.kernels, opts.weight, k);
  const acts =
    ops && w4a4Evaluable(opts.weight, opts.activation, k) ? pathActs(kl, lambda, opts, opts.activation) : undefined;
  const exact = chooseMethod(n, k, opts.rank, opts.svd) === "exact";
  // native refinement: each candidate writes A = Ŵ − Q(R) and Aᵀ as GEMM panels for the next SVD (which reads
  // them before the next candidate overwrites them, so one pair serves every step)
  const panels =
    ops && !exact && opts.refine > 0 ? { a: new Float32Array(n * k), at: ops.emptyPackedF32(k, n) } : undefined;
  const build = (prev: KernelCandidate | undefined): KernelCandidate => {
    const start = opts.warmStart ? vt : undefined;
    const svd =
      prev !== undefined && panels
        ? randomizedSvdOf(
            panelOperator(kl.kernels, panels.a, panels.at, n, k),
            opts.rank,
            randomizedOptions(kl, opts, name, start),
          )
        : smoothedSvd(kl, lambda, prev?.d32, opts, name, start);
    vt = svd.vt;
    const br = branchFrom(svd, n, k, opts.rank, lambda, opts.branchDtype);
    if (!ops) return candidateFor(kl, lambda, br.up, br.down, opts, path.rep32, name);
    return nativeCandidate(kl, ops, lambda, br.up, br.down, opts, acts, path.rep32, name, {
      keep: true,
      panels,
      dequantized: exact && opts.refine > 0,
    });
  };
  let best = build(undefined);
  let bestIt = 0;
  let current = best;
  let stale = 0;
  let it = 0;
  if (opts.refine > 0) {
    for (it = 1; it <= opts.refine; it++) {
      current = build(current);
      const e = current.err2;
      if (e < best.err2 * (1 - opts.minImprovement)) {
        best = current;
        bestIt = it;
        stale = 0;
      } else {
        if (e < best.err2) {
          best = current;
          bestIt = it;
        }
        if (++stale >= opts.patience) break;
      }
    }
  }
  const info: Record<string, number | string> = { ...opts.info, refinementIterations: bestIt };
  if (opts.refine > 0) info.refinementRun = Math.min(it, opts.refine);
  const smoothed = lambda.some((v) => v !== 1);
  const q: QuantizedLinear = {
    method: opts.method,
    name: layer.name,
    n,
    k,
    rank: opts.rank,
    smooth: lambda,
    shift: opts.shift,
    activation: opts.activation,
    residual: best.residual,
    residualValues: residualValuesOf(best),
    lowRankUp: best.lowRankUp,
    lowRankDown: best.lowRankDown,
    bias: best.bias,
    bitsPerParam: quantBitsPerParam(opts.weight, n, k) + branchBitsPerParam(n, k, opts.rank, smoothed),
    info,
  };
  // metrics as evaluateLayer defines them
  let xs2 = 0;
  let xe2 = 0;
  const x = kl.x;
  for (let t = 0; t < kl.m; t++)
    for (let j = 0; j < k; j++) {
      const o = t * k + j;
      const v = x[o] / lambda[j];
      xs2 += v * v;
      const d = path.exact[o] - path.rep[o];
      xe2 += d * d;
    }
  const absError = Math.sqrt(best.err2);
  const yNorm = Math.sqrt(kl.yRefNorm2);
  const terms = {
    xNorm: Math.sqrt(xs2),
    xErr: Math.sqrt(xe2),
    wNorm: Math.sqrt(best.wNorm2),
    wErr: Math.sqrt(best.wErr2),
  };
  return {
    q,
    metrics: {
      relError: absError / yNorm,
      sqnrDb: 20 * Math.log10(yNorm / absError),
      absError,
      bound: terms.xNorm * terms.wErr + terms.xErr * (terms.wNorm + terms.wErr),
      terms,
      bitsPerParam: q.bitsPerParam,
    },
  };
}
