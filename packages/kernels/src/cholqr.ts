/**
 * Operator 8: row-panel orthonormalization in float64 (kernels/cpu/cholqr_f64.cc), for randomized SVDs whose
 * sketches are short and wide: CholeskyQR repeated `passes` times (Fukaya et al. 2020, "CholeskyQR3") on the rows
 * of P [l, d] scaled to unit norm first. P is overwritten with orthonormal rows and the lower-triangular
 * T [l, l] with P_in = T·P_out is returned, or null (P then undefined) when the panel is too ill-conditioned for it:
 * a zero or non-finite row, a Cholesky pivot ≤ `minPivot`, or a last Gram matrix off the identity by more than
 * `maxDev` — the caller then orthonormalizes another way (e.g. Gram–Schmidt). Without the native addon the same
 * algorithm runs in TypeScript.
 *
 * | tensor | shape  | dtype   |                                  |
 * | ------ | ------ | ------- | -------------------------------- |
 * | p      | [l, d] | float64 | in/out, row-major                |
 * | T      | [l, l] | float64 | returned, lower triangular       |
 */
import { KernelsError } from "./errors.js";
import { native } from "./native.js";
import { dim, tensor } from "./validate.js";

export interface CholQrOptions {
  /** Passes of CholeskyQR (default 3). */
  passes?: number;
  /** Smallest accepted Cholesky pivot, squared, on unit-norm rows (default 1e-10). */
  minPivot?: number;
  /** Largest accepted |G − I| of the last pass's Gram matrix (default 1e-6). */
  maxDev?: number;
}

export function cholQrRowsF64(p: Float64Array, l: number, d: number, opts: CholQrOptions = {}): Float64Array | null {
  dim("l", l);
  dim("d", d);
  tensor("p", p, Float64Array, [l, d]);
  const passes = opts.passes ?? 3;
  if (!Number.isInteger(passes) || passes < 1)
    throw new KernelsError("E_ARGUMENT", `passes must be a positive integer, got ${passes}`);
  const minPivot = opts.minPivot ?? 1e-10;
  const maxDev = opts.maxDev ?? 1e-6;
  const t = new Float64Array(l * l);
  const nb = native();
  let status: number;
  if (nb?.cholQrRowsF64) {
    try {
      status = nb.cholQrRowsF64({ p, t, l, d, passes, minPivot, maxDev });
    } catch (e) {
      throw new KernelsError("E_NATIVE", `cholQrRowsF64: ${(e as Error).message}`, { cause: e });
    }
  } else status = cholQrTs(p, l, d, passes, minPivot, maxDev, t);
  return status === 0 ? t : null;
}

/** The algorithm of cholqr_f64.cc in TypeScript (the fallback, and the tests' reference). */
export function cholQrTs(
  p: Float64Array,
  l: number,
  d: number,
  passes: number,
  minPivot: number,
  maxDev: number,
  t: Float64Array,
): number {
  t.fill(0);
  for (let i = 0; i < l; i++) {
    let s = 0;
    for (let x = 0; x < d; x++) s += p[i * d + x] ** 2;
    const nrm = Math.sqrt(s);
    if (!(nrm > 0) || !Number.isFinite(nrm)) return 1;
    t[i * l + i] = nrm;
    for (let x = 0; x < d; x++) p[i * d + x] /= nrm;
  }
  const c = new Float64Array(l * l);
  for (let pass = 0; pass < passes; pass++) {
    const g = new Float64Array(l * l);
    for (let i = 0; i < l; i++)
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let x = 0; x < d; x++) s += p[i * d + x] * p[j * d + x];
        g[i * l + j] = s;
      }
    if (pass === passes - 1) {
      let dev = 0;
      for (let i = 0; i < l; i++)
        for (let j = 0; j <= i; j++) dev = Math.max(dev, Math.abs(g[i * l + j] - (i === j ? 1 : 0)));
      if (!(dev <= maxDev)) return 3;
    }
    c.fill(0);
    for (let i = 0; i < l; i++)
      for (let j = 0; j <= i; j++) {
        let s = g[i * l + j];
        for (let q = 0; q < j; q++) s -= c[i * l + q] * c[j * l + q];
        if (i === j) {
          if (!(s > minPivot)) return 2;
          c[i * l + i] = Math.sqrt(s);
        } else c[i * l + j] = s / c[j * l + j];
      }
    for (let i = 0; i < l; i++) {
      for (let q = 0; q < i; q++) {
        const cq = c[i * l + q];
        for (let x = 0; x < d; x++) p[i * d + x] -= cq * p[q * d + x];
      }
      const inv = 1 / c[i * l + i];
      for (let x = 0; x < d; x++) p[i * d + x] *= inv;
    }
    const tc = new Float64Array(l * l);
    for (let i = 0; i < l; i++)
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let q = j; q <= i; q++) s += t[i * l + q] * c[q * l + j];
        tc[i * l + j] = s;
      }
    t.set(tc);
  }
  return 0;
}
