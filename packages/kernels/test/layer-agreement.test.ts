/**
 * End to end: an SVDQuant layer (smoothing λ, rank-R low-rank branch, INT4 residual in the @svdquant/int4
 * checkpoint layout) run through the packed kernels agrees with the float64 fake-quant forward of the same layer,
 *   Y_fq = fq(X/λ)·fq(R)ᵀ + (X/λ)·L_downᵀ·L_upᵀ + b,   R = W·diag(λ) − L_up·L_down,
 * within the rounding the kernels are allowed (f32 arithmetic, and codes that flip only at rounding ties).
 */
import { fakeQuantize, quantize } from "@svdquant/int4";
import { describe, expect, it } from "vitest";
import { gemmW4A4, packW4A4, quantizeActivations } from "../src/index.ts";
import { maxAbs, rng } from "./helpers.ts";

// Activations: the kernels keep f32 scales (amax/7), so the fake-quant forward uses scaleDtype F32 for them.
// Weights: @svdquant/int4's checkpoint default (int4, group 64, BF16 scales), packed as they are.
const ACT = { format: "int4", groupSize: 64, scaleDtype: "F32" } as const;
const WGT = { format: "int4", groupSize: 64 } as const;

describe("layer agreement: packed W4A4 kernel vs float64 fake-quant forward", () => {
  it.each([
    [9, 192, 40, 8],
    [23, 256, 72, 32],
  ])("M=%i K=%i N=%i R=%i", (M, K, N, R) => {
    const r = rng(1000 + M);
    const W = Float64Array.from({ length: N * K }, () => r.normal() * 0.05);
    const X = r.f32(M * K);
    for (let m = 0; m < M; m++) for (const k of [3, 77, K - 1]) X[m * K + k] *= 30; // outlier channels
    const bias = r.f32(N, 0.1);
    // SmoothQuant-style λ (α = 0.5): λ_k = sqrt(max|X_k| / max|W_k|)
    const lambda = new Float32Array(K);
    for (let k = 0; k < K; k++) {
      let ax = 0;
      let aw = 0;
      for (let m = 0; m < M; m++) ax = Math.max(ax, Math.abs(X[m * K + k]));
      for (let n = 0; n < N; n++) aw = Math.max(aw, Math.abs(W[n * K + k]));
      lambda[k] = Math.sqrt(ax / aw);
    }
    const What = Float64Array.from(W, (w, i) => w * lambda[i % K]);
    // rank-R branch: L_down = Pᵀ (orthonormal rows), L_up = Ŵ·P — the projection of Ŵ on a random R-dim subspace
    const P = Array.from({ length: R }, () => Float64Array.from({ length: K }, () => r.normal()));
    for (let i = 0; i < R; i++) {
      for (let j = 0; j < i; j++) {
        let d = 0;
        for (let k = 0; k < K; k++) d += P[i][k] * P[j][k];
        for (let k = 0; k < K; k++) P[i][k] -= d * P[j][k];
      }
      const nrm = Math.hypot(...P[i]);
      for (let k = 0; k < K; k++) P[i][k] /= nrm;
    }
    const Ldown = new Float32Array(R * K);
    for (let i = 0; i < R; i++) for (let k = 0; k < K; k++) Ldown[i * K + k] = P[i][k];
    const Lup = new Float32Array(N * R);
    for (let n = 0; n < N; n++)
      for (let i = 0; i < R; i++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += What[n * K + k] * Ldown[i * K + k];
        Lup[n * R + i] = s;
      }
    const Res = new Float64Array(N * K);
    for (let n = 0; n < N; n++)
      for (let k = 0; k < K; k++) {
        let lr = 0;
        for (let i = 0; i < R; i++) lr += Lup[n * R + i] * Ldown[i * K + k];
        Res[n * K + k] = What[n * K + k] - lr;
      }

    // float64 fake-quant forward
    const Xhat = Float64Array.from(X, (x, i) => x / lambda[i % K]);
    const fqX = fakeQuantize(Xhat, M, K, ACT);
    const resQ = quantize(Res, N, K, WGT);
    const fqR = fakeQuantize(Res, N, K, WGT);
    const yfq = new Float64Array(M * N);
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let s = bias[n];
        for (let k = 0; k < K; k++) s += fqX[m * K + k] * fqR[n * K + k];
        for (let i = 0; i < R; i++) {
          let d = 0;
          for (let k = 0; k < K; k++) d += Xhat[m * K + k] * Ldown[i * K + k];
          s += d * Lup[n * R + i];
        }
        yfq[m * N + n] = s;
      }

    // packed kernels
    // checkpoint convention: the branch sees the unsmoothed X, so 1/λ is folded into L_down
    const LdownFolded = Float32Array.from(Ldown, (v, i) => v / lambda[i % K]);
    const act = quantizeActivations(X, M, K, { smooth: lambda, lowRankDown: LdownFolded, rank: R });
    const w = packW4A4(resQ, N, K, { lowRankUp: Lup, rank: R, bias });
    const { y } = gemmW4A4(act, w);

    // Expected rounding: f32 accumulation (~1e-6 relative) plus rare activation codes that flip at a rounding
    // tie between the f32 and f64 X/λ; a flip moves one product by s_x·|s_w·c_w| ≤ s_x·max|R|.
    const scale = maxAbs(yfq);
    let worst = 0;
    for (let i = 0; i < y.length; i++) worst = Math.max(worst, Math.abs(y[i] - yfq[i]));
    expect(worst).toBeLessThan(1e-4 * scale);
    // and the 4-bit layer is close to the exact 16-bit layer (a sanity bound, not a tolerance of the kernels)
    let num = 0;
    let den = 0;
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let s = bias[n];
        for (let k = 0; k < K; k++) s += X[m * K + k] * W[n * K + k];
        num += (y[m * N + n] - s) ** 2;
        den += s * s;
      }
    expect(Math.sqrt(num / den)).toBeLessThan(0.2);
  });
});
