import { dequantize, type QuantSpec, quantize } from "@svdquant/int4";
import { type TruncatedSvdOptions, truncatedSvd } from "@svdquant/lowrank";
import { QuantizerError } from "./errors.js";
import { type Floats, round16, toF64 } from "./linalg.js";
import {
  type ActivationFormat,
  branchBitsPerParam,
  forwardQuantized,
  forwardReference,
  type LinearLayer,
  type QuantizedLinear,
  quantBitsPerParam,
} from "./linear.js";

/** How the weight side of one layer is built for a given λ. */
export interface BuildOptions {
  method: string;
  /** Weight quantizer of the 4/8-bit path, or "bf16" for the FP reference. */
  weight: QuantSpec | "bf16";
  activation: ActivationFormat;
  /** Low-rank branch: "none", "svd" (SVDQuant: L = SVD_r(Ŵ), R = Ŵ − L) or "lorc" (L = SVD_r(Ŵ − Q(Ŵ))). */
  lowRank: "none" | "svd" | "lorc";
  rank: number;
  shift: number;
  /** Refinement iterations L_{k+1} = SVD_r(Ŵ − Q(Ŵ − L_k)) for "svd" (0 = none). */
  refine: number;
  /** Stop refining after this many iterations without a relative improvement of at least `minImprovement`. */
  patience: number;
  minImprovement: number;
  /** Tokens [T, K] the refinement measures the output error on. */
  tokens?: { x: Floats; m: number };
  svd: TruncatedSvdOptions;
  branchDtype: "BF16" | "F16";
  info?: Record<string, number | string>;
}

/** Ŵ = W·diag(λ) in float64. */
export function smoothWeight(layer: LinearLayer, lambda: Float64Array): Float64Array {
  const { n, k } = layer;
  const w = toF64(layer.weight);
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) out[i * k + j] = w[i * k + j] * lambda[j];
  return out;
}

function lowRankOf(
  m: Float64Array,
  n: number,
  k: number,
  rank: number,
  lambda: Float64Array,
  opts: BuildOptions,
  name?: string,
): { lUp: Float64Array; lDown: Float64Array; smoothed: Float64Array } {
  const svd = truncatedSvd(m, n, k, rank, { ...opts.svd, name });
  const up = new Float64Array(n * rank);
  for (let i = 0; i < n; i++) for (let r = 0; r < rank; r++) up[i * rank + r] = svd.u[i * rank + r] * svd.s[r];
  const down = new Float64Array(rank * k);
  for (let r = 0; r < rank; r++) for (let j = 0; j < k; j++) down[r * k + j] = svd.vt[r * k + j] / lambda[j];
  const lUp = round16(up, opts.branchDtype);
  const lDown = round16(down, opts.branchDtype);
  // the branch as the kernel computes it, mapped to the smoothed domain: L = L_up·L_down·diag(λ)
  const smoothed = new Float64Array(n * k);
  for (let i = 0; i < n; i++)
    for (let r = 0; r < rank; r++) {
      const u = lUp[i * rank + r];
      for (let j = 0; j < k; j++) smoothed[i * k + j] += u * lDown[r * k + j];
    }
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) smoothed[i * k + j] *= lambda[j];
  return { lUp, lDown, smoothed };
}

function quantizeWeights(
  m: Float64Array,
  n: number,
  k: number,
  spec: QuantSpec | "bf16",
  name?: string,
): { q: ReturnType<typeof quantize> | undefined; values: Float64Array } {
  if (spec === "bf16") return { q: undefined, values: round16(m, "BF16") };
  const q = quantize(m, n, k, spec, name);
  return { q, values: new Float64Array(dequantize(q)) };
}

/** Build one quantized layer for a fixed λ. */
export function buildLinear(layer: LinearLayer, lambda: Float64Array, opts: BuildOptions): QuantizedLinear {
  const { n, k, name } = layer;
  if (lambda.length !== k)
    throw new QuantizerError("E_SHAPE", `λ has ${lambda.length} values, expected K = ${k}`, name);
  const rank = opts.lowRank === "none" ? 0 : opts.rank;
  if (!Number.isInteger(rank) || rank < 0 || rank > Math.min(n, k))
    throw new QuantizerError("E_ARGUMENT", `rank ${rank} must be in [0, ${Math.min(n, k)}] for [${n}, ${k}]`, name);
  const wh = smoothWeight(layer, lambda);
  const wname = name ? `${name}.weight` : "weight";
  const smoothed = lambda.some((v) => v !== 1);
  const make = (
    lUp: Float64Array,
    lDown: Float64Array,
    wq: { q: ReturnType<typeof quantize> | undefined; values: Float64Array },
    info: Record<string, number | string>,
  ): QuantizedLinear => {
    let bias = layer.bias ? toF64(layer.bias).slice() : undefined;
    if (opts.shift !== 0) {
      bias ??= new Float64Array(n);
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let j = 0; j < k; j++) s += wq.values[i * k + j] / lambda[j];
        bias[i] -= opts.shift * s;
      }
    }
    const wbits = opts.weight === "bf16" ? 16 : quantBitsPerParam(opts.weight, n, k);
    return {
      method: opts.method,
      name,
      n,
      k,
      rank,
      smooth: lambda,
      shift: opts.shift,
      activation: opts.activation,
      residual: wq.q,
      residualValues: wq.values,
      lowRankUp: lUp,
      lowRankDown: lDown,
      bias,
      bitsPerParam: wbits + branchBitsPerParam(n, k, rank, smoothed),
      info: { ...opts.info, ...info },
    };
  };
  if (rank === 0)
    return make(new Float64Array(0), new Float64Array(0), quantizeWeights(wh, n, k, opts.weight, wname), {});
  if (opts.lowRank === "lorc") {
    // LoRC (Yao et al. 2023): quantize Ŵ first, then a rank-R branch of the quantization error Ŵ − Q(Ŵ)
    const wq = quantizeWeights(wh, n, k, opts.weight, wname);
    const err = new Float64Array(n * k);
    for (let i = 0; i < err.length; i++) err[i] = wh[i] - wq.values[i];
    const br = lowRankOf(err, n, k, rank, lambda, opts, wname);
    return make(br.lUp, br.lDown, wq, {});
  }
  // SVDQuant: L = SVD_r(Ŵ), R = Ŵ − L, then refine L_{k+1} = SVD_r(Ŵ − Q(Ŵ − L_k))
  const residualOf = (l: Float64Array): Float64Array => {
    const r = new Float64Array(n * k);
    for (let i = 0; i < r.length; i++) r[i] = wh[i] - l[i];
    return r;
  };
  let br = lowRankOf(wh, n, k, rank, lambda, opts, wname);
  let best = make(br.lUp, br.lDown, quantizeWeights(residualOf(br.smoothed), n, k, opts.weight, wname), {
    refinementIterations: 0,
  });
  if (opts.refine <= 0 || opts.tokens === undefined) return best;
  const { x, m } = opts.tokens;
  const yRef = forwardReference(layer, x, m);
  const errOf = (q: QuantizedLinear): number => {
    const yq = forwardQuantized(q, x, m);
    let e = 0;
    for (let i = 0; i < yq.length; i++) e += (yq[i] - yRef[i]) ** 2;
    return e;
  };
  let bestErr = errOf(best);
  let current = best;
  let stale = 0;
  let it = 0;
  for (it = 1; it <= opts.refine; it++) {
    const wmq = new Float64Array(n * k); // Ŵ − Q(Ŵ − L_k)
    for (let i = 0; i < wmq.length; i++) wmq[i] = wh[i] - current.residualValues[i];
    br = lowRankOf(wmq, n, k, rank, lambda, opts, wname);
    current = make(br.lUp, br.lDown, quantizeWeights(residualOf(br.smoothed), n, k, opts.weight, wname), {
      refinementIterations: it,
    });
    const e = errOf(current);
    if (e < bestErr * (1 - opts.minImprovement)) {
      best = current;
      bestErr = e;
      stale = 0;
    } else {
      if (e < bestErr) {
        best = current;
        bestErr = e;
      }
      if (++stale >= opts.patience) break;
    }
  }
  best.info.refinementRun = Math.min(it, opts.refine);
  return best;
}
