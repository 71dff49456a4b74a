import {
  dequantize,
  dequantizeInt4,
  E2M1_VALUES,
  e2m1Code,
  fakeQuantize,
  fakeQuantizeInto,
  QUANT_FORMATS,
  QuantError,
  type QuantFormat,
  type QuantSpec,
  quantize,
  quantizeInt4,
  specFor,
} from "@svdquant/int4";
import { describe, expect, it } from "vitest";
import { mulberry32, randomMatrix } from "./prng.js";
import { type RefFormat, refQuantize } from "./reference.js";

const SPECS: QuantSpec[] = [
  { format: "int4", groupSize: 64 },
  { format: "int4", groupSize: 64, scaleDtype: "F16" },
  { format: "int4", groupSize: 128, scaleDtype: "F32" },
  { format: "int4", groupSize: 0 },
  { format: "uint4", groupSize: 64 },
  { format: "nvfp4", groupSize: 16 },
  { format: "nvfp4", groupSize: 16, globalScale: 0.0137 },
  { format: "fp4", groupSize: 32 },
  { format: "mxfp4", groupSize: 32 },
  { format: "int8", groupSize: 0 },
  { format: "int8", groupSize: 64, scaleDtype: "F16" },
  { format: "nf4", groupSize: 64 },
  { format: "nf4", groupSize: 64, scaleDtype: "BF16" },
];

function input(spec: QuantSpec, seed: number, rows: number, cols: number, std: number): Float32Array {
  const x = randomMatrix(seed, rows, cols, std);
  if (spec.format === "uint4") for (let i = 0; i < x.length; i++) x[i] = Math.abs(x[i]!) * (i % 7 === 0 ? 0 : 1);
  return x;
}

const label = (s: QuantSpec) =>
  `${s.format} g${s.groupSize}${s.scaleDtype ? ` ${s.scaleDtype}` : ""}${s.globalScale ? ` gs=${s.globalScale}` : ""}`;

describe.each(SPECS.map((s) => [label(s), s] as const))("%s against the float64 reference", (_l, spec) => {
  for (const [seed, rows, cols, std] of [
    [1, 8, 256, 1],
    [2, 3, 512, 0.02],
    [3, 5, 128, 40],
  ] as const) {
    it(`seed ${seed}: [${rows}, ${cols}] std ${std}: codes, scales and values match`, () => {
      const x = input(spec, seed, rows, cols, std);
      const q = quantize(x, rows, cols, spec, "w");
      // SPECS holds the formats of reference.ts (int4p2 has its own reference, p2.test.ts)
      const ref = refQuantize(
        x,
        rows,
        cols,
        spec.format as RefFormat,
        spec.groupSize,
        spec.scaleDtype,
        spec.globalScale,
      );
      expect(Array.from(q.scales)).toEqual(ref.scales);
      const codes = Array.from(q.codes);
      if (spec.format === "nf4") {
        let checked = 0;
        for (let i = 0; i < codes.length; i++)
          if (!ref.ambiguous![i]) {
            expect(codes[i]).toBe(ref.codes[i]);
            checked++;
          }
        expect(checked).toBeGreaterThan(codes.length * 0.99);
      } else expect(codes).toEqual(ref.codes);
      const dq = dequantize(q);
      const fq = fakeQuantize(x, rows, cols, spec, "w");
      expect(fq).toBeInstanceOf(Float32Array);
      expect(Array.from(fq)).toEqual(Array.from(dq));
      const fq64 = fakeQuantize(Float64Array.from(x), rows, cols, spec, "w");
      expect(fq64).toBeInstanceOf(Float64Array);
      for (let i = 0; i < x.length; i++) {
        expect(Math.fround(fq64[i]!)).toBe(dq[i]);
        if (spec.format !== "nf4" || !ref.ambiguous![i]) expect(dq[i]).toBe(Math.fround(ref.values[i]!));
      }
      // No NaN for finite input, and the code count is exactly rows × cols.
      expect(dq.every(Number.isFinite)).toBe(true);
      expect(q.codes.length).toBe(rows * cols);
    });
  }
});

describe("properties over random inputs with outliers", () => {
  it("INT formats: |x − dq| ≤ scale/2 for values in the code range", () => {
    for (const spec of SPECS.filter((s) => ["int4", "uint4", "int8"].includes(s.format))) {
      const x = input(spec, 11, 16, 256, 3);
      const q = quantize(x, 16, 256, spec);
      const dq = dequantize(q);
      const g = spec.groupSize === 0 ? 256 : spec.groupSize;
      const lo = spec.format === "int4" ? -8 : spec.format === "int8" ? -128 : 0;
      const hi = spec.format === "int4" ? 7 : spec.format === "int8" ? 127 : 15;
      let inRange = 0;
      for (let i = 0; i < x.length; i++) {
        const s = q.scales[Math.floor(i / g)]!;
        if (x[i]! / s >= lo - 0.5 && x[i]! / s <= hi + 0.5) {
          expect(Math.abs(x[i]! - dq[i]!)).toBeLessThanOrEqual(s / 2);
          inRange++;
        }
      }
      expect(inRange).toBeGreaterThan(x.length * 0.99);
    }
  });

  it("FP4 formats: the dequantized value is a nearest grid value (within half the local gap)", () => {
    for (const spec of SPECS.filter((s) => ["nvfp4", "fp4", "mxfp4"].includes(s.format))) {
      const x = input(spec, 12, 16, 256, 3);
      const q = quantize(x, 16, 256, spec);
      const dq = dequantize(q);
      for (let i = 0; i < x.length; i++) {
        const s = q.scales[Math.floor(i / spec.groupSize)]!;
        const a = Math.abs(x[i]! / s);
        const gap = a < 2 ? 0.5 : a < 4 ? 1 : 2;
        if (a <= 6) expect(Math.abs(x[i]! / s - dq[i]! / s)).toBeLessThanOrEqual(gap / 2 + 1e-6);
      }
    }
  });

  it.each(SPECS.map((s) => [label(s), s] as const))(
    "%s: representable values round-trip exactly (idempotent)",
    (_l, spec) => {
      const x = input(spec, 13, 6, 256, 1);
      const once = fakeQuantize(x, 6, 256, spec);
      const twice = fakeQuantize(once, 6, 256, spec);
      expect(Array.from(twice)).toEqual(Array.from(once));
      const q1 = quantize(x, 6, 256, spec);
      const q2 = quantize(once, 6, 256, spec);
      expect(Array.from(q2.codes)).toEqual(Array.from(q1.codes));
      expect(Array.from(q2.scales)).toEqual(Array.from(q1.scales));
    },
  );

  it.each(SPECS.map((s) => [label(s), s] as const))("%s: monotone within a group", (_l, spec) => {
    const g = spec.groupSize === 0 ? 256 : spec.groupSize;
    const x = input(spec, 14, 4, 256, 2);
    for (let base = 0; base < x.length; base += g) x.subarray(base, base + g).sort();
    const dq = fakeQuantize(x, 4, 256, spec);
    for (let base = 0; base < x.length; base += g)
      for (let i = base + 1; i < base + g; i++) expect(dq[i]!).toBeGreaterThanOrEqual(dq[i - 1]!);
  });

  it.each(QUANT_FORMATS.map((f) => [f]))("%s: an all-zero group gives scale 0 and codes 0, never NaN", (f) => {
    const spec = specFor(f as QuantFormat, f === "int8" ? { groupSize: 64 } : {});
    const g = spec.groupSize;
    const x = input(spec, 15, 2, 4 * g, 1);
    x.fill(0, g, 2 * g); // row 0, group 1
    const q = quantize(x, 2, 4 * g, spec);
    expect(q.scales[1]).toBe(0);
    expect(Array.from(q.codes.subarray(g, 2 * g)).every((c) => c === 0)).toBe(true);
    expect(q.scales[0]).toBeGreaterThan(0);
    const dq = dequantize(q);
    expect(dq.every(Number.isFinite)).toBe(true);
    expect(Array.from(dq.subarray(g, 2 * g)).every((v) => v === 0)).toBe(true);
  });

  it("e2m1Code matches the inlined rounding and its ties go to even codes", () => {
    expect([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 7, -0.75, -5, -0.1].map(e2m1Code)).toEqual([
      0, 2, 2, 4, 4, 6, 6, 7, 10, 14, 0,
    ]);
    const r = mulberry32(7);
    for (let i = 0; i < 2000; i++) {
      const q = (r() - 0.5) * 16;
      const c = e2m1Code(q);
      const best = Math.min(...Array.from(E2M1_VALUES).map((v) => Math.abs(q - v)));
      expect(Math.abs(q - E2M1_VALUES[c]!)).toBe(best);
      // The fused quantizer agrees: a group holding 6 (scale 1) and q.
      const x = new Float32Array(16);
      x[0] = 6;
      x[1] = q;
      expect(quantize(x, 1, 16, { format: "nvfp4", groupSize: 16 }).codes[1]).toBe(e2m1Code(Math.fround(q)));
    }
  });
});

describe("errors", () => {
  it("NaN and Inf are rejected with the tensor name and position", () => {
    const x = randomMatrix(20, 4, 128);
    x[2 * 128 + 77] = Number.NaN;
    expect(() => quantize(x, 4, 128, specFor("int4"), "blocks.0.attn.to_q.weight")).toThrowError(
      /tensor "blocks\.0\.attn\.to_q\.weight": non-finite value NaN at \[2, 77\]/,
    );
    x[2 * 128 + 77] = Number.NEGATIVE_INFINITY;
    for (const f of QUANT_FORMATS) {
      const spec = specFor(f, f === "int8" ? {} : {});
      try {
        fakeQuantize(x, 4, 128, spec, "act");
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(QuantError);
        expect((e as QuantError).code).toBe("E_NONFINITE");
        expect((e as QuantError).tensor).toBe("act");
      }
    }
  });

  it("cols not a multiple of the group, wrong buffer length, bad specs", () => {
    const x = randomMatrix(21, 2, 96);
    expect(() => quantize(x, 2, 96, specFor("int4"), "w")).toThrowError(
      /cols 96 is not a multiple of the group size 64/,
    );
    expect(() => quantize(x, 3, 96, { format: "int4", groupSize: 32 }, "w")).toThrowError(/buffer holds 192 values/);
    expect(() => quantize(x, 2, 96, { format: "nvfp4", groupSize: 32 })).toThrowError(/groups of 16/);
    expect(() => quantize(x, 2, 96, { format: "mxfp4", groupSize: 16 })).toThrowError(/groups of 32/);
    expect(() => quantize(x, 2, 96, { format: "fp4", groupSize: 0 })).toThrowError(/per-row/);
    expect(() => quantize(x, 2, 96, { format: "int5" as QuantFormat, groupSize: 32 })).toThrowError(/unknown/);
    expect(() => quantize(x, 2, 96, { format: "int4", groupSize: 32, globalScale: 2 })).toThrowError(/nvfp4 only/);
    expect(() => quantize(x, 2, 96, { format: "nvfp4", groupSize: 16, globalScale: -1 })).toThrowError(/positive/);
    expect(() => fakeQuantizeInto(x, 2, 96, { format: "int4", groupSize: 32 }, new Float32Array(3))).toThrowError(
      /output holds 3/,
    );
  });

  it("a scale beyond F16 is a range error, not Inf", () => {
    const x = randomMatrix(22, 1, 64);
    x[5] = 1e6; // 1e6 / 7 > 65504
    expect(() => quantize(x, 1, 64, { format: "int4", groupSize: 64, scaleDtype: "F16" }, "big")).toThrowError(
      /tensor "big".*overflows F16/,
    );
    expect(quantize(x, 1, 64, { format: "int4", groupSize: 64 }).scales[0]).toBeGreaterThan(1e5);
  });

  it("dequantize rejects codes outside the format", () => {
    const q = quantizeInt4(randomMatrix(23, 1, 64), 1, 64);
    q.codes[3] = 9;
    expect(() => dequantizeInt4(q)).toThrowError(/int4 code 9 at flat index 3/);
  });
});

describe("worked examples (hand-computed)", () => {
  it("INT4: absmax 7 → scale 1; 2.5 → 2, 3.5 → 4, −8.4 clamps to −8 when the bf16 scale rounds down", () => {
    const x = new Float32Array(64);
    x.set([7, 2.5, 3.5, -0.5, 1.5, -6.5]);
    const q = quantizeInt4(x, 1, 64);
    expect(q.scales[0]).toBe(1);
    expect(Array.from(q.codes.subarray(0, 6))).toEqual([7, 2, 4, 0, 2, -6]);
  });

  it("INT4: the scale is rounded to bf16 before the codes (absmax 1 → 1/7 → 0.142578125)", () => {
    const x = new Float32Array(64);
    x[0] = 1;
    x[1] = -1;
    x[2] = 0.5;
    const q = quantizeInt4(x, 1, 64);
    expect(q.scales[0]).toBe(0.142578125); // bf16(1/7) = 0x3e12
    // 1 / 0.142578125 = 7.0137 → 7; 0.5 / s = 3.5068 → 4 (not a tie thanks to the bf16 scale)
    expect(Array.from(q.codes.subarray(0, 3))).toEqual([7, -7, 4]);
  });

  it("NVFP4: amax 12 → E4M3 scale 2; 5 → 2·(2.5→2) = 4, 9 → 2·(4.5→4) = 8, 11 → 12", () => {
    const x = new Float32Array(16);
    x.set([12, 5, 9, 11, -1, 0.5]);
    const q = quantize(x, 1, 16, { format: "nvfp4", groupSize: 16 });
    expect(q.scales[0]).toBe(2);
    expect(Array.from(dequantize(q).subarray(0, 6))).toEqual([12, 4, 8, 12, -1, 0]);
  });

  it("MXFP4: amax 10 → 2^(3−2) = 2; 10/2 = 5 → 4 (tie to even), 11/2 = 5.5 → 6", () => {
    const x = new Float32Array(32);
    x.set([10, 11, 0.75]);
    const q = quantize(x, 1, 32, { format: "mxfp4", groupSize: 32 });
    expect(q.scales[0]).toBe(2);
    expect(Array.from(dequantize(q).subarray(0, 3))).toEqual([8, 12, 1]);
  });
});
