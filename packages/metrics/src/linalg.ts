/**
 * Dense symmetric linear algebra in float64 for the Fréchet distance. Matrices are row-major Float64Array n x n;
 * "lower" routines read and write only the lower triangle (j ≤ i).
 */

/**
 * In-place Cholesky factorization A = L·Lᵀ of a symmetric matrix (lower triangle read, L written there).
 * Returns false (A partly overwritten) when a pivot is ≤ tol·max(diag A), i.e. A is not numerically positive
 * definite.
 */
export function choleskyLower(a: Float64Array, n: number, tol = 1e-12): boolean {
  let maxDiag = 0;
  for (let i = 0; i < n; i++) maxDiag = Math.max(maxDiag, a[i * n + i]);
  if (!(maxDiag > 0)) return false;
  const floor = tol * maxDiag;
  const pivot = (j: number): number => {
    const rj = j * n;
    let s = a[rj + j];
    for (let k = 0; k < j; k++) s -= a[rj + k] * a[rj + k];
    return s > floor ? Math.sqrt(s) : Number.NaN;
  };
  // Two columns (j, j+1) per sweep, so each row i is streamed once for both dot products.
  let j = 0;
  for (; j + 1 < n; j += 2) {
    const rj = j * n;
    const rj1 = rj + n;
    const ljj = pivot(j);
    if (Number.isNaN(ljj)) return false;
    a[rj + j] = ljj;
    let t = a[rj1 + j];
    for (let k = 0; k < j; k++) t -= a[rj1 + k] * a[rj + k];
    const l10 = t / ljj;
    a[rj1 + j] = l10;
    const l11 = pivot(j + 1);
    if (Number.isNaN(l11)) return false;
    a[rj1 + j + 1] = l11;
    for (let i = j + 2; i < n; i++) {
      const ri = i * n;
      let t0 = a[ri + j];
      let t1 = a[ri + j + 1];
      for (let k = 0; k < j; k++) {
        const lik = a[ri + k];
        t0 -= lik * a[rj + k];
        t1 -= lik * a[rj1 + k];
      }
      const li0 = t0 / ljj;
      a[ri + j] = li0;
      a[ri + j + 1] = (t1 - li0 * l10) / l11;
    }
  }
  if (j < n) {
    const ljj = pivot(j);
    if (Number.isNaN(ljj)) return false;
    a[j * n + j] = ljj;
  }
  return true;
}

/**
 * Lower triangle of M = Lᵀ·S·L for lower-triangular L (n x n, only its lower triangle read) and symmetric S
 * (full n x n). Cost ≈ n³/2 + n³/6 multiply-adds.
 */
export function congruenceLower(l: Float64Array, s: Float64Array, n: number): Float64Array {
  // W = S·L: W[i][j] = Σ_{k ≥ j} S[i][k]·L[k][j]; four rows of W share each streamed row of L.
  const w = new Float64Array(n * n);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const r0 = i * n;
    const r1 = r0 + n;
    const r2 = r1 + n;
    const r3 = r2 + n;
    for (let k = 0; k < n; k++) {
      const s0 = s[r0 + k];
      const s1 = s[r1 + k];
      const s2 = s[r2 + k];
      const s3 = s[r3 + k];
      const rk = k * n;
      for (let j = 0; j <= k; j++) {
        const b = l[rk + j];
        w[r0 + j] += s0 * b;
        w[r1 + j] += s1 * b;
        w[r2 + j] += s2 * b;
        w[r3 + j] += s3 * b;
      }
    }
  }
  for (; i < n; i++) {
    const ri = i * n;
    for (let k = 0; k < n; k++) {
      const sik = s[ri + k];
      const rk = k * n;
      for (let j = 0; j <= k; j++) w[ri + j] += sik * l[rk + j];
    }
  }
  // M[i][j] = Σ_{k ≥ i} L[k][i]·W[k][j] for j ≤ i; four rows of M share each streamed row of W.
  // (Entries above the diagonal inside a 4-row block are written too and never read.)
  const m = new Float64Array(n * n);
  i = 0;
  for (; i + 4 <= n; i += 4) {
    const r0 = i * n;
    const r1 = r0 + n;
    const r2 = r1 + n;
    const r3 = r2 + n;
    const end = i + 4;
    for (let k = i; k < n; k++) {
      const rk = k * n;
      const l0 = l[rk + i];
      const l1 = k >= i + 1 ? l[rk + i + 1] : 0;
      const l2 = k >= i + 2 ? l[rk + i + 2] : 0;
      const l3 = k >= i + 3 ? l[rk + i + 3] : 0;
      for (let j = 0; j < end; j++) {
        const b = w[rk + j];
        m[r0 + j] += l0 * b;
        m[r1 + j] += l1 * b;
        m[r2 + j] += l2 * b;
        m[r3 + j] += l3 * b;
      }
    }
  }
  for (; i < n; i++) {
    const ri = i * n;
    for (let k = i; k < n; k++) {
      const lki = l[k * n + i];
      const rk = k * n;
      for (let j = 0; j <= i; j++) m[ri + j] += lki * w[rk + j];
    }
  }
  return m;
}

/** C = A·Bᵀ for A (r x n) and B (q x n), both row-major: r x q dot products of contiguous rows. */
export function mulRowsT(a: Float64Array, r: number, b: Float64Array, q: number, n: number): Float64Array {
  const c = new Float64Array(r * q);
  for (let i = 0; i < r; i++) {
    const ai = i * n;
    for (let j = 0; j < q; j++) {
      const bj = j * n;
      let s = 0;
      for (let k = 0; k < n; k++) s += a[ai + k] * b[bj + k];
      c[i * q + j] = s;
    }
  }
  return c;
}

/** Lower triangle of G = K·Kᵀ for K (r x q, row-major). */
export function gramLower(k: Float64Array, r: number, q: number): Float64Array {
  const g = new Float64Array(r * r);
  for (let i = 0; i < r; i++) {
    const ki = i * q;
    for (let j = 0; j <= i; j++) {
      const kj = j * q;
      let s = 0;
      for (let t = 0; t < q; t++) s += k[ki + t] * k[kj + t];
      g[i * r + j] = s;
    }
  }
  return g;
}

/**
 * Lower triangle of M = F·S·Fᵀ for F given as r rows of length n (r x n, row-major) and symmetric S (n x n).
 * Used with F = centered samples / sqrt(N − 1) so that Σ = FᵀF. Returns r x r.
 */
export function sandwichRows(f: Float64Array, r: number, s: Float64Array, n: number): Float64Array {
  const t = new Float64Array(r * n); // T = F·S, four rows of T per streamed row of S
  let i = 0;
  for (; i + 4 <= r; i += 4) {
    const f0 = i * n;
    const f1 = f0 + n;
    const f2 = f1 + n;
    const f3 = f2 + n;
    for (let k = 0; k < n; k++) {
      const v0 = f[f0 + k];
      const v1 = f[f1 + k];
      const v2 = f[f2 + k];
      const v3 = f[f3 + k];
      const sk = k * n;
      for (let j = 0; j < n; j++) {
        const x = s[sk + j];
        t[f0 + j] += v0 * x;
        t[f1 + j] += v1 * x;
        t[f2 + j] += v2 * x;
        t[f3 + j] += v3 * x;
      }
    }
  }
  for (; i < r; i++) {
    const fi = i * n;
    for (let k = 0; k < n; k++) {
      const v = f[fi + k];
      const sk = k * n;
      for (let j = 0; j < n; j++) t[fi + j] += v * s[sk + j];
    }
  }
  const m = new Float64Array(r * r);
  for (let a = 0; a < r; a++) {
    for (let b = 0; b <= a; b++) {
      let acc = 0;
      const ta = a * n;
      const fb = b * n;
      for (let k = 0; k < n; k++) acc += t[ta + k] * f[fb + k];
      m[a * r + b] = acc;
    }
  }
  return m;
}

/**
 * Eigenvalues of a symmetric matrix (lower triangle of `a`, destroyed): Householder reduction to tridiagonal form
 * (Golub & Van Loan, Matrix Computations 4th ed., §8.3.1, without accumulating the transformations), then the
 * implicit QL iteration on the tridiagonal matrix. Returns the eigenvalues in no particular order.
 *
 * Memory traffic dominates at large n, so each step makes ONE pass over the trailing lower triangle: it applies the
 * previous step's rank-2 update B ← B − v·wᵀ − w·vᵀ and, on the freshly updated values, accumulates this step's
 * product B·v (the previous update is applied to the next Householder column first, O(n) extra work).
 */
export function symmetricEigenvalues(a: Float64Array, n: number): Float64Array {
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  let v = new Float64Array(n); // this step's Householder vector (global indices k+1..n−1)
  let y = new Float64Array(n); // B·v, then w
  let vp = new Float64Array(n); // previous step's v and w (indices k..n−1); zero before the first step
  let wp = new Float64Array(n);
  for (let k = 0; k < n - 2; k++) {
    // Column k below the diagonal and the diagonal entry, with the pending update applied.
    const vk = vp[k];
    const wk = wp[k];
    d[k] = a[k * n + k] - 2 * vk * wk;
    let sigma2 = 0;
    for (let i = k + 1; i < n; i++) {
      const x = a[i * n + k] - vp[i] * wk - wp[i] * vk;
      v[i] = x;
      sigma2 += x * x;
    }
    const x0 = v[k + 1];
    const tail = sigma2 - x0 * x0;
    let tau = 0;
    if (tail === 0) {
      e[k] = x0; // column already reduced: H = I
      v.fill(0, k + 1);
    } else {
      const sigma = Math.sqrt(sigma2);
      const alpha = x0 > 0 ? -sigma : sigma;
      e[k] = alpha;
      v[k + 1] = x0 - alpha;
      tau = 1 / (sigma2 - x0 * alpha); // = 2 / vᵀv
    }
    // Fused pass over the trailing lower triangle (rows/cols k+1..n−1): apply (vp, wp), accumulate y = B·v.
    // Two rows at a time, so each load of vp[j], wp[j], v[j], y[j] serves both.
    y.fill(0, k + 1);
    let i = k + 1;
    for (; i + 1 < n; i += 2) {
      const r0 = i * n;
      const r1 = r0 + n;
      const vp0 = vp[i];
      const wp0 = wp[i];
      const v0 = v[i];
      const vp1 = vp[i + 1];
      const wp1 = wp[i + 1];
      const v1 = v[i + 1];
      let s0 = 0;
      let s1 = 0;
      for (let j = k + 1; j < i; j++) {
        const vpj = vp[j];
        const wpj = wp[j];
        const vj = v[j];
        const a0 = a[r0 + j] - (vp0 * wpj + wp0 * vpj);
        const a1 = a[r1 + j] - (vp1 * wpj + wp1 * vpj);
        a[r0 + j] = a0;
        a[r1 + j] = a1;
        s0 += a0 * vj;
        s1 += a1 * vj;
        y[j] += a0 * v0 + a1 * v1;
      }
      // the 2x2 corner: (i, i), (i+1, i), (i+1, i+1)
      const a00 = a[r0 + i] - 2 * vp0 * wp0;
      const a10 = a[r1 + i] - (vp1 * wp0 + wp1 * vp0);
      const a11 = a[r1 + i + 1] - 2 * vp1 * wp1;
      a[r0 + i] = a00;
      a[r1 + i] = a10;
      a[r1 + i + 1] = a11;
      y[i] += s0 + a00 * v0 + a10 * v1;
      y[i + 1] += s1 + a10 * v0 + a11 * v1;
    }
    if (i < n) {
      const row = i * n;
      const vpi = vp[i];
      const wpi = wp[i];
      const vi = v[i];
      let s = 0;
      for (let j = k + 1; j < i; j++) {
        const aij = a[row + j] - (vpi * wp[j] + wpi * vp[j]);
        a[row + j] = aij;
        s += aij * v[j];
        y[j] += aij * vi;
      }
      const aii = a[row + i] - 2 * vpi * wpi;
      a[row + i] = aii;
      y[i] += s + aii * vi;
    }
    let pv = 0;
    for (let i = k + 1; i < n; i++) {
      y[i] *= tau;
      pv += y[i] * v[i];
    }
    const kk = 0.5 * tau * pv;
    for (let i = k + 1; i < n; i++) y[i] -= kk * v[i]; // w = p − K·v
    v[k] = 0;
    y[k] = 0;
    [vp, v] = [v, vp];
    [wp, y] = [y, wp];
  }
  if (n >= 2) {
    const i = n - 2;
    const j = n - 1;
    d[i] = a[i * n + i] - 2 * vp[i] * wp[i];
    e[i] = a[j * n + i] - (vp[j] * wp[i] + wp[j] * vp[i]);
    d[j] = a[j * n + j] - 2 * vp[j] * wp[j];
  } else if (n === 1) {
    d[0] = a[0];
  }
  tridiagonalQL(d, e, n);
  return d;
}

/**
 * Eigenvalues of the symmetric tridiagonal matrix with diagonal d and off-diagonal e (e[i] couples i and i+1),
 * in place into d, by the implicit QL method with shifts (Numerical Recipes 3rd ed. §11.4, eigenvalues only).
 */
export function tridiagonalQL(d: Float64Array, e: Float64Array, n: number): void {
  if (n > 0) e[n - 1] = 0;
  for (let l = 0; l < n; l++) {
    let iter = 0;
    for (;;) {
      let m = l;
      for (; m < n - 1; m++) {
        const dd = Math.abs(d[m]) + Math.abs(d[m + 1]);
        if (Math.abs(e[m]) <= Number.EPSILON * dd) break;
      }
      if (m === l) break;
      if (++iter > 60) throw new Error(`tridiagonal QL did not converge at index ${l}`);
      let g = (d[l + 1] - d[l]) / (2 * e[l]);
      let r = Math.hypot(g, 1);
      g = d[m] - d[l] + e[l] / (g + (g >= 0 ? r : -r));
      let s = 1;
      let c = 1;
      let p = 0;
      let i = m - 1;
      let deflated = false;
      for (; i >= l; i--) {
        const f = s * e[i];
        const b = c * e[i];
        r = Math.hypot(f, g);
        e[i + 1] = r;
        if (r === 0) {
          d[i + 1] -= p;
          e[m] = 0;
          deflated = true;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - p;
        r = (d[i] - g) * s + 2 * c * b;
        p = s * r;
        d[i + 1] = g + p;
        g = c * r - b;
      }
      if (deflated) continue;
      d[l] -= p;
      e[l] = g;
      e[m] = 0;
    }
  }
}
