import { Matrix, SingularValueDecomposition } from "ml-matrix";
import { LowRankError } from "./errors.js";
import { defaultGemm, type Gemm } from "./gemm.js";
import { orthonormalizeRows } from "./orth.js";
import { SeededRng } from "./rng.js";

export type SvdMethod = "auto" | "exact" | "randomized";

export interface TruncatedSvdOptions {
  /** "auto" (default): exact when both sides are ≤ `exactMaxSide`, randomized otherwise. */
  method?: SvdMethod;
  /** Largest side (default 256) for which "auto" picks the exact ml-matrix SVD (measured: 0.55 s at 256x256, 2.9 s at 256x1024, 8.3 s at 512x1024, against 0.47 s randomized; see docs/benchmarks.md). */
  exactMaxSide?: number;
  /** Extra sketch columns beyond the rank (default 16; Halko, Martinsson & Tropp 2011 §4.2 suggest 5–10+). */
  oversample?: number;
  /**
   * Subspace (power) iterations. A number runs exactly that many; "auto" (default) runs until the top-R singular
   * values change by less than `tolerance` (relative) between iterations, at least 1 and at most `maxPowerIterations`.
   */
  powerIterations?: number | "auto";
  /** Cap for "auto" power iterations (default 8). */
  maxPowerIterations?: number;
  /** Relative change of the top-R singular values that ends "auto" iterations (default 1e-9). */
  tolerance?: number;
  /** Seed of the Gaussian sketch (default 0): the result is deterministic per seed. */
  seed?: number;
  /** Matrix product to use (default: `defaultGemm()`). */
  gemm?: Gemm;
  /** Name of the matrix, for error messages. */
  name?: string;
}

/**
 * A ≈ U·diag(S)·Vᵀ truncated to rank R.
 *
 * | field | shape  | dtype   | layout                               |
 * | ----- | ------ | ------- | ------------------------------------ |
 * | u     | [M, R] | float64 | row-major, orthonormal columns       |
 * | s     | [R]    | float64 | descending, ≥ 0                      |
 * | vt    | [R, N] | float64 | row-major = Vᵀ, orthonormal rows     |
 */
export interface TruncatedSvd {
  rows: number;
  cols: number;
  rank: number;
  u: Float64Array;
  s: Float64Array;
  vt: Float64Array;
  /** ‖A‖_F. */
  frobeniusNorm: number;
  /** ‖A − U S Vᵀ‖_F = sqrt(‖A‖_F² − Σ s_i²) (exact for orthonormal U, V with S = Uᵀ A V). */
  residualNorm: number;
  method: "exact" | "randomized";
  /** Power iterations run (0 for exact). */
  powerIterations: number;
}

function checkInput(a: Float32Array | Float64Array, rows: number, cols: number, rank: number, name?: string): void {
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows <= 0 || cols <= 0)
    throw new LowRankError("E_SHAPE", `shape [${rows}, ${cols}] must be positive integers`, name);
  if (a.length !== rows * cols)
    throw new LowRankError("E_SHAPE", `${a.length} elements do not fit shape [${rows}, ${cols}]`, name);
  if (!Number.isInteger(rank) || rank < 0 || rank > Math.min(rows, cols))
    throw new LowRankError(
      "E_ARGUMENT",
      `rank ${rank} must be an integer in [0, ${Math.min(rows, cols)}] for shape [${rows}, ${cols}]`,
      name,
    );
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]))
      throw new LowRankError(
        "E_NONFINITE",
        `element ${i} (row ${Math.floor(i / cols)}, col ${i % cols}) is ${a[i]}; the SVD needs finite values`,
        name,
      );
  }
}

function frob2(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return s;
}

/** Rank-R truncated SVD of A [M, N] (row-major), exact or randomized. */
export function truncatedSvd(
  a: Float32Array | Float64Array,
  rows: number,
  cols: number,
  rank: number,
  opts: TruncatedSvdOptions = {},
): TruncatedSvd {
  checkInput(a, rows, cols, rank, opts.name);
  const method = chooseMethod(rows, cols, rank, opts);
  const f2 = frob2(a);
  if (rank === 0) {
    const n = Math.sqrt(f2);
    return {
      rows,
      cols,
      rank,
      u: new Float64Array(0),
      s: new Float64Array(0),
      vt: new Float64Array(0),
      frobeniusNorm: n,
      residualNorm: n,
      method,
      powerIterations: 0,
    };
  }
  const r = method === "exact" ? exactSvd(a, rows, cols, rank) : randomizedSvd(a, rows, cols, rank, opts);
  let kept = 0;
  for (let i = 0; i < rank; i++) kept += r.s[i] * r.s[i];
  return {
    rows,
    cols,
    rank,
    ...r,
    frobeniusNorm: Math.sqrt(f2),
    residualNorm: Math.sqrt(Math.max(0, f2 - kept)),
    method,
  };
}

/** Which path `truncatedSvd` takes for this shape and these options. */
export function chooseMethod(
  rows: number,
  cols: number,
  _rank: number,
  opts: TruncatedSvdOptions = {},
): "exact" | "randomized" {
  const m = opts.method ?? "auto";
  if (m === "exact" || m === "randomized") return m;
  if (m !== "auto") throw new LowRankError("E_ARGUMENT", `unknown SVD method "${String(m)}"`, opts.name);
  // A sketch as wide as the smaller side spans it exactly, so randomized stays exact there and never needs the
  // O(M·N·min) dense SVD; only small matrices go to ml-matrix.
  return Math.max(rows, cols) <= (opts.exactMaxSide ?? 256) ? "exact" : "randomized";
}

type Core = { u: Float64Array; s: Float64Array; vt: Float64Array; powerIterations: number };

function exactSvd(a: Float32Array | Float64Array, m: number, n: number, r: number): Core {
  const mat = Matrix.from1DArray(m, n, a instanceof Float64Array ? a : Float64Array.from(a));
  const svd = new SingularValueDecomposition(mat, {
    autoTranspose: true,
    computeLeftSingularVectors: true,
    computeRightSingularVectors: true,
  });
  const U = svd.leftSingularVectors;
  const V = svd.rightSingularVectors;
  const d = svd.diagonal;
  // ml-matrix returns the values in descending order; sort defensively (stable in index).
  const order = Array.from(d.keys()).sort((x, y) => d[y] - d[x] || x - y);
  const u = new Float64Array(m * r);
  const s = new Float64Array(r);
  const vt = new Float64Array(r * n);
  for (let c = 0; c < r; c++) {
    const k = order[c];
    s[c] = Math.max(0, d[k]);
    for (let i = 0; i < m; i++) u[i * r + c] = U.get(i, k);
    for (let j = 0; j < n; j++) vt[c * n + j] = V.get(j, k);
  }
  return { u, s, vt, powerIterations: 0 };
}

/**
 * A matrix A [rows, cols] given only through its products with thin panels, for `randomizedSvdOf`: a caller
 * that holds A in another form (a packed native GEMM operand, a sum W·diag(λ) − D, …) never has to build it.
 *
 * | product       | reads           | returns            |
 * | ------------- | --------------- | ------------------ |
 * | `sketch`      | Zᵀ [L, cols] f64 | (A·Z)ᵀ [L, rows] f64 |
 * | `project`     | Qᵀ [L, rows] f64 | Qᵀ·A [L, cols] f64   |
 *
 * All panels are row-major; the returned arrays are owned by the SVD (it orthonormalizes them in place).
 */
export interface LinearOperator {
  readonly rows: number;
  readonly cols: number;
  sketch(zt: Float64Array, l: number): Float64Array;
  project(qt: Float64Array, l: number): Float64Array;
}

/** Options of `randomizedSvdOf` (those of `truncatedSvd` that apply, plus a warm start). */
export interface RandomizedSvdOptions
  extends Pick<
    TruncatedSvdOptions,
    "oversample" | "powerIterations" | "maxPowerIterations" | "tolerance" | "seed" | "name"
  > {
  /**
   * Warm start: rows of the initial sketch Zᵀ [S, cols] (e.g. the right singular vectors of a nearby matrix,
   * `vt` of an earlier result); the remaining L − S rows are Gaussian as without it. Default: all Gaussian.
   */
  start?: Float64Array;
  /**
   * Orthonormalizes the rows of a panel P [l, d] in place and returns a lower-triangular T [l, l] with
   * P_in = T·P_out (e.g. CholeskyQR on a native GEMM); may return null to fall back to `orthonormalizeRows`
   * (modified Gram–Schmidt twice, the default), e.g. when the panel is numerically rank-deficient.
   */
  orthonormalize?: (p: Float64Array, l: number, d: number) => Float64Array | null;
  /**
   * Pᵀ·C [d, r] for P [l, d] and C [l, r] (row-major), the products that turn the orthonormal sketches into the
   * singular vectors (U = Q·U_T, V = Q₂ᵀ·V_T), e.g. on a native GEMM. Default: float64 loops.
   */
  combine?: (p: Float64Array, l: number, d: number, c: Float64Array, r: number) => Float64Array;
}

/**
 * Rank-R randomized SVD of a matrix given by its products (the algorithm of `truncatedSvd`'s randomized path,
 * which calls this with GEMM products). `frobeniusNorm`/`residualNorm` are NaN: the operator does not expose ‖A‖.
 */
export function randomizedSvdOf(op: LinearOperator, rank: number, opts: RandomizedSvdOptions = {}): TruncatedSvd {
  const { rows, cols } = op;
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows <= 0 || cols <= 0)
    throw new LowRankError("E_SHAPE", `shape [${rows}, ${cols}] must be positive integers`, opts.name);
  if (!Number.isInteger(rank) || rank < 1 || rank > Math.min(rows, cols))
    throw new LowRankError(
      "E_ARGUMENT",
      `rank ${rank} must be an integer in [1, ${Math.min(rows, cols)}] for shape [${rows}, ${cols}]`,
      opts.name,
    );
  if (
    opts.start !== undefined &&
    (opts.start.length % cols !== 0 || opts.start.length / cols > rank + (opts.oversample ?? 16))
  )
    throw new LowRankError(
      "E_SHAPE",
      `warm start has ${opts.start.length} values: expected S rows of ${cols} with S ≤ rank + oversample`,
      opts.name,
    );
  const r = randomizedCore(op, rank, opts);
  return { rows, cols, rank, ...r, frobeniusNorm: Number.NaN, residualNorm: Number.NaN, method: "randomized" };
}

/**
 * Randomized subspace iteration with Rayleigh–Ritz (Halko, Martinsson & Tropp 2011, Alg. 4.4 + 5.1), all in
 * float64 with both sketches re-orthonormalized every iteration:
 *   Z ← Gaussian [N, L];  repeat { Q = orth(A Z); B = Qᵀ A = T·Q₂ (Q₂ orthonormal rows); SVD(T); Z ← Q₂ }.
 * Then A ≈ Q·B = (Q U_T) S (Q₂ᵀ V_T)ᵀ.
 */
function randomizedSvd(
  a: Float32Array | Float64Array,
  m: number,
  n: number,
  r: number,
  opts: TruncatedSvdOptions,
): Core {
  const gemm = opts.gemm ?? defaultGemm();
  const a64 = a instanceof Float64Array ? a : Float64Array.from(a);
  return randomizedCore(
    {
      rows: m,
      cols: n,
      sketch: (zt, l) => gemm.nt(zt, a64, l, m, n), // (A Z)ᵀ [L, M]
      project: (qt, l) => gemm.nn(qt, a64, l, n, m), // B = Qᵀ A [L, N]
    },
    r,
    opts,
  );
}

function randomizedCore(op: LinearOperator, r: number, opts: RandomizedSvdOptions): Core {
  const { rows: m, cols: n } = op;
  const rng = new SeededRng(opts.seed ?? 0);
  const l = Math.min(r + (opts.oversample ?? 16), m, n);
  const fixed = typeof opts.powerIterations === "number" ? opts.powerIterations : undefined;
  if (fixed !== undefined && (!Number.isInteger(fixed) || fixed < 0))
    throw new LowRankError("E_ARGUMENT", `powerIterations ${fixed} must be a non-negative integer`, opts.name);
  const maxIt = fixed ?? opts.maxPowerIterations ?? 8;
  const tol = opts.tolerance ?? 1e-9;
  const orth = (p: Float64Array, rows: number, d: number): Float64Array =>
    opts.orthonormalize?.(p, rows, d) ?? orthonormalizeRows(p, rows, d, rng);
  let zt = rng.normals(l * n); // Zᵀ [L, N]
  if (opts.start !== undefined) zt.set(opts.start.subarray(0, Math.min(opts.start.length, l * n)));
  orth(zt, l, n);
  let prev: Float64Array | undefined;
  let it = 0;
  for (;;) {
    const qt = op.sketch(zt, l); // (A Z)ᵀ [L, M]
    if (qt.length !== l * m)
      throw new LowRankError("E_SHAPE", `sketch returned ${qt.length} values, expected [${l}, ${m}]`, opts.name);
    orth(qt, l, m);
    const b = op.project(qt, l); // B = Qᵀ A [L, N]
    if (b.length !== l * n)
      throw new LowRankError("E_SHAPE", `project returned ${b.length} values, expected [${l}, ${n}]`, opts.name);
    const t = orth(b, l, n); // B = T · Q₂, b now holds Q₂ [L, N]
    if (fixed !== undefined && it < fixed) {
      // a fixed count needs no convergence check: skip the small SVD until the last iteration
      zt = b;
      it++;
      continue;
    }
    const small = new SingularValueDecomposition(Matrix.from1DArray(l, l, t), {
      computeLeftSingularVectors: true,
      computeRightSingularVectors: true,
    });
    const s = Float64Array.from(small.diagonal.slice(0, r), (v) => Math.max(0, v));
    let done = fixed !== undefined ? it >= fixed : it >= maxIt;
    if (!done && fixed === undefined && prev !== undefined && it >= 1) {
      let change = 0;
      const floor = s[0] * 1e-300 + Number.MIN_VALUE;
      for (let i = 0; i < r; i++) change = Math.max(change, Math.abs(s[i] - prev[i]) / Math.max(s[i], floor));
      done = change <= tol;
    }
    if (done) return finish(qt, b, small, l, m, n, r, s, it, opts.combine);
    prev = s;
    zt = b;
    it++;
  }
}

function finish(
  qt: Float64Array,
  q2: Float64Array,
  small: SingularValueDecomposition,
  l: number,
  m: number,
  n: number,
  r: number,
  s: Float64Array,
  it: number,
  combine?: RandomizedSvdOptions["combine"],
): Core {
  const Ut = small.leftSingularVectors; // [L, L]
  const Vt = small.rightSingularVectors; // [L, L]
  if (combine) {
    const cu = new Float64Array(l * r);
    const cv = new Float64Array(l * r);
    for (let i = 0; i < l; i++)
      for (let c = 0; c < r; c++) {
        cu[i * r + c] = Ut.get(i, c);
        cv[i * r + c] = Vt.get(i, c);
      }
    const u = combine(qt, l, m, cu, r); // U = Q·U_T [M, r]
    const v = combine(q2, l, n, cv, r); // V = Q₂ᵀ·V_T [N, r]
    if (u.length !== m * r || v.length !== n * r)
      throw new LowRankError(
        "E_SHAPE",
        `combine returned ${u.length} and ${v.length} values, expected [${m}, ${r}] and [${n}, ${r}]`,
      );
    const vt = new Float64Array(r * n);
    for (let y = 0; y < n; y++) for (let c = 0; c < r; c++) vt[c * n + y] = v[y * r + c];
    return { u, s, vt, powerIterations: it };
  }
  const u = new Float64Array(m * r);
  const ut = new Float64Array(r);
  for (let i = 0; i < l; i++) {
    const row = i * m;
    for (let c = 0; c < r; c++) ut[c] = Ut.get(i, c);
    // u[x, c] += Q[x, i]·U_T[i, c]: the same sums in the same order (i outer), with u's rows written contiguously
    for (let x = 0; x < m; x++) {
      const q = qt[row + x];
      const o = x * r;
      for (let c = 0; c < r; c++) if (ut[c] !== 0) u[o + c] += q * ut[c];
    }
  }
  const vt = new Float64Array(r * n);
  for (let c = 0; c < r; c++) {
    const out = c * n;
    for (let i = 0; i < l; i++) {
      const w = Vt.get(i, c);
      if (w === 0) continue;
      const row = i * n;
      for (let y = 0; y < n; y++) vt[out + y] += q2[row + y] * w;
    }
  }
  return { u, s, vt, powerIterations: it };
}

/** U·diag(S)·Vᵀ as a dense row-major [M, N] float64 matrix (for tests and small layers). */
export function reconstruct(svd: Pick<TruncatedSvd, "rows" | "cols" | "rank" | "u" | "s" | "vt">): Float64Array {
  const { rows: m, cols: n, rank: r, u, s, vt } = svd;
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let c = 0; c < r; c++) {
      const w = u[i * r + c] * s[c];
      if (w === 0) continue;
      const row = i * n;
      const vr = c * n;
      for (let j = 0; j < n; j++) out[row + j] += w * vt[vr + j];
    }
  }
  return out;
}
