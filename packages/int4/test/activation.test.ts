import { calibrateStaticScale, dequantize, quantize, quantizeActivations, quantizeStatic } from "@svdquant/int4";
import { bf16BitsToF32, f32ToBf16Bits } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { randomMatrix } from "./prng.js";
import { refQuantize } from "./reference.js";

describe("activation quantization", () => {
  it("dynamic per-token, per-group: each token row gets its own scales (int4 g64, nvfp4 g16)", () => {
    const M = 7;
    const K = 256;
    const x = randomMatrix(51, M, K, 2);
    for (let i = 0; i < K; i++) x[3 * K + i] *= 100; // one loud token must not affect the others
    for (const spec of [
      { format: "int4" as const, groupSize: 64 },
      { format: "nvfp4" as const, groupSize: 16 },
    ]) {
      const q = quantizeActivations(x, M, K, spec, "x");
      const ref = refQuantize(x, M, K, spec.format, spec.groupSize);
      expect(Array.from(q.codes)).toEqual(ref.codes);
      expect(Array.from(q.scales)).toEqual(ref.scales);
      const quiet = quantize(x.subarray(0, 3 * K), 3, K, spec);
      expect(Array.from(q.scales.subarray(0, quiet.scales.length))).toEqual(Array.from(quiet.scales));
    }
  });

  it("static per-tensor: one calibrated scale, saturating beyond the calibration range", () => {
    const calib = randomMatrix(52, 16, 64, 1, 0);
    const spec = { format: "int4" as const, groupSize: 0 };
    const s = calibrateStaticScale(calib, spec, "calib");
    let amax = 0;
    for (const v of calib) amax = Math.max(amax, Math.abs(v));
    expect(s).toBe(bf16BitsToF32(f32ToBf16Bits(Math.fround(amax / 7))));
    const x = randomMatrix(53, 4, 64, 2); // a louder batch (with outliers): some values clip
    const q = quantizeStatic(x, 4, 64, spec, s, "x");
    expect(q.spec.groupSize).toBe(0);
    expect(Array.from(q.scales)).toEqual([s, s, s, s]);
    let clipped = 0;
    for (let i = 0; i < x.length; i++) {
      const r = x[i]! / s;
      const want = Math.max(
        -8,
        Math.min(7, Math.abs(r - Math.trunc(r)) === 0.5 ? 2 * Math.round(r / 2) : Math.round(r)),
      );
      expect(q.codes[i]).toBe(want + 0); // + 0 turns −0 into 0
      if (r > 7.5 || r < -8.5) clipped++;
    }
    expect(clipped).toBeGreaterThan(0);
    const dq = dequantize(q);
    for (let i = 0; i < x.length; i++) expect(dq[i]).toBe(q.codes[i]! * s);
  });

  it("static uint4 and int8, and errors", () => {
    const x = randomMatrix(54, 4, 32, 1).map(Math.abs);
    const s = calibrateStaticScale(x, { format: "uint4", groupSize: 0 });
    expect(quantizeStatic(x, 4, 32, { format: "uint4", groupSize: 0 }, s).codes.every((c) => c >= 0 && c <= 15)).toBe(
      true,
    );
    const s8 = calibrateStaticScale(x, { format: "int8", groupSize: 0 });
    expect(Math.max(...quantizeStatic(x, 4, 32, { format: "int8", groupSize: 0 }, s8).codes)).toBe(127);
    expect(() => calibrateStaticScale(x, { format: "nvfp4", groupSize: 16 }, "a")).toThrowError(/int4, uint4 and int8/);
    const bad = x.slice();
    bad[9] = Number.NaN;
    expect(() => quantizeStatic(bad, 4, 32, { format: "int8", groupSize: 0 }, s8, "act")).toThrowError(
      /tensor "act": non-finite value NaN at \[0, 9\]/,
    );
    expect(() => quantizeStatic(x, 4, 32, { format: "int8", groupSize: 0 }, -1)).toThrowError(/finite float32/);
  });
});
