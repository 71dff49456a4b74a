// frechetDistance on @svdquant/kernels' native float64 linear algebra against the TypeScript path and the fixture.
// `pnpm build` compiles the addon, so it must load here (frechet-fallback.test.ts covers the fallback).
import { join } from "node:path";
import { SafetensorsFile } from "@svdquant/tensor";
import { afterAll, describe, expect, it } from "vitest";
import {
  type FeatureStats,
  featureStats,
  frechetDistance,
  getFrechetLinalg,
  kernelsFrechetLinalg,
  setFrechetLinalg,
  symmetricEigenvalues,
  TS_FRECHET_LINALG,
  useKernelsFrechet,
} from "../src/index.js";
import { features, rng } from "./helpers.js";

const FIXTURE = join(import.meta.dirname, "../../../fixtures/metrics/case-a.safetensors");

const relDiff = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe("Fréchet distance on the native float64 kernels", async () => {
  const { linalg: native, reason } = await kernelsFrechetLinalg();
  afterAll(() => setFrechetLinalg(TS_FRECHET_LINALG));

  it("the native linear algebra loads (pnpm build compiles @svdquant/kernels)", () => {
    expect(reason).toBe("");
    expect(native?.name).toBe("native");
  });

  it("equals the fixture (within 1e-6) and the TypeScript path (within 1e-11)", async () => {
    const f = await SafetensorsFile.open(FIXTURE);
    const fa = await f.read("features_a");
    const fb = await f.read("features_b");
    const want = (await f.read("frechet_distance")).data[0] as number;
    await f.close();
    const [na, d] = fa.shape;
    const [nb] = fb.shape;
    const sa = featureStats(fa.data as Float64Array, na, d);
    const sb = featureStats(fb.data as Float64Array, nb, d);
    const viaNative = frechetDistance(sa, sb, { linalg: native! });
    const viaTs = frechetDistance(sa, sb, { linalg: TS_FRECHET_LINALG });
    expect(viaNative.linalg).toBe("native");
    expect(viaTs.linalg).toBe("typescript");
    expect(viaNative.method).toBe("cholesky");
    expect(relDiff(viaNative.value, want)).toBeLessThan(1e-6);
    expect(relDiff(viaNative.value, viaTs.value)).toBeLessThan(1e-11);
  });

  it("equals the TypeScript path: Cholesky (d = 300, crossing the native blocks), sample-factor, singular without samples", () => {
    const r = rng(21);
    const d = 300;
    const sa = featureStats(features(r, 420, d, 0), 420, d);
    const sb = featureStats(features(r, 380, d, 0.2), 380, d);
    const a = frechetDistance(sa, sb, { linalg: native! });
    const b = frechetDistance(sa, sb, { linalg: TS_FRECHET_LINALG });
    expect(a.method).toBe("cholesky");
    expect(relDiff(a.value, b.value)).toBeLessThan(1e-10);
    expect(relDiff(a.traceSqrt, b.traceSqrt)).toBeLessThan(1e-10);

    // Singular covariances (fewer samples than dimensions): the documented fallbacks run on native eigenvalues.
    const d2 = 40;
    const xa = features(r, 15, d2, 0);
    const xb = features(r, 25, d2, 0.2);
    const s1 = featureStats(xa, 15, d2);
    const s2 = featureStats(xb, 25, d2);
    const strip = (s: FeatureStats): FeatureStats => ({ n: s.n, dim: s.dim, mean: s.mean, cov: s.cov });
    for (const [p, q, method] of [
      [s1, s2, "sample-factor"],
      [s1, featureStats(features(r, 60, d2, 0.1), 60, d2), "sample-factor"],
    ] as const) {
      const x = frechetDistance(p, q, { linalg: native! });
      const y = frechetDistance(p, q, { linalg: TS_FRECHET_LINALG });
      expect(x.method).toBe(method);
      expect(y.method).toBe(method);
      expect(relDiff(x.value, y.value)).toBeLessThan(1e-9);
    }
    // Singular without samples: native pivoted Cholesky vs the TypeScript eigen-decomposition route. Both drop
    // ~1e-12-relative directions differently, so they agree to the singular cases' 1e-7 (frechet.test.ts).
    const x = frechetDistance(strip(s1), strip(s2), { linalg: native! });
    const y = frechetDistance(strip(s1), strip(s2), { linalg: TS_FRECHET_LINALG });
    expect(x.method).toBe("pivoted-cholesky");
    expect(y.method).toBe("eigen");
    expect(relDiff(x.value, y.value)).toBeLessThan(1e-7);
  });

  it("singular covariances without samples at d = 200 (N > D, duplicated and constant features): pivoted Cholesky", () => {
    const r = rng(8);
    const d = 200;
    const make = (n: number, off: number) => {
      const x = features(r, n, d, off);
      for (let i = 0; i < n; i++) {
        for (let j = 150; j < 180; j++) x[i * d + j] = x[i * d + j - 150]; // duplicated dimensions
        for (let j = 180; j < d; j++) x[i * d + j] = 2.5; // constant dimensions
      }
      return featureStats(x, n, d);
    };
    const a = make(260, 0);
    const b = make(230, 0.3);
    expect(a.factor).toBeUndefined(); // N > D: no samples kept, the covariance has rank 150
    const x = frechetDistance(a, b, { linalg: native! });
    const y = frechetDistance(a, b, { linalg: TS_FRECHET_LINALG });
    expect(x.method).toBe("pivoted-cholesky");
    expect(y.method).toBe("eigen");
    expect(relDiff(x.value, y.value)).toBeLessThan(1e-7);
  });

  it("native eigenvalues equal linalg.ts symmetricEigenvalues; Cholesky refuses what choleskyLower refuses", () => {
    const r = rng(33);
    const n = 97;
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j <= i; j++) {
        const v = r() - 0.5;
        a[i * n + j] = v;
        a[j * n + i] = v;
      }
    const got = native!.eigenvalues(Float64Array.from(a), n).sort();
    const want = symmetricEigenvalues(Float64Array.from(a), n).sort();
    for (let i = 0; i < n; i++) expect(Math.abs(got[i] - want[i])).toBeLessThan(1e-12 * n);
    // rank-3 PSD matrix: not positive definite for either
    const x = Float64Array.from({ length: 3 * 8 }, () => r() - 0.5);
    const g = new Float64Array(64);
    for (let i = 0; i < 8; i++)
      for (let j = 0; j < 8; j++) for (let k = 0; k < 3; k++) g[i * 8 + j] += x[k * 8 + i] * x[k * 8 + j];
    expect(native!.cholesky(g, 8)).toBeNull();
    expect(TS_FRECHET_LINALG.cholesky(g, 8)).toBeNull();
  });

  it("useKernelsFrechet makes the native one the process default; setFrechetLinalg undoes it", async () => {
    const choice = await useKernelsFrechet();
    expect(choice.reason).toBe("");
    expect(getFrechetLinalg().name).toBe("native");
    const r = rng(4);
    const s = featureStats(features(r, 30, 6, 0), 30, 6);
    const t = featureStats(features(r, 30, 6, 1), 30, 6);
    expect(frechetDistance(s, t).linalg).toBe("native");
    setFrechetLinalg(TS_FRECHET_LINALG);
    expect(frechetDistance(s, t).linalg).toBe("typescript");
  });
});
