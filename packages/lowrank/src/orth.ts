import type { SeededRng } from "./rng.js";

/**
 * Orthonormalize the rows of a panel P [L, D] (row-major float64) in place by modified Gram–Schmidt
 * run twice ("twice is enough", Giraud et al. 2005), returning the lower-triangular factor T [L, L]
 * with P_in = T · P_out. A row that is (numerically) in the span of the earlier ones is replaced by a
 * fresh random direction orthogonal to them (its T column stays zero), so the output is always orthonormal.
 */
export function orthonormalizeRows(p: Float64Array, l: number, d: number, rng: SeededRng): Float64Array {
  const t = new Float64Array(l * l);
  for (let i = 0; i < l; i++) {
    const ri = i * d;
    let norm0 = 0;
    for (let x = 0; x < d; x++) norm0 += p[ri + x] * p[ri + x];
    norm0 = Math.sqrt(norm0);
    for (let pass = 0; pass < 2; pass++) {
      for (let j = 0; j < i; j++) {
        const rj = j * d;
        let dot = 0;
        for (let x = 0; x < d; x++) dot += p[ri + x] * p[rj + x];
        t[i * l + j] += dot;
        for (let x = 0; x < d; x++) p[ri + x] -= dot * p[rj + x];
      }
    }
    let norm = 0;
    for (let x = 0; x < d; x++) norm += p[ri + x] * p[ri + x];
    norm = Math.sqrt(norm);
    if (!(norm > 1e-13 * norm0) || norm === 0) {
      // Dependent row: the factor keeps what was projected out; continue the basis with a random direction.
      for (let x = 0; x < d; x++) p[ri + x] = rng.normal();
      for (let pass = 0; pass < 2; pass++) {
        for (let j = 0; j < i; j++) {
          const rj = j * d;
          let dot = 0;
          for (let x = 0; x < d; x++) dot += p[ri + x] * p[rj + x];
          for (let x = 0; x < d; x++) p[ri + x] -= dot * p[rj + x];
        }
      }
      norm = 0;
      for (let x = 0; x < d; x++) norm += p[ri + x] * p[ri + x];
      norm = Math.sqrt(norm);
      t[i * l + i] = 0;
    } else {
      t[i * l + i] = norm;
    }
    const inv = 1 / norm;
    for (let x = 0; x < d; x++) p[ri + x] *= inv;
  }
  return t;
}
