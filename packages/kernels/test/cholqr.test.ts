// Operator 8 (cholQrRowsF64): the native pass against its TypeScript twin, orthonormality, P_in = T·P_out, and
// the panels it declines.
import { describe, expect, it } from "vitest";
import { cholQrTs } from "../src/cholqr.ts";
import { cholQrRowsF64, KernelsError, setThreads } from "../src/index.ts";
import { rng } from "./helpers.ts";

function panel(seed: number, l: number, d: number): Float64Array {
  const r = rng(seed);
  const base = Float64Array.from({ length: d }, () => r.normal());
  // correlated rows of very different norms (a sketch of a matrix with a dominant direction)
  return Float64Array.from(
    { length: l * d },
    (_, i) => (1 + 30 * Math.floor(i / d)) * (base[i % d] + 0.2 * r.normal()),
  );
}

describe("cholQrRowsF64", () => {
  it("orthonormalizes the rows with P_in = T·P_out and agrees with its TypeScript twin, on 1 and 2 threads", () => {
    const [l, d] = [20, 1100];
    const p0 = panel(3, l, d);
    const p = p0.slice();
    const t = cholQrRowsF64(p, l, d)!;
    expect(t).not.toBeNull();
    for (let i = 0; i < l; i++)
      for (let j = 0; j < l; j++) {
        let s = 0;
        for (let x = 0; x < d; x++) s += p[i * d + x] * p[j * d + x];
        expect(Math.abs(s - (i === j ? 1 : 0))).toBeLessThan(1e-13);
        if (j > i) expect(t[i * l + j]).toBe(0);
      }
    let worst = 0;
    for (let i = 0; i < l; i++)
      for (let x = 0; x < d; x++) {
        let s = 0;
        for (let q = 0; q <= i; q++) s += t[i * l + q] * p[q * d + x];
        worst = Math.max(worst, Math.abs(s - p0[i * d + x]) / 31);
      }
    expect(worst).toBeLessThan(1e-13);
    const q = p0.slice();
    const tq = new Float64Array(l * l);
    expect(cholQrTs(q, l, d, 3, 1e-10, 1e-6, tq)).toBe(0);
    for (let i = 0; i < p.length; i++) expect(Math.abs(p[i] - q[i])).toBeLessThan(1e-12);
    for (let i = 0; i < t.length; i++) expect(Math.abs(t[i] - tq[i])).toBeLessThan(1e-9 * Math.abs(tq[i]) + 1e-12);
    setThreads(1);
    const one = p0.slice();
    const t1 = cholQrRowsF64(one, l, d)!;
    setThreads(0);
    expect(one).toEqual(p);
    expect(t1).toEqual(t);
  });

  it("declines a zero row, a repeated row and a panel too ill-conditioned for its pivot bound", () => {
    const [l, d] = [8, 300];
    const zero = panel(4, l, d);
    zero.fill(0, 3 * d, 4 * d);
    expect(cholQrRowsF64(zero, l, d)).toBeNull();
    const dep = panel(5, l, d);
    dep.copyWithin(5 * d, 2 * d, 3 * d);
    expect(cholQrRowsF64(dep, l, d)).toBeNull();
    const near = panel(6, l, d);
    const fresh = rng(7);
    for (let x = 0; x < d; x++) near[6 * d + x] = near[1 * d + x] * 31 + 0.1 * fresh.normal(); // nearly row 1
    expect(cholQrRowsF64(near.slice(), l, d)).not.toBeNull(); // pivot² ≈ 1e-6: fine for float64 Gram matrices
    expect(cholQrRowsF64(near.slice(), l, d, { minPivot: 1e-4 })).toBeNull(); // but below a 1e-4 bound
  });

  it("rejects bad arguments", () => {
    expect(() => cholQrRowsF64(new Float64Array(10), 3, 4)).toThrow(KernelsError);
    expect(() => cholQrRowsF64(new Float64Array(12), 3, 4, { passes: 0 })).toThrow(/passes/);
  });
});
