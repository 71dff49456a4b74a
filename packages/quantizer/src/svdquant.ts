import { type QuantSpec, specFor } from "@svdquant/int4";
import type { TruncatedSvdOptions } from "@svdquant/lowrank";
import { jointAbsMax, type SmoothingCandidate, searchSmoothing, svdquantGrid, weightAbsMax } from "@svdquant/smoothing";
import { type BuildOptions, buildLinear } from "./build.js";
import { QuantizerError } from "./errors.js";
import { kernelBuild, kernelError2, kernelLayers, type QuantizerKernels } from "./kernel-path.js";
import { type Floats, round16 } from "./linalg.js";
import {
  checkLayer,
  evaluateLayer,
  forwardQuantized,
  forwardReference,
  type LayerMetrics,
  type LinearLayer,
  type QuantizedLinear,
} from "./linear.js";

/** Calibration of one layer input: per-channel max|X_j| over all tokens, and kept tokens X_s [T, K]. */
export interface Calibration {
  xAbsMax: Float64Array;
  tokens: Floats;
  count: number;
}

/**
 * Recorded statistics of one layer input, structurally @svdquant/models' `LinearStats` (what its
 * `CalibrationRecorder` keeps per layer): absmax [K] and the reservoir's first `rows` tokens [rows, K].
 */
export interface RecordedInputStats {
  readonly name?: string;
  readonly inFeatures: number;
  readonly absmax: Float32Array | Float64Array;
  readonly reservoir: Float32Array | Float64Array;
  readonly rows: number;
}

export function calibrationFromStats(stats: RecordedInputStats): Calibration {
  const k = stats.inFeatures;
  if (stats.rows < 1)
    throw new QuantizerError("E_ARGUMENT", "no calibration tokens were recorded (reservoir empty)", stats.name);
  if (stats.absmax.length !== k || stats.reservoir.length < stats.rows * k)
    throw new QuantizerError(
      "E_SHAPE",
      `statistics of ${stats.absmax.length} channels / ${stats.reservoir.length} reservoir values do not fit K = ${k}, ${stats.rows} rows`,
      stats.name,
    );
  return {
    xAbsMax: Float64Array.from(stats.absmax),
    tokens: stats.reservoir.subarray(0, stats.rows * k),
    count: stats.rows,
  };
}

/** Calibration from a plain token matrix X [M, K] (absmax over all of it, every token kept). */
export function calibrationFromTokens(x: Floats, m: number, k: number): Calibration {
  if (x.length !== m * k)
    throw new QuantizerError("E_SHAPE", `calibration has ${x.length} values, expected [${m}, ${k}]`);
  const a = new Float64Array(k);
  for (let t = 0; t < m; t++)
    for (let j = 0; j < k; j++) {
      const v = Math.abs(x[t * k + j]);
      if (!Number.isFinite(v))
        throw new QuantizerError("E_NONFINITE", `calibration token ${t}, channel ${j} is ${x[t * k + j]}`);
      if (v > a[j]) a[j] = v;
    }
  return { xAbsMax: a, tokens: x, count: m };
}

/** The GELU shift of the published checkpoints (one home: @svdquant/int4's record module). */
export { GELU_SHIFT } from "@svdquant/int4";

export interface SvdQuantConfig {
  /** Rank R of the 16-bit branch (default 32, SVDQuant §5.1). */
  rank?: number;
  /** Weight quantizer of the residual (default INT4 g64 BF16 scales; NVFP4 g16 or FP4 g32 via `specFor`). */
  weight?: QuantSpec;
  /** Activation quantizer (default: the weight's format and group); use uint4 with `shift` for post-GELU inputs. */
  activation?: QuantSpec;
  /** Added to the input before the 4-bit path (default 0; `GELU_SHIFT` with an unsigned activation format). */
  shift?: number;
  /** Smoothing grid (default the 39 SVDQuant candidates). */
  grid?: SmoothingCandidate[];
  /** Refinement iterations (default 100) with early stop on the output error (patience 3, 1e-4 relative). */
  refinement?: {
    maxIterations?: number;
    patience?: number;
    minImprovement?: number;
    /**
     * Kernel path only: warm-start each refinement SVD from the previous iteration's right singular vectors with
     * one power iteration instead of a Gaussian start with `svd.powerIterations` (default false: faster, error
     * within ~0.05 % of the cold start, not always below it; see docs/benchmarks.md).
     */
    warmStart?: boolean;
  };
  /** Seed of the randomized SVD (default 0): results are deterministic per seed. */
  seed?: number;
  /** SVD options (default randomized with 2 power iterations above 128 a side). */
  svd?: TruncatedSvdOptions;
  /** 16-bit type of the branch (default BF16). */
  branchDtype?: "BF16" | "F16";
  /** Method name written into the result (default "svdquant"). */
  method?: string;
  /** Use this λ [K] (with its candidate) instead of searching the grid, e.g. one found by an earlier call. */
  lambda?: { lambda: Float64Array; candidate: SmoothingCandidate };
  /**
   * Storage dtype of λ (e.g. "BF16", the published checkpoints' smooth factors): every candidate is rounded to it
   * before it is evaluated, so the returned λ is exactly representable, is the one the search measured, and the
   * layers are built and refined for it (one pass, no rebuild after rounding). Default: λ unrounded (float64).
   */
  lambdaDtype?: "BF16" | "F16" | "F32";
  /**
   * Native kernels for the inner loops (pass `await import("@svdquant/kernels")`): the SVD, the branch, the
   * candidates' outputs and the metrics then run on float32 GEMMs instead of float64 TypeScript loops (same
   * search, same refinement, errors equal up to float32 accumulation). Default: the float64 reference path.
   */
  kernels?: QuantizerKernels;
}

export interface SvdQuantResult {
  /** λ [K], shared by every layer of the call. */
  lambda: Float64Array;
  candidate: SmoothingCandidate;
  /** Joint relative output error of every grid candidate on the kept tokens (before refinement). */
  trials: { candidate: SmoothingCandidate; error: number }[];
  layers: QuantizedLinear[];
  /** Metrics on the kept calibration tokens, after refinement. */
  metrics: LayerMetrics[];
}

/** λ rounded to its storage dtype (round to nearest even); the grid's guards keep λ in [1e-4, 1e4], so it stays > 0. */
export function roundLambda(lambda: Float64Array, dtype: SvdQuantConfig["lambdaDtype"]): Float64Array {
  if (dtype === undefined) return lambda;
  if (dtype === "F32") return Float64Array.from(lambda, Math.fround);
  const r = round16(lambda, dtype);
  for (let j = 0; j < r.length; j++)
    if (!(r[j] > 0 && Number.isFinite(r[j])))
      throw new QuantizerError("E_ARGUMENT", `λ[${j}] = ${lambda[j]} does not round to a positive finite ${dtype}`);
  return r;
}

export function buildOptions(config: SvdQuantConfig): BuildOptions {
  const weight = config.weight ?? specFor("int4");
  const activation = config.activation ?? { ...weight };
  const shift = config.shift ?? 0;
  if (shift !== 0 && !(activation.format === "uint4"))
    throw new QuantizerError(
      "E_ARGUMENT",
      `a shift of ${shift} needs an unsigned activation format (uint4), got ${activation.format}`,
    );
  const ref = config.refinement ?? {};
  return {
    method: config.method ?? "svdquant",
    weight,
    activation,
    lowRank: "svd",
    rank: config.rank ?? 32,
    shift,
    refine: ref.maxIterations ?? 100,
    patience: ref.patience ?? 3,
    minImprovement: ref.minImprovement ?? 1e-4,
    svd: { powerIterations: 2, exactMaxSide: 128, seed: config.seed ?? 0, ...config.svd },
    branchDtype: config.branchDtype ?? "BF16",
  };
}

/**
 * Quantize layers that share one input (q/k/v; a FLUX single block's qkv and MLP-in) with one λ chosen on their
 * joint output error: for each grid candidate, every layer is quantized in full (smoothing + rank-R branch + 4-bit
 * weights + 4-bit activations, no refinement) and Σ‖Y−Ŷ‖² / Σ‖Y‖² is measured on the kept tokens; then each layer
 * is refined at the chosen λ.
 */
export function quantizeSharedLayers(
  layers: LinearLayer[],
  calibration: Calibration,
  config: SvdQuantConfig = {},
): SvdQuantResult {
  if (layers.length === 0) throw new QuantizerError("E_ARGUMENT", "no layers to quantize");
  const k = layers[0].k;
  for (const l of layers) {
    checkLayer(l);
    if (l.k !== k)
      throw new QuantizerError("E_SHAPE", `layers sharing an input must have one K; ${l.k} vs ${k}`, l.name);
  }
  if (calibration.xAbsMax.length !== k || calibration.tokens.length !== calibration.count * k)
    throw new QuantizerError(
      "E_SHAPE",
      `calibration does not match K = ${k} (absmax ${calibration.xAbsMax.length}, tokens ${calibration.tokens.length} for ${calibration.count})`,
      layers[0].name,
    );
  const opts = buildOptions(config);
  const dt = config.lambdaDtype;
  if (dt !== undefined && dt !== "BF16" && dt !== "F16" && dt !== "F32")
    throw new QuantizerError("E_ARGUMENT", `lambdaDtype must be BF16, F16 or F32, got ${String(dt)}`, layers[0].name);
  // candidates are ranked with one power iteration; the chosen λ is rebuilt with the full SVD options
  const searchPower = Math.min(1, typeof opts.svd.powerIterations === "number" ? opts.svd.powerIterations : 1);
  const x = calibration.tokens;
  const m = calibration.count;
  // λ: the given one, or the grid candidate whose rounded λ has the smallest `error`; rounded to lambdaDtype
  const chooseLambda = (error: (lambda: Float64Array) => number) => {
    const search = config.lambda
      ? { lambda: roundLambda(config.lambda.lambda, dt), best: config.lambda.candidate, trials: [] }
      : searchSmoothing({
          xAbsMax: calibration.xAbsMax,
          wAbsMax: jointAbsMax(layers.map((l) => weightAbsMax(l.weight, l.n, l.k, l.name))),
          grid: config.grid ?? svdquantGrid(),
          objective: (raw) => error(roundLambda(raw, dt)),
        });
    search.lambda = roundLambda(search.lambda, dt);
    return search;
  };
  if (config.kernels !== undefined) {
    const kn = config.kernels as Partial<QuantizerKernels>;
    if (typeof kn.packF32 !== "function" || typeof kn.gemmF32 !== "function")
      throw new QuantizerError(
        "E_ARGUMENT",
        "config.kernels must provide packF32 and gemmF32 (pass the @svdquant/kernels module)",
        layers[0].name,
      );
    for (const l of layers)
      if (!Number.isInteger(opts.rank) || opts.rank < 1 || opts.rank > Math.min(l.n, l.k))
        throw new QuantizerError(
          "E_ARGUMENT",
          `rank ${opts.rank} must be in [1, ${Math.min(l.n, l.k)}] for [${l.n}, ${l.k}]`,
          l.name,
        );
    const kls = kernelLayers(config.kernels, layers, x, m);
    const kopts = { ...opts, weight: opts.weight as QuantSpec };
    const den = kls.reduce((a, kl) => a + kl.yRefNorm2, 0);
    const search = chooseLambda((lambda) => {
      let num = 0;
      for (const kl of kls)
        num += kernelError2(kl, lambda, { ...kopts, svd: { ...opts.svd, powerIterations: searchPower } });
      return Math.sqrt(num / den);
    });
    for (const kl of kls) kl.scratch = undefined; // the search's buffers: free before the refinement allocates
    const info = { alpha: search.best.alpha, beta: search.best.beta };
    const warmStart = config.refinement?.warmStart ?? false;
    const built = kls.map((kl) => kernelBuild(kl, search.lambda, { ...kopts, warmStart, info }));
    return {
      lambda: search.lambda,
      candidate: search.best,
      trials: search.trials,
      layers: built.map((b) => b.q),
      metrics: built.map((b) => b.metrics),
    };
  }
  const refs = layers.map((l) => forwardReference(l, x, m));
  const search = chooseLambda((lambda) => {
    let num = 0;
    let den = 0;
    layers.forEach((l, i) => {
      const q = buildLinear(l, lambda, {
        ...opts,
        refine: 0,
        svd: { ...opts.svd, powerIterations: searchPower },
      });
      const y = forwardQuantized(q, x, m);
      const r = refs[i];
      for (let t = 0; t < y.length; t++) {
        num += (y[t] - r[t]) ** 2;
        den += r[t] * r[t];
      }
    });
    // Σ‖Y‖² does not depend on λ: it only scales the ranking. An all-zero reference output (all-zero weights
    // and bias) has none, and the absolute error ranks the candidates the same way (0/0 would be NaN).
    return den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
  });
  const info = { alpha: search.best.alpha, beta: search.best.beta };
  const built = layers.map((l) => buildLinear(l, search.lambda, { ...opts, tokens: { x, m }, info }));
  return {
    lambda: search.lambda,
    candidate: search.best,
    trials: search.trials,
    layers: built,
    metrics: built.map((q, i) => evaluateLayer(layers[i], q, x, m)),
  };
}

/**
 * `quantizeLayer(W [N,K], bias, calibration, config)`: SVDQuant for one layer. Returns λ, L_down [R, K] and
 * L_up [N, R] (16-bit values), the 4-bit residual (codes + scales), the adjusted bias and metrics.
 */
export function quantizeLayer(
  layer: LinearLayer,
  calibration: Calibration,
  config: SvdQuantConfig = {},
): QuantizedLinear & { metrics: LayerMetrics; trials: SvdQuantResult["trials"] } {
  const r = quantizeSharedLayers([layer], calibration, config);
  return { ...r.layers[0], metrics: r.metrics[0], trials: r.trials };
}
