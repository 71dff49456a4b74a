// Test helpers of the int4p2 path: the format reference of @svdquant/int4 and a signed E4M3 decoder.

import { e4m3BitsOfValue, roundE4m3 } from "@svdquant/int4";
import { e4m3BitsToF32 } from "@svdquant/tensor";

export { ceilLog2, dequantize, quantize, specFor } from "@svdquant/int4";

/** Value of a signed E4M3 byte (bit 7 the sign; @svdquant/tensor decodes the magnitude). */
export function e4m3BitsToF32Signed(b: number): number {
  const v = e4m3BitsToF32(b & 0x7f);
  return b & 0x80 ? -v : v;
}

/**
 * Signed E4M3 byte of a float32 value as the device's satfinite conversion gives it: round to nearest even,
 * saturating at ±448, the sign kept when a negative value rounds to zero (0x80).
 */
export function e4m3Signed(v: number): number {
  const a = roundE4m3(Math.abs(v));
  return (v < 0 || Object.is(v, -0) ? 0x80 : 0) | (a === 0 ? 0 : e4m3BitsOfValue(a));
}
