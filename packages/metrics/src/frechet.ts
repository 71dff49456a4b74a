import { EigenvalueDecomposition, Matrix } from "ml-matrix";
import { MetricsError } from "./errors.js";
import { choleskyLower, congruenceLower, gramLower, mulRowsT, sandwichRows, symmetricEigenvalues } from "./linalg.js";

/**
 * Mean and unbiased covariance of N feature vectors of dimension D (float64).
 *
 * | field   | shape / type                                                                     |
 * | ------- | -------------------------------------------------------------------------------- |
 * | mean    | Float64Array [D]                                                                 |
 * | cov     | Float64Array [D, D], full symmetric, divided by N − 1 (numpy `np.cov`, rowvar=False) |
 * | factor  | Float64Array [N, D] = (x_i − mean) / sqrt(N − 1), kept only while N ≤ D, so Σ = factorᵀ·factor |
 */
export interface FeatureStats {
  readonly n: number;
  readonly dim: number;
  readonly mean: Float64Array;
  readonly cov: Float64Array;
  readonly factor?: Float64Array;
}

/** How tr √(Σa·Σb) was computed (see frechetDistance). */
export type TraceSqrtMethod = "cholesky" | "sample-factor" | "pivoted-cholesky" | "eigen";

/**
 * The three dense float64 steps of tr √(Σa·Σb) (row-major n x n, lower triangles): the TypeScript ones of
 * linalg.ts (`TS_FRECHET_LINALG`, the default and the reference) or @svdquant/kernels' native ones
 * (`useKernelsFrechet`).
 */
export interface FrechetLinalg {
  readonly name: "typescript" | "native";
  /** L with Σ = L·Lᵀ (lower triangle), or null when Σ is not numerically positive definite (pivot ≤ 1e-12·max diag). */
  cholesky(a: Float64Array, n: number): Float64Array | null;
  /** lower triangle of Lᵀ·S·L */
  congruence(l: Float64Array, s: Float64Array, n: number): Float64Array;
  /** eigenvalues of the symmetric matrix whose lower triangle is `a` (`a` may be destroyed) */
  eigenvalues(a: Float64Array, n: number): Float64Array;
  /**
   * Optional: pivoted Cholesky of a PSD matrix, P·A·Pᵀ ≈ L·Lᵀ with L zero beyond column `rank` (pivots
   * ≤ 1e-12·max diag stop it); row i of P·A·Pᵀ is row perm[i] of A. When present it replaces the "eigen" route.
   */
  pivotedCholesky?(a: Float64Array, n: number): { l: Float64Array; perm: Int32Array; rank: number };
}

export const TS_FRECHET_LINALG: FrechetLinalg = {
  name: "typescript",
  cholesky(a, n) {
    const l = Float64Array.from(a);
    return choleskyLower(l, n) ? l : null;
  },
  congruence: congruenceLower,
  eigenvalues: symmetricEigenvalues,
};

let defaultLinalg: FrechetLinalg = TS_FRECHET_LINALG;

/** Sets the process-wide linear algebra of frechetDistance / traceSqrtProduct (see useKernelsFrechet). */
export function setFrechetLinalg(l: FrechetLinalg): void {
  defaultLinalg = l;
}

export function getFrechetLinalg(): FrechetLinalg {
  return defaultLinalg;
}

export interface FrechetResult {
  value: number;
  /** ‖μa − μb‖² */
  meanTerm: number;
  /** tr Σa + tr Σb − 2·tr √(Σa·Σb) */
  covTerm: number;
  traceSqrt: number;
  method: TraceSqrtMethod;
  /** which FrechetLinalg computed it */
  linalg: FrechetLinalg["name"];
}

const FLUSH_ROWS = 64;

/**
 * Streams feature vectors into mean and covariance with bounded memory (D² + 64·D floats, plus the N x D sample
 * factor while N ≤ D). Sums are taken around the first vector (a shift) to avoid cancellation in E[x²] − E[x]².
 */
export class FeatureAccumulator {
  readonly dim: number;
  private n = 0;
  private shift: Float64Array | undefined;
  private readonly sum: Float64Array;
  private readonly sxx: Float64Array; // lower triangle of Σ (x − shift)(x − shift)ᵀ
  private readonly block: Float64Array; // [D, FLUSH_ROWS], transposed pending rows
  private pending = 0;
  private rows: Float64Array[] | undefined = [];

  constructor(dim: number) {
    if (!Number.isInteger(dim) || dim <= 0)
      throw new MetricsError("E_ARGUMENT", `feature dimension must be > 0, got ${dim}`);
    this.dim = dim;
    this.sum = new Float64Array(dim);
    this.sxx = new Float64Array(dim * dim);
    this.block = new Float64Array(dim * FLUSH_ROWS);
  }

  get count(): number {
    return this.n;
  }

  /** Add one feature vector of length D (throws E_SHAPE / E_NUMERIC naming `what`). */
  add(x: ArrayLike<number>, what = `feature vector #${this.n}`): void {
    const D = this.dim;
    if (x.length !== D) throw new MetricsError("E_SHAPE", `${what} has ${x.length} values, expected ${D}`);
    for (let i = 0; i < D; i++) {
      if (!Number.isFinite(x[i])) throw new MetricsError("E_NUMERIC", `${what} holds a non-finite value at ${i}`);
    }
    if (this.shift === undefined) this.shift = Float64Array.from(x);
    const sh = this.shift;
    const col = this.pending;
    for (let i = 0; i < D; i++) {
      const c = x[i] - sh[i];
      this.sum[i] += c;
      this.block[i * FLUSH_ROWS + col] = c;
    }
    if (this.rows !== undefined) {
      if (this.rows.length < D) this.rows.push(Float64Array.from(x));
      else this.rows = undefined; // N > D: the covariance is (generically) full rank, no factor needed
    }
    this.n++;
    if (++this.pending === FLUSH_ROWS) this.flush();
  }

  private flush(): void {
    const D = this.dim;
    const B = this.pending;
    const blk = this.block;
    for (let i = 0; i < D; i++) {
      const bi = i * FLUSH_ROWS;
      const ri = i * D;
      for (let j = 0; j <= i; j++) {
        const bj = j * FLUSH_ROWS;
        let s = 0;
        for (let b = 0; b < B; b++) s += blk[bi + b] * blk[bj + b];
        this.sxx[ri + j] += s;
      }
    }
    this.pending = 0;
  }

  /** Mean and unbiased covariance; needs at least 2 vectors. */
  stats(): FeatureStats {
    if (this.n < 2)
      throw new MetricsError("E_EMPTY", `need at least 2 feature vectors for a covariance, got ${this.n}`);
    if (this.pending > 0) this.flush();
    const D = this.dim;
    const n = this.n;
    const sh = this.shift as Float64Array;
    const mean = new Float64Array(D);
    const mc = new Float64Array(D); // mean of the shifted values
    for (let i = 0; i < D; i++) {
      mc[i] = this.sum[i] / n;
      mean[i] = sh[i] + mc[i];
    }
    const cov = new Float64Array(D * D);
    for (let i = 0; i < D; i++) {
      for (let j = 0; j <= i; j++) {
        const c = (this.sxx[i * D + j] - n * mc[i] * mc[j]) / (n - 1);
        cov[i * D + j] = c;
        cov[j * D + i] = c;
      }
    }
    if (this.rows === undefined) return { n, dim: D, mean, cov };
    const factor = new Float64Array(n * D);
    const scale = 1 / Math.sqrt(n - 1);
    for (let r = 0; r < n; r++) {
      const row = this.rows[r];
      for (let i = 0; i < D; i++) factor[r * D + i] = (row[i] - mean[i]) * scale;
    }
    return { n, dim: D, mean, cov, factor };
  }
}

/** Stats of N feature vectors given row-major as [N, D]. */
export function featureStats(features: ArrayLike<number>, n: number, dim: number): FeatureStats {
  if (features.length !== n * dim) {
    throw new MetricsError("E_SHAPE", `features of length ${features.length} do not fit [${n}, ${dim}]`);
  }
  const acc = new FeatureAccumulator(dim);
  const row = new Float64Array(dim);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < dim; i++) row[i] = features[r * dim + i];
    acc.add(row, `feature row ${r}`);
  }
  return acc.stats();
}

/**
 * Σ √λ over the eigenvalues of a PSD matrix. Eigenvalues within the round-off of the eigen-solver,
 * |λ| ≤ n·ε·max|λ| (backward error of Householder + QL, Golub & Van Loan §8.3), count as 0: a singular matrix
 * (the centered-sample Gram matrix always is) would otherwise add √(ε·λmax)-sized noise that differs between
 * equally exact solvers.
 */
function sumSqrtClamped(eig: Float64Array): number {
  let max = 0;
  for (const l of eig) max = Math.max(max, Math.abs(l));
  const floor = eig.length * Number.EPSILON * max;
  let t = 0;
  for (const l of eig) if (l > floor) t += Math.sqrt(l);
  return t;
}

/**
 * tr √(Σa·Σb) without forming a non-symmetric product. The eigenvalues of Σa·Σb equal those of the symmetric PSD
 * matrix Fᵀ·Σb·F for any factor Σa = F·Fᵀ, so the trace is Σ √λᵢ of a symmetric eigenvalue problem:
 * 1. "sample-factor" — when either side kept its samples (N ≤ D, singular covariance): F = centered samples /
 *    √(N − 1), an N x N problem; exact, no regularization.
 * 2. "cholesky" — F = L from Σ = L·Lᵀ when Σa (or else Σb) is numerically positive definite.
 * 3. "pivoted-cholesky" — otherwise (singular Σ without samples) when the linear algebra has a pivoted Cholesky
 *    (the native one): F = Pᵀ·L from P·Σa·Pᵀ ≈ L·Lᵀ, pivots ≤ 1e-12·max(diag Σa) dropped, an r x r problem.
 * 4. "eigen" — otherwise (the TypeScript linear algebra): F = V₊·√Λ₊ from ml-matrix's eigen-decomposition of Σa,
 *    eigenvalues ≤ 1e-12·λmax dropped — the symmetric form √Σa·Σb·√Σa of the brief, with √Σa the PSD square root.
 * Eigenvalues within the solver's round-off count as 0 (see sumSqrtClamped).
 */
export function traceSqrtProduct(
  a: FeatureStats,
  b: FeatureStats,
  linalg: FrechetLinalg = defaultLinalg,
): { value: number; method: TraceSqrtMethod } {
  const D = a.dim;
  if (a.factor !== undefined && b.factor !== undefined) {
    // Both sides singular with samples: Fa·Σb·Faᵀ = K·Kᵀ with K = Fa·Fbᵀ (Na x Nb), no D x D product at all.
    const [p, q] = a.n <= b.n ? [a, b] : [b, a];
    const k = mulRowsT(p.factor as Float64Array, p.n, q.factor as Float64Array, q.n, D);
    return { value: sumSqrtClamped(linalg.eigenvalues(gramLower(k, p.n, q.n), p.n)), method: "sample-factor" };
  }
  const withFactor = [a, b].filter((s) => s.factor !== undefined);
  if (withFactor.length > 0) {
    const f = withFactor[0];
    const other = f === a ? b : a;
    const m = sandwichRows(f.factor as Float64Array, f.n, other.cov, D);
    return { value: sumSqrtClamped(linalg.eigenvalues(m, f.n)), method: "sample-factor" };
  }
  for (const [p, q] of [
    [a, b],
    [b, a],
  ]) {
    const l = linalg.cholesky(p.cov, D);
    if (l) {
      const m = linalg.congruence(l, q.cov, D);
      return { value: sumSqrtClamped(linalg.eigenvalues(m, D)), method: "cholesky" };
    }
  }
  if (linalg.pivotedCholesky) {
    const { l, perm, rank: r } = linalg.pivotedCholesky(a.cov, D);
    if (r === 0) return { value: 0, method: "pivoted-cholesky" };
    const sp = new Float64Array(D * D); // P·Σb·Pᵀ
    for (let i = 0; i < D; i++) {
      const row = perm[i] * D;
      for (let k = 0; k < D; k++) sp[i * D + k] = b.cov[row + perm[k]];
    }
    const m = linalg.congruence(l, sp, D); // zero beyond row/column r
    const lead = new Float64Array(r * r);
    for (let i = 0; i < r; i++) lead.set(m.subarray(i * D, i * D + i + 1), i * r);
    return { value: sumSqrtClamped(linalg.eigenvalues(lead, r)), method: "pivoted-cholesky" };
  }
  const evd = new EigenvalueDecomposition(new Matrix(toRows(a.cov, D)), { assumeSymmetric: true });
  const lam = evd.realEigenvalues;
  const vec = evd.eigenvectorMatrix;
  const lmax = Math.max(...lam.map(Math.abs));
  const keep = lam.map((l, i) => [l, i] as const).filter(([l]) => l > 1e-12 * lmax);
  const r = keep.length;
  if (r === 0) return { value: 0, method: "eigen" };
  const f = new Float64Array(r * D); // rows: √λ·vᵀ
  keep.forEach(([l, i], k) => {
    const s = Math.sqrt(l);
    for (let j = 0; j < D; j++) f[k * D + j] = s * vec.get(j, i);
  });
  const m = sandwichRows(f, r, b.cov, D);
  return { value: sumSqrtClamped(linalg.eigenvalues(m, r)), method: "eigen" };
}

function toRows(a: Float64Array, n: number): number[][] {
  const rows: number[][] = [];
  for (let i = 0; i < n; i++) rows.push(Array.from(a.subarray(i * n, (i + 1) * n)));
  return rows;
}

/**
 * Fréchet distance between two Gaussians fitted to feature sets (Heusel et al. 2017, the FID formula as in
 * clean-fid): ‖μa − μb‖² + tr Σa + tr Σb − 2·tr √(Σa·Σb), with unbiased covariances. See traceSqrtProduct for
 * how the matrix square root is handled (including singular covariances). `linalg` defaults to the process-wide
 * choice (TypeScript unless `useKernelsFrechet` / `setFrechetLinalg` changed it).
 */
export function frechetDistance(
  a: FeatureStats,
  b: FeatureStats,
  opts: { linalg?: FrechetLinalg } = {},
): FrechetResult {
  const linalg = opts.linalg ?? defaultLinalg;
  if (a.dim !== b.dim) throw new MetricsError("E_SHAPE", `feature dimensions differ: ${a.dim} vs ${b.dim}`);
  const D = a.dim;
  let meanTerm = 0;
  let tr = 0;
  for (let i = 0; i < D; i++) {
    meanTerm += (a.mean[i] - b.mean[i]) ** 2;
    tr += a.cov[i * D + i] + b.cov[i * D + i];
  }
  const ts = traceSqrtProduct(a, b, linalg);
  const covTerm = tr - 2 * ts.value;
  const value = meanTerm + covTerm;
  if (!Number.isFinite(value)) throw new MetricsError("E_NUMERIC", "Fréchet distance is not finite");
  return { value, meanTerm, covTerm, traceSqrt: ts.value, method: ts.method, linalg: linalg.name };
}
