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
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let s = a[rj + j];
    for (let k = 0; k < j; k++) s -= a[rj + k] * a[rj + k];
    if (!(s > floor)) return false;
    const ljj = Math.sqrt(s);
    a[rj + j] = ljj;
    const inv = 1 / ljj;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let t = a[ri + j];
      for (let k = 0; k < j; k++) t -= a[ri + k] * a[rj + k];
      a[ri + j] = t * inv;
    }
  }
  return true;
}

/**
 * Lower triangle of M = Lᵀ·S·L for lower-triangular L (n x n, only its lower triangle read) and symmetric S
 * (full n x n). Cost ≈ n³/2 + n³/6 multiply-adds.
 */
export function congruenceLower(l: Float64Array, s: Float64Array, n: number): Float64Array {
  // W = S·L: W[i][j] = Σ_{k ≥ j} S[i][k]·L[k][j]
  const w = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let k = 0; k < n; k++) {
      const sik = s[ri + k];
      const rk = k * n;
      for (let j = 0; j <= k; j++) w[ri + j] += sik * l[rk + j];
    }
  }
  // M[i][j] = Σ_{k ≥ i} L[k][i]·W[k][j], for j ≤ i
  const m = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const rk = k * n;
    for (let i = 0; i <= k; i++) {
      const lki = l[rk + i];
      if (lki === 0) continue;
      const ri = i * n;
      for (let j = 0; j <= i; j++) m[ri + j] += lki * w[rk + j];
    }
  }
  return m;
}

/**
 * Lower triangle of M = F·S·Fᵀ for F given as r rows of length n (r x n, row-major) and symmetric S (n x n).
 * Used with F = centered samples / sqrt(N − 1) so that Σ = FᵀF. Returns r x r.
 */
export function sandwichRows(f: Float64Array, r: number, s: Float64Array, n: number): Float64Array {
  const t = new Float64Array(r * n); // T = F·S
  for (let i = 0; i < r; i++) {
    const fi = i * n;
    for (let k = 0; k < n; k++) {
      const v = f[fi + k];
      if (v === 0) continue;
      const sk = k * n;
      for (let j = 0; j < n; j++) t[fi + j] += v * s[sk + j];
    }
  }
  const m = new Float64Array(r * r);
  for (let i = 0; i < r; i++) {
    for (let j = 0; j <= i; j++) {
      let acc = 0;
      const ti = i * n;
      const fj = j * n;
      for (let k = 0; k < n; k++) acc += t[ti + k] * f[fj + k];
      m[i * r + j] = acc;
    }
  }
  return m;
}

/**
 * Eigenvalues of a symmetric matrix (lower triangle of `a`, destroyed): Householder reduction to tridiagonal form
 * (Golub & Van Loan, Matrix Computations 4th ed., §8.3.1, without accumulating the transformations; ≈ (2/3)·2n³
 * multiply-adds over the lower triangle), then the implicit QL iteration with Wilkinson-style shifts on the
 * tridiagonal matrix. Returns the eigenvalues in no particular order.
 */
export function symmetricEigenvalues(a: Float64Array, n: number): Float64Array {
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  const v = new Float64Array(n);
  const y = new Float64Array(n);
  for (let k = 0; k < n - 2; k++) {
    const o = k + 1;
    const m = n - o;
    let sigma2 = 0;
    for (let i = 0; i < m; i++) {
      const x = a[(o + i) * n + k];
      v[i] = x;
      sigma2 += x * x;
    }
    d[k] = a[k * n + k];
    const x0 = v[0];
    const tail = sigma2 - x0 * x0;
    if (tail === 0) {
      e[k] = x0; // already tridiagonal in this column
      continue;
    }
    const sigma = Math.sqrt(sigma2);
    const alpha = x0 > 0 ? -sigma : sigma;
    e[k] = alpha;
    v[0] = x0 - alpha;
    const tau = 1 / (sigma2 - x0 * alpha); // = 2 / vᵀv
    // y = tau · B·v over the lower triangle of the trailing block B
    y.fill(0, 0, m);
    for (let i = 0; i < m; i++) {
      const row = (o + i) * n + o;
      const vi = v[i];
      let s = 0;
      for (let j = 0; j < i; j++) {
        const aij = a[row + j];
        s += aij * v[j];
        y[j] += aij * vi;
      }
      y[i] += s + a[row + i] * vi;
    }
    let pv = 0;
    for (let i = 0; i < m; i++) {
      y[i] *= tau;
      pv += y[i] * v[i];
    }
    const kk = 0.5 * tau * pv;
    for (let i = 0; i < m; i++) y[i] -= kk * v[i]; // w = p − K·v
    // B ← B − v·wᵀ − w·vᵀ (lower triangle)
    for (let i = 0; i < m; i++) {
      const row = (o + i) * n + o;
      const vi = v[i];
      const wi = y[i];
      for (let j = 0; j <= i; j++) a[row + j] -= vi * y[j] + wi * v[j];
    }
  }
  if (n >= 2) {
    d[n - 2] = a[(n - 2) * n + n - 2];
    e[n - 2] = a[(n - 1) * n + n - 2];
  }
  if (n >= 1) d[n - 1] = a[(n - 1) * n + n - 1];
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
