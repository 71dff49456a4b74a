import { SmoothingError } from "./errors.js";
import { type LambdaGuards, smoothingFactors } from "./lambda.js";

/** One point of the smoothing grid; `alpha = beta = 0` is "no smoothing" (λ = 1). */
export interface SmoothingCandidate {
  alpha: number;
  beta: number;
}

/**
 * The SVDQuant search grid (39 candidates): no smoothing, (α, 0) and (α, 1 − α) for α = 0.05, 0.10, …, 0.95.
 * Values are rounded to 2 decimals so that the grid is exact and printable.
 */
export function svdquantGrid(): SmoothingCandidate[] {
  const grid: SmoothingCandidate[] = [{ alpha: 0, beta: 0 }];
  for (let i = 1; i <= 19; i++) grid.push({ alpha: i / 20, beta: 0 });
  for (let i = 1; i <= 19; i++) grid.push({ alpha: i / 20, beta: Math.round((1 - i / 20) * 100) / 100 });
  return grid;
}

export interface SmoothingSearchResult {
  best: SmoothingCandidate;
  lambda: Float64Array;
  /** Objective at the best candidate. */
  error: number;
  /** Every candidate tried, in grid order. */
  trials: { candidate: SmoothingCandidate; error: number }[];
}

/**
 * Pick λ from a grid by an objective, typically the relative output error of the full quantized layer(s) on the
 * kept tokens. For layers sharing an input, pass the joint weight max (`jointAbsMax`) and an objective that sums
 * their errors: they then share one λ. The first candidate with the lowest error wins (deterministic).
 */
export function searchSmoothing(opts: {
  xAbsMax: Float64Array;
  wAbsMax: Float64Array;
  objective: (lambda: Float64Array, candidate: SmoothingCandidate) => number;
  grid?: SmoothingCandidate[];
  guards?: LambdaGuards;
}): SmoothingSearchResult {
  const grid = opts.grid ?? svdquantGrid();
  if (grid.length === 0) throw new SmoothingError("E_ARGUMENT", "the smoothing grid is empty");
  const trials: SmoothingSearchResult["trials"] = [];
  let best: SmoothingSearchResult | undefined;
  for (const c of grid) {
    const lambda = smoothingFactors(opts.xAbsMax, opts.wAbsMax, c.alpha, c.beta, opts.guards);
    const error = opts.objective(lambda, c);
    if (Number.isNaN(error))
      throw new SmoothingError("E_NONFINITE", `objective returned NaN for alpha=${c.alpha}, beta=${c.beta}`);
    trials.push({ candidate: c, error });
    if (best === undefined || error < best.error) best = { best: c, lambda, error, trials };
  }
  return { ...best!, trials };
}

/** X̂ = X·diag(λ)⁻¹ for X [M, K] (a new float64 array). */
export function smoothActivations(x: ArrayLike<number>, tokens: number, lambda: Float64Array): Float64Array {
  const k = lambda.length;
  if (x.length !== tokens * k) throw new SmoothingError("E_SHAPE", `${x.length} values do not fit [${tokens}, ${k}]`);
  const out = new Float64Array(x.length);
  for (let t = 0; t < tokens; t++) for (let j = 0; j < k; j++) out[t * k + j] = x[t * k + j] / lambda[j];
  return out;
}

/** Ŵ = W·diag(λ) for W [N, K] (each input channel j scaled by λ_j; a new float64 array). */
export function smoothWeights(w: ArrayLike<number>, n: number, lambda: Float64Array): Float64Array {
  const k = lambda.length;
  if (w.length !== n * k) throw new SmoothingError("E_SHAPE", `${w.length} values do not fit [${n}, ${k}]`);
  const out = new Float64Array(w.length);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) out[i * k + j] = w[i * k + j] * lambda[j];
  return out;
}
