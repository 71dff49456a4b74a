// Bit-level conversions between float32 and the 16- and 8-bit float formats.
// All encoders round to nearest, ties to even (IEEE 754 roundTiesToEven), from float32 or float64 inputs.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Raw IEEE-754 bits of a float32 (the value is first rounded to float32). */
export function f32ToBits(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

export function bitsToF32(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0]!;
}

/**
 * float32 bits of x rounded to float32 "to odd" (truncate, then set the last bit if anything was dropped).
 * For a float32 input this is just its bits. For a float64 input, rounding to odd in float32 (24 bits) and then
 * to nearest even in a format of at most 22 bits gives the correctly rounded result, with no double-rounding
 * error (Boldo & Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms using rounding to
 * odd", IEEE TC 2008). All encoders below take their input through this, so f64 -> f16/bf16/fp8 rounds once.
 */
function roundToOddBits(x: number): number {
  f32[0] = x;
  const y = f32[0]!;
  let b = u32[0]!;
  if (y === x || Number.isNaN(x)) return b; // exact, or NaN
  if (Math.abs(y) > Math.abs(x)) b -= 1; // rounded away from zero (incl. overflow to Inf): step back
  return (b | 1) >>> 0;
}

// ---------------------------------------------------------------- bfloat16
// bf16 = the top 16 bits of a float32 (1 sign, 8 exponent, 7 mantissa).

/** float32 -> bf16 bits, round-to-nearest-even; NaN stays NaN (quiet bit set), Inf stays Inf. */
export function f32ToBf16Bits(x: number): number {
  const b = roundToOddBits(x);
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x0040) & 0xffff; // NaN: keep sign, force quiet
  const lsb = (b >>> 16) & 1;
  return ((b + 0x7fff + lsb) >>> 16) & 0xffff; // overflow past max rounds to Inf, as IEEE does
}

export function bf16BitsToF32(h: number): number {
  return bitsToF32((h & 0xffff) << 16);
}

// ---------------------------------------------------------------- float16
// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa; subnormals, Inf and NaN.

/** float32 -> f16 bits, round-to-nearest-even; overflow -> Inf; NaN -> quiet NaN with the sign kept. */
export function f32ToF16Bits(x: number): number {
  const b = roundToOddBits(x);
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15; // re-biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal (or underflow to zero): shift in the implicit bit, round on the dropped bits.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e; // 13 for the 23->10 narrowing, plus 1 - e for the subnormal scaling
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && (m & 1) === 1)) m += 1; // may carry into the smallest normal: correct
    return sign | m;
  }
  const rest = mant & 0x1fff;
  let h = (e << 10) | (mant >>> 13);
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h += 1; // a carry into the exponent is correct, up to Inf
  return sign | h;
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant !== 0 ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return bitsToF32(((h & 0x8000) << 16) | ((exp - 15 + 127) << 23) | (mant << 13));
}

// ---------------------------------------------------------------- 8-bit floats
// OCP 8-bit Floating Point Specification (OFP8), rev 1.0:
//   E4M3 ("fn": finite, no Inf): bias 7, max normal 448 = S.1111.110, NaN = S.1111.111 only.
//   E5M2 (IEEE-like): bias 15, max normal 57344, Inf = S.11111.00, NaN = S.11111.{01,10,11}.

/** How an 8-bit encoder treats values beyond the format's largest finite value (and Inf inputs). */
export type Fp8Overflow = "saturate" | "nan-or-inf";

interface MiniFloat {
  expBits: number;
  mantBits: number;
  bias: number;
  /** Largest finite magnitude. */
  max: number;
  /** Bits of +max (without sign). */
  maxBits: number;
  /** Bits for +Inf, or -1 when the format has none. */
  infBits: number;
  nanBits: number;
}

const E4M3: MiniFloat = { expBits: 4, mantBits: 3, bias: 7, max: 448, maxBits: 0x7e, infBits: -1, nanBits: 0x7f };
const E5M2: MiniFloat = { expBits: 5, mantBits: 2, bias: 15, max: 57344, maxBits: 0x7b, infBits: 0x7c, nanBits: 0x7e };

function encodeMini(x: number, f: MiniFloat, overflow: Fp8Overflow): number {
  if (Number.isNaN(x)) return f.nanBits; // the sign of a NaN carries no meaning; write the positive pattern
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  let a = Math.abs(bitsToF32(roundToOddBits(x))); // a float32 value (float64 inputs rounded to odd, see above)
  const minNormalExp = 1 - f.bias;
  const sub = 2 ** (minNormalExp - f.mantBits); // spacing of subnormals
  let bits: number;
  if (a === Number.POSITIVE_INFINITY) {
    bits = overflow === "saturate" ? f.maxBits : f.infBits >= 0 ? f.infBits : f.nanBits;
    return sign | bits;
  }
  // Exponent of a (floor(log2 a)) exactly, from the float64 bits of a.
  let e = a === 0 ? minNormalExp : Math.max(minNormalExp, exponentOf(a));
  const ulp = 2 ** (e - f.mantBits);
  // Round a/ulp to nearest even integer; exact in float64 since a has 24 significant bits.
  const q = a / ulp;
  let n = Math.floor(q);
  const r = q - n;
  if (r > 0.5 || (r === 0.5 && (n & 1) === 1)) n += 1;
  a = n * ulp;
  if (a > f.max) {
    // E4M3 overflows into its NaN pattern, E5M2 into Inf (IEEE), unless saturating.
    bits = overflow === "saturate" ? f.maxBits : f.infBits >= 0 ? f.infBits : f.nanBits;
    return sign | bits;
  }
  if (a < 2 ** minNormalExp) return sign | Math.round(a / sub); // subnormal: exact multiple of sub
  e = exponentOf(a);
  const mant = a / 2 ** e - 1;
  return sign | ((e + f.bias) << f.mantBits) | Math.round(mant * (1 << f.mantBits));
}

const f64 = new Float64Array(1);
const u32of64 = new Uint32Array(f64.buffer);
/** floor(log2(a)) for a finite, positive, normal float64 a. */
function exponentOf(a: number): number {
  f64[0] = a;
  return ((u32of64[1]! >>> 20) & 0x7ff) - 1023;
}

function decodeMini(bits: number, f: MiniFloat): number {
  const sign = bits & 0x80 ? -1 : 1;
  const mag = bits & 0x7f;
  if (f.infBits < 0 ? mag === f.nanBits : mag > f.infBits) return Number.NaN;
  if (mag === f.infBits) return sign * Number.POSITIVE_INFINITY;
  const e = mag >>> f.mantBits;
  const m = mag & ((1 << f.mantBits) - 1);
  if (e === 0) return sign * m * 2 ** (1 - f.bias - f.mantBits);
  return sign * (1 + m / (1 << f.mantBits)) * 2 ** (e - f.bias);
}

function table(f: MiniFloat): Float32Array {
  const t = new Float32Array(256);
  for (let i = 0; i < 256; i++) t[i] = decodeMini(i, f);
  return t;
}
const E4M3_TABLE = table(E4M3);
const E5M2_TABLE = table(E5M2);

/**
 * float32 -> E4M3FN bits, round-to-nearest-even.
 * Default `saturate`: finite overflow and ±Inf become ±448, NaN stays NaN. This is the OCP "saturating"
 * conversion and what NVIDIA's cvt.satfinite does, the path NVFP4 block scales take (scales are clamped to
 * 448 anyway). `nan-or-inf` is the OCP non-saturating mode, which PyTorch's `.to(float8_e4m3fn)` follows:
 * overflow and ±Inf become NaN, since E4M3FN has no Inf.
 */
export function f32ToE4m3Bits(x: number, overflow: Fp8Overflow = "saturate"): number {
  return encodeMini(x, E4M3, overflow);
}
export function e4m3BitsToF32(b: number): number {
  return E4M3_TABLE[b & 0xff]!;
}

/**
 * float32 -> E5M2 bits, round-to-nearest-even. Default `nan-or-inf`: E5M2 has Inf, so overflow
 * becomes ±Inf as in IEEE arithmetic (and PyTorch); `saturate` clamps to ±57344 instead.
 */
export function f32ToE5m2Bits(x: number, overflow: Fp8Overflow = "nan-or-inf"): number {
  return encodeMini(x, E5M2, overflow);
}
export function e5m2BitsToF32(b: number): number {
  return E5M2_TABLE[b & 0xff]!;
}

/** Largest finite magnitudes (OCP OFP8 spec, table 1). */
export const E4M3_MAX = 448;
export const E5M2_MAX = 57344;
