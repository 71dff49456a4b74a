import { SmoothingError } from "./errors.js";

/**
 * Guards of λ_j = max|X_j|^α / max|W_j|^β:
 * - a channel whose max is 0 (dead channel, or a weight column of zeros) uses `floor` instead, so 0^α never
 *   turns into a zero or infinite factor;
 * - the resulting λ_j is clamped to [minLambda, maxLambda], so no channel is scaled beyond what 16-bit weights and
 *   activations can hold; anything non-finite left after that is set to 1 (no smoothing for that channel).
 */
export interface LambdaGuards {
  /** Replaces a zero channel max before the power (default 1e-5, as SmoothQuant's clamp(min=1e-5)). */
  floor?: number;
  /** Smallest λ (default 1e-4). */
  minLambda?: number;
  /** Largest λ (default 1e4). */
  maxLambda?: number;
}

/** Per-input-channel max |W[:, j]| of a weight W [N, K] (row-major, nn.Linear layout). */
export function weightAbsMax(w: Float32Array | Float64Array, n: number, k: number, name?: string): Float64Array {
  if (w.length !== n * k) throw new SmoothingError("E_SHAPE", `${w.length} values do not fit [${n}, ${k}]`, name);
  const out = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    const row = i * k;
    for (let j = 0; j < k; j++) {
      const a = Math.abs(w[row + j]);
      if (!(a <= Number.MAX_VALUE))
        throw new SmoothingError("E_NONFINITE", `weight row ${i}, column ${j} is ${w[row + j]}`, name);
      if (a > out[j]) out[j] = a;
    }
  }
  return out;
}

/** Elementwise max of several per-channel maxima (layers sharing one input share one λ). */
export function jointAbsMax(parts: Float64Array[]): Float64Array {
  if (parts.length === 0) throw new SmoothingError("E_ARGUMENT", "jointAbsMax needs at least one vector");
  const k = parts[0].length;
  const out = new Float64Array(k);
  for (const p of parts) {
    if (p.length !== k) throw new SmoothingError("E_SHAPE", `channel counts differ: ${p.length} vs ${k}`);
    for (let j = 0; j < k; j++) if (p[j] > out[j]) out[j] = p[j];
  }
  return out;
}

/** λ_j = max|X_j|^α / max|W_j|^β with the documented guards (SmoothQuant, Xiao et al. 2023, Eq. 4). */
export function smoothingFactors(
  xAbsMax: Float64Array,
  wAbsMax: Float64Array,
  alpha: number,
  beta: number,
  guards: LambdaGuards = {},
): Float64Array {
  if (xAbsMax.length !== wAbsMax.length)
    throw new SmoothingError(
      "E_SHAPE",
      `activation max has ${xAbsMax.length} channels but weight max has ${wAbsMax.length}`,
    );
  if (!Number.isFinite(alpha) || !Number.isFinite(beta))
    throw new SmoothingError("E_ARGUMENT", `alpha ${alpha} and beta ${beta} must be finite`);
  const floor = guards.floor ?? 1e-5;
  const lo = guards.minLambda ?? 1e-4;
  const hi = guards.maxLambda ?? 1e4;
  const out = new Float64Array(xAbsMax.length);
  for (let j = 0; j < out.length; j++) {
    const x = xAbsMax[j] > 0 ? xAbsMax[j] : floor;
    const w = wAbsMax[j] > 0 ? wAbsMax[j] : floor;
    let l = x ** alpha / w ** beta;
    if (!Number.isFinite(l)) l = 1;
    out[j] = Math.min(hi, Math.max(lo, l));
  }
  return out;
}
