import { join } from "node:path";
import { SafetensorsFile } from "@svdquant/tensor";

export const FIXTURES = join(import.meta.dirname, "../../../fixtures");

export async function readIo(model: string): Promise<Record<string, { shape: readonly number[]; data: Float32Array }>> {
  const f = await SafetensorsFile.open(join(FIXTURES, "models", model, "io.safetensors"));
  const out: Record<string, { shape: readonly number[]; data: Float32Array }> = {};
  try {
    for (const n of f.names()) {
      const t = await f.read(n);
      out[n] = { shape: t.shape, data: t.toFloat32() };
    }
  } finally {
    await f.close();
  }
  return out;
}

/** max |a - b| / max |b| */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

/** Seeded PRNG (mulberry32) with a normal sampler. */
export function rng(seed: number): { uniform(): number; normal(): number } {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    uniform,
    normal: () => {
      const u = Math.max(uniform(), 1e-12);
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
    },
  };
}

export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = r.normal() * scale;
  return out;
}
