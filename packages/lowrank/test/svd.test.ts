import { describe, expect, it } from "vitest";
import {
  chooseMethod,
  LowRankError,
  orthonormalizeRows,
  randomizedSvdOf,
  reconstruct,
  SeededRng,
  truncatedSvd,
  tsGemm,
} from "../src/index.ts";
import { frob, matrixWithSpectrum } from "./helpers.ts";

const R = 32;

/** Low-rank plus noise: 48 singular values decaying from 50 to ~1, then Gaussian noise. */
function lowRankPlusNoise(m: number, n: number, seed: number): Float64Array {
  const sigma = Array.from({ length: 48 }, (_, i) => 50 * 0.92 ** i);
  return matrixWithSpectrum(m, n, sigma, 0.01, seed);
}

/** Spiky spectrum: a few huge values (outlier directions), then a slowly decaying bulk. */
function spiky(m: number, n: number, seed: number): Float64Array {
  const sigma = [2000, 900, 400, 150, ...Array.from({ length: 60 }, (_, i) => 10 * 0.95 ** i)];
  return matrixWithSpectrum(m, n, sigma, 0.02, seed);
}

describe("truncatedSvd: randomized vs exact", () => {
  const cases: [string, number, number, (m: number, n: number, s: number) => Float64Array][] = [
    ["low-rank + noise", 160, 300, lowRankPlusNoise],
    ["spiky spectrum", 256, 192, spiky],
  ];
  it.each(cases)("%s: top-32 values within 1e-6 relative, residual within 1 percent of optimum", (_n, m, n, make) => {
    const a = make(m, n, m + n);
    const exact = truncatedSvd(a, m, n, R, { method: "exact" });
    const rnd = truncatedSvd(a, m, n, R, { method: "randomized", seed: 5 });
    expect(exact.method).toBe("exact");
    expect(rnd.method).toBe("randomized");
    for (let i = 0; i < R; i++) expect(Math.abs(rnd.s[i] - exact.s[i]) / exact.s[i]).toBeLessThan(1e-6);
    // the optimum ‖A − A_R‖_F from the exact SVD, measured explicitly on both reconstructions
    const optimum = frob(a, reconstruct(exact));
    const got = frob(a, reconstruct(rnd));
    expect(got).toBeLessThanOrEqual(optimum * 1.01);
    expect(got).toBeGreaterThanOrEqual(optimum * (1 - 1e-9));
    // residualNorm reported matches the explicit one
    expect(Math.abs(rnd.residualNorm - got) / got).toBeLessThan(1e-6);
    expect(Math.abs(exact.residualNorm - optimum) / optimum).toBeLessThan(1e-6);
  });

  it("returns orthonormal U columns and V rows", () => {
    const m = 120;
    const n = 90;
    const a = spiky(m, n, 7);
    for (const method of ["exact", "randomized"] as const) {
      const r = truncatedSvd(a, m, n, 16, { method });
      for (let c = 0; c < 16; c++)
        for (let d = 0; d < 16; d++) {
          let uu = 0;
          let vv = 0;
          for (let i = 0; i < m; i++) uu += r.u[i * 16 + c] * r.u[i * 16 + d];
          for (let j = 0; j < n; j++) vv += r.vt[c * n + j] * r.vt[d * n + j];
          expect(uu).toBeCloseTo(c === d ? 1 : 0, 10);
          expect(vv).toBeCloseTo(c === d ? 1 : 0, 10);
        }
      for (let c = 1; c < 16; c++) expect(r.s[c]).toBeLessThanOrEqual(r.s[c - 1]);
    }
  });

  it("is deterministic for a seed and exact on an exactly low-rank float32 matrix", () => {
    const m = 80;
    const n = 140;
    const a = Float32Array.from(matrixWithSpectrum(m, n, [9, 7, 5, 3, 1], 0, 2));
    const r1 = truncatedSvd(a, m, n, 8, { method: "randomized", seed: 3 });
    const r2 = truncatedSvd(a, m, n, 8, { method: "randomized", seed: 3 });
    expect(Array.from(r1.vt)).toEqual(Array.from(r2.vt));
    expect(r1.residualNorm / r1.frobeniusNorm).toBeLessThan(1e-6);
    expect(frob(a, reconstruct(r1)) / r1.frobeniusNorm).toBeLessThan(1e-6);
  });

  it("is exact when the sketch covers the smaller side (L = min(M, N))", () => {
    const m = 40;
    const n = 300;
    const a = spiky(m, n, 3);
    const exact = truncatedSvd(a, m, n, 36, { method: "exact" });
    const rnd = truncatedSvd(a, m, n, 36, { method: "randomized", powerIterations: 0 });
    for (let i = 0; i < 36; i++) expect(Math.abs(rnd.s[i] - exact.s[i]) / exact.s[i]).toBeLessThan(1e-9);
  });

  it("rank 0 keeps the whole matrix as residual", () => {
    const rng = new SeededRng(1);
    const a = rng.normals(12);
    const r = truncatedSvd(a, 3, 4, 0);
    expect(r.residualNorm).toBeCloseTo(frob(a), 12);
    expect(r.u.length).toBe(0);
  });
});

describe("truncatedSvd: method choice and errors", () => {
  it("auto picks exact up to 256 a side, randomized above", () => {
    expect(chooseMethod(256, 256, 32)).toBe("exact");
    expect(chooseMethod(512, 1024, 32)).toBe("randomized");
    expect(chooseMethod(1024, 1024, 32, { exactMaxSide: 1024 })).toBe("exact");
    expect(chooseMethod(3072, 12288, 32)).toBe("randomized");
    expect(chooseMethod(3072, 60, 32)).toBe("randomized");
    expect(chooseMethod(3072, 12288, 32, { method: "exact" })).toBe("exact");
  });

  it("names the tensor and shape at fault", () => {
    expect(() => truncatedSvd(new Float64Array(5), 2, 3, 1, { name: "w" })).toThrow(/tensor "w".*\[2, 3\]/);
    expect(() => truncatedSvd(new Float64Array(6), 2, 3, 3)).toThrow(LowRankError);
    const bad = new Float64Array(6).fill(1);
    bad[4] = Number.NaN;
    expect(() => truncatedSvd(bad, 2, 3, 1, { name: "x" })).toThrow(/row 1, col 1/);
    expect(() =>
      truncatedSvd(new Float64Array(6).fill(1), 2, 3, 1, { method: "randomized", powerIterations: -1 }),
    ).toThrow(/powerIterations/);
  });
});

describe("randomizedSvdOf: a matrix given by its products", () => {
  it("equals truncatedSvd's randomized path bit for bit when the products are the same GEMMs", () => {
    const [m, n] = [150, 210];
    const a = spiky(m, n, 11);
    const ref = truncatedSvd(a, m, n, 12, { method: "randomized", seed: 4, powerIterations: 2 });
    const g = tsGemm;
    const op = {
      rows: m,
      cols: n,
      sketch: (zt: Float64Array, l: number) => g.nt(zt, a, l, m, n),
      project: (qt: Float64Array, l: number) => g.nn(qt, a, l, n, m),
    };
    const r = randomizedSvdOf(op, 12, { seed: 4, powerIterations: 2 });
    expect(Array.from(r.s)).toEqual(Array.from(ref.s));
    expect(Array.from(r.u)).toEqual(Array.from(ref.u));
    expect(Array.from(r.vt)).toEqual(Array.from(ref.vt));
    expect(r.frobeniusNorm).toBeNaN();
  });

  it("a warm start from a nearby matrix's right vectors beats a cold start at zero power iterations", () => {
    const [m, n, rank] = [200, 160, 16];
    const a = lowRankPlusNoise(m, n, 21);
    const rng = new SeededRng(9);
    const b = a.map((v) => v + 1e-3 * rng.normal()); // a perturbed neighbour
    const near = truncatedSvd(b, m, n, rank, { method: "exact" });
    const exact = truncatedSvd(a, m, n, rank, { method: "exact" });
    const op = {
      rows: m,
      cols: n,
      sketch: (zt: Float64Array, l: number) => tsGemm.nt(zt, a, l, m, n),
      project: (qt: Float64Array, l: number) => tsGemm.nn(qt, a, l, n, m),
    };
    const cold = randomizedSvdOf(op, rank, { seed: 1, powerIterations: 0, oversample: 4 });
    const warm = randomizedSvdOf(op, rank, { seed: 1, powerIterations: 0, oversample: 4, start: near.vt });
    const optimum = frob(a, reconstruct(exact));
    const errWarm = frob(a, reconstruct(warm));
    const errCold = frob(a, reconstruct(cold));
    expect(errWarm).toBeLessThan(errCold);
    expect(errWarm).toBeLessThanOrEqual(optimum * 1.001);
  });

  it("uses a caller's orthonormalization, and Gram–Schmidt where it declines", () => {
    const [m, n] = [90, 120];
    const a = spiky(m, n, 5);
    const op = {
      rows: m,
      cols: n,
      sketch: (zt: Float64Array, l: number) => tsGemm.nt(zt, a, l, m, n),
      project: (qt: Float64Array, l: number) => tsGemm.nn(qt, a, l, n, m),
    };
    const ref = randomizedSvdOf(op, 8, { seed: 2 });
    let calls = 0;
    const declined = randomizedSvdOf(op, 8, {
      seed: 2,
      orthonormalize: () => {
        calls++;
        return null;
      },
    });
    expect(calls).toBeGreaterThan(2);
    expect(Array.from(declined.vt)).toEqual(Array.from(ref.vt));
    // an orthonormalization that also reports P_in = T·P_out (here: Gram–Schmidt with its own generator)
    const rng = new SeededRng(77);
    const own = randomizedSvdOf(op, 8, { seed: 2, orthonormalize: (p, l, d) => orthonormalizeRows(p, l, d, rng) });
    for (let i = 0; i < 8; i++) expect(Math.abs(own.s[i] - ref.s[i]) / ref.s[i]).toBeLessThan(1e-9);
  });

  it("turns the sketches into singular vectors through a caller's combine (Pᵀ·C), checked for its size", () => {
    const [m, n] = [70, 110];
    const a = spiky(m, n, 7);
    const op = {
      rows: m,
      cols: n,
      sketch: (zt: Float64Array, l: number) => tsGemm.nt(zt, a, l, m, n),
      project: (qt: Float64Array, l: number) => tsGemm.nn(qt, a, l, n, m),
    };
    const ref = randomizedSvdOf(op, 6, { seed: 3 });
    const shapes: string[] = [];
    // Pᵀ·C with the sums in the reverse order of the default loops: equal up to rounding
    const combine = (p: Float64Array, l: number, d: number, c: Float64Array, r: number) => {
      shapes.push(`${l}x${d}x${r}`);
      const out = new Float64Array(d * r);
      for (let x = 0; x < d; x++)
        for (let j = 0; j < r; j++) {
          let acc = 0;
          for (let i = l - 1; i >= 0; i--) acc += p[i * d + x] * c[i * r + j];
          out[x * r + j] = acc;
        }
      return out;
    };
    const got = randomizedSvdOf(op, 6, { seed: 3, combine });
    expect(shapes).toEqual(["22x70x6", "22x110x6"]);
    expect(Array.from(got.s)).toEqual(Array.from(ref.s));
    for (let i = 0; i < ref.u.length; i++) expect(got.u[i]).toBeCloseTo(ref.u[i], 12);
    for (let i = 0; i < ref.vt.length; i++) expect(got.vt[i]).toBeCloseTo(ref.vt[i], 12);
    expect(() => randomizedSvdOf(op, 6, { seed: 3, combine: () => new Float64Array(5) })).toThrow(/combine returned/);
  });

  it("rejects products of the wrong size and a warm start that does not fit", () => {
    const op = {
      rows: 40,
      cols: 30,
      sketch: (_zt: Float64Array, l: number) => new Float64Array(l * 39),
      project: (_qt: Float64Array, l: number) => new Float64Array(l * 30),
    };
    expect(() => randomizedSvdOf(op, 4)).toThrow(/sketch returned .* expected \[20, 40\]/);
    expect(() =>
      randomizedSvdOf({ ...op, sketch: (_z, l) => new Float64Array(l * 40) }, 4, { start: new Float64Array(31) }),
    ).toThrow(LowRankError);
  });
});
