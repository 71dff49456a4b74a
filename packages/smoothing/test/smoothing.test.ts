import { SeededRng } from "@svdquant/lowrank";
import { describe, expect, it } from "vitest";
import {
  jointAbsMax,
  searchSmoothing,
  smoothActivations,
  smoothingFactors,
  smoothWeights,
  svdquantGrid,
  weightAbsMax,
} from "../src/index.ts";

describe("smoothing factors", () => {
  it("computes max|X|^a / max|W|^b with floors and clamps", () => {
    const x = Float64Array.of(4, 0, 100, 1e12);
    const w = Float64Array.of(0.25, 0.5, 0, 1e-12);
    const l = smoothingFactors(x, w, 0.5, 0.5);
    expect(l[0]).toBeCloseTo(Math.sqrt(4) / Math.sqrt(0.25), 12);
    expect(l[1]).toBeCloseTo(Math.sqrt(1e-5) / Math.sqrt(0.5), 12); // dead activation channel: floor 1e-5
    expect(l[2]).toBeCloseTo(10 / Math.sqrt(1e-5), 6); // zero weight column: floor 1e-5 → 3162
    expect(l[3]).toBe(1e4); // clamped
    expect(Array.from(smoothingFactors(x, w, 0, 0))).toEqual([1, 1, 1, 1]);
  });

  it("weight and joint absmax follow the nn.Linear [N, K] layout", () => {
    const w = Float64Array.of(1, -5, 2, -3, 0, 4); // [2, 3]
    expect(Array.from(weightAbsMax(w, 2, 3))).toEqual([3, 5, 4]);
    expect(Array.from(jointAbsMax([Float64Array.of(1, 7), Float64Array.of(2, 3)]))).toEqual([2, 7]);
    expect(() => weightAbsMax(w, 3, 3, "proj")).toThrow(/proj/);
  });

  it("smoothing keeps X·Wᵀ unchanged", () => {
    const rng = new SeededRng(8);
    const x = rng.normals(5 * 6);
    const w = rng.normals(4 * 6);
    const lambda = Float64Array.from({ length: 6 }, () => 0.1 + 3 * rng.uniform());
    const xs = smoothActivations(x, 5, lambda);
    const ws = smoothWeights(w, 4, lambda);
    for (let t = 0; t < 5; t++)
      for (let o = 0; o < 4; o++) {
        let y = 0;
        let ys = 0;
        for (let j = 0; j < 6; j++) {
          y += x[t * 6 + j] * w[o * 6 + j];
          ys += xs[t * 6 + j] * ws[o * 6 + j];
        }
        expect(ys).toBeCloseTo(y, 12);
      }
  });
});

describe("searchSmoothing", () => {
  it("has the 39 distinct SVDQuant candidates", () => {
    const g = svdquantGrid();
    expect(g.length).toBe(39);
    expect(new Set(g.map((c) => `${c.alpha},${c.beta}`)).size).toBe(39);
    expect(g[0]).toEqual({ alpha: 0, beta: 0 });
    expect(g).toContainEqual({ alpha: 0.3, beta: 0.7 });
    expect(g).toContainEqual({ alpha: 0.95, beta: 0 });
  });

  it("returns the candidate minimizing the objective, with its λ and all trials", () => {
    const x = Float64Array.of(10, 1, 0.5);
    const w = Float64Array.of(0.1, 1, 2);
    const r = searchSmoothing({
      xAbsMax: x,
      wAbsMax: w,
      objective: (_l, c) => (c.alpha - 0.35) ** 2 + (c.beta - 0.65) ** 2,
    });
    expect(r.best).toEqual({ alpha: 0.35, beta: 0.65 });
    expect(Array.from(r.lambda)).toEqual(Array.from(smoothingFactors(x, w, 0.35, 0.65)));
    expect(r.trials.length).toBe(39);
    expect(() => searchSmoothing({ xAbsMax: x, wAbsMax: w, objective: () => Number.NaN })).toThrow(/NaN/);
  });
});
