import { ModelError } from "../errors.js";
import { getGemmBackend } from "../gemm.js";

/** torch.finfo(float32).min: the additive mask value transformers uses for masked keys. */
export const MASK_MIN = -3.4028234663852886e38;

/** RMS norm without mean subtraction (T5LayerNorm): x · (mean(x²) + eps)^(−½) · weight, per row of width d. */
export function rmsNormRows(x: Float32Array, rows: number, d: number, weight: Float32Array, eps: number): Float32Array {
  const out = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x[o + i]! * x[o + i]!;
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let i = 0; i < d; i++) out[o + i] = weight[i]! * (x[o + i]! * inv);
  }
  return out;
}

/** LayerNorm with affine weight and bias (biased variance, as torch.nn.LayerNorm), per row of width d. */
export function layerNormAffine(
  x: Float32Array,
  rows: number,
  d: number,
  weight: Float32Array,
  bias: Float32Array,
  eps: number,
): Float32Array {
  const out = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    let mean = 0;
    for (let i = 0; i < d; i++) mean += x[o + i]!;
    mean /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[o + i]! - mean) ** 2;
    const inv = 1 / Math.sqrt(v / d + eps);
    for (let i = 0; i < d; i++) out[o + i] = (x[o + i]! - mean) * inv * weight[i]! + bias[i]!;
  }
  return out;
}

/**
 * erf(x) to about 1e-16: for |x| < 3 the series erf x = 2/√π · e^{−x²} · Σₙ 2ⁿ x^{2n+1} / (1·3·…·(2n+1)), whose
 * terms are all positive (no cancellation); beyond, the Laplace continued fraction of erfc.
 */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax > 6) return x < 0 ? -1 : 1; // erfc(6) < 2.2e-17
  let v: number;
  if (ax < 3) {
    const x2 = ax * ax;
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 300; n++) {
      term *= (2 * x2) / (2 * n + 1);
      sum += term;
      if (term < 1e-17 * sum) break;
    }
    v = (2 / Math.sqrt(Math.PI)) * Math.exp(-x2) * sum;
  } else {
    // erfc x = e^{−x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))), evaluated bottom-up
    let f = ax;
    for (let k = 60; k >= 1; k--) f = ax + k / 2 / f;
    v = 1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  }
  return x < 0 ? -v : v;
}

export type TextActivation = "gelu" | "gelu_new" | "gelu_pytorch_tanh" | "quick_gelu" | "relu";
export const TEXT_ACTIVATIONS: readonly TextActivation[] = [
  "gelu",
  "gelu_new",
  "gelu_pytorch_tanh",
  "quick_gelu",
  "relu",
];

const TANH_C = Math.sqrt(2 / Math.PI);

/** In place: the activation functions transformers' ACT2FN names (gelu = exact erf form). */
export function activateInPlace(x: Float32Array, act: TextActivation): Float32Array {
  switch (act) {
    case "gelu":
      for (let i = 0; i < x.length; i++) x[i] = 0.5 * x[i]! * (1 + erf(x[i]! / Math.SQRT2));
      break;
    case "gelu_new":
    case "gelu_pytorch_tanh":
      for (let i = 0; i < x.length; i++) {
        const v = x[i]!;
        x[i] = 0.5 * v * (1 + Math.tanh(TANH_C * (v + 0.044715 * v * v * v)));
      }
      break;
    case "quick_gelu": // x·σ(1.702 x)
      for (let i = 0; i < x.length; i++) x[i] = x[i]! / (1 + Math.exp(-1.702 * x[i]!));
      break;
    case "relu":
      for (let i = 0; i < x.length; i++) if (x[i]! < 0) x[i] = 0;
      break;
  }
  return x;
}

/**
 * Multi-head attention with a full additive score bias, for the text encoders.
 *
 * | tensor | shape          | notes                                                     |
 * | ------ | -------------- | --------------------------------------------------------- |
 * | q,k,v  | [B, S, H·Dh]   | heads interleaved along the last axis                     |
 * | bias   | [S, S]         | `bias(b, h)`: per batch item and head, or undefined        |
 * | out    | [B, S, H·Dh]   |                                                           |
 *
 * scores = scale · Q·Kᵀ + bias through the GEMM backend; softmax in float64; out = P·V.
 */
export function attentionWithBias(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  b: number,
  s: number,
  heads: number,
  dh: number,
  scale: number,
  bias: (bi: number, h: number) => Float32Array | undefined,
): Float32Array {
  const d = heads * dh;
  if (q.length !== b * s * d || k.length !== q.length || v.length !== q.length)
    throw new ModelError("E_SHAPE", `q/k/v sizes do not fit B=${b}, S=${s}, H=${heads}, Dh=${dh}`, "attentionWithBias");
  const gemm = getGemmBackend();
  const out = new Float32Array(b * s * d);
  const qh = new Float32Array(s * dh);
  const kh = new Float32Array(s * dh);
  const vt = new Float32Array(dh * s);
  const sc = new Float32Array(s * s);
  const oh = new Float32Array(s * dh);
  for (let bi = 0; bi < b; bi++)
    for (let h = 0; h < heads; h++) {
      for (let t = 0; t < s; t++) {
        const src = (bi * s + t) * d + h * dh;
        for (let i = 0; i < dh; i++) {
          qh[t * dh + i] = q[src + i]!;
          kh[t * dh + i] = k[src + i]!;
          vt[i * s + t] = v[src + i]!;
        }
      }
      gemm.gemm(qh, kh, undefined, sc, s, dh, s);
      const bm = bias(bi, h);
      for (let t = 0; t < s; t++) {
        const o = t * s;
        let mx = -Infinity;
        const row = new Float64Array(s);
        for (let j = 0; j < s; j++) {
          const z = sc[o + j]! * scale + (bm === undefined ? 0 : bm[o + j]!);
          row[j] = z;
          if (z > mx) mx = z;
        }
        let sum = 0;
        for (let j = 0; j < s; j++) {
          const e = Math.exp(row[j]! - mx);
          row[j] = e;
          sum += e;
        }
        for (let j = 0; j < s; j++) sc[o + j] = row[j]! / sum;
      }
      gemm.gemm(sc, vt, undefined, oh, s, s, dh);
      for (let t = 0; t < s; t++) out.set(oh.subarray(t * dh, (t + 1) * dh), (bi * s + t) * d + h * dh);
    }
  return out;
}

/** Gather embedding rows: ids [N] → [N, D]; an id outside the table is one E_INPUT line. */
export function embedRows(
  table: Float32Array,
  vocab: number,
  d: number,
  ids: ArrayLike<number>,
  where: string,
): Float32Array {
  const out = new Float32Array(ids.length * d);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (!Number.isSafeInteger(id) || id < 0 || id >= vocab)
      throw new ModelError("E_INPUT", `token id ${id} at position ${i} is outside the vocabulary [0, ${vocab})`, where);
    out.set(table.subarray(id * d, (id + 1) * d), i * d);
  }
  return out;
}
