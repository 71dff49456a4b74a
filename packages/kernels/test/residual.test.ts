// Operator 7 (quantizeResidual): the native pass on every ISA path this CPU has against its TypeScript twin
// (bit for bit), against @svdquant/int4's quantize of the float64 residual (independent reference), against the
// package's own packers, and its errors.
import { quantize } from "@svdquant/int4";
import { afterAll, describe, expect, it } from "vitest";
import {
  backendInfo,
  emptyPackedF32,
  emptyPackedW4A4,
  KernelsError,
  packF32,
  packW4A4,
  quantizeResidual,
  type ResidualQuantOutputs,
  type ResidualScaleDtype,
  setIsa,
  setThreads,
} from "../src/index.ts";
import { type PassArgs, residualPassTs } from "../src/residual.ts";
import { isasToTest, rng } from "./helpers.ts";

interface Case {
  N: number;
  K: number;
  R: number;
  G: number;
  format: "int4" | "uint4";
  scaleDtype: ResidualScaleDtype;
  seed: number;
}

function inputs(c: Case) {
  const r = rng(c.seed);
  const weight = r.f32(c.N * c.K, 0.3);
  for (let j = 0; j < c.K; j += 37) for (let i = 0; i < c.N; i++) weight[i * c.K + j] *= 5; // outlier channels
  const smooth = Float64Array.from(r.pos(c.K, 0.25, 4));
  const lowRankUp = c.R ? r.f32(c.N * c.R, 0.2) : undefined;
  const smoothedLowRankDown = c.R ? r.f32(c.R * c.K, 0.2) : undefined;
  return { weight, smooth, lowRankUp, smoothedLowRankDown, rank: c.R, groupSize: c.G, ...c };
}

function outputs(c: Case): Required<ResidualQuantOutputs> {
  const w4a4 = c.format === "int4" && c.G === 64;
  return {
    codes: new Int8Array(c.N * c.K),
    scales: new Float32Array((c.N * c.K) / c.G),
    packed: w4a4 ? emptyPackedW4A4(c.N, c.K, c.R) : (undefined as never),
    dequantized: new Float32Array(c.N * c.K),
    difference: new Float32Array(c.N * c.K),
    differenceT: emptyPackedF32(c.K, c.N),
    rowSumsOverSmooth: new Float64Array(c.N),
  };
}

/** The branch L = L_up·(L_down·λ) accumulated in float32 in r order, then R = W·λ − L in float64. */
function residual64(x: ReturnType<typeof inputs>): Float64Array {
  const { N, K, R } = x;
  const out = new Float64Array(N * K);
  for (let i = 0; i < N; i++)
    for (let j = 0; j < K; j++) {
      let l = 0;
      for (let r = 0; r < R; r++)
        l = Math.fround(l + Math.fround(x.lowRankUp![i * R + r] * x.smoothedLowRankDown![r * K + j]));
      out[i * K + j] = x.weight[i * K + j] * x.smooth[j] - l;
    }
  return out;
}

const CASES: Case[] = [
  { N: 40, K: 192, R: 5, G: 64, format: "int4", scaleDtype: "BF16", seed: 1 },
  { N: 33, K: 256, R: 0, G: 64, format: "int4", scaleDtype: "F32", seed: 2 },
  { N: 24, K: 128, R: 3, G: 32, format: "uint4", scaleDtype: "F16", seed: 3 },
  { N: 17, K: 60, R: 2, G: 12, format: "int4", scaleDtype: "BF16", seed: 4 },
];

const info = backendInfo();
const { run } = isasToTest(info);

afterAll(() => {
  if (info.native) setIsa("auto");
  setThreads(0);
});

describe.each(run)("quantizeResidual on the %s path", (isa) => {
  it.each(CASES)("equals its TypeScript twin bit for bit: N $N, K $K, R $R, G $G, $format, $scaleDtype", (c) => {
    if (info.native) setIsa(isa);
    const x = inputs(c);
    const got = outputs(c);
    const res = quantizeResidual(x, got);
    const want = outputs(c);
    const stats = new Float64Array(4);
    const args: PassArgs = {
      w: x.weight,
      lambda: x.smooth,
      up: x.lowRankUp,
      dl: x.smoothedLowRankDown,
      N: c.N,
      K: c.K,
      R: c.R,
      G: c.G,
      format: c.format === "int4" ? 0 : 1,
      codes: want.codes,
      scales: want.scales,
      qweight: want.packed?.qweight,
      wscales: want.packed?.wscales,
      dq: want.dequantized,
      diff: want.difference,
      diffTPanel: want.differenceT.wpanel,
      rowInv: want.rowSumsOverSmooth,
      stats,
    };
    residualPassTs(args, c.scaleDtype);
    expect(got.codes).toEqual(want.codes);
    expect(got.scales).toEqual(want.scales);
    if (want.packed) expect(got.packed.qweight).toEqual(want.packed.qweight);
    expect(got.dequantized).toEqual(want.dequantized);
    expect(got.difference).toEqual(want.difference);
    expect(got.differenceT.wpanel).toEqual(want.differenceT.wpanel);
    expect(got.rowSumsOverSmooth).toEqual(want.rowSumsOverSmooth);
    expect(res.norm2).toBe(stats[0]);
    expect(res.err2).toBe(stats[1]);
  });

  it.each(CASES)("matches @svdquant/int4's quantize and the package's packers: N $N, K $K, G $G, $format", (c) => {
    if (info.native) setIsa(isa);
    const x = inputs(c);
    const got = outputs(c);
    const res = quantizeResidual(x, got);
    const r64 = residual64(x);
    const q = quantize(r64, c.N, c.K, { format: c.format, groupSize: c.G, scaleDtype: c.scaleDtype });
    expect(got.scales).toEqual(q.scales);
    expect(got.codes).toEqual(q.codes);
    let n2 = 0;
    let e2 = 0;
    const a = new Float32Array(c.N * c.K);
    const at = new Float32Array(c.N * c.K);
    const inv = new Float64Array(c.N);
    for (let i = 0; i < c.N; i++)
      for (let j = 0; j < c.K; j++) {
        const o = i * c.K + j;
        const d = Math.fround(q.codes[o] * q.scales[Math.floor(o / c.G)]);
        expect(got.dequantized[o]).toBe(d);
        n2 += r64[o] ** 2;
        e2 += (r64[o] - d) ** 2;
        a[o] = x.weight[o] * x.smooth[j] - d;
        at[j * c.N + i] = a[o];
        inv[i] += d / x.smooth[j];
      }
    expect(Math.abs(res.norm2 - n2) / n2).toBeLessThan(1e-12);
    expect(Math.abs(res.err2 - e2) / e2).toBeLessThan(1e-12);
    for (let i = 0; i < c.N; i++) expect(got.rowSumsOverSmooth[i]).toBeCloseTo(inv[i], 9);
    expect(got.difference).toEqual(a);
    expect(got.differenceT.wpanel).toEqual(packF32(at, c.K, c.N).wpanel);
    if (got.packed) {
      const p = packW4A4(q, c.N, c.K, c.R ? { lowRankUp: x.lowRankUp, rank: c.R } : {});
      expect(got.packed.qweight).toEqual(p.qweight);
      expect(got.packed.wscales).toEqual(p.wscales);
      expect(got.packed.lup).toEqual(p.lup);
    }
  });
});

describe("quantizeResidual: threads and errors", () => {
  it("gives the same bits on 1 and 2 threads", () => {
    const c: Case = { N: 96, K: 320, R: 4, G: 64, format: "int4", scaleDtype: "BF16", seed: 9 };
    const x = inputs(c);
    setThreads(1);
    const one = outputs(c);
    const r1 = quantizeResidual(x, one);
    setThreads(2);
    const two = outputs(c);
    const r2 = quantizeResidual(x, two);
    setThreads(0);
    expect(two.codes).toEqual(one.codes);
    expect(two.differenceT.wpanel).toEqual(one.differenceT.wpanel);
    expect(r2).toEqual(r1);
  });

  it("names the row of a NaN, and of a scale that overflows its dtype", () => {
    const c: Case = { N: 16, K: 64, R: 0, G: 64, format: "int4", scaleDtype: "F16", seed: 5 };
    const x = inputs(c);
    x.weight[5 * 64 + 3] = Number.NaN;
    expect(() => quantizeResidual({ ...x, name: "fc1" }, { codes: new Int8Array(16 * 64) })).toThrow(
      /tensor "fc1": row 5 of the residual .* holds a NaN or Inf/,
    );
    const y = inputs(c);
    y.weight[7 * 64] = 1e7; // 1e7·λ/7 > 65504 (λ ≥ 0.25): no float16 scale holds it
    expect(() => quantizeResidual(y, {})).toThrow(/row 7 .* overflows F16/);
    y.scaleDtype = "F32";
    expect(quantizeResidual(y, {}).norm2).toBeGreaterThan(1e12); // float32 scales hold it
  });

  it("rejects wrong shapes, dtypes and a W4A4 panel for groups it cannot hold", () => {
    const c: Case = { N: 16, K: 128, R: 2, G: 64, format: "int4", scaleDtype: "BF16", seed: 6 };
    const x = inputs(c);
    expect(() => quantizeResidual({ ...x, K: 100 }, {})).toThrow(KernelsError);
    expect(() => quantizeResidual({ ...x, smooth: new Float64Array(127) }, {})).toThrow(/smooth.*needs 128/);
    expect(() => quantizeResidual(x, { codes: new Int8Array(10) })).toThrow(/codes.*needs 2048/);
    expect(() => quantizeResidual({ ...x, smoothedLowRankDown: undefined }, {})).toThrow(/smoothedLowRankDown/);
    expect(() => quantizeResidual(x, { differenceT: emptyPackedF32(16, 128) })).toThrow(/f32 panel weight \[128, 16\]/);
    const packed = emptyPackedW4A4(16, 128, 2);
    expect(() => quantizeResidual({ ...x, groupSize: 32 }, { packed })).toThrow(/INT4 groups of 64/);
    expect(() => quantizeResidual({ ...x, format: "uint4" }, { packed })).toThrow(/INT4 groups of 64/);
    expect(() => quantizeResidual(x, { packed: emptyPackedW4A4(16, 128, 3) })).toThrow(/of rank 2/);
  });
});
