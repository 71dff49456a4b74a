import { dequantize, type QuantSpec, quantize } from "@svdquant/int4";
import { SeededRng } from "@svdquant/lowrank";
import { describe, expect, it } from "vitest";
import { fusedQuantSupported, quantizeRowsFused } from "../src/residual-quant.ts";

/** Random rows with exact ties (x/scale on a half step), an all-zero group and, for uint4, small negatives. */
function data(rows: number, cols: number, seed: number, unsigned: boolean): Float64Array {
  const rng = new SeededRng(seed);
  const x = new Float64Array(rows * cols).map(() => (unsigned ? Math.abs(rng.normal()) - 0.05 : rng.normal()));
  for (let j = 0; j < 16; j++) x[j] = 0; // a zero group start (whole group when G = 16)
  // ties: make a group's absmax 7 (or max 15) so the scale is exactly 1, then put values on half steps
  const g = cols + 64;
  if (g + 64 <= x.length) {
    x[g] = unsigned ? 15 : 7;
    for (let t = 1; t < 32; t++) x[g + t] = (unsigned ? 0 : -4) + t * 0.5;
  }
  return x;
}

describe("quantizeRowsFused (kernel path residual)", () => {
  const specs: QuantSpec[] = [
    { format: "int4", groupSize: 64 },
    { format: "int4", groupSize: 16, scaleDtype: "F16" },
    { format: "uint4", groupSize: 64 },
    { format: "uint4", groupSize: 32, scaleDtype: "F32" },
  ];
  it.each(specs)("equals @svdquant/int4 quantize/dequantize for %o", (spec) => {
    const [rows, cols] = [7, 256];
    const x = data(rows, cols, 3, spec.format === "uint4");
    expect(fusedQuantSupported(spec, cols)).toBe(true);
    const codes = new Int8Array(rows * cols);
    const scales = new Float32Array((rows * cols) / spec.groupSize);
    const dq = new Float32Array(rows * cols);
    const e = quantizeRowsFused(x, rows, cols, spec, codes, scales, dq);
    const ref = quantize(x, rows, cols, spec);
    expect(Array.from(codes)).toEqual(Array.from(ref.codes));
    expect(Array.from(scales)).toEqual(Array.from(ref.scales));
    const d = dequantize(ref);
    expect(Array.from(dq)).toEqual(Array.from(d));
    let n2 = 0;
    let e2 = 0;
    for (let i = 0; i < x.length; i++) {
      n2 += x[i] ** 2;
      e2 += (x[i] - d[i]) ** 2;
    }
    expect(e.norm2).toBeCloseTo(n2, 9);
    expect(e.err2).toBeCloseTo(e2, 12);
    expect(e.err2).toBeGreaterThan(0);
  });

  it("computes R = W·diag(λ) − L in the same pass with the same bits", () => {
    const [rows, cols, offset] = [5, 192, 3];
    const rng = new SeededRng(12);
    const w = new Float32Array((rows + offset) * cols).map(() => rng.normal());
    const lambda = new Float64Array(cols).map(() => Math.exp(rng.normal()));
    const l = new Float32Array(rows * cols).map(() => 0.3 * rng.normal());
    const r = new Float64Array(rows * cols);
    for (let i = 0; i < rows; i++)
      for (let j = 0; j < cols; j++) r[i * cols + j] = w[(offset + i) * cols + j] * lambda[j] - l[i * cols + j];
    const spec: QuantSpec = { format: "int4", groupSize: 64 };
    const out = () => ({
      codes: new Int8Array(rows * cols),
      scales: new Float32Array((rows * cols) / 64),
      dq: new Float32Array(rows * cols),
    });
    const a = out();
    const b = out();
    const ea = quantizeRowsFused(r, rows, cols, spec, a.codes, a.scales, a.dq);
    const scratch = new Float64Array(rows * cols);
    const eb = quantizeRowsFused(scratch, rows, cols, spec, b.codes, b.scales, b.dq, "t", {
      w,
      wOffset: offset * cols,
      lambda,
      l,
    });
    expect(Array.from(scratch)).toEqual(Array.from(r));
    expect(Array.from(b.codes)).toEqual(Array.from(a.codes));
    expect(Array.from(b.scales)).toEqual(Array.from(a.scales));
    expect(Array.from(b.dq)).toEqual(Array.from(a.dq));
    expect(eb).toEqual(ea);
  });

  it("rounds BF16 scales as @svdquant/int4 on ties, the largest values and subnormals", () => {
    // one group per row, absmax chosen so that absmax/7 lands on BF16 ties, near the top of the range, tiny
    const tops = [7 * (1 + 2 ** -8), 7 * (1 + 3 * 2 ** -8), 3.4e38, 7 * 1e-40, 7 * 2 ** -130, 7 * 0.1, 0];
    const cols = 64;
    const x = new Float64Array(tops.length * cols);
    tops.forEach((t, i) => {
      x[i * cols] = t;
      for (let j = 1; j < cols; j++) x[i * cols + j] = (t * (j - 32)) / 40;
    });
    const spec: QuantSpec = { format: "int4", groupSize: 64 };
    const codes = new Int8Array(x.length);
    const scales = new Float32Array(tops.length);
    quantizeRowsFused(x, tops.length, cols, spec, codes, scales, new Float32Array(x.length));
    const ref = quantize(x, tops.length, cols, spec);
    expect(Array.from(scales)).toEqual(Array.from(ref.scales));
    expect(Array.from(codes)).toEqual(Array.from(ref.codes));
  });

  it("leaves NVFP4, NF4, per-row and global-scale specs to @svdquant/int4", () => {
    expect(fusedQuantSupported({ format: "nvfp4", groupSize: 16 }, 64)).toBe(false);
    expect(fusedQuantSupported({ format: "nf4", groupSize: 64 }, 64)).toBe(false);
    expect(fusedQuantSupported({ format: "int4", groupSize: 0 }, 64)).toBe(false);
    expect(fusedQuantSupported({ format: "int4", groupSize: 64 }, 96)).toBe(false);
  });
});
