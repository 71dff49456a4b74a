import { describe, expect, it } from "vitest";
import { LowRankError, orthonormalizeRows, SeededRng, transpose, tsGemm } from "../src/index.ts";
import { naiveNT } from "./helpers.ts";

describe("tsGemm.nt", () => {
  it.each([
    [1, 1, 1],
    [4, 4, 7],
    [5, 7, 1031],
    [13, 9, 2050],
    [48, 33, 300],
  ])("matches the naive float64 product for M=%i N=%i K=%i", (m, n, k) => {
    const rng = new SeededRng(m * 1000 + n * 10 + k);
    const a = rng.normals(m * k);
    const b = rng.normals(n * k);
    const got = tsGemm.nt(a, b, m, n, k);
    const want = naiveNT(a, b, m, n, k);
    for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 9);
  });

  it("reuses and clears an output buffer", () => {
    const rng = new SeededRng(3);
    const a = rng.normals(6 * 10);
    const b = rng.normals(5 * 10);
    const out = new Float64Array(30).fill(123);
    tsGemm.nt(a, b, 6, 5, 10, out);
    const want = naiveNT(a, b, 6, 5, 10);
    for (let i = 0; i < 30; i++) expect(out[i]).toBeCloseTo(want[i], 12);
  });

  it("rejects operands too small for the shape", () => {
    expect(() => tsGemm.nt(new Float64Array(5), new Float64Array(6), 2, 2, 3)).toThrow(LowRankError);
  });
});

describe("transpose and orthonormalizeRows", () => {
  it("transposes float32 input", () => {
    const rng = new SeededRng(9);
    const a = Float32Array.from(rng.normals(37 * 45));
    const t = transpose(a, 37, 45);
    for (let i = 0; i < 37; i++) for (let j = 0; j < 45; j++) expect(t[j * 37 + i]).toBe(a[i * 45 + j]);
  });

  it("gives orthonormal rows and P_in = T·P_out, even with a dependent row", () => {
    const rng = new SeededRng(11);
    const l = 6;
    const d = 40;
    const p = rng.normals(l * d);
    for (let x = 0; x < d; x++) p[3 * d + x] = 2 * p[1 * d + x] - p[0 * d + x]; // row 3 dependent
    const orig = p.slice();
    const t = orthonormalizeRows(p, l, d, new SeededRng(1));
    for (let i = 0; i < l; i++)
      for (let j = 0; j < l; j++) {
        let dot = 0;
        for (let x = 0; x < d; x++) dot += p[i * d + x] * p[j * d + x];
        expect(dot).toBeCloseTo(i === j ? 1 : 0, 12);
      }
    for (let i = 0; i < l; i++)
      for (let x = 0; x < d; x++) {
        let s = 0;
        for (let j = 0; j < l; j++) s += t[i * l + j] * p[j * d + x];
        expect(s).toBeCloseTo(orig[i * d + x], 10);
      }
  });
});

describe("tsGemm.nn", () => {
  it.each([
    [1, 1, 1],
    [4, 1030, 8],
    [7, 9, 13],
    [48, 2100, 6],
  ])("matches the naive float64 product for M=%i N=%i K=%i", (m, n, k) => {
    const rng = new SeededRng(m + 7 * n + 13 * k);
    const a = rng.normals(m * k);
    const b = rng.normals(k * n);
    const got = tsGemm.nn(a, b, m, n, k);
    const want = naiveNT(a, transpose(b, k, n), m, n, k);
    for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 9);
  });
});
