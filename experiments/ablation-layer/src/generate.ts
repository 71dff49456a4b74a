import { SeededRng } from "@svdquant/lowrank";
import type { LinearLayer } from "@svdquant/quantizer";

/**
 * A synthetic linear layer with the outlier structure SVDQuant describes (§4, Fig. 4/5):
 * - activations X [M, K]: heavy-tailed tokens (Student-t, ν = 4) whose few outlier channels (`outlierChannels`)
 *   are 20–100x larger than the rest;
 * - weights W [N, K]: a Gaussian bulk (std 1/√K), a few outlier input channels (columns ×`weightOutlierScale`)
 *   and a steep head of singular values (`headRank` directions decaying as 0.6^i from `headScale`·‖bulk‖₂).
 */
export interface GeneratedLayerSpec {
  name: string;
  n: number;
  k: number;
  /** Calibration tokens and held-out evaluation tokens. */
  tokens: number;
  outlierChannels: number;
  /** Range of the outlier channels' magnitude relative to the rest (paper: 20–100x). */
  outlierRange: [number, number];
  weightOutlierChannels: number;
  weightOutlierScale: number;
  headRank: number;
  headScale: number;
  seed: number;
}

export interface GeneratedLayer {
  layer: LinearLayer;
  /** Calibration tokens X_c [M, K]. */
  calib: Float64Array;
  /** Held-out evaluation tokens X_e [M, K] (same distribution, other draws). */
  evalX: Float64Array;
  m: number;
  outliers: number[];
}

export const DEFAULT_GENERATED: Omit<GeneratedLayerSpec, "name" | "seed"> = {
  n: 256,
  k: 512,
  tokens: 256,
  outlierChannels: 6,
  outlierRange: [20, 100],
  weightOutlierChannels: 6,
  weightOutlierScale: 8,
  headRank: 8,
  headScale: 4,
};

function tokens(rng: SeededRng, m: number, k: number, chanScale: Float64Array, mean: Float64Array): Float64Array {
  const x = new Float64Array(m * k);
  for (let t = 0; t < m; t++) for (let j = 0; j < k; j++) x[t * k + j] = mean[j] + chanScale[j] * rng.studentT(4);
  return x;
}

export function generateLayer(spec: GeneratedLayerSpec): GeneratedLayer {
  const { n, k, tokens: m } = spec;
  const rng = new SeededRng(spec.seed);
  // activation channels: log-normal spread around 1, a few outliers 20–100x
  const chanScale = new Float64Array(k);
  const mean = new Float64Array(k);
  for (let j = 0; j < k; j++) {
    chanScale[j] = Math.exp(0.3 * rng.normal());
    mean[j] = 0.1 * rng.normal();
  }
  const outliers: number[] = [];
  while (outliers.length < spec.outlierChannels) {
    const j = rng.int(k);
    if (!outliers.includes(j)) outliers.push(j);
  }
  const [lo, hi] = spec.outlierRange;
  for (const j of outliers) {
    chanScale[j] *= lo + (hi - lo) * rng.uniform();
    mean[j] = chanScale[j] * 0.5 * rng.normal();
  }
  // weights: bulk + outlier input channels + steep singular-value head
  const w = new Float64Array(n * k);
  const std = 1 / Math.sqrt(k);
  for (let i = 0; i < w.length; i++) w[i] = std * rng.normal();
  for (let c = 0; c < spec.weightOutlierChannels; c++) {
    const j = rng.int(k);
    for (let i = 0; i < n; i++) w[i * k + j] *= spec.weightOutlierScale;
  }
  const bulkNorm = std * (Math.sqrt(n) + Math.sqrt(k)); // ≈ ‖bulk‖₂ (Marchenko–Pastur edge)
  for (let r = 0; r < spec.headRank; r++) {
    const u = rng.normals(n);
    const v = rng.normals(k);
    const s = (spec.headScale * bulkNorm * 0.6 ** r) / Math.sqrt(n * k);
    for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) w[i * k + j] += s * u[i] * v[j];
  }
  const bias = rng.normals(n).map((v) => 0.1 * v);
  const calib = tokens(rng, m, k, chanScale, mean);
  const evalX = tokens(rng, m, k, chanScale, mean);
  return { layer: { name: spec.name, n, k, weight: w, bias }, calib, evalX, m, outliers };
}

/**
 * Synthetic calibration inputs for a real layer: heavy-tailed tokens (Student-t, ν = 4) with K/32 outlier channels
 * 20–100x larger (at least 2). With `postGelu`, the tokens go through GELU (tanh form), as the input of an MLP's
 * second projection does, so they are ≥ −0.17 with large positive outliers.
 */
export function outlierTokens(seed: number, m: number, k: number, opts: { postGelu?: boolean } = {}): Float64Array {
  const rng = new SeededRng(seed);
  const scale = new Float64Array(k);
  for (let j = 0; j < k; j++) scale[j] = Math.exp(0.3 * rng.normal());
  const count = Math.max(2, Math.floor(k / 32));
  for (let c = 0; c < count; c++) scale[rng.int(k)] *= 20 + 80 * rng.uniform();
  const x = new Float64Array(m * k);
  for (let t = 0; t < m; t++)
    for (let j = 0; j < k; j++) {
      const v = scale[j] * rng.studentT(4);
      x[t * k + j] = opts.postGelu ? gelu(v) : v;
    }
  return x;
}

/** GELU, tanh approximation (Hendrycks & Gimpel 2016), as diffusers' "gelu-approximate". */
export function gelu(v: number): number {
  return 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));
}
