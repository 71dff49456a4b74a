import { e4m3BitsOfValue, floorLog2F32, mxSharedExponent, roundE4m3, roundScale } from "@svdquant/int4";
import { bf16BitsToF32, bitsToF32, e4m3BitsToF32, f32ToBf16Bits, f32ToBits, f32ToE4m3Bits } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { mulberry32 } from "./prng.js";

const nextUp = (v: number) => bitsToF32(f32ToBits(v) + 1);
const nextDown = (v: number) => bitsToF32(f32ToBits(v) - 1);

describe("roundE4m3 (fast E4M3 rounding) equals @svdquant/tensor's encoder", () => {
  it("at every E4M3 value, every midpoint and their float32 neighbours", () => {
    const pts: number[] = [0, 1e-30, 500, 1e6, 3.4e38];
    for (let b = 0; b < 0x7f; b++) {
      const v = e4m3BitsToF32(b);
      const w = b < 0x7e ? e4m3BitsToF32(b + 1) : 480;
      const m = Math.fround((v + w) / 2);
      pts.push(v, m, nextUp(m), nextDown(m), nextUp(v));
      if (v > 0) pts.push(nextDown(v));
    }
    for (const a of pts) {
      const want = e4m3BitsToF32(f32ToE4m3Bits(a));
      expect(roundE4m3(a), `a = ${a}`).toBe(want);
      expect(e4m3BitsOfValue(want)).toBe(f32ToE4m3Bits(want));
    }
  });

  it("on 200k random float32 values over 2^-20 .. 2^10", () => {
    const r = mulberry32(3);
    for (let i = 0; i < 200_000; i++) {
      const a = Math.fround(2 ** (r() * 30 - 20) * (1 + r()));
      expect(roundE4m3(a)).toBe(e4m3BitsToF32(f32ToE4m3Bits(a)));
    }
  });
});

describe("scale helpers", () => {
  it("floorLog2F32 is exact for normals, subnormals and powers of two", () => {
    for (let e = -149; e <= 127; e++) {
      const p = 2 ** e;
      expect(floorLog2F32(p)).toBe(e);
      if (e > -149) expect(floorLog2F32(nextDown(p))).toBe(e - 1);
      if (e < 127 && e > -148) expect(floorLog2F32(Math.fround(p * 1.75))).toBe(e); // 1.75·2^-149 is not a float32
    }
  });

  it("mxSharedExponent = floor(log2 amax) − 2, clamped to E8M0's [−127, 127]", () => {
    expect(mxSharedExponent(6)).toBe(0);
    expect(mxSharedExponent(8)).toBe(1);
    expect(mxSharedExponent(7.99)).toBe(0);
    expect(mxSharedExponent(2 ** -140)).toBe(-127);
    expect(mxSharedExponent(3e38)).toBe(125);
  });

  it("roundScale rounds to bf16/f16/f32 nearest-even and overflows to Infinity", () => {
    expect(roundScale(1 / 7, "BF16")).toBe(bf16BitsToF32(f32ToBf16Bits(1 / 7)));
    expect(roundScale(1 / 7, "BF16")).toBe(0.142578125);
    expect(roundScale(1 / 7, "F16")).toBe(0.142822265625);
    expect(roundScale(1 / 7, "F32")).toBe(Math.fround(1 / 7));
    expect(roundScale(70000, "F16")).toBe(Number.POSITIVE_INFINITY);
  });
});
