// int4p2 (p2.ts) against an independent float64 reference written from the format's definition, the FP8 operand
// against @svdquant/tensor's E4M3 decoder, and the FP8-GEMM identity the format exists for.
import { e4m3BitsToF32 } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import {
  ceilLog2,
  dequantize,
  e4m3BitsOfValue,
  fakeQuantize,
  P2_EXP_MAX,
  P2_EXP_MIN,
  p2OperandE4m3,
  p2Parts,
  packW4A4Layer,
  QuantError,
  type QuantSpec,
  quantize,
  roundE4m3,
  specFor,
} from "../src/index.js";
import { mulberry32, randomMatrix } from "./prng.js";

/** ⌈log2 t⌉ by search on exact powers of two (independent of the bit-level helper). */
function ceilLog2Ref(t: number): number {
  let k = Math.floor(Math.log2(t));
  while (2 ** k < t) k++;
  while (2 ** (k - 1) >= t) k--;
  return k;
}

const rint = (v: number): number => {
  const f = Math.floor(v);
  const d = v - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
};
const clamp = (q: number): number => Math.max(-8, Math.min(7, q));

/** The format's definition, one row at a time (float64; S and the "pow2" group statistic in float32). */
function refRow(v: Float32Array, g: number, mode: "max" | "pow2", search: boolean) {
  const groups = v.length / g;
  const t: number[] = [];
  for (let j = 0; j < groups; j++) {
    let a = 0;
    for (let i = 0; i < g; i++) a = Math.max(a, Math.abs(v[j * g + i]!));
    t.push(mode === "max" ? a / 7 : Math.fround(a / 7));
  }
  const tmax = Math.max(...t);
  const S = tmax === 0 ? 0 : mode === "max" ? Math.fround(tmax / 32) : 2 ** (ceilLog2Ref(tmax) - 5);
  const codes: number[] = [];
  const scales: number[] = [];
  const exps: number[] = [];
  for (let j = 0; j < groups; j++) {
    if (t[j] === 0) {
      for (let i = 0; i < g; i++) codes.push(0);
      scales.push(0);
      exps.push(-9);
      continue;
    }
    let e = Math.max(-9, Math.min(5, ceilLog2Ref(t[j]! / S)));
    const err = (ee: number) => {
      let s = 0;
      for (let i = 0; i < g; i++) {
        const x = v[j * g + i]!;
        s += (x - clamp(rint(x / (S * 2 ** ee))) * S * 2 ** ee) ** 2;
      }
      return s;
    };
    if (search && e > -9 && err(e - 1) < err(e)) e -= 1;
    for (let i = 0; i < g; i++) codes.push(clamp(rint(v[j * g + i]! / (S * 2 ** e))));
    scales.push(S * 2 ** e);
    exps.push(e);
  }
  return { S, codes, scales, exps };
}

const relErr = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let n = 0;
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    n += (a[i]! - b[i]!) ** 2;
    d += b[i]! ** 2;
  }
  return Math.sqrt(n / d);
};

const SPECS: [string, QuantSpec][] = [
  ["weights: max + search", { format: "int4p2", groupSize: 64 }],
  ["max, no search", { format: "int4p2", groupSize: 64, p2Search: false }],
  ["activations: pow2 + search", { format: "int4p2", groupSize: 64, p2RowScale: "pow2" }],
  ["pow2, no search, g32", { format: "int4p2", groupSize: 32, p2RowScale: "pow2", p2Search: false }],
];

describe("int4p2 format", () => {
  it("window: q·2^e is exact in E4M3 for q in [-8, 7], e in [-9, 5], and not beyond", () => {
    for (let q = 0; q <= 8; q++)
      for (let e = P2_EXP_MIN; e <= P2_EXP_MAX; e++) {
        const v = q * 2 ** e;
        expect(roundE4m3(v)).toBe(v);
        expect(e4m3BitsToF32(e4m3BitsOfValue(v))).toBe(v);
      }
    expect(roundE4m3(8 * 2 ** (P2_EXP_MAX + 1))).toBe(448); // −8·2^6 = −512 does not fit
    expect(roundE4m3(3 * 2 ** (P2_EXP_MIN - 1))).not.toBe(3 * 2 ** (P2_EXP_MIN - 1)); // below 2^-9: inexact
  });

  it("ceilLog2 is exact, subnormals and powers of two included", () => {
    const r = mulberry32(3);
    for (let i = 0; i < 3000; i++) {
      const t = r() * 2 ** Math.floor(r() * 200 - 100);
      if (t > 0) expect(ceilLog2(t)).toBe(ceilLog2Ref(t));
    }
    for (const t of [1, 2, 0.5, 2 ** -1074, 3 * 2 ** -1074, 2 ** -1022, 2 ** 1023, 1 + 2 ** -52])
      expect(ceilLog2(t)).toBe(ceilLog2Ref(t));
  });

  it.each(SPECS)("%s: codes, scales, row scales, exponents equal the float64 definition", (_l, spec) => {
    const rows = 9;
    const cols = 512;
    const x = randomMatrix(41, rows, cols, 0.7, 0.02);
    for (let c = 0; c < cols; c++) x[3 * cols + c] = x[3 * cols + c]! * 1e-3; // a quiet row
    x.fill(0, 5 * cols + 64, 5 * cols + 64 + spec.groupSize); // an all-zero group
    for (let c = 0; c < 64; c++) x[7 * cols + c] = x[7 * cols + c]! * 4e4; // 2^15 spread: groups below the window
    const q = quantize(x, rows, cols, spec, "x");
    const { rowScales, exponents } = p2Parts(q);
    const g = spec.groupSize;
    for (let r = 0; r < rows; r++) {
      const ref = refRow(x.subarray(r * cols, (r + 1) * cols), g, spec.p2RowScale ?? "max", spec.p2Search ?? true);
      expect(rowScales[r]).toBe(ref.S);
      expect(Array.from(q.codes.subarray(r * cols, (r + 1) * cols))).toEqual(ref.codes);
      expect(Array.from(q.scales.subarray((r * cols) / g, ((r + 1) * cols) / g))).toEqual(ref.scales);
      expect(Array.from(exponents.subarray((r * cols) / g, ((r + 1) * cols) / g))).toEqual(ref.exps);
    }
    expect(Array.from(exponents).some((e) => e === P2_EXP_MIN)).toBe(true); // the window's floor is exercised
    // fakeQuantize = dequantize(quantize)
    expect(Array.from(fakeQuantize(x, rows, cols, spec))).toEqual(Array.from(dequantize(q)));
    // "pow2": every group scale is a power of two; "max": the largest group keeps its free scale amax/7
    if (spec.p2RowScale === "pow2")
      for (const s of q.scales) if (s > 0) expect(Number.isInteger(Math.log2(s))).toBe(true);
  });

  it("the FP8 operand times the row scale is the dequantized tensor, exactly; the GEMM is S_x·S_w·Σ op_x·op_w", () => {
    const [M, N, K] = [6, 5, 256];
    const x = randomMatrix(51, M, K, 1, 0.02);
    const w = randomMatrix(52, N, K, 0.05, 0.01);
    const qx = quantize(x, M, K, { format: "int4p2", groupSize: 64, p2RowScale: "pow2" });
    const qw = quantize(w, N, K, specFor("int4p2"));
    const [ox, ow] = [p2OperandE4m3(qx), p2OperandE4m3(qw)];
    const dec = (b: number) => (b & 0x80 ? -1 : 1) * e4m3BitsToF32(b & 0x7f);
    const [dx, dw] = [dequantize(qx), dequantize(qw)];
    // dequantize stores float32: the exact value S·op rounded once
    for (let i = 0; i < M * K; i++) expect(Math.fround(qx.rowScales![(i / K) | 0]! * dec(ox[i]!))).toBe(dx[i]);
    for (let i = 0; i < N * K; i++) expect(Math.fround(qw.rowScales![(i / K) | 0]! * dec(ow[i]!))).toBe(dw[i]);
    const exact = (q: typeof qx, i: number) => q.codes[i]! * q.scales[(i / 64) | 0]!; // float64, exact
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let a = 0;
        let b = 0;
        for (let k = 0; k < K; k++) {
          a += exact(qx, m * K + k) * exact(qw, n * K + k);
          b += dec(ox[m * K + k]!) * dec(ow[n * K + k]!);
        }
        b *= qx.rowScales![m]! * qw.rowScales![n]!;
        expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-12 * Math.max(1, Math.abs(a)));
      }
  });

  it("costs accuracy against free int4 scales, within the power-of-two bound, and the search helps", () => {
    const [rows, cols] = [64, 1024];
    const x = randomMatrix(61, rows, cols, 1, 0.01);
    const e4 = relErr(fakeQuantize(x, rows, cols, specFor("int4", { scaleDtype: "F32" })), x);
    const eMax = relErr(fakeQuantize(x, rows, cols, specFor("int4p2")), x);
    const eNoSearch = relErr(fakeQuantize(x, rows, cols, specFor("int4p2", { p2Search: false })), x);
    const ePow2 = relErr(fakeQuantize(x, rows, cols, specFor("int4p2", { p2RowScale: "pow2", p2Search: false })), x);
    const ePow2s = relErr(fakeQuantize(x, rows, cols, specFor("int4p2", { p2RowScale: "pow2" })), x);
    // scales at most 2x the free ones (ceil) → error at most ~2x; on average about log-uniform in [1, 2)
    expect(eNoSearch).toBeGreaterThan(e4 * 1.05);
    expect(eNoSearch).toBeLessThan(e4 * 1.6);
    expect(ePow2).toBeGreaterThan(e4 * 1.05);
    expect(ePow2).toBeLessThan(e4 * 1.6);
    expect(eMax).toBeLessThan(eNoSearch);
    expect(ePow2s).toBeLessThan(ePow2);
    expect(ePow2s).toBeLessThan(e4 * 1.1); // the choice of two exponents recovers most of the loss
    expect(eMax).toBeLessThan(e4 * 1.1);
  });

  it("bad input: NaN names the tensor and element; bad specs; never packed as a published W4A4 layer", () => {
    const x = randomMatrix(71, 2, 128);
    x[130] = Number.NaN;
    expect(() => quantize(x, 2, 128, specFor("int4p2"), "act")).toThrowError(
      /tensor "act": non-finite value NaN at \[1, 2\]/,
    );
    const y = randomMatrix(72, 2, 128);
    const bad: QuantSpec[] = [
      { format: "int4p2", groupSize: 0 },
      { format: "int4p2", groupSize: 64, scaleDtype: "BF16" },
      { format: "int4", groupSize: 64, p2RowScale: "pow2" },
      { format: "int4p2", groupSize: 64, p2RowScale: "free" as "max" },
    ];
    for (const s of bad) {
      expect(() => quantize(y, 2, 128, s, "w")).toThrowError(QuantError);
      try {
        quantize(y, 2, 128, s, "w");
      } catch (e) {
        expect((e as QuantError).code).toBe("E_ARGUMENT");
      }
    }
    const q = quantize(y, 2, 128, specFor("int4p2"));
    expect(() => p2Parts(quantize(y, 2, 128, specFor("int4")))).toThrowError(/int4p2 tensor/);
    const layer = {
      residual: q,
      rank: 0,
      lowRankDown: new Float32Array(0),
      lowRankUp: new Float32Array(0),
      act: { format: "int4" as const, groupSize: 64, shift: 0 },
    };
    expect(() => packW4A4Layer(layer)).toThrowError(/int4 or nvfp4 weights, not int4p2/);
  });
});
