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

/** The native calls {@link randomLinear} needs (a subset of NativeEngine). */
interface RandomTarget {
  alloc(name: string, bytes: number): void;
  fillRandom(
    name: string,
    kind: "bf16" | "f32" | "bytes",
    seed: number,
    center?: number,
    scale?: number,
    byteOffset?: number,
    count?: number,
  ): void;
  setInt(name: string, value: number): void;
}

/**
 * Allocates and fills one engine linear (engine name `name`, state-dict `sources` stacked along N, K in) with
 * deterministic random values: "dense" draws each source's weight and bias with {@link randomRule} (the values
 * tools/engine/*_diffusers.py put into diffusers' model); "w4a4" random codes, g64 scales, rank-R branches per
 * source and a smooth factor; "w4a16" random codes, scales and zeros (timing only: packed values mean nothing).
 */
export function randomLinear(
  n: RandomTarget,
  L: { name: string; sources: readonly string[]; N: readonly number[]; K: number },
  kind: "dense" | "w4a4" | "w4a16",
  opts: { rank: number; unsigned: boolean; smooth?: boolean },
): void {
  const N = L.N.reduce((a, b) => a + b, 0);
  const K = L.K;
  if (kind === "w4a16") {
    n.alloc(`${L.name}.w4a16_codes`, (N * K) / 2);
    n.fillRandom(`${L.name}.w4a16_codes`, "bytes", fnv1a32(`${L.name}.codes`));
    for (const [k, c, s] of [
      ["w4a16_scales", 0.004, 0.002],
      ["w4a16_zeros", -0.03, 0.01],
    ] as const) {
      n.alloc(`${L.name}.${k}`, (N * K) / 32);
      n.fillRandom(`${L.name}.${k}`, "bf16", fnv1a32(`${L.name}.${k}`), c, s);
    }
  } else if (kind === "w4a4") {
    const r = opts.rank * L.sources.length;
    n.alloc(`${L.name}.qweight`, (N * K) / 2);
    n.fillRandom(`${L.name}.qweight`, "bytes", fnv1a32(`${L.name}.qweight`));
    n.alloc(`${L.name}.wscales`, (N * K) / 32);
    n.fillRandom(`${L.name}.wscales`, "bf16", fnv1a32(`${L.name}.wscales`), 0.6 / Math.sqrt(K) / 4, 0.1 / Math.sqrt(K));
    n.alloc(`${L.name}.lora_down`, r * K * 2);
    n.fillRandom(`${L.name}.lora_down`, "bf16", fnv1a32(`${L.name}.lora_down`), 0, 2 / Math.sqrt(K));
    n.alloc(`${L.name}.lora_up`, N * r * 2);
    n.fillRandom(`${L.name}.lora_up`, "bf16", fnv1a32(`${L.name}.lora_up`), 0, 0.2 / Math.sqrt(r));
    if (opts.smooth !== false) {
      n.alloc(`${L.name}.smooth`, K * 2);
      n.fillRandom(`${L.name}.smooth`, "bf16", fnv1a32(`${L.name}.smooth`), 1, 0.2);
    }
    n.setInt(`${L.name}.act_unsigned`, opts.unsigned ? 1 : 0);
  } else {
    n.alloc(`${L.name}.weight`, N * K * 2);
    L.sources.forEach((s, i) => {
      const off = L.N.slice(0, i).reduce((a, b) => a + b, 0) * K * 2;
      const r = randomRule(`${s}.weight`, [L.N[i]!, K]);
      n.fillRandom(`${L.name}.weight`, "bf16", fnv1a32(`${s}.weight`), r.center, r.scale, off, L.N[i]! * K);
    });
  }
  n.alloc(`${L.name}.bias`, N * 2);
  L.sources.forEach((s, i) => {
    const off = L.N.slice(0, i).reduce((a, b) => a + b, 0) * 2;
    const r = randomRule(`${s}.bias`, [L.N[i]!]);
    n.fillRandom(`${L.name}.bias`, "bf16", fnv1a32(`${s}.bias`), r.center, r.scale, off, L.N[i]!);
  });
}
