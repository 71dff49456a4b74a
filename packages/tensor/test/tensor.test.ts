import { DTYPES, type DType, f32ToBf16Bits, matmulF64, Tensor, TensorError } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { rng } from "./helpers.js";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TensorError);
    return (e as TensorError).code;
  }
  return undefined;
}

const r = rng(7);
const randn = (n: number) => Float64Array.from({ length: n }, () => r.normal());

describe("Tensor", () => {
  it("holds dtype, shape and typed storage; rejects mismatched data and bad shapes", () => {
    const t = Tensor.fromFloats("F32", [2, 3], randn(6));
    expect(t.dtype).toBe("F32");
    expect(t.shape).toEqual([2, 3]);
    expect(t.data).toBeInstanceOf(Float32Array);
    expect(t.numel).toBe(6);
    expect(t.rank).toBe(2);
    expect(t.byteLength).toBe(24);
    expect(Object.isFrozen(t.shape)).toBe(true);
    expect(new Tensor("BF16", [4]).data).toBeInstanceOf(Uint16Array);
    expect(new Tensor("I64", [4]).data).toBeInstanceOf(BigInt64Array);
    expect(new Tensor("F32", []).numel).toBe(1); // scalar
    expect(codeOf(() => new Tensor("F32", [2, 3], new Float32Array(5)))).toBe("E_SHAPE");
    expect(codeOf(() => new Tensor("F32", [2, -3]))).toBe("E_SHAPE");
    expect(codeOf(() => new Tensor("F32", [1.5]))).toBe("E_SHAPE");
    expect(codeOf(() => new Tensor("F17" as DType, [1]))).toBe("E_DTYPE");
    // storage must be the dtype's typed array (16-bit floats as raw Uint16 bits, not Float32Array)
    expect(codeOf(() => new Tensor("BF16", [2], new Float32Array(2) as unknown as Uint16Array))).toBe("E_DTYPE");
    expect(codeOf(() => new Tensor("I8", [2], new Uint8Array(2) as unknown as Int8Array))).toBe("E_DTYPE");
    expect(new Tensor("U8", [2], Buffer.from([1, 2])).data[1]).toBe(2); // a Buffer is a Uint8Array
    expect(codeOf(() => Tensor.fromFloats("F32", [2, 2], [1, 2, 3]))).toBe("E_SHAPE");
  });

  it("slice and row are views sharing storage", () => {
    const t = Tensor.fromFloats("F32", [4, 3], randn(12));
    const s = t.slice(1, 3);
    expect(s.shape).toEqual([2, 3]);
    expect(s.data.buffer).toBe(t.data.buffer);
    expect([...s.data]).toEqual([...t.data.subarray(3, 9)]);
    s.data[0] = 42;
    expect(t.data[3]).toBe(42);
    const row = t.row(3);
    expect(row.shape).toEqual([3]);
    row.data[2] = -7;
    expect(t.data[11]).toBe(-7);
    expect(t.slice(2).shape).toEqual([2, 3]);
    expect(t.slice(2, 2).numel).toBe(0);
    // bytes() of a view covers only the view
    expect(s.bytes().byteLength).toBe(24);
    expect(s.bytes().byteOffset).toBe(12);
    expect(codeOf(() => t.slice(3, 5))).toBe("E_SHAPE");
    expect(codeOf(() => t.slice(-1, 2))).toBe("E_SHAPE");
    expect(codeOf(() => t.slice(2, 1))).toBe("E_SHAPE");
    expect(codeOf(() => t.row(4))).toBe("E_SHAPE");
    expect(codeOf(() => new Tensor("F32", []).slice(0, 1))).toBe("E_SHAPE");
  });

  it("reshape shares storage, resolves one -1 and rejects the rest", () => {
    const t = Tensor.fromFloats("F16", [2, 3, 4], randn(24));
    const u = t.reshape([6, -1]);
    expect(u.shape).toEqual([6, 4]);
    expect(u.data).toBe(t.data);
    expect(t.reshape([-1]).shape).toEqual([24]);
    expect(t.reshape([4, 3, 2]).shape).toEqual([4, 3, 2]);
    expect(new Tensor("F32", [0, 5]).reshape([-1, 10]).shape).toEqual([0, 10]);
    expect(codeOf(() => t.reshape([5, -1]))).toBe("E_SHAPE");
    expect(codeOf(() => t.reshape([-1, -1]))).toBe("E_SHAPE");
    expect(codeOf(() => t.reshape([25]))).toBe("E_SHAPE");
    expect(codeOf(() => t.reshape([0, -1]))).toBe("E_SHAPE");
    expect(codeOf(() => t.reshape([-2, -12]))).toBe("E_SHAPE");
  });

  it("toFloat32/toFloat64 decode every dtype; to() converts with round-to-nearest-even; clone copies", () => {
    const xs = randn(64).map((x) => x * 3);
    const t64 = Tensor.fromFloats("F64", [8, 8], xs);
    expect([...t64.toFloat64()]).toEqual([...xs]);
    expect([...t64.toFloat32()]).toEqual([...Float32Array.from(xs)]);
    const bf = t64.to("BF16");
    expect(bf.shape).toEqual([8, 8]);
    for (let i = 0; i < xs.length; i++) expect(bf.data[i]).toBe(f32ToBf16Bits(xs[i]!));
    // bf16 -> f32 -> bf16 is exact
    expect([...bf.to("F32").to("BF16").data]).toEqual([...bf.data]);
    const same = bf.to("BF16");
    expect(same.data).not.toBe(bf.data);
    expect([...same.data]).toEqual([...bf.data]);
    const ints = Tensor.fromFloats("F32", [4], [1.5, 2.5, -3, 100]).to("I8");
    expect([...ints.data]).toEqual([2, 2, -3, 100]);
    expect(codeOf(() => Tensor.fromFloats("F32", [1], [300]).to("I8"))).toBe("E_ARGUMENT");
    for (const d of DTYPES) {
      const t = Tensor.fromFloats(d, [3], [1, 0, 1]);
      expect([...t.toFloat64()], d).toEqual([1, 0, 1]);
      expect([...t.toFloat32()], d).toEqual([1, 0, 1]);
    }
    const c = t64.clone();
    c.data[0] = 123;
    expect(t64.data[0]).toBe(xs[0]);
  });
});

/** Independent reference: C[i][j] = Σ_p A[i][p]·B[p][j], j-outer loop over an explicitly transposed copy. */
function naiveMatmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const bt = new Float64Array(n * k);
  for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) bt[j * k + p] = b[p * n + j]!;
  const c = new Float64Array(m * n);
  for (let j = 0; j < n; j++)
    for (let i = 0; i < m; i++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p]! * bt[j * k + p]!;
      c[i * n + j] = s;
    }
  return c;
}

describe("matmulF64", () => {
  it.each([
    [1, 1, 1],
    [3, 5, 7],
    [16, 64, 9],
    [33, 17, 64],
  ])("[%i,%i] x [%i..] matches a naive loop, with and without transposed B", (m, k, n) => {
    const a = randn(m * k);
    const b = randn(k * n);
    const want = naiveMatmul(a, b, m, k, n);
    const got = matmulF64(a, b, m, k, n);
    const bT = new Float64Array(n * k);
    for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) bT[j * k + p] = b[p * n + j]!;
    const gotT = matmulF64(a, bT, m, k, n, { transposeB: true });
    for (let i = 0; i < m * n; i++) {
      expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(1e-12 * (1 + Math.abs(want[i]!)));
      expect(gotT[i]).toBe(want[i]); // same summation order as the reference
    }
  });

  it("checks operand sizes", () => {
    expect(codeOf(() => matmulF64(new Float64Array(6), new Float64Array(6), 2, 3, 3))).toBe("E_SHAPE");
    expect(codeOf(() => matmulF64(new Float64Array(5), new Float64Array(6), 2, 3, 2))).toBe("E_SHAPE");
  });
});
