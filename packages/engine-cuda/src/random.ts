// Deterministic hash-based random values, identical on the device (eng_fill_random in kernels/cuda/engine/ops.cu),
// here on the host, and in tools/engine/flux_diffusers.py (torch int64 ops): a model with "random weights" is
// the same model in all three, so the engine and diffusers can be compared at full size without moving weights.

/** FNV-1a 32-bit hash of a string's UTF-8 bytes: the seed of a named tensor. */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(s)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The 32-bit mixer of element i under `seed` (murmur-style finalizer of i·φ32 + seed). */
export function hash32(i: number, seed: number): number {
  let x = (Math.imul(i >>> 0, 0x9e3779b1) + seed) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** Value i of a random fill: center + scale·(u − 0.5), u = (hash >> 8)·2⁻²⁴, each step rounded to float32. */
export function randomValue(i: number, seed: number, center: number, scale: number): number {
  const u = Math.fround((hash32(i, seed) >>> 8) * 2 ** -24);
  return Math.fround(center + Math.fround(scale * Math.fround(u - 0.5)));
}

/** How a random FLUX parameter is drawn (the rule tools/engine/flux_diffusers.py applies too). */
export interface RandomRule {
  center: number;
  scale: number;
}

/**
 * Linear weights [N, K]: uniform ±1/√K (torch's default nn.Linear bound); biases: ±0.02; RMSNorm weights: 1 ± 0.1;
 * inputs: ±1.
 */
export function randomRule(name: string, shape: readonly number[]): RandomRule {
  if (name.startsWith("in.")) return { center: 0, scale: 2 };
  if (name.endsWith(".bias")) return { center: 0, scale: 0.04 };
  if (shape.length === 1) return { center: 1, scale: 0.2 };
  return { center: 0, scale: 2 / Math.sqrt(shape[shape.length - 1]!) };
}
