/**
 * Operator 6: dense symmetric float64 linear algebra, the three steps of tr √(Σa·Σb) in the Fréchet distance
 * (@svdquant/metrics). Matrices are row-major Float64Array n x n; "lower" means the entries j ≤ i.
 *
 * | function                  | input                                            | output                                   |
 * | ------------------------- | ------------------------------------------------ | ---------------------------------------- |
 * | `choleskyF64`             | A [n, n] f64, lower triangle read (SPD)          | L [n, n] f64 lower, zeros above          |
 * | `pivotedCholeskyF64`      | A [n, n] f64, lower triangle read (PSD)          | L [n, n] f64 lower, zero beyond column `rank`; perm [n] i32 |
 * | `congruenceF64`           | L [n, n] f64 lower triangle read, S [n, n] f64 full symmetric | M = Lᵀ·S·L [n, n] f64, lower triangle, zeros above |
 * | `symmetricEigenvaluesF64` | A [n, n] f64, lower triangle read                | eigenvalues [n] f64, ascending           |
 *
 * Native: blocked algorithms on one f64 GEMM (AVX2+FMA 6x8 micro-kernel or portable C++, threaded), see
 * kernels/cpu/linalg_f64.cc. Without the addon the float64 references of reference.ts run (slow: the Jacobi
 * eigenvalue method is O(n³) per sweep).
 */
import { KernelsError } from "./errors.js";
import { native } from "./native.js";
import { refCholeskyF64, refCongruenceF64, refPivotedCholeskyF64, refSymmetricEigenvaluesF64 } from "./reference.js";
import { dim, finite, tensor } from "./validate.js";

function call<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new KernelsError("E_NATIVE", `${what}: ${(e as Error).message}`, { cause: e });
  }
}

function square(name: string, a: unknown, n: number): Float64Array {
  dim("n", n);
  const t = tensor(name, a, Float64Array, [n, n]);
  finite(name, t);
  return t;
}

export interface CholeskyF64Result {
  /** true when A is numerically positive definite (every pivot > tol·max(diag A)) */
  readonly ok: boolean;
  /** L with A = L·Lᵀ, zeros above the diagonal (meaningless when !ok) */
  readonly l: Float64Array;
  /** the first column whose pivot failed, −1 when ok */
  readonly failedAt: number;
}

/**
 * Cholesky factorization A = L·Lᵀ of a symmetric matrix (lower triangle read; `a` is not modified). A pivot
 * ≤ tol·max(diag A) (default tol 1e-12) or a non-positive diagonal means "not numerically positive definite":
 * `ok` false, no throw.
 */
export function choleskyF64(a: Float64Array, n: number, opts: { tol?: number; name?: string } = {}): CholeskyF64Result {
  const name = opts.name ?? "a";
  square(name, a, n);
  const tol = opts.tol ?? 1e-12;
  if (!(tol >= 0) || !Number.isFinite(tol))
    throw new KernelsError("E_ARGUMENT", `tol must be a finite number ≥ 0, got ${tol}`);
  const nb = native();
  if (!nb) {
    const r = refCholeskyF64(a, n, tol);
    return { ok: r.failedAt < 0, l: r.l, failedAt: r.failedAt };
  }
  const l = Float64Array.from(a);
  const failedAt = call("choleskyF64", () => nb.choleskyF64({ a: l, n, tol }));
  for (let i = 0; i < n; i++) l.fill(0, i * n + i + 1, (i + 1) * n); // the upper part still holds A
  return { ok: failedAt < 0, l, failedAt };
}

export interface PivotedCholeskyF64Result {
  /** L [n, n], lower, zero beyond column `rank`: P·A·Pᵀ ≈ L·Lᵀ */
  readonly l: Float64Array;
  /** row i of P·A·Pᵀ is row perm[i] of A */
  readonly perm: Int32Array;
  /** the number of pivots > tol·max(diag A) */
  readonly rank: number;
}

/**
 * Pivoted (positive semidefinite) Cholesky, LAPACK dpstf2's order: the largest remaining pivot first, stopping when
 * it is ≤ tol·max(diag A) (default 1e-12). A factor of a singular covariance: P·A·Pᵀ = L·Lᵀ + E with
 * E's diagonal ≤ tol·max(diag A). Lower triangle read; `a` is not modified.
 */
export function pivotedCholeskyF64(
  a: Float64Array,
  n: number,
  opts: { tol?: number; name?: string } = {},
): PivotedCholeskyF64Result {
  square(opts.name ?? "a", a, n);
  const tol = opts.tol ?? 1e-12;
  if (!(tol >= 0) || !Number.isFinite(tol))
    throw new KernelsError("E_ARGUMENT", `tol must be a finite number ≥ 0, got ${tol}`);
  const nb = native();
  if (!nb) return refPivotedCholeskyF64(a, n, tol);
  const l = Float64Array.from(a);
  const perm = new Int32Array(n);
  const rank = call("pivotedCholeskyF64", () => nb.pivotedCholeskyF64({ a: l, n, tol, perm }));
  for (let i = 0; i < n; i++) l.fill(0, i * n + i + 1, (i + 1) * n); // the upper part still holds A
  return { l, perm, rank };
}

/**
 * M = Lᵀ·S·L for lower-triangular L (only its lower triangle is read) and symmetric S (all of it is read).
 * Returns the lower triangle of M with zeros above. ≈ 2n³/3 multiply-adds.
 */
export function congruenceF64(l: Float64Array, s: Float64Array, n: number): Float64Array {
  square("l", l, n);
  square("s", s, n);
  const m = new Float64Array(n * n);
  const nb = native();
  if (nb) call("congruenceF64", () => nb.congruenceF64({ l, s, n, m }));
  else {
    const full = refCongruenceF64(l, s, n);
    for (let i = 0; i < n; i++) m.set(full.subarray(i * n, i * n + i + 1), i * n);
  }
  return m;
}

/**
 * Eigenvalues of the symmetric matrix whose lower triangle is `a`, ascending. `overwrite: true` lets the native
 * path use `a` as its workspace (saves an n² copy; `a` is then destroyed).
 */
export function symmetricEigenvaluesF64(
  a: Float64Array,
  n: number,
  opts: { overwrite?: boolean; name?: string } = {},
): Float64Array {
  square(opts.name ?? "a", a, n);
  const nb = native();
  if (!nb) return refSymmetricEigenvaluesF64(a, n);
  const work = opts.overwrite ? a : Float64Array.from(a);
  const w = new Float64Array(n);
  call("symmetricEigenvaluesF64", () => nb.symEigvalsF64({ a: work, n, w }));
  return w.sort();
}
