/**
 * The residual's INT4/UINT4 quantization fused with what the kernel path needs of it in one pass: codes, scales,
 * the dequantized values in float32, ‖R‖² and ‖R − Q(R)‖². The numerics are those of @svdquant/int4's
 * `quantize` (raw scale absmax/7 or max/15 in float32, rounded to the scale dtype, codes from the exact float64
 * quotient rounded half to even, clamped); `residual-quant.test.ts` checks equality on ties and random data.
 *
 * | buffer | shape            | dtype   |
 * | ------ | ---------------- | ------- |
 * | r      | [rows, cols]     | float64 |
 * | codes  | [rows, cols]     | int8    |
 * | scales | [rows, cols / G] | float32 |
 * | dq     | [rows, cols]     | float32 |
 */
import type { QuantSpec } from "@svdquant/int4";
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "@svdquant/tensor";
import { QuantizerError } from "./errors.js";

/** 1.5·2^52: (q + RHE) − RHE rounds q half to even in float64 for |q| < 2^51 (as @svdquant/int4 does). */
const RHE = 6755399441055744;

/** Whether `quantizeRowsFused` handles this spec (INT4/UINT4 with groups along the row); else use int4's. */
export function fusedQuantSupported(spec: QuantSpec, cols: number): boolean {
  return (
    (spec.format === "int4" || spec.format === "uint4") &&
    spec.globalScale === undefined &&
    Number.isInteger(spec.groupSize) &&
    spec.groupSize > 0 &&
    cols % spec.groupSize === 0
  );
}

/**
 * Where R comes from when it is computed in the same pass: R[i, j] = W[wOffset/cols + i, j]·λ_j − L[i, j], with
 * W [·, cols] the layer weight (float32 or float64), λ [cols] and L [rows, cols] float32 (the branch rows).
 */
export interface ResidualSource {
  w: Float32Array | Float64Array;
  wOffset: number;
  lambda: Float64Array;
  l: Float32Array;
}

/**
 * Quantize rows of R (given in `r`, or computed from `src` into `r` as scratch) in one pass; see the module
 * comment for the layouts.
 */
export function quantizeRowsFused(
  r: Float64Array,
  rows: number,
  cols: number,
  spec: QuantSpec,
  codes: Int8Array,
  scales: Float32Array,
  dq: Float32Array,
  name?: string,
  src?: ResidualSource,
): { norm2: number; err2: number } {
  const g = spec.groupSize;
  const groups = cols / g;
  const unsigned = spec.format === "uint4";
  const lo = unsigned ? 0 : -8;
  const hi = unsigned ? 15 : 7;
  const sdt = spec.scaleDtype ?? "BF16";
  let norm2 = 0;
  let err2 = 0;
  for (let i = 0; i < rows; i++) {
    for (let gi = 0; gi < groups; gi++) {
      const base = i * cols + gi * g;
      const end = base + g;
      let amax = 0;
      let vmax = 0;
      let n2 = 0;
      if (src === undefined)
        for (let t = base; t < end; t++) {
          const v = r[t];
          n2 += v * v;
          vmax = Math.max(v, vmax);
          const a = Math.abs(v);
          amax = Math.max(a, amax);
        }
      else {
        const { w, lambda, l } = src;
        const wo = src.wOffset + i * cols + gi * g - base;
        const jo = gi * g - base;
        for (let t = base; t < end; t++) {
          const v = w[wo + t] * lambda[jo + t] - l[t];
          r[t] = v;
          n2 += v * v;
          vmax = Math.max(v, vmax);
          const a = Math.abs(v);
          amax = Math.max(a, amax);
        }
      }
      norm2 += n2;
      // SVDQuant §3: symmetric INT4, scale = absmax/7; unsigned: max/15 (float32, as @svdquant/int4)
      const raw = unsigned ? Math.fround(Math.fround(vmax) / 15) : Math.fround(Math.fround(amax) / 7);
      const scale =
        sdt === "BF16"
          ? bf16BitsToF32(f32ToBf16Bits(raw))
          : sdt === "F16"
            ? f16BitsToF32(f32ToF16Bits(raw))
            : Math.fround(raw);
      if (scale === Number.POSITIVE_INFINITY)
        throw new QuantizerError(
          "E_ARGUMENT",
          `residual row ${i}, group ${gi}: scale ${raw} overflows ${sdt}; store the scales in a wider dtype`,
          name,
        );
      scales[i * groups + gi] = scale;
      if (scale === 0) {
        for (let t = base; t < end; t++) {
          codes[t] = 0;
          dq[t] = 0;
          err2 += r[t] * r[t];
        }
        continue;
      }
      let e2 = 0;
      for (let t = base; t < end; t++) {
        const v = r[t];
        let q = v / scale + RHE - RHE;
        q = q < lo ? lo : Math.min(q, hi);
        codes[t] = q | 0;
        const d = Math.fround(q * scale);
        dq[t] = d;
        const e = v - d;
        e2 += e * e;
      }
      err2 += e2;
    }
  }
  return { norm2, err2 };
}
