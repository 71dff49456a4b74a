/**
 * The kernel path (`kernels: @svdquant/kernels`) against the float64 reference path of the same quantizer:
 * same search, same refinement rule; its metrics against `evaluateLayer` (float64, independent of the kernels)
 * on the layer it returns.
 */
import { dequantize } from "@svdquant/int4";
import * as kernels from "@svdquant/kernels";
import { SeededRng } from "@svdquant/lowrank";
import { describe, expect, it } from "vitest";
import {
  calibrationFromTokens,
  evaluateLayer,
  GELU_SHIFT,
  type LinearLayer,
  QuantizerError,
  quantizeSharedLayers,
  type SvdQuantConfig,
} from "../src/index.ts";
import { cholQrRows, transpose32 } from "../src/kernel-path.ts";

function makeCase(seed: number, n: number, k: number, m: number, postGelu = false) {
  const rng = new SeededRng(seed);
  const w = new Float32Array(n * k).map(() => rng.normal() / Math.sqrt(k));
  for (let i = 0; i < n; i++) w[i * k + 9] *= 6;
  const bias = new Float32Array(n).map(() => 0.1 * rng.normal());
  const scale = new Float64Array(k).map(() => Math.exp(0.3 * rng.normal()));
  scale[3] *= 50;
  scale[k - 7] *= 25;
  const x = new Float32Array(m * k).map((_, i) => {
    const v = scale[i % k] * rng.studentT(4);
    return postGelu ? 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))) : v;
  });
  const layer: LinearLayer = { name: `k${seed}`, n, k, weight: w, bias };
  return { layer, x, m };
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe("quantizer kernel path", () => {
  it.each([
    ["randomized SVD", 192, 256, 64, { exactMaxSide: 64 }, false],
    ["exact SVD", 64, 128, 48, {}, false],
    ["randomized SVD, uint4 + GELU shift", 128, 192, 64, { exactMaxSide: 64 }, true],
  ] as const)("%s: same search as the float64 path, metrics equal evaluateLayer's", (_name, n, k, m, svd, gelu) => {
    const { layer, x } = makeCase(n + k, n, k, m, gelu);
    const cal = calibrationFromTokens(x, m, k);
    const config: SvdQuantConfig = {
      rank: 16,
      refinement: { maxIterations: 4 },
      svd,
      seed: 3,
      ...(gelu ? { activation: { format: "uint4", groupSize: 64 }, shift: GELU_SHIFT } : {}),
    };
    const ref = quantizeSharedLayers([layer], cal, config);
    const ker = quantizeSharedLayers([layer], cal, { ...config, kernels });
    expect(ker.trials.length).toBe(39);
    for (let i = 0; i < ref.trials.length; i++)
      expect(rel(ker.trials[i].error, ref.trials[i].error)).toBeLessThan(2e-3);
    // the same candidate, or one whose float64 error ties the float64 choice within that float32 noise
    const chosen = ref.trials.find(
      (t) => t.candidate.alpha === ker.candidate.alpha && t.candidate.beta === ker.candidate.beta,
    );
    const best = Math.min(...ref.trials.map((t) => t.error));
    expect(chosen!.error).toBeLessThanOrEqual(best * (1 + 2e-3));
    // the refined result follows a float32 trajectory: close to the float64 one, not equal
    expect(rel(ker.metrics[0].relError, ref.metrics[0].relError)).toBeLessThan(0.02);
    // its own metrics, recomputed by the float64 reference on the returned layer
    const q = ker.layers[0];
    const ev = evaluateLayer(layer, q, x, m);
    expect(rel(ker.metrics[0].relError, ev.relError)).toBeLessThan(1e-5);
    expect(rel(ker.metrics[0].terms.wErr, ev.terms.wErr)).toBeLessThan(1e-4);
    expect(rel(ker.metrics[0].terms.wNorm, ev.terms.wNorm)).toBeLessThan(1e-4);
    expect(ker.metrics[0].terms.xErr).toBe(ev.terms.xErr);
    expect(ker.metrics[0].bitsPerParam).toBe(ref.metrics[0].bitsPerParam);
    expect(Array.from(q.residualValues)).toEqual(Array.from(dequantize(q.residual!)));
    expect(q.info.refinementRun).toBeGreaterThan(0);
    // deterministic per seed
    const again = quantizeSharedLayers([layer], cal, { ...config, kernels });
    expect(Array.from(again.layers[0].lowRankUp)).toEqual(Array.from(q.lowRankUp));
    expect(Array.from(again.layers[0].residual!.codes)).toEqual(Array.from(q.residual!.codes));
  });

  it("NVFP4 weights and activations (the generic quantizer, not the fused INT4 loop)", () => {
    const { layer, x, m } = makeCase(11, 96, 256, 32);
    const cal = calibrationFromTokens(x, m, 256);
    const nv = { format: "nvfp4", groupSize: 16 } as const;
    const config: SvdQuantConfig = { rank: 8, weight: nv, refinement: { maxIterations: 2 }, svd: { exactMaxSide: 64 } };
    const ker = quantizeSharedLayers([layer], cal, { ...config, kernels });
    const ref = quantizeSharedLayers([layer], cal, config);
    expect(ker.layers[0].residual!.spec.format).toBe("nvfp4");
    expect(rel(ker.metrics[0].relError, evaluateLayer(layer, ker.layers[0], x, m).relError)).toBeLessThan(1e-5);
    expect(rel(ker.metrics[0].relError, ref.metrics[0].relError)).toBeLessThan(0.02);
  });

  it("shares one λ across layers and reports each layer's metrics", () => {
    const a = makeCase(1, 96, 128, 40);
    const b = makeCase(2, 64, 128, 40);
    const cal = calibrationFromTokens(a.x, 40, 128);
    const config: SvdQuantConfig = { rank: 8, refinement: { maxIterations: 2 }, kernels };
    const r = quantizeSharedLayers([a.layer, b.layer], cal, config);
    expect(r.layers[0].smooth).toBe(r.layers[1].smooth);
    r.layers.forEach((q, i) => {
      const ev = evaluateLayer([a.layer, b.layer][i], q, a.x, 40);
      expect(rel(r.metrics[i].relError, ev.relError)).toBeLessThan(1e-5);
    });
  });

  it("names the layer when the rank does not fit, and rejects an object that is not the kernels", () => {
    const { layer, x, m } = makeCase(5, 16, 64, 8);
    expect(() => quantizeSharedLayers([layer], calibrationFromTokens(x, m, 64), { rank: 32, kernels })).toThrow(
      /layer "k5": rank 32 must be in \[1, 16\]/,
    );
    const big = { ...layer, weight: Float64Array.from(layer.weight) };
    big.weight[70] = 1e39; // finite in float64, Inf in float32
    expect(() => quantizeSharedLayers([big], calibrationFromTokens(x, m, 64), { rank: 4, kernels })).toThrow(
      /layer "k5": weight\[1, 6\] = 1e\+39 does not fit float32/,
    );
    const notKernels = { gemmF32: kernels.gemmF32 } as unknown as typeof kernels;
    expect(() =>
      quantizeSharedLayers([layer], calibrationFromTokens(x, m, 64), { rank: 4, kernels: notKernels }),
    ).toThrow(QuantizerError);
  });

  it("transposes float32 matrices whose sides are not multiples of the tile", () => {
    const [rows, cols] = [130, 67];
    const a = new Float32Array(rows * cols).map((_, i) => i * 0.5 - 7);
    const t = transpose32(a, rows, cols);
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) expect(t[j * rows + i]).toBe(a[i * cols + j]);
  });

  it.each([
    ["float32 Gram matrices on the GEMM", { packF32: kernels.packF32, gemmF32: kernels.gemmF32 }, 1e-5],
    ["the kernels' float64 CholeskyQR", kernels, 1e-12],
  ] as const)(
    "CholeskyQR (%s) orthonormalizes a row panel with P_in = T·P_out, declines a rank-deficient one",
    (_n, kn, tol) => {
      const [l, d] = [24, 700];
      const rng = new SeededRng(8);
      // correlated rows of very different norms (a sketch of a matrix with a dominant direction)
      const base = rng.normals(d);
      const p = new Float64Array(l * d).map((_, i) => (1 + 30 * ((i / d) | 0)) * (base[i % d] + 0.2 * rng.normal()));
      const p0 = p.slice();
      const t = cholQrRows(kn, p, l, d);
      expect(t).not.toBeNull();
      let worstOrth = 0;
      for (let i = 0; i < l; i++)
        for (let j = 0; j < l; j++) {
          let s = 0;
          for (let x = 0; x < d; x++) s += p[i * d + x] * p[j * d + x];
          worstOrth = Math.max(worstOrth, Math.abs(s - (i === j ? 1 : 0)));
        }
      expect(worstOrth).toBeLessThan(tol); // float32 Gram matrices: ~1e-6
      let worstRec = 0;
      let scale = 0;
      for (let i = 0; i < l; i++)
        for (let x = 0; x < d; x++) {
          let s = 0;
          for (let q = 0; q <= i; q++) s += t![i * l + q] * p[q * d + x];
          worstRec = Math.max(worstRec, Math.abs(s - p0[i * d + x]));
          scale = Math.max(scale, Math.abs(p0[i * d + x]));
        }
      expect(worstRec / scale).toBeLessThan(tol);
      for (let i = 0; i < l; i++) for (let j = i + 1; j < l; j++) expect(t![i * l + j]).toBe(0);
      // a repeated row: the Gram matrix is singular, the caller falls back to Gram–Schmidt
      const dep = p0.slice();
      dep.copyWithin(5 * d, 2 * d, 3 * d);
      expect(cholQrRows(kn, dep, l, d)).toBeNull();
    },
  );
});
