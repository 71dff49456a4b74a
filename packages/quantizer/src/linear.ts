import { FORMAT_INFO, fakeQuantize, type Quantized, type QuantSpec, scaleDtypeOf } from "@svdquant/int4";
import { QuantizerError } from "./errors.js";
import { type Floats, frob, frobDiff, round16, toF64, xwt } from "./linalg.js";

/** A linear layer y = x·Wᵀ + b in the nn.Linear layout. */
export interface LinearLayer {
  name?: string;
  /** Out-features N. */
  n: number;
  /** In-features K. */
  k: number;
  /** W [N, K], row-major. */
  weight: Floats;
  /** b [N], optional. */
  bias?: Floats;
}

/** How the quantized path's input is represented: a quantizer spec, BF16 rounding, or exact. */
export type ActivationFormat = QuantSpec | "bf16" | "none";

/**
 * A quantized linear layer in the convention of the published SVDQuant checkpoints:
 *
 *   ŷ = Q_a((x + shift) / λ) · Q(R)ᵀ  +  (x · L_downᵀ) · L_upᵀ  +  b'
 *
 * The low-rank branch sees the unsmoothed, unshifted input, so 1/λ is folded into L_down; the bias absorbs the
 * shift: b' = b − shift · Σ_k Q(R)[n, k] / λ_k (equivalently b − shift·W·1 + shift·L_up·L_down·1 up to Q(R) − R).
 *
 * | field          | shape  | dtype            | meaning                                              |
 * | -------------- | ------ | ---------------- | ---------------------------------------------------- |
 * | smooth         | [K]    | float64          | smoothing factors (ones when not smoothed)           |
 * | residual       | [N, K] | codes int8 + f32 | codes and scales of the quantized path (groups of G along K) |
 * | residualValues | [N, K] | float64          | Q(R) dequantized (BF16 values for the FP reference)  |
 * | lowRankUp      | [N, R] | BF16 values      | U·diag(S)                                            |
 * | lowRankDown    | [R, K] | BF16 values      | Vᵀ·diag(1/λ)                                         |
 * | bias           | [N]    | float64          | adjusted bias b'                                     |
 */
export interface QuantizedLinear {
  method: string;
  name: string | undefined;
  n: number;
  k: number;
  rank: number;
  smooth: Float64Array;
  shift: number;
  activation: ActivationFormat;
  residual: Quantized | undefined;
  residualValues: Float64Array;
  lowRankUp: Float64Array;
  lowRankDown: Float64Array;
  bias: Float64Array | undefined;
  /** Weight storage per parameter of W: codes + scales + branch + λ (the bias is not counted). */
  bitsPerParam: number;
  /** Method details: chosen α/β, refinement iterations, … */
  info: Record<string, number | string>;
}

export function checkLayer(layer: LinearLayer): void {
  const { n, k, weight, bias, name } = layer;
  if (!Number.isSafeInteger(n) || !Number.isSafeInteger(k) || n <= 0 || k <= 0)
    throw new QuantizerError("E_SHAPE", `shape [${n}, ${k}] must be positive integers`, name);
  if (weight.length !== n * k)
    throw new QuantizerError("E_SHAPE", `weight has ${weight.length} values, shape [${n}, ${k}] needs ${n * k}`, name);
  if (bias !== undefined && bias.length !== n)
    throw new QuantizerError("E_SHAPE", `bias has ${bias.length} values, expected N = ${n}`, name);
  for (let i = 0; i < weight.length; i++)
    if (!Number.isFinite(weight[i]))
      throw new QuantizerError(
        "E_NONFINITE",
        `weight[${Math.floor(i / k)}, ${i % k}] is ${weight[i]}; weights must be finite`,
        name,
      );
}

/** Storage bits per element of a quantized tensor: code bits + scale bits / group (+ the nvfp4 global scale). */
export function quantBitsPerParam(spec: QuantSpec, n: number, k: number): number {
  const info = FORMAT_INFO[spec.format];
  const g = spec.groupSize === 0 ? k : spec.groupSize;
  let scaleBits: number;
  if (spec.format === "int4p2") return info.bits + 4 / g + 32 / k; // 4-bit exponent in [−9, 5] per group, f32 S per row
  if (spec.format === "nvfp4" || spec.format === "fp4" || spec.format === "mxfp4")
    scaleBits = 8; // E4M3 / E8M0
  else scaleBits = scaleDtypeOf(spec) === "F32" ? 32 : 16;
  const global = spec.format === "nvfp4" && spec.globalScale !== undefined ? 32 / (n * k) : 0;
  return info.bits + scaleBits / g + global;
}

/** Branch (16-bit L_up, L_down) and λ storage per parameter of W [N, K]. */
export function branchBitsPerParam(n: number, k: number, rank: number, smoothed: boolean): number {
  return (16 * rank * (n + k) + (smoothed ? 16 * k : 0)) / (n * k);
}

/** Input of the quantized path, P = (x + shift) / λ, as its representation (quantized, BF16 or exact). */
export function pathInput(q: QuantizedLinear, x: Floats, m: number): { exact: Float64Array; rep: Float64Array } {
  return pathInputOf(x, m, q.k, q.smooth, q.shift, q.activation, q.name);
}

/** `pathInput` from the parts it reads (λ, shift, activation format). */
export function pathInputOf(
  x: Floats,
  m: number,
  k: number,
  lambda: Float64Array,
  shift: number,
  activation: ActivationFormat,
  name: string | undefined,
): { exact: Float64Array; rep: Float64Array } {
  const p = new Float64Array(m * k);
  for (let t = 0; t < m; t++) for (let j = 0; j < k; j++) p[t * k + j] = (x[t * k + j] + shift) / lambda[j];
  let rep: Float64Array;
  if (activation === "none") rep = p;
  else if (activation === "bf16") rep = round16(p, "BF16");
  else rep = fakeQuantize(p, m, k, activation, name ? `${name}.input` : "input");
  return { exact: p, rep };
}

/** Fake-quant forward: ŷ [M, N] for x [M, K], float64 arithmetic on the quantized values. */
export function forwardQuantized(q: QuantizedLinear, x: Floats, m: number): Float64Array {
  if (x.length !== m * q.k)
    throw new QuantizerError("E_SHAPE", `input has ${x.length} values, expected [${m}, ${q.k}]`, q.name);
  const { rep } = pathInput(q, x, m);
  const y = xwt(rep, m, q.k, q.residualValues, q.n);
  if (q.rank > 0) {
    const t = xwt(x, m, q.k, q.lowRankDown, q.rank); // [M, R]
    const b = xwt(t, m, q.rank, q.lowRankUp, q.n); // [M, N]
    for (let i = 0; i < y.length; i++) y[i] += b[i];
  }
  if (q.bias) for (let t = 0; t < m; t++) for (let o = 0; o < q.n; o++) y[t * q.n + o] += q.bias[o];
  return y;
}

/** The exact float64 forward y = x·Wᵀ + b of the original layer. */
export function forwardReference(layer: LinearLayer, x: Floats, m: number): Float64Array {
  if (x.length !== m * layer.k)
    throw new QuantizerError("E_SHAPE", `input has ${x.length} values, expected [${m}, ${layer.k}]`, layer.name);
  const y = xwt(x, m, layer.k, layer.weight, layer.n);
  if (layer.bias) for (let t = 0; t < m; t++) for (let o = 0; o < layer.n; o++) y[t * layer.n + o] += layer.bias[o];
  return y;
}

/** The branch in the smoothed domain, L = L_up · L_down · diag(λ) [N, K] (float64). */
export function branchSmoothed(q: QuantizedLinear): Float64Array {
  const { n, k, rank, lowRankUp: lUp, lowRankDown: lDown, smooth: lambda } = q;
  const out = new Float64Array(n * k);
  for (let i = 0; i < n; i++)
    for (let r = 0; r < rank; r++) {
      const u = lUp[i * rank + r];
      if (u === 0) continue;
      for (let j = 0; j < k; j++) out[i * k + j] += u * lDown[r * k + j];
    }
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) out[i * k + j] *= lambda[j];
  return out;
}

/** Output error of a quantized layer on tokens x [M, K], with the terms of the error bound (SVDQuant Prop. 4.1). */
export interface LayerMetrics {
  /** ‖Y − Ŷ‖_F / ‖Y‖_F with Y = x·Wᵀ + b. */
  relError: number;
  /** 20·log10(‖Y‖ / ‖Y − Ŷ‖) (signal-to-quantization-noise ratio of the output). */
  sqnrDb: number;
  /** ‖Y − Ŷ‖_F. */
  absError: number;
  /**
   * ‖X̂‖·‖E_w‖ + ‖P − Q(P)‖·(‖Ŵ − L‖ + ‖E_w‖), with X̂ = x/λ, P = (x + shift)/λ, Ŵ = W·diag(λ), L the branch and
   * E_w = Ŵ − L − Q(R): the bound ‖X‖‖W−Q(W)‖ + ‖X−Q(X)‖(‖W‖+‖W−Q(W)‖) with W := Ŵ − L.
   */
  bound: number;
  terms: { xNorm: number; xErr: number; wNorm: number; wErr: number };
  bitsPerParam: number;
}

export function evaluateLayer(layer: LinearLayer, q: QuantizedLinear, x: Floats, m: number): LayerMetrics {
  const y = forwardReference(layer, x, m);
  const yq = forwardQuantized(q, x, m);
  const absError = frobDiff(y, yq);
  const yNorm = frob(y);
  const { n, k, smooth: lambda } = q;
  const xs = new Float64Array(m * k);
  for (let t = 0; t < m; t++) for (let j = 0; j < k; j++) xs[t * k + j] = x[t * k + j] / lambda[j];
  const { exact, rep } = pathInput(q, x, m);
  const l = q.rank > 0 ? branchSmoothed(q) : new Float64Array(n * k);
  const w = toF64(layer.weight);
  const target = new Float64Array(n * k); // Ŵ − L
  const ew = new Float64Array(n * k);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < k; j++) {
      const o = i * k + j;
      target[o] = w[o] * lambda[j] - l[o];
      ew[o] = target[o] - q.residualValues[o];
    }
  const terms = { xNorm: frob(xs), xErr: frobDiff(exact, rep), wNorm: frob(target), wErr: frob(ew) };
  return {
    // An all-zero reference output (all-zero weights and bias) has no relative error: exact is 0, anything else ∞.
    relError: yNorm > 0 ? absError / yNorm : absError === 0 ? 0 : Number.POSITIVE_INFINITY,
    sqnrDb: absError === 0 ? Number.POSITIVE_INFINITY : 20 * Math.log10(yNorm / absError),
    absError,
    bound: terms.xNorm * terms.wErr + terms.xErr * (terms.wNorm + terms.wErr),
    terms,
    bitsPerParam: q.bitsPerParam,
  };
}
