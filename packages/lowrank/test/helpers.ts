import { SeededRng } from "../src/index.ts";

/** Naive float64 reference, written independently of the blocked GEMM: C = A·Bᵀ. */
export function naiveNT(a: ArrayLike<number>, b: ArrayLike<number>, m: number, n: number, k: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[j * k + p];
      c[i * n + j] = s;
    }
  return c;
}

/** A = U_true diag(sigma) V_trueᵀ + noise·G with random orthonormal-ish factors (Gram–Schmidt on Gaussians). */
export function matrixWithSpectrum(m: number, n: number, sigma: number[], noise: number, seed: number): Float64Array {
  const rng = new SeededRng(seed);
  const r = sigma.length;
  const u = gs(rng.normals(r * m), r, m);
  const v = gs(rng.normals(r * n), r, n);
  const a = new Float64Array(m * n);
  for (let c = 0; c < r; c++)
    for (let i = 0; i < m; i++) {
      const w = sigma[c] * u[c * m + i];
      for (let j = 0; j < n; j++) a[i * n + j] += w * v[c * n + j];
    }
  for (let i = 0; i < a.length; i++) a[i] += noise * rng.normal();
  return a;
}

function gs(p: Float64Array, l: number, d: number): Float64Array {
  for (let i = 0; i < l; i++) {
    for (let j = 0; j < i; j++) {
      let dot = 0;
      for (let x = 0; x < d; x++) dot += p[i * d + x] * p[j * d + x];
      for (let x = 0; x < d; x++) p[i * d + x] -= dot * p[j * d + x];
    }
    let nn = 0;
    for (let x = 0; x < d; x++) nn += p[i * d + x] ** 2;
    nn = Math.sqrt(nn);
    for (let x = 0; x < d; x++) p[i * d + x] /= nn;
  }
  return p;
}

export function frob(a: ArrayLike<number>, b?: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - (b ? b[i] : 0);
    s += d * d;
  }
  return Math.sqrt(s);
}
