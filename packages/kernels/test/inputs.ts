// Seeded random operator inputs shared by the kernel suites (suite.ts, split-suite.ts): the GEMM operands over
// ragged shapes and the attention operands with a masked key bias. Values are drawn in a fixed order, so a seed
// gives the same inputs wherever it is used.
import type { Rng } from "./helpers.ts";

/** [M, K, N, gelu]: one element; K and N off every SIMD width, with and without GELU. Suites append their own. */
export const RAGGED_GEMM_SHAPES = [
  [1, 1, 1, false],
  [7, 300, 17, true],
  [13, 513, 33, false],
] as const;

/** X [M, K] standard normal, W [N, K] normal · wScale, then (if `bias`) bias [N] standard normal. */
export function gemmInputs(
  r: Rng,
  M: number,
  K: number,
  N: number,
  wScale: number,
  bias = true,
): { x: Float32Array; w: Float32Array; bias: Float32Array | undefined } {
  const x = r.f32(M * K);
  const w = r.f32(N * K, wScale);
  return { x, w, bias: bias ? r.f32(N) : undefined };
}

export interface AttentionShape {
  B: number;
  Sq: number;
  Skv: number;
  H: number;
  Dh: number;
  withBias: boolean;
}

/**
 * Q [B, Sq, H·Dh], K and V [B, Skv, H·Dh] standard normal; with `withBias` an additive key bias [B, Skv]
 * (standard normal, every 7th key from the 4th masked with −1e4).
 */
export function attentionInputs(
  r: Rng,
  { B, Sq, Skv, H, Dh, withBias }: AttentionShape,
): { q: Float32Array; k: Float32Array; v: Float32Array; bias: Float32Array | undefined } {
  const d = H * Dh;
  const q = r.f32(B * Sq * d);
  const k = r.f32(B * Skv * d);
  const v = r.f32(B * Skv * d);
  const bias = withBias ? Float32Array.from(r.f32(B * Skv), (x, i) => (i % 7 === 3 ? -1e4 : x)) : undefined;
  return { q, k, v, bias };
}
