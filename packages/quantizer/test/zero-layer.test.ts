// Issue 18 (finding 11): an all-zero layer (zero-initialised projections exist in real checkpoints) quantizes exactly
// with every method; the λ search used to divide 0 by 0 and report a misleading "objective returned NaN".
import { describe, expect, it } from "vitest";
import { calibrationFromTokens, evaluateLayer, getMethod, METHOD_NAMES } from "../src/index.js";

describe("all-zero layers", () => {
  it.each(METHOD_NAMES)("%s quantizes an all-zero weight exactly (error 0, no NaN)", (name) => {
    const [n, k, m] = [16, 64, 32];
    let s = 7;
    const x = Float64Array.from({ length: m * k }, () => {
      s = (s * 1103515245 + 12345) % 2 ** 31; // seeded LCG inputs (glibc constants)
      return (s / 2 ** 31 - 0.5) * 4;
    });
    const layer = { name: "zero", n, k, weight: new Float64Array(n * k) };
    const q = getMethod(name).quantize(layer, calibrationFromTokens(x, m, k), { rank: 4, seed: 0 });
    const e = evaluateLayer(layer, q, x, m);
    expect(e.absError).toBe(0);
    expect(e.relError).toBe(0);
    expect(e.sqnrDb).toBe(Number.POSITIVE_INFINITY);
  });
});
