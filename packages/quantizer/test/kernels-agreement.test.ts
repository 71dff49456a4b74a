/**
 * The layer quantizer's output, run through the packed CPU kernels, agrees with the quantizer's own fake-quant
 * forward (@svdquant/quantizer `forwardQuantized`, float64) within the kernels' rounding.
 *
 *   quantizeLayer(W, calibration) → λ, L_down [R,K] (1/λ folded in), L_up [N,R], Q(R) codes + scales, b'
 *   kernels: quantizeActivations(X, {smooth: λ, lowRankDown: L_down}) → gemmW4A4(·, packW4A4(Q(R), {L_up, b'}))
 */
import { gemmW4A4, packW4A4, quantizeActivations } from "@svdquant/kernels";
import { describe, expect, it } from "vitest";
import { calibrationFromTokens, forwardQuantized, GELU_SHIFT, quantizeLayer } from "../src/index.ts";

/** The seeded generator this test was written with (moved here from @svdquant/kernels' test helpers). */
function rng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => {
    const u = Math.max(next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
  };
  return { normal, f32: (n: number) => Float32Array.from({ length: n }, () => normal()) };
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

describe("layer quantizer → packed W4A4 kernel", () => {
  it.each([
    [13, 192, 48, 16, "int4"],
    [37, 256, 80, 32, "int4"],
    [21, 256, 64, 32, "uint4"], // an FFN down-projection: GELU outputs, shifted unsigned codes
  ] as const)("M=%i K=%i N=%i R=%i %s agrees with forwardQuantized", (M, K, N, R, fmt) => {
    const unsigned = fmt === "uint4";
    const r = rng(7000 + M * K);
    const W = Float64Array.from({ length: N * K }, () => r.normal() * 0.05);
    for (let n = 0; n < N; n++) W[n * K + 5] *= 8; // an outlier input channel of the weight
    const bias = Float64Array.from({ length: N }, () => r.normal() * 0.1);
    const tokens = (m: number) => {
      const x = r.f32(m * K);
      for (let t = 0; t < m; t++) for (const k of [3, 77, K - 2]) x[t * K + k] *= 40; // activation outliers
      return unsigned ? x.map((v) => geluTanh(v * 0.5)) : x;
    };
    // Activation scales kept in f32 (as the CPU kernel keeps amax/7); weights in the checkpoint default (BF16 scales).
    const q = quantizeLayer({ n: N, k: K, weight: W, bias, name: "agree" }, calibrationFromTokens(tokens(64), 64, K), {
      rank: R,
      activation: { format: fmt, groupSize: 64, scaleDtype: "F32" },
      shift: unsigned ? GELU_SHIFT : 0,
      refinement: { maxIterations: 3 },
      seed: 1,
    });
    expect(q.residual).toBeDefined();
    const X = tokens(M);
    const yq = forwardQuantized(q, X, M);

    const act = quantizeActivations(X, M, K, {
      smooth: Float32Array.from(q.smooth),
      lowRankDown: Float32Array.from(q.lowRankDown),
      rank: R,
      format: fmt,
      shift: unsigned ? GELU_SHIFT : 0,
    });
    const w = packW4A4(q.residual!, N, K, {
      lowRankUp: Float32Array.from(q.lowRankUp),
      rank: R,
      bias: Float32Array.from(q.bias ?? new Float64Array(N)),
    });
    const { y } = gemmW4A4(act, w);

    // f32 arithmetic and the f32 λ can flip an activation code at an exact rounding tie; a flip moves one
    // product by at most s_x·max|Q(R)|; with these fixed seeds none flips, so the bound is the f32 rounding.
    const scale = maxAbs(yq);
    let worstErr = 0;
    for (let i = 0; i < y.length; i++) worstErr = Math.max(worstErr, Math.abs(y[i] - yq[i]));
    expect(worstErr).toBeLessThan(1e-5 * scale); // measured ~3e-7 with these seeds
    expect(worstErr).toBeGreaterThan(0); // f32 kernel vs float64 model: equal bits would mean we compared a copy
  });
});
