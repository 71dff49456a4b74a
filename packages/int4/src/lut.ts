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

let e4m3Exp: Int32Array | undefined;
/** floor(log2(value)) of each positive E4M3 code 1..126 (−9 for the smallest subnormal 2^-9, 8 for 448). */
export function e4m3Exponents(): Int32Array {
  if (e4m3Exp !== undefined) return e4m3Exp;
  const t = new Int32Array(128);
  for (let e = 1; e < 127; e++) t[e] = Math.floor(Math.log2(e4m3BitsToF32(e)));
  e4m3Exp = t;
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

/**
 * Length of one table of nvfp4Bf16Table: every 16-bit bf16 pattern (sign included) plus the spread of the
 * per-scale index offsets, 17 exponents (E4M3 scale exponents −9..8, OCP OFP8 table 1) × 128 mantissas.
 */
export const NVFP4_TAB_LEN = 0x10000 + 17 * 128;
/**
 * Key of a bf16 magnitude b (bits & 0x7fff) under the scale code e: a = b − off(e), off(e) = (E4M3_EXP(e) + 124)·128,
 * so a = row·128 + mx with x = ±(1 + mx/128)·2^ex and row = ex − E4M3_EXP(e) + 3. OFF_MAX = 132·128 = off(448).
 */
const OFF_MAX = 132 << 7;

/**
 * The E2M1 code of ±(1 + mx/128)·2^(row − 3) / sn for key a = row·128 + mx and a scale with mantissa sn ∈ [1, 2):
 * rows < 1 give code 0 (|x/s| < 0.25, or a subnormal bf16 x), rows > 6 saturate (|x/s| > 8); `above` gives the
 * code of a value infinitesimally larger in magnitude (a float32 whose top 16 bits are this bf16 pattern and whose
 * low 16 bits are not all zero). The quotient is exact enough in float64: x has 8 and sn 4 significant bits.
 */
function e2m1OfKey(a: number, sign: number, sn: number, above: boolean): number {
  const row = a >> 7;
  if (row < 1) return 0;
  if (row > 6) return sign ? 15 : 7;
  const m = 1 + (a & 127) / 128 + (above ? 2 ** -20 : 0); // 2^-20: far below a bf16 step, far above f64 rounding
  return e2m1Code(((sign ? -1 : 1) * m * 2 ** (row - 3)) / sn);
}

let nvfp4Tab: { tab: Uint8Array; base: Int32Array } | undefined;
/**
 * Clamp-free NVFP4 code table for bf16 input: `tab[base[e] + bits]` is the E2M1 code of the bf16 value with
 * bits `bits` (0..0xffff, sign included) under the E4M3 scale code e (0..126), for every |x| ≤ the largest amax
 * whose scale code is e (tested exhaustively). The code depends on the scale only through its mantissa
 * (8 values 1 + m/8, subnormal E4M3 codes included) and exponent, so it holds one NVFP4_TAB_LEN table per
 * mantissa (index = bits + OFF_MAX − off(e)) plus an all-zero table for e = 0 (amax/6 rounds to 0: every code
 * is 0). Positive indices ≥ 0x8000 would overlap the negative half; they need |x| ≥ 2^(120 + E4M3_EXP(e)), which
 * no group reaches (its amax is < 2^(E4M3_EXP(e) + 4) unless the scale saturates at 448, where off = OFF_MAX).
 */
export function nvfp4Bf16Table(): { tab: Uint8Array; base: Int32Array } {
  if (nvfp4Tab !== undefined) return nvfp4Tab;
  const tab = new Uint8Array(9 * NVFP4_TAB_LEN); // table 8: zeros
  for (let ms = 0; ms < 8; ms++) {
    const sn = 1 + ms / 8;
    const t = ms * NVFP4_TAB_LEN;
    for (let j = 0; j < NVFP4_TAB_LEN; j++) {
      const sign = j >= 0x8000 ? 1 : 0;
      tab[t + j] = e2m1OfKey(j - sign * 0x8000 - OFF_MAX, sign, sn, false);
    }
  }
  const ex = e4m3Exponents();
  const base = new Int32Array(128);
  base[0] = base[127] = 8 * NVFP4_TAB_LEN; // 0: the zero table; 127 (NaN) never occurs (scales saturate at 126)
  for (let e = 1; e < 127; e++) {
    const ms = (e4m3BitsToF32(e) / 2 ** ex[e]! - 1) * 8; // exact: E4M3 values have at most 4 significant bits
    base[e] = ms * NVFP4_TAB_LEN + OFF_MAX - ((ex[e]! + 124) << 7);
  }
  nvfp4Tab = { tab, base };
  return nvfp4Tab;
}

let nvfp4TabF32: Uint8Array | undefined;
/**
 * NVFP4 code table for float32 input, indexed by `2·base[e] + ((b >>> 15) | sticky)` (base of nvfp4Bf16Table,
 * b the float32 bits, sticky = 1 when the low 16 bits are not all zero): entry 2j is the code of the bf16 value
 * j, entry 2j + 1 that of a value just above it in magnitude. Exact because every E2M1 decision point t·s
 * (t ∈ {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5}, s an E4M3 value) has at most 3 + 4 significant bits, so it is a
 * bf16 value: comparing x with it needs only the top 16 bits of x and whether any lower bit is set.
 */
export function nvfp4F32Table(): Uint8Array {
  if (nvfp4TabF32 !== undefined) return nvfp4TabF32;
  const tab = new Uint8Array(2 * 9 * NVFP4_TAB_LEN);
  for (let ms = 0; ms < 8; ms++) {
    const sn = 1 + ms / 8;
    const t = 2 * ms * NVFP4_TAB_LEN;
    for (let j = 0; j < NVFP4_TAB_LEN; j++) {
      const sign = j >= 0x8000 ? 1 : 0;
      const a = j - sign * 0x8000 - OFF_MAX;
      tab[t + 2 * j] = e2m1OfKey(a, sign, sn, false);
      tab[t + 2 * j + 1] = e2m1OfKey(a, sign, sn, true);
    }
  }
  nvfp4TabF32 = tab;
  return tab;
}

let amaxE4F32: Int32Array | undefined;
/**
 * For float32 group maxima: `t[c]` is the smallest float32 bit pattern whose NVFP4 scale code
 * E4M3(fround(amax/6)) is ≥ c (t[127] = 0x7f800000, above every finite value). The code is monotone in the
 * bits, so code(bits) = the c with t[c] ≤ bits < t[c + 1]; start from nvfp4AmaxToE4m3()[bits >>> 16] (the code
 * of the bf16 truncation, never larger) and step up.
 */
export function nvfp4AmaxF32Thresholds(): Int32Array {
  if (amaxE4F32 !== undefined) return amaxE4F32;
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const code = (bits: number) => {
    u[0] = bits;
    return e4m3BitsOfValue(roundE4m3(Math.fround(f[0]! / 6)));
  };
  const t = new Int32Array(128);
  t[127] = 0x7f800000;
  for (let c = 1; c < 127; c++) {
    let lo = 0; // code(lo) < c
    let hi = 0x7f800000; // code(hi) ≥ c (448 saturates)
    while (hi - lo > 1) {
      const mid = lo + ((hi - lo) >>> 1);
      if (code(mid) >= c) hi = mid;
      else lo = mid;
    }
    t[c] = hi;
  }
  amaxE4F32 = t;
  return t;
}
