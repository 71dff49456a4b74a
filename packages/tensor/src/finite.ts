import type { DType, Storage } from "./dtype.js";
import type { Tensor } from "./tensor.js";

/**
 * Index of the first NaN or ±Inf element of a tensor, or -1 when every element is finite (always -1 for integer
 * dtypes). One pass over the stored bits, no decoding: f16 and bf16 are non-finite when the exponent field is all
 * ones (IEEE 754-2008 §3.4; bf16 is f32's top half), e4m3fn only has NaN (S.1111.111, OCP OFP8 rev. 1.0 table 1),
 * e5m2 is IEEE-like (exponent 11111).
 */
export function firstNonFinite(t: Tensor): number {
  return firstNonFiniteIn(t.dtype, t.data);
}

export function firstNonFiniteIn(dtype: DType, data: Storage): number {
  const n = data.length;
  switch (dtype) {
    case "F32":
    case "F64": {
      const d = data as Float32Array | Float64Array;
      for (let i = 0; i < n; i++) if (d[i]! - d[i]! !== 0) return i; // NaN - NaN and Inf - Inf are NaN
      return -1;
    }
    case "F16":
      return firstMasked(data as Uint16Array, 0x7c00);
    case "BF16":
      return firstMasked(data as Uint16Array, 0x7f80);
    case "F8_E4M3":
      return firstMasked(data as Uint8Array, 0x7f);
    case "F8_E5M2":
      return firstMasked(data as Uint8Array, 0x7c);
    default:
      return -1;
  }
}

function firstMasked(d: Uint16Array | Uint8Array, mask: number): number {
  for (let i = 0; i < d.length; i++) if ((d[i]! & mask) === mask) return i;
  return -1;
}
