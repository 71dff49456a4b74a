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
    kind: "bf16" | "f32" | "e4m3" | "bytes",
    seed: number,
    center?: number,
    scale?: number,
    byteOffset?: number,
    count?: number,
  ): void;
  upload(name: string, data: ArrayBufferView): void;
  setInt(name: string, value: number): void;
}

/** int4p2 rank: the FP8 kernels' fixed R (kernels/cuda/p2_fp8.h). */
export const P2_RANK = 32;

/** How {@link randomLinear} draws an int4p2 layer. */
export interface RandomP2Options {
  /** "int4": codes + exponents + low-rank columns (kept 4-bit, expanded per GEMM); "e4m3": the FP8 operand. */
  storage: "int4" | "e4m3";
  /**
   * The layer reads another layer's activation operand (a FLUX single block's proj_mlp reads attn.qkv's): no
   * lora_down, lr_shift or smooth of its own.
   */
  sharedInput: boolean;
}

/**
 * Allocates and fills one engine linear (engine name `name`, state-dict `sources` stacked along N, K in) with
 * deterministic random values: "dense" draws each source's weight and bias with {@link randomRule} (the values
 * tools/engine/*_diffusers.py put into diffusers' model); "w4a4" random codes, g64 scales, rank-R branches per
 * source and a smooth factor; "w4a16" random codes, scales and zeros; "int4p2" one rank-32 branch per input group
 * (timing only: packed values mean nothing).
 */
export function randomLinear(
  n: RandomTarget,
  L: { name: string; sources: readonly string[]; N: readonly number[]; K: number },
  kind: "dense" | "w4a4" | "w4a16" | "int4p2",
  opts: { rank: number; unsigned: boolean; smooth?: boolean; p2?: RandomP2Options },
): void {
  const N = L.N.reduce((a, b) => a + b, 0);
  const K = L.K;
  if (kind === "int4p2") randomP2(n, L.name, N, K, opts.p2 ?? { storage: "int4", sharedInput: false });
  else if (kind === "w4a16") {
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

/** The int4p2 tensors of one layer (kernels/cuda/engine/flux.h), Kx = K + 3·32 with the low-rank columns. */
function randomP2(n: RandomTarget, name: string, N: number, K: number, o: RandomP2Options): void {
  if (o.storage === "e4m3") {
    n.alloc(`${name}.p2_weight`, N * (K + 3 * P2_RANK));
    // q·2^e values of a weight whose largest group sits at e = 5 (|v| <= 224): uniform ±128 as E4M3
    n.fillRandom(`${name}.p2_weight`, "e4m3", fnv1a32(`${name}.p2_weight`), 0, 256);
  } else {
    n.alloc(`${name}.p2_codes`, (N * K) / 2);
    n.fillRandom(`${name}.p2_codes`, "bytes", fnv1a32(`${name}.p2_codes`));
    // group exponents 2..5: the largest group at e = 5 (P2_EXP_MAX), the others up to 8x finer
    const seed = fnv1a32(`${name}.p2_exps`);
    const exps = new Int8Array((N * K) / 64);
    for (let i = 0; i < exps.length; i++) exps[i] = 2 + (hash32(i, seed) & 3);
    n.alloc(`${name}.p2_exps`, exps.length);
    n.upload(`${name}.p2_exps`, exps);
    // low-rank columns b_hi, b_lo, b_hi: max |b| in (32, 64] (@svdquant/int4 p2LowRankColumns)
    n.alloc(`${name}.p2_lowrank`, N * 3 * P2_RANK);
    n.fillRandom(`${name}.p2_lowrank`, "e4m3", fnv1a32(`${name}.p2_lowrank`), 0, 128);
  }
  // S_w so that w = v·S_w spans about ±1/√K, torch's nn.Linear bound
  n.alloc(`${name}.p2_wscale`, N * 4);
  n.fillRandom(
    `${name}.p2_wscale`,
    "f32",
    fnv1a32(`${name}.p2_wscale`),
    1 / (128 * Math.sqrt(K)),
    0.1 / (128 * Math.sqrt(K)),
  );
  if (o.sharedInput) return;
  n.alloc(`${name}.lora_down`, P2_RANK * K * 2);
  n.fillRandom(`${name}.lora_down`, "bf16", fnv1a32(`${name}.lora_down`), 0, 2 / Math.sqrt(K));
  n.alloc(`${name}.p2_lr_shift`, P2_RANK * 4);
  // c_r of lora_up / S_w values near 2^8 (max |b| in (32, 64])
  n.upload(`${name}.p2_lr_shift`, new Int32Array(P2_RANK).fill(-2));
  n.alloc(`${name}.smooth`, K * 2);
  n.fillRandom(`${name}.smooth`, "bf16", fnv1a32(`${name}.smooth`), 1, 0.2);
}
