import { join } from "node:path";
import { SafetensorsFile } from "@svdquant/tensor";
import { EigenvalueDecomposition, Matrix } from "ml-matrix";
import { describe, expect, it } from "vitest";
import {
  choleskyLower,
  congruenceLower,
  type FeatureStats,
  featureStats,
  frechetDistance,
  MetricsError,
  symmetricEigenvalues,
  traceSqrtProduct,
} from "../src/index.js";
import { features, rng } from "./helpers.js";

const FIXTURE = join(import.meta.dirname, "../../../fixtures/metrics/case-a.safetensors");

/** Independent reference with ml-matrix: two-pass mean/cov, √Σa by eigen-decomposition, eig(√Σa Σb √Σa). */
function referenceFrechet(xa: Float64Array, na: number, xb: Float64Array, nb: number, d: number): number {
  const stats = (x: Float64Array, n: number) => {
    const m = Matrix.from1DArray(n, d, Array.from(x));
    const mu = m.mean("column");
    const c = m.clone().subRowVector(mu);
    return {
      mu,
      cov: c
        .transpose()
        .mmul(c)
        .div(n - 1),
    };
  };
  const a = stats(xa, na);
  const b = stats(xb, nb);
  const ea = new EigenvalueDecomposition(a.cov, { assumeSymmetric: true });
  const sq = Matrix.diag(ea.realEigenvalues.map((l) => Math.sqrt(Math.max(l, 0))));
  const rootA = ea.eigenvectorMatrix.mmul(sq).mmul(ea.eigenvectorMatrix.transpose());
  const s = rootA.mmul(b.cov).mmul(rootA);
  const sym = s.add(s.transpose()).div(2);
  const ev = new EigenvalueDecomposition(sym, { assumeSymmetric: true }).realEigenvalues;
  const trSqrt = ev.reduce((t, l) => t + Math.sqrt(Math.max(l, 0)), 0);
  let meanTerm = 0;
  for (let j = 0; j < d; j++) meanTerm += (a.mu[j] - b.mu[j]) ** 2;
  return meanTerm + a.cov.trace() + b.cov.trace() - 2 * trSqrt;
}

describe("Fréchet distance", () => {
  it("matches fixtures/metrics/case-a (clean-fid formula, scipy sqrtm) within 1e-6 relative", async () => {
    const f = await SafetensorsFile.open(FIXTURE);
    const fa = await f.read("features_a");
    const fb = await f.read("features_b");
    const want = (await f.read("frechet_distance")).data[0] as number;
    await f.close();
    const [na, d] = fa.shape;
    const [nb] = fb.shape;
    const r = frechetDistance(
      featureStats(fa.data as Float64Array, na, d),
      featureStats(fb.data as Float64Array, nb, d),
    );
    expect(r.method).toBe("cholesky");
    expect(Math.abs(r.value - want) / Math.abs(want)).toBeLessThan(1e-6);
  });

  it("symmetricEigenvalues equals ml-matrix's eigenvalues on seeded random symmetric matrices", () => {
    const r = rng(11);
    for (const n of [1, 2, 3, 17, 64]) {
      const a = new Float64Array(n * n);
      for (let i = 0; i < n; i++)
        for (let j = 0; j <= i; j++) {
          const v = r() * 2 - 1;
          a[i * n + j] = v;
          a[j * n + i] = v;
        }
      const want = new EigenvalueDecomposition(Matrix.from1DArray(n, n, Array.from(a)), {
        assumeSymmetric: true,
      }).realEigenvalues
        .slice()
        .sort((x, y) => x - y);
      const got = Array.from(symmetricEigenvalues(Float64Array.from(a), n)).sort((x, y) => x - y);
      for (let i = 0; i < n; i++) expect(Math.abs(got[i] - want[i])).toBeLessThan(1e-11 * n);
    }
  });

  it("full-rank (Cholesky path) equals the ml-matrix reference", () => {
    const r = rng(3);
    const d = 24;
    const xa = features(r, 90, d, 0);
    const xb = features(r, 70, d, 0.3);
    const got = frechetDistance(featureStats(xa, 90, d), featureStats(xb, 70, d));
    expect(got.method).toBe("cholesky");
    const want = referenceFrechet(xa, 90, xb, 70, d);
    expect(Math.abs(got.value - want) / want).toBeLessThan(1e-9);
  });

  it("fewer samples than dimensions (singular covariances): sample-factor and eigen fallbacks equal the reference", () => {
    const r = rng(5);
    const d = 40;
    const xa = features(r, 15, d, 0);
    const xb = features(r, 25, d, 0.2);
    const sa = featureStats(xa, 15, d);
    const sb = featureStats(xb, 25, d);
    // The reference's √ of the ~1e-16·λmax null-space eigenvalues of a singular Σa adds ~1e-8 relative error of
    // its own, so singular cases compare at 1e-7 (the bar is 1e-6).
    const want = referenceFrechet(xa, 15, xb, 25, d);
    const viaSamples = frechetDistance(sa, sb);
    expect(viaSamples.method).toBe("sample-factor");
    expect(Math.abs(viaSamples.value - want) / want).toBeLessThan(1e-7);
    // Stats without samples (e.g. loaded from a file) take the eigen-decomposition fallback.
    const strip = (s: FeatureStats): FeatureStats => ({ n: s.n, dim: s.dim, mean: s.mean, cov: s.cov });
    const viaEigen = frechetDistance(strip(sa), strip(sb));
    expect(viaEigen.method).toBe("eigen");
    expect(Math.abs(viaEigen.value - want) / want).toBeLessThan(1e-7);
    // One side singular (factor kept), the other full rank: the N x N sandwich Fa·Σb·Faᵀ (r = 15 and 13, odd).
    for (const na of [15, 13]) {
      const xc = features(r, 60, d, 0.1);
      const sc = featureStats(xc, 60, d);
      expect(sc.factor).toBeUndefined();
      const sa2 = featureStats(xa.subarray(0, na * d), na, d);
      const one = frechetDistance(sa2, sc);
      expect(one.method).toBe("sample-factor");
      const want2 = referenceFrechet(xa.subarray(0, na * d), na, xc, 60, d);
      expect(Math.abs(one.value - want2) / want2).toBeLessThan(1e-7);
    }
    // The trace term is symmetric in its arguments.
    expect(traceSqrtProduct(sb, sa).value).toBeCloseTo(traceSqrtProduct(sa, sb).value, 9);
  });

  it("the streaming accumulator equals a two-pass covariance even with a large common offset", () => {
    const r = rng(9);
    const d = 8;
    const n = 150; // crosses the 64-row flush twice
    const x = features(r, n, d, 0).map((v) => v + 1e4);
    const s = featureStats(x, n, d);
    const m = Matrix.from1DArray(n, d, Array.from(x));
    const mu = m.mean("column");
    const c = m.clone().subRowVector(mu);
    const cov = c
      .transpose()
      .mmul(c)
      .div(n - 1);
    for (let i = 0; i < d; i++) {
      expect(s.mean[i]).toBeCloseTo(mu[i], 8);
      for (let j = 0; j < d; j++) expect(Math.abs(s.cov[i * d + j] - cov.get(i, j))).toBeLessThan(1e-9);
    }
  });

  it("errors: empty/one-sample sets, mismatched dims, non-finite features", () => {
    expect(() => featureStats(new Float64Array(0), 0, 4)).toThrow(/at least 2 feature vectors for a covariance, got 0/);
    expect(() => featureStats(new Float64Array(4).fill(1), 1, 4)).toThrow(MetricsError);
    expect(() => featureStats(new Float64Array(5), 2, 4)).toThrow(/do not fit \[2, 4\]/);
    const bad = Float64Array.from([1, 2, Number.NaN, 4, 5, 6]);
    expect(() => featureStats(bad, 2, 3)).toThrow(/feature row 0 holds a non-finite value/);
    const r = rng(1);
    const a = featureStats(features(r, 10, 3, 0), 10, 3);
    const b = featureStats(features(r, 10, 4, 0), 10, 4);
    expect(() => frechetDistance(a, b)).toThrow(/dimensions differ: 3 vs 4/);
  });
});

describe("linear algebra kernels", () => {
  it("choleskyLower: L·Lᵀ reproduces the matrix (odd and even n) and rejects a singular one", () => {
    const r = rng(13);
    for (const n of [1, 2, 5, 8, 33]) {
      const x = Matrix.from1DArray(
        n + 3,
        n,
        Array.from({ length: (n + 3) * n }, () => r() - 0.5),
      );
      const spd = x.transpose().mmul(x);
      const a = Float64Array.from(spd.to1DArray());
      expect(choleskyLower(a, n)).toBe(true);
      for (let i = 0; i < n; i++)
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let k = 0; k <= j; k++) s += a[i * n + k] * a[j * n + k];
          expect(Math.abs(s - spd.get(i, j))).toBeLessThan(1e-12 * n);
        }
    }
    const x = Matrix.from1DArray(
      2,
      4,
      Array.from({ length: 8 }, () => r() - 0.5),
    );
    expect(choleskyLower(Float64Array.from(x.transpose().mmul(x).to1DArray()), 4)).toBe(false); // rank 2
  });

  it("congruenceLower equals Lᵀ·S·L from ml-matrix (n not a multiple of 4)", () => {
    const r = rng(17);
    for (const n of [3, 9]) {
      const l = new Float64Array(n * n);
      const s = new Float64Array(n * n);
      for (let i = 0; i < n; i++)
        for (let j = 0; j <= i; j++) {
          l[i * n + j] = r() - 0.5;
          const v = r() - 0.5;
          s[i * n + j] = v;
          s[j * n + i] = v;
        }
      const L = Matrix.from1DArray(n, n, Array.from(l));
      const want = L.transpose()
        .mmul(Matrix.from1DArray(n, n, Array.from(s)))
        .mmul(L);
      for (let i = 0; i < n; i++) l[i * n + n - 1] = i === n - 1 ? l[i * n + i] : 7; // junk above the diagonal
      const got = congruenceLower(l, s, n);
      for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) expect(got[i * n + j]).toBeCloseTo(want.get(i, j), 12);
    }
  });
});
