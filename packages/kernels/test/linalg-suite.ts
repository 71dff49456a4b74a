// Operator 6 (float64 Cholesky, Lᵀ·S·L, symmetric eigenvalues) against the float64 references, on the backend the
// calling test file loaded (native AVX2 + scalar, or the TypeScript fallback). Sizes cross the native block edges
// (Cholesky 128, congruence 128/256, tridiagonalization panels of 32, threaded symv from 256 rows).
import { availableParallelism } from "node:os";
import { describe, expect, it } from "vitest";
import {
  backendInfo,
  choleskyF64,
  congruenceF64,
  KernelsError,
  pivotedCholeskyF64,
  reference,
  setIsa,
  setThreads,
  symmetricEigenvaluesF64,
} from "../src/index.ts";
import { describePaths, maxAbs, type Rng, rng, worst } from "./helpers.ts";

/** X·Xᵀ/m + shift·I with X [n, m] standard normal: SPD when m ≥ n or shift > 0, rank m otherwise. */
function gram(r: Rng, n: number, m: number, shift: number): Float64Array {
  const x = Float64Array.from({ length: n * m }, () => r.normal());
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = 0; k < m; k++) s += x[i * m + k] * x[j * m + k];
      a[i * n + j] = a[j * n + i] = s / m + (i === j ? shift : 0);
    }
  return a;
}

/** Random symmetric (indefinite) matrix, full storage. */
function sym(r: Rng, n: number): Float64Array {
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = r.normal();
  return a;
}

function lowerOf(m: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) out.set(m.subarray(i * n, i * n + i + 1), i * n);
  return out;
}

export function defineLinalgSuite(): void {
  const info = backendInfo();
  // The float64 kernels have AVX2 and scalar code only (the avx512 and amx paths run the AVX2 code).
  describePaths(
    "float64 linear algebra",
    info,
    (_isa, useIsa) => {
      it("choleskyF64 matches Cholesky–Banachiewicz and reports the failing pivot", () => {
        useIsa();
        const r = rng(101);
        for (const n of [1, 2, 7, 129, 300]) {
          const a = gram(r, n, n + 5, 0.05);
          // garbage above the diagonal must not be read
          const a2 = Float64Array.from(a);
          for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) a2[i * n + j] = 1e30;
          const got = choleskyF64(a2, n);
          const want = reference.refCholeskyF64(a, n);
          expect(got.ok).toBe(true);
          expect(got.failedAt).toBe(-1);
          expect(worst(got.l, want.l, 1e-13 * n * maxAbs(want.l), 0)).toBeLessThanOrEqual(1);
          expect(a2[n - 1]).toBe(n === 1 ? a[0] : 1e30); // input untouched
        }
        // rank-deficient (rank 40 of 150): fails where the reference fails
        const s = gram(r, 150, 40, 0);
        const got = choleskyF64(s, 150);
        const want = reference.refCholeskyF64(s, 150);
        expect(want.failedAt).toBeGreaterThanOrEqual(39);
        expect(got.ok).toBe(false);
        expect(got.failedAt).toBe(want.failedAt);
        const neg = gram(r, 10, 12, 0.1);
        neg[0] = -1;
        expect(choleskyF64(neg, 10).failedAt).toBe(0);
      });

      it("pivotedCholeskyF64: rank, permutation and factor match the reference; P·A·Pᵀ = L·Lᵀ", () => {
        useIsa();
        const r = rng(505);
        for (const [n, m, shift] of [
          [1, 2, 0],
          [6, 9, 0.1],
          [150, 40, 0], // rank 40
          [140, 200, 0.01], // full rank, crosses the 64-row tasks
        ] as const) {
          const a = gram(r, n, m, shift);
          const got = pivotedCholeskyF64(a, n);
          const want = reference.refPivotedCholeskyF64(a, n);
          expect(got.rank).toBe(want.rank);
          expect(got.rank).toBe(Math.min(n, shift > 0 ? n : m));
          expect(Array.from(got.perm)).toEqual(Array.from(want.perm));
          expect(worst(got.l, want.l, 1e-12 * n * Math.sqrt(maxAbs(a)), 0)).toBeLessThanOrEqual(1);
          let err = 0;
          for (let i = 0; i < n; i++)
            for (let j = 0; j <= i; j++) {
              let s = 0;
              for (let k = 0; k <= j; k++) s += got.l[i * n + k] * got.l[j * n + k];
              err = Math.max(err, Math.abs(s - a[got.perm[i] * n + got.perm[j]]));
            }
          expect(err).toBeLessThan(1e-11 * n * maxAbs(a));
          let nonzero = 0; // above the diagonal and beyond column `rank`
          for (let i = 0; i < n; i++)
            for (let j = 0; j < n; j++) if ((j > i || j >= got.rank) && got.l[i * n + j] !== 0) nonzero++;
          expect(nonzero).toBe(0);
        }
        expect(pivotedCholeskyF64(new Float64Array(9), 3).rank).toBe(0);
      });

      it("congruenceF64: lower triangle of Lᵀ·S·L matches the triple loops", () => {
        useIsa();
        const r = rng(202);
        for (const n of [1, 5, 130, 300]) {
          const l = reference.refCholeskyF64(gram(r, n, n + 3, 0.1), n).l;
          for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) l[i * n + j] = r.normal(); // ignored
          const s = sym(r, n);
          const got = congruenceF64(l, s, n);
          const want = lowerOf(reference.refCongruenceF64(lowerOf(l, n), s, n), n);
          expect(worst(got, want, 1e-13 * n * maxAbs(want), 0)).toBeLessThanOrEqual(1);
        }
      });

      it("symmetricEigenvaluesF64 matches the Jacobi method (and the spectral invariants at n = 300)", () => {
        useIsa();
        const r = rng(303);
        for (const [n, spd] of [
          [1, false],
          [2, false],
          [3, true],
          [33, false],
          [65, true],
          [100, false],
        ] as const) {
          const a = spd ? gram(r, n, 2 * n, 0.01) : sym(r, n);
          const got = symmetricEigenvaluesF64(a, n);
          const want = reference.refSymmetricEigenvaluesF64(a, n);
          expect(worst(got, want, 1e-12 * n * maxAbs(want), 0)).toBeLessThanOrEqual(1);
        }
        // n = 300: tr A = Σλ, ‖A‖²_F = Σλ², tr A³ = Σλ³ (an independent check of the full spectrum's moments)
        const n = 300;
        const a = sym(r, n);
        const lam = symmetricEigenvaluesF64(a, n);
        const a2 = new Float64Array(n * n);
        for (let i = 0; i < n; i++)
          for (let j = 0; j < n; j++) {
            let s = 0;
            for (let k = 0; k < n; k++) s += a[i * n + k] * a[k * n + j];
            a2[i * n + j] = s;
          }
        let tr = 0;
        let fro = 0;
        let tr3 = 0;
        for (let i = 0; i < n; i++) {
          tr += a[i * n + i];
          fro += a2[i * n + i];
          for (let k = 0; k < n; k++) tr3 += a2[i * n + k] * a[k * n + i];
        }
        const sum = (p: number) => lam.reduce((t, l) => t + l ** p, 0);
        const scale = maxAbs(lam);
        expect(Math.abs(sum(1) - tr)).toBeLessThan(1e-10 * n * scale);
        expect(Math.abs(sum(2) - fro)).toBeLessThan(1e-10 * n * scale ** 2);
        expect(Math.abs(sum(3) - tr3)).toBeLessThan(1e-10 * n * scale ** 3);
        for (let i = 1; i < n; i++) expect(lam[i]).toBeGreaterThanOrEqual(lam[i - 1]);
      });
    },
    ["scalar", "avx2"],
  );

  describe("float64 linear algebra: arguments and threads", () => {
    it("rejects wrong dtypes, lengths and non-finite values, naming the tensor", () => {
      expect(() => choleskyF64(new Float32Array(4) as never, 2)).toThrow(/tensor "a".*Float64Array/);
      expect(() => congruenceF64(new Float64Array(4), new Float64Array(5), 2)).toThrow(/tensor "s".*shape \[2, 2\]/);
      const bad = Float64Array.from([1, 0, Number.NaN, 1]);
      expect(() => symmetricEigenvaluesF64(bad, 2)).toThrow(KernelsError);
      expect(() => symmetricEigenvaluesF64(bad, 2)).toThrow(/non-finite/);
      expect(() => choleskyF64(new Float64Array(0), 0)).toThrow(/dimension n/);
      expect(() => choleskyF64(new Float64Array(1).fill(1), 1, { tol: -1 })).toThrow(/tol/);
    });

    if (info.native)
      it("results agree across thread counts (the threaded symv sums per-thread partials)", () => {
        setIsa("auto");
        const r = rng(404);
        const n = 300;
        const a = gram(r, n, n, 0.1);
        const before = backendInfo().threads;
        setThreads(1);
        const one = symmetricEigenvaluesF64(a, n);
        const l1 = choleskyF64(a, n).l;
        setThreads(Math.min(3, availableParallelism())); // capped at the available parallelism
        const three = symmetricEigenvaluesF64(a, n);
        const l3 = choleskyF64(a, n).l;
        setThreads(before);
        expect(worst(three, one, 1e-12 * n * maxAbs(one), 0)).toBeLessThanOrEqual(1);
        expect(worst(l3, l1, 1e-13 * n * maxAbs(l1), 0)).toBeLessThanOrEqual(1);
      });
  });
}
