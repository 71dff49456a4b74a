// biome-ignore-all lint/complexity/useMathMinMax: the ternary clamps left in the int4 loops are rarely taken (well predicted); Math.min/max measured slower here
// Group maxima use the branch-free maxInt / max15x2 instead: V8 (Node 20) compiles a ternary max to a branch,
// which mispredicts on random data (measured: the nvfp4 max pass took 2/3 of the time with ternaries).
// Fused quantize + pack of a whole weight straight into the nunchaku W4A4 layout: one pass over the input,
// no code or scale buffers in between, no per-element allocation. Equal, byte for byte, to
// quantize → packW4A4Weight / packW4A4Scales / packW4A4MicroScales (tested).
import { e4m3BitsToF32, f32ToF16Bits } from "@svdquant/tensor";
import { QuantError } from "./errors.js";
import { int4Bf16Lut, nvfp4AmaxF32Thresholds, nvfp4AmaxToE4m3, nvfp4Bf16Table, nvfp4F32Table } from "./lut.js";
import { W4A4_PAD_K, W4A4_WARP_N, w4a4MicroScaleIndex, w4a4ScaleIndex } from "./nunchaku-w4a4.js";
import { e4m3BitsOfValue, roundE4m3 } from "./scales.js";

/** A weight packed for nunchaku's W4A4 GEMM. */
export interface PackedW4A4Weight {
  format: "int4" | "nvfp4";
  N: number;
  K: number;
  /** [N, K/2] int8, packW4A4Weight order. */
  qweight: Int8Array;
  /** int4: [K/64, N] bf16/f16 bits (packW4A4Scales order); nvfp4: [K/16, N] E4M3 bytes (packW4A4MicroScales order). */
  wscales: Uint16Array | Uint8Array;
}

const RHE = 6755399441055744; // 1.5·2^52: (q + RHE) − RHE rounds half to even

/**
 * Quantizes W [N, K] (float32 values, or raw bf16 bits as a Uint16Array — the checkpoint dtype) and packs it.
 * int4: groups of 64, scale = absmax/7 rounded to `scaleDtype` (BF16 default); nvfp4: groups of 16, E4M3 scale
 * of amax/6 (/ globalScale). N % 128 = 0 and K % 128 = 0 (pad first, see packW4A4Layer).
 *
 * | input  | shape  | dtype                 |   | output  | shape             | dtype          |
 * | ------ | ------ | --------------------- | - | ------- | ----------------- | -------------- |
 * | w      | [N, K] | f32 or bf16 bits (u16) |   | qweight | [N, K/2]          | int8           |
 * |        |        |                       |   | wscales | [K/64 or K/16, N] | bf16/f16 or e4m3 |
 */
export function quantizePackW4A4(
  w: Float32Array | Uint16Array,
  N: number,
  K: number,
  opts: { format: "int4" | "nvfp4"; scaleDtype?: "BF16" | "F16"; globalScale?: number; name?: string },
): PackedW4A4Weight {
  const { format, name } = opts;
  if (N % W4A4_WARP_N !== 0 || K % W4A4_PAD_K !== 0)
    throw new QuantError("E_SHAPE", `W4A4 weight [${N}, ${K}] must be padded to N % 128 = 0, K % 128 = 0`, name);
  if (w.length !== N * K)
    throw new QuantError("E_SHAPE", `buffer holds ${w.length} values, [${N}, ${K}] needs ${N * K}`, name);
  if (format !== "int4" && format !== "nvfp4")
    throw new QuantError("E_ARGUMENT", `format must be int4 or nvfp4, got ${format}`, name);
  const gs = opts.globalScale;
  if (gs !== undefined && (format !== "nvfp4" || !(gs > 0 && Number.isFinite(gs) && Math.fround(gs) > 0)))
    throw new QuantError("E_ARGUMENT", `globalScale must be a positive finite float32 and nvfp4 only, got ${gs}`, name);
  const qweight = new Int8Array((N * K) >>> 1);
  const words = new Int32Array(qweight.buffer);
  const ctx: Ctx = { N, K, KT: K / 64, words, name };
  if (format === "int4") {
    const wscales = new Uint16Array((N * K) / 64);
    if (w instanceof Uint16Array && opts.scaleDtype !== "F16") int4Bf16(w, ctx, wscales);
    else int4Float(w, ctx, wscales, opts.scaleDtype === "F16");
    return { format, N, K, qweight, wscales };
  }
  const wscales = new Uint8Array((N * K) / 16);
  if (gs !== undefined) nvfp4Thresholds(w, ctx, wscales, Math.fround(gs));
  else if (w instanceof Uint16Array) nvfp4Bf16(w, ctx, wscales);
  else nvfp4F32(w, ctx, wscales);
  return { format, N, K, qweight, wscales };
}

interface Ctx {
  N: number;
  K: number;
  KT: number;
  words: Int32Array;
  name: string | undefined;
}

/** Index of word (n, kt, kl = 0, ks = 0) of packW4A4Weight: (((nt·KT + kt)·8 + np)·8 + nl)·16 + ns·2; + kl·4 + ks. */
function wordBase(n: number, kt: number, KT: number): number {
  return ((((n >>> 7) * KT + kt) * 8 + ((n >>> 4) & 7)) * 8 + (n & 7)) * 16 + ((n >>> 3) & 1) * 2;
}

/** Rounds a positive float32 value (given by its bits) to bf16 bits, nearest even. */
function bf16Round(b: number): number {
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

const f1 = new Float32Array(1);
const u1 = new Uint32Array(f1.buffer);
const bitsToFloat = (b: number) => {
  u1[0] = b;
  return f1[0]!;
};
const floatToBits = (v: number) => {
  f1[0] = v;
  return u1[0]!;
};

/** INT4 from float32 (any scale dtype) or from bf16 with F16 scales: division path. */
function int4Float(w: Float32Array | Uint16Array, c: Ctx, wscales: Uint16Array, f16: boolean): void {
  const { N, K, KT, words, name } = c;
  const bf16 = w instanceof Uint16Array;
  const row = new Float32Array(K);
  const rowBits = new Uint32Array(row.buffer);
  const wBits = bf16 ? rowBits : new Uint32Array(w.buffer, w.byteOffset, w.length);
  for (let n = 0; n < N; n++) {
    const xr = loadRow(w, bf16, n, K, row, rowBits);
    const xb = bf16 ? rowBits : wBits;
    const ob = bf16 ? 0 : n * K; // offset of the row in xb
    for (let kt = 0; kt < KT; kt++) {
      const base = kt * 64;
      // absmax on the float32 bit patterns (|x| orders like its bits); ≥ 0x7f800000 means Inf or NaN
      const mb = maxAbsBits(xb, ob + base, 64);
      if (mb >= 0x7f800000) nonFinite(xr[base + firstNonFinite(xr, base)]!, n, base + firstNonFinite(xr, base), c);
      const amax = bitsToFloat(mb);
      const raw = Math.fround(amax / 7); // SVDQuant §3: absmax/7, computed in float32
      let sb: number;
      let s: number;
      if (f16) {
        sb = f32ToF16Bits(raw);
        if ((sb & 0x7c00) === 0x7c00) rangeError(n, kt, amax, "F16", name);
        s = halfValue(sb);
      } else {
        sb = bf16Round(floatToBits(raw));
        if ((sb & 0x7f80) === 0x7f80) rangeError(n, kt, amax, "BF16", name);
        s = bitsToFloat(sb << 16);
      }
      wscales[w4a4ScaleIndex(n, kt, KT)] = sb;
      const wb = wordBase(n, kt, KT);
      if (s === 0) {
        for (let kl = 0; kl < 4; kl++) words[wb + kl * 4] = words[wb + kl * 4 + 1] = 0;
        continue;
      }
      for (let ks = 0; ks < 2; ks++)
        for (let kl = 0; kl < 4; kl++) {
          const k0 = base + ks * 32 + kl * 8;
          words[wb + kl * 4 + ks] =
            int4Code(xr[k0]!, s) |
            (int4Code(xr[k0 + 1]!, s) << 4) |
            (int4Code(xr[k0 + 2]!, s) << 8) |
            (int4Code(xr[k0 + 3]!, s) << 12) |
            (int4Code(xr[k0 + 4]!, s) << 16) |
            (int4Code(xr[k0 + 5]!, s) << 20) |
            (int4Code(xr[k0 + 6]!, s) << 24) |
            (int4Code(xr[k0 + 7]!, s) << 28);
        }
    }
  }
}

/** INT4 from bf16 bits with BF16 scales: integer-only, codes from int4Bf16Lut (no division). */
function int4Bf16(w: Uint16Array, c: Ctx, wscales: Uint16Array): void {
  const { N, K, KT, words } = c;
  const lut = int4Bf16Lut();
  const w32 = u32View(w);
  for (let n = 0; n < N; n++) {
    const o = n * K;
    const sn = w4a4ScaleIndex(n, 0, KT); // + kt·128
    const wn = wordBase(n, 0, KT); // + kt·1024
    for (let kt = 0; kt < KT; kt++) {
      const base = o + kt * 64;
      const mb = maxAbsBits16(w32, base >>> 1, 32);
      if (mb >= 0x7f80) nonFiniteBf16(w, base, n, c);
      const amax = bitsToFloat(mb << 16);
      const sb = bf16Round(floatToBits(Math.fround(amax / 7)));
      wscales[sn + kt * 128] = sb;
      const wb = wn + kt * 1024;
      const es = sb >>> 7; // biased exponent of the (positive) scale
      if (sb === 0) {
        for (let kl = 0; kl < 4; kl++) words[wb + kl * 4] = words[wb + kl * 4 + 1] = 0;
        continue;
      }
      if (es < 4) {
        // subnormal or tiny scale: the table's implicit-bit assumption fails for subnormal x; divide instead
        const s = bitsToFloat(sb << 16);
        for (let ks = 0; ks < 2; ks++)
          for (let kl = 0; kl < 4; kl++) {
            const k0 = base + ks * 32 + kl * 8;
            let word = 0;
            for (let j = 0; j < 8; j++) word |= int4Code(bitsToFloat(w[k0 + j]! << 16), s) << (4 * j);
            words[wb + kl * 4 + ks] = word;
          }
        continue;
      }
      const tb = (sb & 127) * 2 * 8 * 128; // table block of this scale mantissa
      // (b & 0x7fff) − off = (ex − es + 2)·128 + mx = row·128 + mx; clamping to [0, 1023] maps rows < 0 to
      // entry 0 (code 0) and rows > 7 to entry 1023 (saturated), as the table's first and last rows hold.
      const off = (es - 2) << 7;
      const k32 = base >>> 1; // two bf16 values per 32-bit load (low half = even k)
      for (let ks = 0; ks < 2; ks++)
        for (let kl = 0; kl < 4; kl++) {
          const k0 = k32 + ks * 16 + kl * 4;
          let word = 0;
          for (let j = 0; j < 4; j++) {
            const v = w32[k0 + j]!;
            let a = (v & 0x7fff) - off;
            a &= ~(a >> 31); // branch-free max(a, 0)
            a = a > 1023 ? 1023 : a;
            let b = ((v >>> 16) & 0x7fff) - off;
            b &= ~(b >> 31);
            b = b > 1023 ? 1023 : b;
            // sign bits 15 / 31 select the negative half of the table (+1024)
            word |= (lut[tb + ((v >>> 5) & 1024) + a]! | (lut[tb + ((v >>> 21) & 1024) + b]! << 4)) << (8 * j);
          }
          words[wb + kl * 4 + ks] = word;
        }
    }
  }
}

/**
 * NVFP4 from bf16 bits without a global scale. Per 16-value group (eight 32-bit words, kept in locals): the amax
 * bits by a branch-free packed max, its E4M3 code from nvfp4AmaxToE4m3, then each code is one lookup
 * tab[base[e] + bits] (nvfp4Bf16Table: no clamping, no division), eight codes per 32-bit word of qweight. The
 * four micro-scales of a 64-wide tile are adjacent in packW4A4MicroScales order: one 32-bit store.
 */
function nvfp4Bf16(w: Uint16Array, c: Ctx, wscales: Uint8Array): void {
  const { N, K, KT, words } = c;
  const { tab, base } = nvfp4Bf16Table();
  const amaxE4 = nvfp4AmaxToE4m3();
  const w32 = i32View(w);
  const s32 = new Int32Array(wscales.buffer, wscales.byteOffset, wscales.length >>> 2);
  const G = K / 16;
  for (let n = 0; n < N; n++) {
    const o = (n * K) >>> 1; // two bf16 values per 32-bit word
    const wn = wordBase(n, 0, KT); // + kt·1024
    const sn = w4a4MicroScaleIndex(n, 0, G) >>> 2; // + kt·128
    for (let kt = 0; kt < KT; kt++) {
      // group g = 2·ks + h covers k = kt·64 + 16g + [0, 16); its words are wb + (2h + kk)·4 + ks, kk = 0, 1
      const t = o + kt * 32;
      const wb = wn + kt * 1024;
      const e0 = nvfp4Bf16Group(w32, t, words, wb, tab, base, amaxE4);
      const e1 = nvfp4Bf16Group(w32, t + 8, words, wb + 8, tab, base, amaxE4);
      const e2 = nvfp4Bf16Group(w32, t + 16, words, wb + 1, tab, base, amaxE4);
      const e3 = nvfp4Bf16Group(w32, t + 24, words, wb + 9, tab, base, amaxE4);
      if ((e0 | e1 | e2 | e3) < 0) nonFiniteBf16(w, n * K + kt * 64, n, c);
      s32[sn + kt * 128] = e0 | (e1 << 8) | (e2 << 16) | (e3 << 24); // little-endian: group g at byte g
    }
  }
}

/**
 * One NVFP4 group of 16 bf16 values (the pairs w32[i .. i + 7], low half = even k): writes its codes to
 * words[wo] (k 0..7) and words[wo + 4] (k 8..15) and returns its E4M3 scale code, or −1 on Inf/NaN.
 */
function nvfp4Bf16Group(
  w32: Int32Array,
  i: number,
  words: Int32Array,
  wo: number,
  tab: Uint8Array,
  base: Int32Array,
  amaxE4: Uint8Array,
): number {
  const v0 = w32[i]!;
  const v1 = w32[i + 1]!;
  const v2 = w32[i + 2]!;
  const v3 = w32[i + 3]!;
  const v4 = w32[i + 4]!;
  const v5 = w32[i + 5]!;
  const v6 = w32[i + 6]!;
  const v7 = w32[i + 7]!;
  const p = max15x2(
    max15x2(max15x2(v0 & 0x7fff7fff, v1 & 0x7fff7fff), max15x2(v2 & 0x7fff7fff, v3 & 0x7fff7fff)),
    max15x2(max15x2(v4 & 0x7fff7fff, v5 & 0x7fff7fff), max15x2(v6 & 0x7fff7fff, v7 & 0x7fff7fff)),
  );
  const mb = maxInt(p & 0xffff, p >>> 16); // bits of the largest |x|; ≥ 0x7f80: Inf or NaN
  if (mb >= 0x7f80) return -1;
  const e = amaxE4[mb]!; // = E4M3(fround(amax / 6)), saturating
  const b = base[e]!;
  words[wo] =
    tab[b + (v0 & 0xffff)]! |
    (tab[b + (v0 >>> 16)]! << 4) |
    (tab[b + (v1 & 0xffff)]! << 8) |
    (tab[b + (v1 >>> 16)]! << 12) |
    (tab[b + (v2 & 0xffff)]! << 16) |
    (tab[b + (v2 >>> 16)]! << 20) |
    (tab[b + (v3 & 0xffff)]! << 24) |
    (tab[b + (v3 >>> 16)]! << 28);
  words[wo + 4] =
    tab[b + (v4 & 0xffff)]! |
    (tab[b + (v4 >>> 16)]! << 4) |
    (tab[b + (v5 & 0xffff)]! << 8) |
    (tab[b + (v5 >>> 16)]! << 12) |
    (tab[b + (v6 & 0xffff)]! << 16) |
    (tab[b + (v6 >>> 16)]! << 20) |
    (tab[b + (v7 & 0xffff)]! << 24) |
    (tab[b + (v7 >>> 16)]! << 28);
  return e;
}

/**
 * NVFP4 from float32 without a global scale: as nvfp4Bf16, with codes from nvfp4F32Table (the top 16 bits of x
 * and whether any lower bit is set decide its code exactly) and the scale code of the float32 amax stepped up
 * from that of its bf16 truncation (nvfp4AmaxF32Thresholds).
 */
function nvfp4F32(w: Float32Array, c: Ctx, wscales: Uint8Array): void {
  const { N, K, KT, words } = c;
  const { base } = nvfp4Bf16Table();
  const tab = nvfp4F32Table();
  const amaxE4 = nvfp4AmaxToE4m3();
  const thr = nvfp4AmaxF32Thresholds();
  const x32 = new Int32Array(w.buffer, w.byteOffset, w.length);
  const s32 = new Int32Array(wscales.buffer, wscales.byteOffset, wscales.length >>> 2);
  const G = K / 16;
  for (let n = 0; n < N; n++) {
    const o = n * K;
    const wn = wordBase(n, 0, KT);
    const sn = w4a4MicroScaleIndex(n, 0, G) >>> 2;
    for (let kt = 0; kt < KT; kt++) {
      const t = o + kt * 64;
      const wb = wn + kt * 1024;
      const e0 = nvfp4F32Group(x32, t, words, wb, tab, base, amaxE4, thr);
      const e1 = nvfp4F32Group(x32, t + 16, words, wb + 8, tab, base, amaxE4, thr);
      const e2 = nvfp4F32Group(x32, t + 32, words, wb + 1, tab, base, amaxE4, thr);
      const e3 = nvfp4F32Group(x32, t + 48, words, wb + 9, tab, base, amaxE4, thr);
      if ((e0 | e1 | e2 | e3) < 0) {
        const i = firstNonFinite(w, t);
        nonFinite(w[t + i]!, n, kt * 64 + i, c);
      }
      s32[sn + kt * 128] = e0 | (e1 << 8) | (e2 << 16) | (e3 << 24);
    }
  }
}

/** One NVFP4 group of 16 float32 values (bits x32[i .. i + 15]); as nvfp4Bf16Group. */
function nvfp4F32Group(
  x32: Int32Array,
  i: number,
  words: Int32Array,
  wo: number,
  tab: Uint8Array,
  base: Int32Array,
  amaxE4: Uint8Array,
  thr: Int32Array,
): number {
  let m0 = x32[i]! & 0x7fffffff;
  let m1 = x32[i + 1]! & 0x7fffffff;
  let m2 = x32[i + 2]! & 0x7fffffff;
  let m3 = x32[i + 3]! & 0x7fffffff;
  for (let j = i + 4; j < i + 16; j += 4) {
    m0 = maxInt(m0, x32[j]! & 0x7fffffff);
    m1 = maxInt(m1, x32[j + 1]! & 0x7fffffff);
    m2 = maxInt(m2, x32[j + 2]! & 0x7fffffff);
    m3 = maxInt(m3, x32[j + 3]! & 0x7fffffff);
  }
  m0 = maxInt(m0, m2);
  m1 = maxInt(m1, m3);
  const mb = maxInt(m0, m1);
  if (mb >= 0x7f800000) return -1;
  let e = amaxE4[mb >>> 16]!; // the code of the bf16 truncation of amax: never above the code of amax
  while (mb >= thr[e + 1]!) e++; // (at most one step: a bf16 ulp is far below an E4M3 step)
  const b = 2 * base[e]!;
  words[wo] = f32Codes8(x32, i, tab, b);
  words[wo + 4] = f32Codes8(x32, i + 8, tab, b);
  return e;
}

/** Eight E2M1 codes (nibble j for x32[i + j]) from nvfp4F32Table at offset b. */
function f32Codes8(x32: Int32Array, i: number, tab: Uint8Array, b: number): number {
  return (
    tab[b + f32Key(x32[i]!)]! |
    (tab[b + f32Key(x32[i + 1]!)]! << 4) |
    (tab[b + f32Key(x32[i + 2]!)]! << 8) |
    (tab[b + f32Key(x32[i + 3]!)]! << 12) |
    (tab[b + f32Key(x32[i + 4]!)]! << 16) |
    (tab[b + f32Key(x32[i + 5]!)]! << 20) |
    (tab[b + f32Key(x32[i + 6]!)]! << 24) |
    (tab[b + f32Key(x32[i + 7]!)]! << 28)
  );
}

/**
 * Index of float32 bits v in nvfp4F32Table (before the scale offset): (v >>> 15) = 2·(top 16 bits) + bit 15;
 * OR-ing (low 15 bits ≠ 0) makes bit 0 "any of the low 16 bits set".
 */
function f32Key(v: number): number {
  return (v >>> 15) | (((v & 0x7fff) + 0x7fff) >>> 15);
}

/**
 * Lane-wise max of two words each holding two 15-bit values (bits 0..14 and 16..30): per lane,
 * 0x8000 + a − b ≥ 1 never borrows from the next lane and has bit 15 set exactly when a ≥ b.
 */
function max15x2(a: number, b: number): number {
  const ge = ((((a | 0x80008000) - b) | 0) >>> 15) & 0x10001;
  return b ^ ((a ^ b) & ((ge << 15) - ge)); // (ge << 15) − ge: 0x7fff in each lane where a ≥ b
}

/** Branch-free max of two ints whose difference fits in int32 (V8 compiles a ternary max to a branch). */
function maxInt(a: number, b: number): number {
  const d = (b - a) | 0;
  return a + (d & ~(d >> 31));
}

/**
 * NVFP4 from float32, or from bf16 with a global scale: codes by comparing bit patterns with per-scale-code
 * thresholds. |x| > t ⇔ bits(|x|) > T for T = gtBits(t); the decision points are the E2M1 midpoints × s with
 * ties to the even code: "> t" at 0.25, 1.25, 2.5, 5 and "≥ t" at 0.75, 1.75, 3.5; saturating at 7 (±6).
 * Exact: value(e) has 4 significant bits, so every t = midpoint · value(e) · global is exact in float64.
 */
function nvfp4Thresholds(w: Float32Array | Uint16Array, c: Ctx, wscales: Uint8Array, gsf: number): void {
  const { N, K, KT, words } = c;
  const bf16 = w instanceof Uint16Array;
  const sh = bf16 ? 16 : 0; // bf16 bits are the top half of float32 bits: ab16 > T >>> 16 ⇔ ab16 << 16 > T
  const wBits = bf16 ? w : new Uint32Array(w.buffer, w.byteOffset, w.length);
  const w32 = bf16 ? u32View(w) : undefined;
  const absMask = bf16 ? 0x7fff : 0x7fffffff;
  const signShift = bf16 ? 15 : 31;
  const infBits = bf16 ? 0x7f80 : 0x7f800000;
  const thr = new Int32Array(128 * 8);
  for (let e = 1; e < 127; e++) {
    const sv = e4m3BitsToF32(e) * gsf;
    const t = [gtBits(0.25 * sv), geBits(0.75 * sv), gtBits(1.25 * sv), geBits(1.75 * sv)];
    t.push(gtBits(2.5 * sv), geBits(3.5 * sv), gtBits(5 * sv));
    for (let i = 0; i < 7; i++) thr[e * 8 + i] = t[i]! >> sh;
  }
  const G = K / 16;
  for (let n = 0; n < N; n++) {
    const o = n * K;
    for (let kt = 0; kt < KT; kt++) {
      const wb = wordBase(n, kt, KT);
      for (let ks = 0; ks < 2; ks++)
        for (let h = 0; h < 2; h++) {
          const kg = kt * 64 + ks * 32 + h * 16;
          const base = o + kg;
          const mb = w32 !== undefined ? maxAbsBits16(w32, base >>> 1, 8) : maxAbsBits(wBits as Uint32Array, base, 16);
          if (mb >= infBits) {
            if (bf16) nonFiniteBf16(wBits as Uint16Array, base, n, c);
            const i = firstNonFinite(w as Float32Array, base);
            nonFinite((w as Float32Array)[base + i]!, n, kg + i, c);
          }
          const amax = bitsToFloat(mb << sh);
          const raw = Math.fround(amax / 6);
          const e4 = e4m3BitsOfValue(roundE4m3(gsf === 1 ? raw : Math.fround(raw / gsf)));
          wscales[w4a4MicroScaleIndex(n, kg >>> 4, G)] = e4;
          const tb = e4 * 8;
          const T1 = thr[tb]!;
          const T2 = thr[tb + 1]!;
          const T3 = thr[tb + 2]!;
          const T4 = thr[tb + 3]!;
          const T5 = thr[tb + 4]!;
          const T6 = thr[tb + 5]!;
          const T7 = thr[tb + 6]!;
          for (let kk = 0; kk < 2; kk++) {
            const k0 = base + kk * 8;
            let word = 0;
            if (e4 !== 0)
              for (let j = 0; j < 8; j++) {
                const b = wBits[k0 + j]!;
                const ab = b & absMask;
                // (T − ab) >>> 31 is 1 exactly when ab > T (both in [0, 2^31))
                const q =
                  ((T1 - ab) >>> 31) +
                  ((T2 - ab) >>> 31) +
                  ((T3 - ab) >>> 31) +
                  ((T4 - ab) >>> 31) +
                  ((T5 - ab) >>> 31) +
                  ((T6 - ab) >>> 31) +
                  ((T7 - ab) >>> 31);
                // sign bit only for non-zero codes (a zero result is +0, code 0)
                word |= (q | (((b >>> signShift) & 1 & (-q >>> 31)) << 3)) << (4 * j);
              }
            words[wb + (2 * h + kk) * 4 + ks] = word;
          }
        }
    }
  }
}

/** The 4-bit two's-complement nibble of round-half-even(x / s) clamped to [−8, 7]. */
function int4Code(x: number, s: number): number {
  let q = x / s + RHE - RHE;
  q = q < -8 ? -8 : q > 7 ? 7 : q;
  return q & 15;
}

/** max over len float32 bit patterns of (bits & 0x7fffffff): the bits of the largest |x| (NaN sorts above Inf). */
function maxAbsBits(xb: Uint32Array | Int32Array, o: number, len: number): number {
  let m0 = 0;
  let m1 = 0;
  for (let i = o, e = o + len; i < e; i += 2) {
    m0 = maxInt(m0, xb[i]! & 0x7fffffff);
    m1 = maxInt(m1, xb[i + 1]! & 0x7fffffff);
  }
  return maxInt(m0, m1);
}

/**
 * For a threshold t ≥ 0 (any float64): the int T with  |x| > t ⇔ bits(|x|) > T  for every float32 x.
 * T = bits of the largest float32 ≤ t.
 */
function gtBits(t: number): number {
  f1[0] = t;
  let b = u1[0]!;
  if (f1[0]! > t) b -= 1; // rounded up: step back to the float32 below t
  return b;
}
/** The same for |x| ≥ t: bits(|x|) > T with T = bits of the largest float32 < t. */
function geBits(t: number): number {
  f1[0] = t;
  let b = u1[0]!;
  if (f1[0]! >= t) b -= 1; // t itself (or the float32 above it) must count: step below
  return b;
}

/** max of (bits & 0x7fff) over the 2·len bf16 values in len 32-bit words from o. */
function maxAbsBits16(w32: Uint32Array | Int32Array, o: number, len: number): number {
  let p = 0;
  let q = 0;
  for (let i = o, e = o + len; i < e; i += 2) {
    p = max15x2(p, w32[i]! & 0x7fff7fff);
    q = max15x2(q, w32[i + 1]! & 0x7fff7fff);
  }
  p = max15x2(p, q);
  return maxInt(p & 0xffff, p >>> 16);
}

/** The bf16 data as signed 32-bit words (pairs of values, little-endian), copying if not 4-byte aligned. */
function i32View(w: Uint16Array): Int32Array {
  const a = w.byteOffset % 4 === 0 ? w : w.slice();
  return new Int32Array(a.buffer, a.byteOffset, a.length >>> 1);
}

/** The bf16 data as 32-bit words (pairs of values, little-endian), copying if not 4-byte aligned. */
function u32View(w: Uint16Array): Uint32Array {
  const a = w.byteOffset % 4 === 0 ? w : w.slice();
  return new Uint32Array(a.buffer, a.byteOffset, a.length >>> 1);
}

function firstNonFinite(x: Float32Array, base: number): number {
  let i = 0;
  while (Number.isFinite(x[base + i]!)) i++;
  return i;
}

function loadRow(
  w: Float32Array | Uint16Array,
  bf16: boolean,
  n: number,
  K: number,
  row: Float32Array,
  rowBits: Uint32Array,
): Float32Array {
  if (!bf16) return (w as Float32Array).subarray(n * K, (n + 1) * K);
  const o = n * K;
  for (let i = 0; i < K; i++) rowBits[i] = w[o + i]! << 16;
  return row;
}

function halfValue(h: number): number {
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  return e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15);
}

function nonFinite(v: number, n: number, k: number, c: Ctx): never {
  throw new QuantError("E_NONFINITE", `non-finite value ${v} at [${n}, ${k}] of shape [${c.N}, ${c.K}]`, c.name);
}

function nonFiniteBf16(w: Uint16Array, base: number, n: number, c: Ctx): never {
  let i = base;
  while ((w[i]! & 0x7f80) !== 0x7f80) i++;
  return nonFinite(bitsToFloat(w[i]! << 16), n, i - n * c.K, c);
}

function rangeError(n: number, g: number, amax: number, dt: string, name?: string): never {
  throw new QuantError("E_RANGE", `row ${n}, group ${g}: scale of absmax ${amax} overflows ${dt}`, name);
}
