// Rounding of group scales to their storage formats. Every function takes and returns numbers that are
// float32 values; the results are the decoded (stored) scale values.
import { bf16BitsToF32, E4M3_MAX, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "@svdquant/tensor";
import type { ScaleDType } from "./formats.js";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** A float32 value rounded (nearest, ties to even) to bf16, f16 or kept as f32; overflow gives Infinity. */
export function roundScale(v: number, dtype: ScaleDType): number {
  if (dtype === "BF16") return bf16BitsToF32(f32ToBf16Bits(v));
  if (dtype === "F16") return f16BitsToF32(f32ToF16Bits(v));
  return Math.fround(v);
}

/** 2^-6, the smallest normal E4M3 value (OCP OFP8 table 1). */
const E4M3_MIN_NORMAL = 0.015625;

/**
 * A non-negative float32 value rounded to FP8 E4M3 (nearest, ties to even) with saturation at 448
 * (the satfinite conversion NVFP4 block scales use). Equal to e4m3BitsToF32(f32ToE4m3Bits(a)) for a ≥ 0
 * (tested exhaustively against @svdquant/tensor), but without per-call allocation or table search.
 */
export function roundE4m3(a: number): number {
  if (a >= E4M3_MAX) return E4M3_MAX;
  if (a < E4M3_MIN_NORMAL) {
    // Subnormals are multiples of 2^-9; round a·2^9 half to even (exact in float64).
    const q = a * 512;
    return (q + 6755399441055744 - 6755399441055744) / 512;
  }
  f32[0] = a;
  const b = u32[0]!;
  // Keep 3 of the 23 mantissa bits, round to nearest even on the 20 dropped bits; a carry bumps the exponent.
  u32[0] = (b + 0x7ffff + ((b >>> 20) & 1)) & 0xfff00000;
  const r = f32[0]!;
  return Math.min(r, E4M3_MAX);
}

/** E4M3 bits of a non-negative value that is exactly representable in E4M3 (e.g. a roundE4m3 result). */
export function e4m3BitsOfValue(v: number): number {
  if (v < E4M3_MIN_NORMAL) return Math.round(v * 512);
  f32[0] = v;
  const b = u32[0]!;
  return ((((b >>> 23) & 0xff) - 127 + 7) << 3) | ((b >>> 20) & 7);
}

/** floor(log2(a)) for a positive finite float32 value, exactly (subnormals included). */
export function floorLog2F32(a: number): number {
  f32[0] = a;
  const e = (u32[0]! >>> 23) & 0xff;
  if (e !== 0) return e - 127;
  return 31 - Math.clz32(u32[0]! & 0x7fffff) - 149; // subnormal: 2^-149 × mantissa
}

/**
 * MX shared exponent of a group (OCP MX v1.0 §6.3): X = floor(log2(amax)) − emax_elem, emax_elem = 2 for E2M1,
 * clamped to the E8M0 range [−127, 127]. Returns the exponent X; the scale is 2^X.
 */
export function mxSharedExponent(amax: number): number {
  const x = floorLog2F32(amax) - 2;
  return x < -127 ? -127 : Math.min(x, 127);
}

/** E8M0 byte of a power-of-two scale 2^x (bias 127; 0xFF is NaN). */
export function e8m0Bits(x: number): number {
  return x + 127;
}
