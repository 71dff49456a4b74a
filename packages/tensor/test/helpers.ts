// Test helpers: a seeded PRNG and temp folders. Nothing here is shared with the implementation.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Mulberry32: a small, fast, seeded 32-bit PRNG (public-domain algorithm by Tommy Ettinger). */
export function rng(seed: number): { u32(): number; float(): number; int(n: number): number; normal(): number } {
  let s = seed >>> 0;
  const u32 = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const float = (): number => u32() / 2 ** 32;
  return {
    u32,
    float,
    int: (n) => Math.floor(float() * n),
    normal: () => Math.sqrt(-2 * Math.log(1 - float())) * Math.cos(2 * Math.PI * float()),
  };
}

/** A fresh temp folder; call the returned cleanup when done. */
export async function tempDir(prefix = "svdq-tensor-"): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
