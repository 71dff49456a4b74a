import { defaultGemm } from "@svdquant/lowrank";
import { decodeToFloat64, encodeFloats } from "@svdquant/tensor";

export type Floats = Float32Array | Float64Array;

export function toF64(a: Floats): Float64Array {
  return a instanceof Float64Array ? a : new Float64Array(a);
}

/** Y [M, N] = X [M, K] · W [N, K]ᵀ in float64 (the nn.Linear product) through the replaceable GEMM. */
export function xwt(x: Floats, m: number, k: number, w: Floats, n: number): Float64Array {
  return defaultGemm().nt(toF64(x), toF64(w), m, n, k);
}

/** Values rounded to a 16-bit float (round to nearest even), returned as float64. */
export function round16(a: ArrayLike<number>, dtype: "BF16" | "F16"): Float64Array {
  return decodeToFloat64(dtype, encodeFloats(dtype, a));
}

export function frob(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

export function frobDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    s += d * d;
  }
  return Math.sqrt(s);
}
