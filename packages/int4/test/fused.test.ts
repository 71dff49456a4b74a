import {
  packW4A4MicroScales,
  packW4A4Scales,
  packW4A4Weight,
  QuantError,
  quantize,
  quantizePackW4A4,
} from "@svdquant/int4";
import { encodeFloats, f32ToE4m3Bits, f32ToF16Bits } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { randomMatrix } from "./prng.js";

const bytes = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe("quantizePackW4A4 equals quantize → pack, byte for byte", () => {
  for (const [seed, N, K, std] of [
    [1, 128, 128, 1],
    [2, 256, 384, 0.01],
    [3, 128, 256, 50],
  ] as const) {
    it(`int4 [${N}, ${K}] from bf16 bits and from float32, BF16 and F16 scales`, () => {
      const x = randomMatrix(seed, N, K, std);
      x.fill(0, 5 * K + 64, 5 * K + 128); // an all-zero group
      const bits = encodeFloats("BF16", x) as Uint16Array;
      const xb = new Float32Array(new Uint32Array(Array.from(bits, (b) => b << 16)).buffer);
      for (const dt of ["BF16", "F16"] as const) {
        for (const [input, ref] of [
          [bits, xb],
          [x, x],
        ] as const) {
          const q = quantize(ref, N, K, { format: "int4", groupSize: 64, scaleDtype: dt });
          const p = quantizePackW4A4(input, N, K, { format: "int4", scaleDtype: dt });
          expect(bytes(p.qweight).equals(bytes(packW4A4Weight(q.codes, N, K)))).toBe(true);
          const sb =
            dt === "BF16" ? (encodeFloats("BF16", q.scales) as Uint16Array) : Uint16Array.from(q.scales, f32ToF16Bits);
          expect(Array.from(p.wscales)).toEqual(Array.from(packW4A4Scales(sb, N, K / 64)));
        }
      }
    });

    it(`nvfp4 [${N}, ${K}] from float32 and bf16 bits, with and without a global scale`, () => {
      const x = randomMatrix(seed + 10, N, K, std);
      // exact ties: values at E2M1 midpoints of a group whose scale is 1 (amax 6)
      x.set([6, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, -5, -0.25, -0.75, 2, 0, 0, 0, 0], 0);
      x.set([448 * 6, 3, -1e-3, 1e5], 16); // saturating scale
      x.fill(0, 32, 48); // all-zero group
      for (let i = 48; i < 64; i++) x[i] = (i - 55) * 1e-5; // tiny: subnormal E4M3 scale
      const bits = encodeFloats("BF16", x) as Uint16Array;
      const xb = new Float32Array(new Uint32Array(Array.from(bits, (b) => b << 16)).buffer);
      for (const gs of [undefined, 0.015625 * 3]) {
        const spec =
          gs === undefined
            ? { format: "nvfp4" as const, groupSize: 16 }
            : { format: "nvfp4" as const, groupSize: 16, globalScale: gs };
        for (const [input, ref] of [
          [bits, xb],
          [x, x],
        ] as const) {
          const q = quantize(ref, N, K, spec);
          const p = quantizePackW4A4(
            input,
            N,
            K,
            gs === undefined ? { format: "nvfp4" } : { format: "nvfp4", globalScale: gs },
          );
          expect(bytes(p.qweight).equals(bytes(packW4A4Weight(q.codes, N, K)))).toBe(true);
          const e4 = Uint8Array.from(q.scales, (s) => f32ToE4m3Bits(Math.fround(s / (gs ?? 1))));
          expect(Array.from(p.wscales)).toEqual(Array.from(packW4A4MicroScales(e4, N, K / 16)));
        }
      }
    });
  }

  it("int4 from bf16: ties, tiny (subnormal-scale) groups and every exponent offset agree with quantize", () => {
    const N = 128;
    const K = 128;
    const x = randomMatrix(40, N, K, 1);
    x.set([7, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, -0.5, -1.5, -2.5, -7, 0, 0], 0); // scale 1: exact ties
    for (let i = 64; i < 128; i++) x[i] = (i - 90) * 1e-38; // subnormal bf16 values, scale exponent < 4
    for (let i = 128; i < 192; i++) x[i] = 2 ** ((i % 40) - 30) * (i % 3 === 0 ? -1 : 1); // wide exponent spread
    const bits = encodeFloats("BF16", x) as Uint16Array;
    const xb = new Float32Array(new Uint32Array(Array.from(bits, (b) => b << 16)).buffer);
    const q = quantize(xb, N, K, { format: "int4", groupSize: 64 });
    const p = quantizePackW4A4(bits, N, K, { format: "int4" });
    expect(Array.from(q.codes.subarray(0, 14))).toEqual([7, 0, 2, 2, 4, 4, 6, 6, 0, -2, -2, -7, 0, 0]);
    expect(bytes(p.qweight).equals(bytes(packW4A4Weight(q.codes, N, K)))).toBe(true);
    expect(Array.from(p.wscales)).toEqual(
      Array.from(packW4A4Scales(encodeFloats("BF16", q.scales) as Uint16Array, N, K / 64)),
    );
  });

  it("accepts bf16 data at an odd byte offset (copied to an aligned buffer)", () => {
    const x = randomMatrix(41, 128, 128, 1);
    const bits = encodeFloats("BF16", x) as Uint16Array;
    const shifted = new Uint16Array(bits.length + 1);
    shifted.set(bits, 1);
    const view = shifted.subarray(1);
    for (const format of ["int4", "nvfp4"] as const) {
      const a = quantizePackW4A4(bits, 128, 128, { format });
      const b = quantizePackW4A4(view, 128, 128, { format });
      expect(bytes(b.qweight).equals(bytes(a.qweight))).toBe(true);
      expect(Array.from(b.wscales)).toEqual(Array.from(a.wscales));
    }
  });

  it("errors name the tensor", () => {
    const x = randomMatrix(4, 128, 128);
    x[300] = Number.POSITIVE_INFINITY;
    expect(() => quantizePackW4A4(x, 128, 128, { format: "int4", name: "w" })).toThrowError(
      /tensor "w": non-finite value Infinity at \[2, 44\]/,
    );
    expect(() => quantizePackW4A4(x, 128, 128, { format: "nvfp4", name: "w" })).toThrowError(QuantError);
    expect(() => quantizePackW4A4(new Float32Array(100 * 128), 100, 128, { format: "int4" })).toThrowError(/padded/);
    const bits = encodeFloats("BF16", x) as Uint16Array; // the Inf at [2, 44], now as bf16 bits
    for (const format of ["int4", "nvfp4"] as const)
      expect(() => quantizePackW4A4(bits, 128, 128, { format, name: "w16" })).toThrowError(
        /tensor "w16": non-finite value Infinity at \[2, 44\]/,
      );
    bits[5] = 0x7fc0; // NaN
    expect(() => quantizePackW4A4(bits, 128, 128, { format: "nvfp4", globalScale: 0.5, name: "w16" })).toThrowError(
      /non-finite value NaN at \[0, 5\]/,
    );
  });
});
