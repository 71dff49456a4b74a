/**
 * The instruction peaks of kernels/cpu/peak.cc (the benches' "of peak" column): one timing skeleton for seven kinds.
 * Each kind this CPU has returns a finite rate above a floor no real core misses; a kind it lacks throws a line
 * naming the missing ISA; out-of-range kinds throw; the int4p2 binding's peakBf16 (kinds 0, 1) runs the same
 * loops as peak kinds 5, 6.
 */
import { describe, expect, it } from "vitest";
import { native } from "../src/native.ts";

const nb = native();
const ITERS = 2e5; // a few ms a kind on one core
// 1 GFLOP/s (or GMAC/s) over all pool threads: far below any of these instructions on any x86-64 core of the
// last decade (the 2-core dev Xeon measures 98 to 3100).
const FLOOR = 1e9;

/** The rate, or null when the CPU (or OS) lacks the instruction ("has no …" / "need …"). */
function rate(run: () => number): number | null {
  try {
    return run();
  } catch (e) {
    expect((e as Error).message).toMatch(/has no|need AVX2/);
    return null;
  }
}

describe.skipIf(!nb)("instruction peaks (native addon)", () => {
  it("every kind the CPU has gives a finite rate above the floor; the ISA set matches supportedIsas", () => {
    const isas = nb!.supportedIsas();
    const got = [0, 1, 2, 3, 4, 5, 6].map((kind) => rate(() => nb!.peak({ kind, iters: ITERS })));
    for (const r of got) if (r !== null) expect(r, String(got)).toBeGreaterThan(FLOOR);
    for (const r of got) if (r !== null) expect(Number.isFinite(r)).toBe(true);
    expect(got[0] !== null && got[1] !== null).toBe(isas.includes("avx2"));
    expect(got[2] !== null && got[3] !== null).toBe(isas.includes("avx512"));
    expect(got[4] !== null).toBe(isas.includes("amx"));
    if (got[5] !== null) expect(isas.includes("amx")).toBe(true); // AMX-BF16 implies the AMX path
  });

  it("peakBf16 kinds 0 and 1 are peak kinds 5 and 6 (both run or both throw)", () => {
    for (const kind of [0, 1]) {
      const viaP2 = rate(() => nb!.peakBf16!({ kind, iters: ITERS }));
      const viaPeak = rate(() => nb!.peak({ kind: 5 + kind, iters: ITERS }));
      expect(viaP2 === null).toBe(viaPeak === null);
      if (viaP2 !== null) expect(viaP2).toBeGreaterThan(FLOOR);
    }
  });

  it("out-of-range kinds throw a line naming the range", () => {
    expect(() => nb!.peak({ kind: 7, iters: 1 })).toThrow(/peak: kind must be 0 to 6/);
    expect(() => nb!.peak({ kind: -1, iters: 1 })).toThrow(/peak: kind must be 0 to 6/);
    expect(() => nb!.peakBf16!({ kind: 2, iters: 1 })).toThrow(/peakBf16: kind must be 0 \(tdpbf16ps\) or 1/);
  });
});
