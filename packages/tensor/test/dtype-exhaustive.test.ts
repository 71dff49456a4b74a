// Every bit pattern of f16, bf16, e4m3fn and e5m2 against an independent derivation:
// decoding by the formula (-1)^s · 2^(e-bias) · (1.m) (or 0.m · 2^(1-bias) for e = 0), and encoding by
// brute force: the nearest value of the sorted value table, ties to the even bit pattern.
import {
  bf16BitsToF32,
  decodeToFloat32,
  decodeToFloat64,
  E4M3_MAX,
  E5M2_MAX,
  e4m3BitsToF32,
  e5m2BitsToF32,
  encodeFloats,
  type Fp8Overflow,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToE4m3Bits,
  f32ToE5m2Bits,
  f32ToF16Bits,
  TensorError,
} from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { rng } from "./helpers.js";

interface Format {
  name: string;
  expBits: number;
  mantBits: number;
  bias: number;
  /** IEEE-style specials (all-ones exponent = Inf/NaN) vs "fn" (only S.1111.111 is NaN, no Inf). */
  ieee: boolean;
  encode: (x: number, overflow?: Fp8Overflow) => number;
  decode: (bits: number) => number;
  /** Overflow behaviours the encoder accepts; 16-bit formats have only IEEE overflow to Inf. */
  modes: (Fp8Overflow | undefined)[];
  /** What the encoder does without an explicit mode. */
  defaultMode: Fp8Overflow;
}

const FORMATS: Format[] = [
  {
    name: "f16",
    expBits: 5,
    mantBits: 10,
    bias: 15,
    ieee: true,
    encode: (x) => f32ToF16Bits(x),
    decode: f16BitsToF32,
    modes: [undefined],
    defaultMode: "nan-or-inf",
  },
  {
    name: "bf16",
    expBits: 8,
    mantBits: 7,
    bias: 127,
    ieee: true,
    encode: (x) => f32ToBf16Bits(x),
    decode: bf16BitsToF32,
    modes: [undefined],
    defaultMode: "nan-or-inf",
  },
  {
    name: "e4m3fn",
    expBits: 4,
    mantBits: 3,
    bias: 7,
    ieee: false,
    encode: f32ToE4m3Bits,
    decode: e4m3BitsToF32,
    modes: [undefined, "saturate", "nan-or-inf"],
    defaultMode: "saturate",
  },
  {
    name: "e5m2",
    expBits: 5,
    mantBits: 2,
    bias: 15,
    ieee: true,
    encode: f32ToE5m2Bits,
    decode: e5m2BitsToF32,
    modes: [undefined, "saturate", "nan-or-inf"],
    defaultMode: "nan-or-inf",
  },
];

const width = (f: Format) => 1 + f.expBits + f.mantBits;

/** Independent decoder: the formula of the format definition, in float64. */
function refDecode(f: Format, bits: number): number {
  const s = (bits >>> (f.expBits + f.mantBits)) & 1;
  const e = (bits >>> f.mantBits) & ((1 << f.expBits) - 1);
  const m = bits & ((1 << f.mantBits) - 1);
  const eMax = (1 << f.expBits) - 1;
  const sign = s ? -1 : 1;
  if (f.ieee && e === eMax) return m === 0 ? sign * Infinity : NaN;
  if (!f.ieee && e === eMax && m === (1 << f.mantBits) - 1) return NaN;
  if (e === 0) return sign * 2 ** (1 - f.bias) * (m / 2 ** f.mantBits);
  return sign * 2 ** (e - f.bias) * (1 + m / 2 ** f.mantBits);
}

interface Table {
  /** Non-negative finite values in increasing order, then one "overflow" value past the largest. */
  values: number[];
  bits: number[];
  maxBits: number;
  /** Bits a non-saturating overflow produces (Inf for IEEE formats, NaN for e4m3fn). */
  overflowBits: number;
}

function buildTable(f: Format): Table {
  const signBit = 1 << (width(f) - 1);
  const pos: { v: number; b: number }[] = [];
  for (let b = 0; b < signBit; b++) {
    const v = refDecode(f, b);
    if (Number.isFinite(v)) pos.push({ v, b });
  }
  pos.sort((x, y) => x.v - y.v);
  const max = pos[pos.length - 1]!;
  // The next value of an unbounded exponent range: 2^(emax+1) for IEEE formats (bits of Inf: even), and for
  // e4m3fn the value of S.1111.111, 480 (odd bits), which is where it would be if it were not NaN.
  const eMax = (1 << f.expBits) - 1;
  const overflowBits = f.ieee ? eMax << f.mantBits : (eMax << f.mantBits) | ((1 << f.mantBits) - 1);
  const overflowValue = f.ieee
    ? 2 ** (eMax - f.bias)
    : 2 ** (eMax - f.bias) * (1 + ((1 << f.mantBits) - 1) / 2 ** f.mantBits);
  return {
    values: [...pos.map((p) => p.v), overflowValue],
    bits: [...pos.map((p) => p.b), overflowBits],
    maxBits: max.b,
    overflowBits,
  };
}

/** Brute-force reference encoder: nearest table value, ties to even bits; overflow per `mode`. */
function refEncode(f: Format, t: Table, x: number, mode: Fp8Overflow): number {
  const signBit = 1 << (width(f) - 1);
  if (Number.isNaN(x)) return -1; // any NaN pattern; checked separately
  const sign = x < 0 || Object.is(x, -0) ? signBit : 0;
  const a = Math.abs(x);
  const last = t.values.length - 1;
  let pick: number;
  if (a >= t.values[last]!) pick = last;
  else {
    let lo = 0;
    let hi = last;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (t.values[mid]! <= a) lo = mid;
      else hi = mid;
    }
    const dLo = a - t.values[lo]!;
    const dHi = t.values[hi]! - a;
    pick = dLo < dHi ? lo : dHi < dLo ? hi : (t.bits[lo]! & 1) === 0 ? lo : hi;
  }
  if (pick === last) return sign | (mode === "saturate" ? t.maxBits : t.overflowBits);
  return sign | t.bits[pick]!;
}

function isNaNBits(f: Format, bits: number): boolean {
  return Number.isNaN(refDecode(f, bits));
}

const nextUp32 = (x: number): number => {
  const b = new Float32Array([x]);
  const u = new Uint32Array(b.buffer);
  u[0] = x >= 0 ? u[0]! + 1 : u[0]! - 1;
  return b[0]!;
};
const nextDown32 = (x: number): number => -nextUp32(-x);

for (const f of FORMATS) {
  const n = 2 ** width(f);
  const table = buildTable(f);

  describe(`${f.name}: all ${n} bit patterns`, () => {
    it("decode matches (-1)^s · 2^(e-bias) · (1.m)", () => {
      let checked = 0;
      for (let b = 0; b < n; b++) {
        const want = refDecode(f, b);
        const got = f.decode(b);
        if (Number.isNaN(want)) expect(Number.isNaN(got), `bits 0x${b.toString(16)}`).toBe(true);
        else if (!Object.is(got, want)) expect(got, `bits 0x${b.toString(16)}`).toBe(want);
        checked++;
      }
      expect(checked).toBe(n);
    });

    it("encode(decode(b)) == b for every non-NaN pattern, and NaN stays NaN", () => {
      for (const mode of f.modes) {
        for (let b = 0; b < n; b++) {
          const v = refDecode(f, b);
          const got = f.encode(v, mode);
          if (Number.isNaN(v)) {
            if (!isNaNBits(f, got)) expect.fail(`NaN 0x${b.toString(16)} encoded to 0x${got.toString(16)}`);
          } else if (Number.isFinite(v) || (mode ?? f.defaultMode) !== "saturate") {
            if (got !== b) expect(got, `value ${v} (0x${b.toString(16)}) mode ${mode}`).toBe(b);
          } else {
            // ±Inf under saturation: the largest finite value of that sign.
            expect(got).toBe((b & (1 << (width(f) - 1))) | table.maxBits);
          }
        }
      }
    });

    it("midpoints between neighbours round to the even pattern, and one float32 ulp off them rounds away", () => {
      const { values } = table;
      for (const mode of f.modes) {
        const m = mode ?? f.defaultMode;
        for (let i = 0; i + 1 < values.length; i++) {
          const mid = (values[i]! + values[i + 1]!) / 2; // exact in float32: at most 12 significant bits
          expect(Math.fround(mid)).toBe(mid);
          for (const x of [mid, nextUp32(mid), nextDown32(mid)]) {
            for (const s of [x, -x]) {
              const want = refEncode(f, table, s, m);
              const got = f.encode(s, mode);
              if (got !== want) expect(got, `${f.name}(${s}) mode ${m}`).toBe(want);
            }
          }
        }
      }
    });
  });

  describe(`${f.name}: random values`, () => {
    it("random float32 bit patterns (all exponents, subnormals, NaN, Inf) match the brute-force encoder", () => {
      const r = rng(0x5eed0000 + width(f));
      const f32 = new Float32Array(1);
      const u32 = new Uint32Array(f32.buffer);
      let nanSeen = 0;
      for (let i = 0; i < 100_000; i++) {
        // Half the draws over all float32 bits, half concentrated on the format's own exponent range.
        if (i % 2 === 0) u32[0] = r.u32();
        else {
          const e = f.bias + 127 - (1 << (f.expBits - 1)) - f.mantBits - 2 + r.int((1 << f.expBits) + f.mantBits + 4);
          u32[0] = ((r.u32() & 0x80000000) | (Math.max(0, Math.min(255, e)) << 23) | (r.u32() & 0x7fffff)) >>> 0;
        }
        const x = f32[0]!;
        for (const mode of f.modes) {
          const got = f.encode(x, mode);
          if (Number.isNaN(x)) {
            nanSeen++;
            if (!isNaNBits(f, got)) expect.fail(`NaN encoded to 0x${got.toString(16)}`);
            continue;
          }
          const want = refEncode(f, table, x, mode ?? f.defaultMode);
          if (got !== want) expect(got, `${f.name}(${x}) mode ${mode}`).toBe(want);
        }
      }
      expect(nanSeen).toBeGreaterThan(0);
    });

    it("float64 inputs round once (no double rounding through float32)", () => {
      const r = rng(0xd0b1e + width(f));
      const { values } = table;
      let trapped = 0;
      for (let i = 0; i < 20_000; i++) {
        const k = r.int(values.length - 1);
        const mid = (values[k]! + values[k + 1]!) / 2;
        // Just above/below an exact midpoint by less than half a float32 ulp: float32 rounding alone would
        // land on the midpoint and then tie to even; the correct result is the nearer neighbour.
        const delta = mid === 0 ? 2 ** -160 : mid * 2 ** -(30 + r.int(15));
        const x = (r.u32() & 1 ? 1 : -1) * (r.u32() & 2 ? mid + delta : mid - delta);
        if (Math.fround(x) === (x < 0 ? -mid : mid)) trapped++;
        for (const mode of f.modes) {
          const want = refEncode(f, table, x, mode ?? f.defaultMode);
          const got = f.encode(x, mode);
          if (got !== want) expect(got, `${f.name}(${x}) mode ${mode}`).toBe(want);
        }
      }
      expect(trapped).toBeGreaterThan(10_000); // most inputs really are double-rounding traps
    });
  });
}

describe("spec anchors", () => {
  it("known bit patterns (IEEE 754 binary16, bfloat16, OCP OFP8 table 1)", () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // the tie above 65504 goes to Inf (even)
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001);
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie between 0 and the smallest subnormal: even = 0
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(f32ToBf16Bits(Math.PI)).toBe(0x4049);
    expect(f32ToE4m3Bits(448)).toBe(0x7e);
    expect(E4M3_MAX).toBe(448);
    expect(f32ToE4m3Bits(464)).toBe(0x7e); // tie between 448 and (NaN) 480 goes to 448 (even)
    expect(f32ToE4m3Bits(465, "nan-or-inf")).toBe(0x7f);
    expect(f32ToE4m3Bits(465)).toBe(0x7e); // default saturates
    expect(f32ToE4m3Bits(-1e9)).toBe(0xfe);
    expect(f32ToE4m3Bits(Infinity)).toBe(0x7e);
    expect(f32ToE4m3Bits(Infinity, "nan-or-inf")).toBe(0x7f);
    expect(f32ToE4m3Bits(2 ** -9)).toBe(0x01);
    expect(e4m3BitsToF32(0x7f)).toBeNaN();
    expect(e4m3BitsToF32(0xff)).toBeNaN();
    expect(f32ToE5m2Bits(57344)).toBe(0x7b);
    expect(E5M2_MAX).toBe(57344);
    expect(f32ToE5m2Bits(61440)).toBe(0x7c); // tie goes to Inf (even)
    expect(f32ToE5m2Bits(61440, "saturate")).toBe(0x7b);
    expect(f32ToE5m2Bits(-Infinity)).toBe(0xfc);
    expect(f32ToE5m2Bits(2 ** -16)).toBe(0x01);
  });
});

describe("encodeFloats / decode for every dtype", () => {
  it("float dtypes agree with the bit-level encoders and decode back", () => {
    const r = rng(42);
    const xs = Float32Array.from({ length: 1000 }, () => r.normal() * 10);
    const f16 = encodeFloats("F16", xs) as Uint16Array;
    const bf16 = encodeFloats("BF16", xs) as Uint16Array;
    const e4 = encodeFloats("F8_E4M3", xs) as Uint8Array;
    const e5 = encodeFloats("F8_E5M2", xs) as Uint8Array;
    const e4nan = encodeFloats("F8_E4M3", [1000], { fp8Overflow: "nan-or-inf" }) as Uint8Array;
    expect(e4nan[0]).toBe(0x7f);
    const dec16 = decodeToFloat32("F16", f16);
    for (let i = 0; i < xs.length; i++) {
      expect(f16[i]).toBe(f32ToF16Bits(xs[i]!));
      expect(bf16[i]).toBe(f32ToBf16Bits(xs[i]!));
      expect(e4[i]).toBe(f32ToE4m3Bits(xs[i]!));
      expect(e5[i]).toBe(f32ToE5m2Bits(xs[i]!));
      expect(dec16[i]).toBe(f16BitsToF32(f16[i]!));
      // f16 keeps 11 significant bits: relative error at most 2^-11 for normal values
      if (Math.abs(xs[i]!) > 2 ** -14)
        expect(Math.abs(dec16[i]! - xs[i]!)).toBeLessThanOrEqual(Math.abs(xs[i]!) * 2 ** -11);
    }
    const f32 = encodeFloats("F32", [0.1]) as Float32Array;
    expect(f32[0]).toBe(Math.fround(0.1));
    const f64 = encodeFloats("F64", [0.1]) as Float64Array;
    expect(decodeToFloat64("F64", f64)[0]).toBe(0.1);
  });

  it("integer dtypes round half to even and store exactly", () => {
    expect([...(encodeFloats("I32", [2.5, 3.5, -2.5, -3.5, 7.4, -7.6]) as Int32Array)]).toEqual([2, 4, -2, -4, 7, -8]);
    expect([...(encodeFloats("I8", [-128, 127, -128.5]) as Int8Array)]).toEqual([-128, 127, -128]);
    expect([...(encodeFloats("U8", [0, 255, -0.5, 254.5]) as Uint8Array)]).toEqual([0, 255, 0, 254]);
    expect([...(encodeFloats("I16", [-32768, 32767]) as Int16Array)]).toEqual([-32768, 32767]);
    const i64 = encodeFloats("I64", [-(2 ** 63), 2 ** 53 + 2, -5]) as BigInt64Array;
    expect([...i64]).toEqual([-(2n ** 63n), 2n ** 53n + 2n, -5n]);
    expect([...decodeToFloat64("I64", i64)]).toEqual([-(2 ** 63), 2 ** 53 + 2, -5]);
    expect([...(encodeFloats("BOOL", [0, -0, 1, -3, 0.5]) as Uint8Array)]).toEqual([0, 0, 1, 1, 1]);
  });

  it.each([
    ["I8", 128],
    ["I8", 127.5], // rounds to 128 (even)
    ["I8", -129],
    ["U8", -1],
    ["U8", 256],
    ["U8", -0.6],
    ["I16", 32768],
    ["I32", 2 ** 31],
    ["I32", -(2 ** 31) - 1],
    ["I64", 2 ** 63], // 2^63 - 1 is not a float64; 2^63 must not wrap to -2^63
    ["I64", -(2 ** 64)],
    ["I32", Number.NaN],
    ["I64", Number.POSITIVE_INFINITY],
    ["U8", Number.NEGATIVE_INFINITY],
  ] as const)("%s rejects %d with E_ARGUMENT naming the value and index", (dtype, v) => {
    let err: unknown;
    try {
      encodeFloats(dtype, [1, v]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TensorError);
    expect((err as TensorError).code).toBe("E_ARGUMENT");
    expect((err as TensorError).message).toContain("index 1");
    expect((err as TensorError).message).toContain(dtype);
  });
});
