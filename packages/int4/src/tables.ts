// Code tables of the 4-bit element formats.

/**
 * FP4 E2M1 (1 sign, 2 exponent bits with bias 1, 1 mantissa bit; no Inf/NaN): the value of each 4-bit code.
 * Source: OCP Microscaling Formats (MX) v1.0 §5.3.3, NVIDIA PTX ISA "e2m1". Codes 8..15 are the negatives
 * (code 8 is −0).
 */
export const E2M1_VALUES: Float32Array = Float32Array.from([
  0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6,
]);

/** Largest E2M1 magnitude. */
export const E2M1_MAX = 6;

/**
 * The E2M1 code nearest to q, ties to even (the code with mantissa bit 0), saturating at ±6 (`satfinite`,
 * as NVIDIA's cvt.rn.satfinite.e2m1x2.f32 and OCP MX conversions do). A result of zero is code 0 (+0) for
 * either sign, so equal values always get equal codes.
 */
export function e2m1Code(q: number): number {
  const a = q < 0 ? -q : q;
  let c: number;
  // Decision points are the midpoints between neighbours; at a midpoint the even code wins.
  if (a <= 1.25) c = a <= 0.25 ? 0 : a < 0.75 ? 1 : 2;
  else if (a <= 2.5) c = a < 1.75 ? 3 : 4;
  else c = a < 3.5 ? 5 : a <= 5 ? 6 : 7;
  return c !== 0 && q < 0 ? c | 8 : c;
}

/**
 * NormalFloat4 (NF4) code table: quantiles of N(0,1) normalized to [−1, 1], with an exact zero.
 * Source: QLoRA (Dettmers et al., 2023) appendix E; the float32 values are bitsandbytes' `nf4` table
 * (bitsandbytes/functional.py get_4bit_type("nf4"), csrc/kernels.cu dDequantizeNF4). Index 7 is 0.
 */
export const NF4_VALUES: Float32Array = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/**
 * Decision points of bitsandbytes' dQuantizeNF4 (csrc/kernels.cu): code = number of pivots strictly below
 * the normalized value (comparisons are `x > pivot`, in float32). pivot[i] separates code i and i + 1.
 */
export const NF4_PIVOTS: Float32Array = Float32Array.from([
  -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544, -0.23460740596055984,
  -0.13791173323988914, -0.045525018125772476, 0.03979014977812767, 0.1202552504837513, 0.2035212516784668,
  0.2920137718319893, 0.3893125355243683, 0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
]);

/** NF4 code of a value already normalized by absmax (float32), by bitsandbytes' binary decision tree. */
export function nf4Code(x: number): number {
  const p = NF4_PIVOTS;
  if (x > p[7]!) {
    if (x > p[11]!) return x > p[13]! ? (x > p[14]! ? 15 : 14) : x > p[12]! ? 13 : 12;
    return x > p[9]! ? (x > p[10]! ? 11 : 10) : x > p[8]! ? 9 : 8;
  }
  if (x > p[3]!) return x > p[5]! ? (x > p[6]! ? 7 : 6) : x > p[4]! ? 5 : 4;
  return x > p[1]! ? (x > p[2]! ? 3 : 2) : x > p[0]! ? 1 : 0;
}
