import { describe, it } from "vitest";
import { type BackendInfo, NATIVE_ISAS, type NativeIsa, setIsa } from "../src/index.ts";

/** Seeded PRNG (mulberry32) and comparison helpers for the kernel tests. */
export function rng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => {
    const u = Math.max(next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
  };
  return {
    next,
    normal,
    int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)),
    f32: (n: number, scale = 1) => Float32Array.from({ length: n }, () => normal() * scale),
    codes: (n: number, lo: number, hi: number) =>
      Int8Array.from({ length: n }, () => lo + Math.floor(next() * (hi - lo + 1))),
    pos: (n: number, lo = 0.5, hi = 2) => Float32Array.from({ length: n }, () => lo + next() * (hi - lo)),
  };
}
export type Rng = ReturnType<typeof rng>;

/** Largest |a-b| / (atol + rtol·|b|) over the arrays (≤ 1 means within tolerance). */
export function worst(a: ArrayLike<number>, b: ArrayLike<number>, atol: number, rtol = 0): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let w = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - b[i]) / (atol + rtol * Math.abs(b[i]));
    if (!(e <= w)) w = e; // NaN propagates as the worst
  }
  return w;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/**
 * The code paths a suite runs on this machine, best first: every native path the CPU supports (optionally only
 * those in `only`, for operators with fewer paths), or the TypeScript fallback; `skipped` lists the other native
 * paths with the reason (shown as skipped suites).
 */
export function isasToTest(
  info: BackendInfo,
  only: readonly NativeIsa[] = NATIVE_ISAS,
): { run: NativeIsa[]; skipped: { isa: NativeIsa; reason: string }[] } {
  if (!info.native) return { run: ["scalar"], skipped: [] }; // the TypeScript fallback runs under the "scalar" label
  const run = info.supportedIsas.filter((i) => only.includes(i)).reverse();
  const skipped = NATIVE_ISAS.filter((i) => only.includes(i) && !run.includes(i)).map((isa) => ({
    isa,
    reason: `this CPU (${info.cpu}) supports only ${info.supportedIsas.join(", ")}`,
  }));
  return { run, skipped };
}

/**
 * One `describe` per path isasToTest picks: `${title} (native ${isa})`, or `${title} (TypeScript fallback)`
 * without the addon; `body` gets the path and a function that forces it (call it first in every test). The native
 * paths this CPU lacks show as skipped suites with the reason.
 */
export function describePaths(
  title: string,
  info: BackendInfo,
  body: (isa: NativeIsa, useIsa: () => void) => void,
  only: readonly NativeIsa[] = NATIVE_ISAS,
): void {
  const plan = isasToTest(info, only);
  for (const { isa, reason } of plan.skipped)
    describe.skip(`${title} (native ${isa}): skipped, ${reason}`, () => {
      it("needs the path", () => {});
    });
  for (const isa of plan.run)
    describe(`${title} (${info.native ? `native ${isa}` : "TypeScript fallback"})`, () => {
      body(isa, () => {
        if (info.native) setIsa(isa);
      });
    });
}
