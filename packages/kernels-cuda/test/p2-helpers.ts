// Test helpers of the int4p2 path: the format reference of @svdquant/int4 and a signed E4M3 decoder.
import { e4m3BitsToF32 } from "@svdquant/tensor";

export { dequantize, quantize, specFor } from "@svdquant/int4";

/** Value of a signed E4M3 byte (bit 7 the sign; @svdquant/tensor decodes the magnitude). */
export function e4m3BitsToF32Signed(b: number): number {
  const v = e4m3BitsToF32(b & 0x7f);
  return b & 0x80 ? -v : v;
}
