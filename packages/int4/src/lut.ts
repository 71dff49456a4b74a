// Lookup tables for quantizing bf16 inputs without division: with x = ±1.m·2^ex (7-bit m) and a group scale
// s = 1.ms·2^es, the code of x depends only on (sign, d = ex − es, m) for a given scale mantissa. Tables are
// built once, lazily, from the exact scalar definitions (round-half-even / E2M1 ties-to-even of the float64
// quotient, exact for these small integers) and are checked against the general path in the tests.
import { e4m3BitsToF32 } from "@svdquant/tensor";
import { e4m3BitsOfValue, roundE4m3 } from "./scales.js";
import { e2m1Code } from "./tables.js";

/** Rows per (scale, sign): row 0 = "too small" (code 0), rows 1..6 = six exponent offsets, row 7 = saturated. */
const ROWS = 8;
const SUB = 2 * ROWS * 128; // entries per scale key: sign × row × mantissa

let int4Lut: Uint8Array | undefined;
/**
 * INT4 codes (4-bit two's complement) for bf16 x and a bf16 scale with mantissa ms:
 * index ((ms · 2 + sign) · 8 + row) · 128 + mx, row = clamp(ex − es + 2, 0, 7) (rows 1..6: d = −1..4).
 * d ≤ −2 gives |x/s| < 0.5 → 0; d ≥ 5 gives |x/s| > 16 → saturated (7 or −8).
 */
export function int4Bf16Lut(): Uint8Array {
  if (int4Lut !== undefined) return int4Lut;
  const t = new Uint8Array(128 * SUB);
  for (let ms = 0; ms < 128; ms++) {
    const s = 1 + ms / 128;
    for (let sign = 0; sign < 2; sign++)
      for (let row = 0; row < ROWS; row++)
        for (let mx = 0; mx < 128; mx++) {
          let q: number;
          if (row === 0) q = 0;
          else if (row === ROWS - 1) q = sign ? -8 : 7;
          else {
            const x = (sign ? -1 : 1) * (1 + mx / 128) * 2 ** (row - 2);
            const r = x / s;
            q = Math.round(r);
            if (q - r === 0.5 && q % 2 !== 0) q -= 1; // Math.round rounds ties up; make them go to even
            q = Math.max(-8, Math.min(7, q));
          }
          t[((ms * 2 + sign) * ROWS + row) * 128 + mx] = q & 15;
        }
  }
  int4Lut = t;
  return t;
}

let nvfp4Lut: Uint8Array | undefined;
/** float32 exponent (floor(log2)) of each positive E4M3 code's value. */
export const E4M3_EXP = new Int32Array(128);
/**
 * E2M1 codes for bf16 x and an E4M3 scale code e (1..126): index ((e · 2 + sign) · 8 + row) · 128 + mx,
 * row = clamp(ex − E4M3_EXP[e] + 3, 0, 7) (rows 1..6: d = −2..3). d ≤ −3 gives |x/s| < 0.25 → code 0;
 * d ≥ 4 gives |x/s| > 8 → saturated (±6).
 */
export function nvfp4Bf16Lut(): Uint8Array {
  if (nvfp4Lut !== undefined) return nvfp4Lut;
  const t = new Uint8Array(128 * SUB);
  for (let e = 1; e < 127; e++) {
    const s = e4m3BitsToF32(e);
    const es = Math.floor(Math.log2(s));
    E4M3_EXP[e] = es;
    const sn = s / 2 ** es; // in [1, 2), exact
    for (let sign = 0; sign < 2; sign++)
      for (let row = 0; row < ROWS; row++)
        for (let mx = 0; mx < 128; mx++) {
          let c: number;
          if (row === 0) c = 0;
          else if (row === ROWS - 1) c = sign ? 15 : 7;
          else c = e2m1Code(((sign ? -1 : 1) * (1 + mx / 128) * 2 ** (row - 3)) / sn);
          t[((e * 2 + sign) * ROWS + row) * 128 + mx] = c;
        }
  }
  nvfp4Lut = t;
  return t;
}

let amaxE4: Uint8Array | undefined;
/**
 * NVFP4 block-scale code for each bf16 magnitude pattern a (0..0x7fff) taken as the group amax:
 * E4M3(fround(amax/6)) with saturation, the same rounding as the general path (scales.ts roundE4m3).
 */
export function nvfp4AmaxToE4m3(): Uint8Array {
  if (amaxE4 !== undefined) return amaxE4;
  const t = new Uint8Array(0x8000);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let a = 0; a < 0x7f80; a++) {
    u[0] = a << 16;
    t[a] = e4m3BitsOfValue(roundE4m3(Math.fround(f[0]! / 6)));
  }
  amaxE4 = t;
  return t;
}
