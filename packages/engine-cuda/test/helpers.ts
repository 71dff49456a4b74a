import { type FluxConfig, parseFluxConfig } from "@svdquant/models";
import { bf16BitsToF32, f32ToBf16Bits, Tensor } from "@svdquant/tensor";

/** mulberry32: a small seeded PRNG (uniform [0, 1)). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Round to the nearest bf16 value (as f32). */
export const bf = (v: number): number => bf16BitsToF32(f32ToBf16Bits(v));

/** n uniform values in [lo, hi), rounded to bf16. */
export function uniformBf16(r: () => number, n: number, lo: number, hi: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = bf(lo + (hi - lo) * r());
  return out;
}

export function bf16Bits(a: Float32Array): Uint16Array {
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f32ToBf16Bits(a[i]!);
  return out;
}

/** rel-L2 = ‖a − b‖ / ‖b‖ and max |a − b| / max |b|, in float64. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): { relL2: number; relMax: number; finite: boolean } {
  let num = 0;
  let den = 0;
  let mx = 0;
  let mr = 0;
  let finite = true;
  for (let i = 0; i < b.length; i++) {
    const d = a[i]! - b[i]!;
    if (!Number.isFinite(a[i]!)) finite = false;
    num += d * d;
    den += b[i]! * b[i]!;
    mx = Math.max(mx, Math.abs(d));
    mr = Math.max(mr, Math.abs(b[i]!));
  }
  return { relL2: Math.sqrt(num / den), relMax: mx / mr, finite };
}

/** An in-memory TensorSource (tests and device checks): @svdquant/tensor's. */
export { memorySource } from "@svdquant/tensor";

export function bf16Tensor(shape: number[], values: Float32Array): Tensor {
  return new Tensor("BF16", shape, bf16Bits(values));
}

/** bf16 bit patterns as float32 values. */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  return Float32Array.from(bits, bf16BitsToF32);
}

/** A bf16 device tensor of an engine (its `raw` native handle), as float32 values. */
export function downloadBf16(raw: { download(name: string): ArrayBuffer }, name: string): Float32Array {
  return bf16ToF32(new Uint16Array(raw.download(name)));
}

/** One numeric check of the engine: its rel-L2 / rel-max error against a reference and the rel-L2 tolerance. */
export interface CheckResult {
  name: string;
  relL2: number;
  relMax: number;
  tol: number;
  ok: boolean;
}

/** A check passes when every value is finite and rel-L2 ≤ tol. */
export function result(name: string, e: { relL2: number; relMax: number; finite: boolean }, tol: number): CheckResult {
  return { name, relL2: e.relL2, relMax: e.relMax, tol, ok: e.finite && e.relL2 <= tol };
}

/** The log line of a check (device scripts): PASS/FAIL, name, errors, tolerance, and the time when given. */
export function checkLine(r: CheckResult, ms?: number): string {
  return `${r.ok ? "PASS" : "FAIL"} ${r.name}: rel-L2 ${r.relL2.toExponential(2)} rel-max ${r.relMax.toExponential(2)} (tol ${r.tol})${ms === undefined ? "" : ` ${ms} ms`}`;
}

/** The host tests' tiny FLUX (D = 128: 2 heads of 64, one double and one single block, no guidance). */
export function tinyFluxConfig(): FluxConfig {
  return parseFluxConfig({
    num_attention_heads: 2,
    attention_head_dim: 64,
    axes_dims_rope: [8, 28, 28],
    in_channels: 16,
    joint_attention_dim: 32,
    pooled_projection_dim: 16,
    num_layers: 1,
    num_single_layers: 1,
    guidance_embeds: false,
  });
}
