import {
  DTYPE_INFO,
  DTYPES,
  type DType,
  decodeToFloat32,
  decodeToFloat64,
  type EncodeOptions,
  encodeFloats,
  isDType,
  type Storage,
  type StorageOf,
} from "./dtype.js";
import { TensorError } from "./errors.js";

export type Shape = readonly number[];

/** The typed-array class each dtype is stored in. */
const STORAGE_CLASS = Object.fromEntries(DTYPES.map((d) => [d, DTYPE_INFO[d].make(0).constructor])) as Record<
  DType,
  new () => Storage
>;

export function numelOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function checkShape(shape: Shape, what = "shape"): void {
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new TensorError("E_SHAPE", `${what} [${shape.join(", ")}] must hold non-negative integers`);
    }
  }
}

/**
 * A dense, contiguous, row-major tensor. Storage is a typed array of the dtype's storage type
 * (16- and 8-bit floats as raw bits, see `StorageOf`). Views share storage; nothing else aliases.
 */
export class Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: Shape;
  readonly data: StorageOf[D];

  constructor(dtype: D, shape: Shape, data?: StorageOf[D]) {
    if (!isDType(dtype)) throw new TensorError("E_DTYPE", `unknown dtype ${String(dtype)}`);
    checkShape(shape);
    const n = numelOf(shape);
    const storage = data ?? (DTYPE_INFO[dtype].make(n) as StorageOf[D]);
    const want = STORAGE_CLASS[dtype];
    if (!(storage instanceof want)) {
      throw new TensorError(
        "E_DTYPE",
        `${dtype} data must be a ${want.name}, got ${(storage as object)?.constructor?.name ?? typeof storage}`,
      );
    }
    if (storage.length !== n) {
      throw new TensorError(
        "E_SHAPE",
        `${dtype} data of length ${storage.length} does not fit shape [${shape.join(", ")}] (${n} elements)`,
      );
    }
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.data = storage;
  }

  /** Encode float values into a tensor of `dtype` (round to nearest even). */
  static fromFloats<D extends DType>(
    dtype: D,
    shape: Shape,
    values: ArrayLike<number>,
    opts?: EncodeOptions,
  ): Tensor<D> {
    checkShape(shape);
    if (values.length !== numelOf(shape)) {
      throw new TensorError("E_SHAPE", `${values.length} values do not fit shape [${shape.join(", ")}]`);
    }
    return new Tensor(dtype, shape, encodeFloats(dtype, values, opts) as StorageOf[D]);
  }

  get numel(): number {
    return this.data.length;
  }
  get rank(): number {
    return this.shape.length;
  }
  get byteLength(): number {
    return this.data.byteLength;
  }

  /** The raw little-endian bytes of the storage (a view, not a copy). */
  bytes(): Uint8Array {
    return new Uint8Array(this.data.buffer, this.data.byteOffset, this.data.byteLength);
  }

  /** Rows [start, end) along the first axis, sharing storage. */
  slice(start: number, end: number = this.shape[0] ?? 0): Tensor<D> {
    if (this.rank === 0) throw new TensorError("E_SHAPE", "cannot slice a scalar tensor");
    const rows = this.shape[0]!;
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > rows || start > end) {
      throw new TensorError("E_SHAPE", `slice [${start}, ${end}) is outside the first axis of length ${rows}`);
    }
    const inner = numelOf(this.shape.slice(1));
    const view = this.data.subarray(start * inner, end * inner) as StorageOf[D];
    return new Tensor(this.dtype, [end - start, ...this.shape.slice(1)], view);
  }

  /** Row `i` along the first axis, with that axis dropped (shares storage). */
  row(i: number): Tensor<D> {
    const t = this.slice(i, i + 1);
    return new Tensor(this.dtype, this.shape.slice(1), t.data);
  }

  /** Same storage, new shape; one dimension may be -1. */
  reshape(shape: Shape): Tensor<D> {
    const free = shape.filter((d) => d === -1).length;
    if (free > 1) throw new TensorError("E_SHAPE", `reshape [${shape.join(", ")}]: at most one -1`);
    let resolved = [...shape];
    if (free === 1) {
      const known = numelOf(shape.filter((d) => d !== -1));
      if (known === 0 || this.numel % known !== 0) {
        throw new TensorError("E_SHAPE", `cannot reshape [${this.shape.join(", ")}] to [${shape.join(", ")}]`);
      }
      resolved = shape.map((d) => (d === -1 ? this.numel / known : d));
    }
    checkShape(resolved);
    if (numelOf(resolved) !== this.numel) {
      throw new TensorError(
        "E_SHAPE",
        `cannot reshape [${this.shape.join(", ")}] (${this.numel} elements) to [${shape.join(", ")}]`,
      );
    }
    return new Tensor(this.dtype, resolved, this.data);
  }

  /** Values as float32 (a copy, decoded from the storage format). */
  toFloat32(): Float32Array {
    return decodeToFloat32(this.dtype, this.data);
  }

  /** Values as float64 (a copy; exact for every float dtype). */
  toFloat64(): Float64Array {
    return decodeToFloat64(this.dtype, this.data);
  }

  /** A copy converted to another dtype (through float64 for floats; round to nearest even). */
  to<E extends DType>(dtype: E, opts?: EncodeOptions): Tensor<E> {
    if ((dtype as DType) === this.dtype) return new Tensor(dtype, this.shape, this.data.slice() as StorageOf[E]);
    return Tensor.fromFloats(
      dtype,
      this.shape,
      this.dtype === "F64" ? (this.data as Float64Array) : this.toFloat64(),
      opts,
    );
  }

  /** A deep copy. */
  clone(): Tensor<D> {
    return new Tensor(this.dtype, this.shape, this.data.slice() as StorageOf[D]);
  }
}

/**
 * Reference matrix product in float64, for tests: A [M, K] x B [K, N] -> [M, N].
 * With `transposeB`, B is given as [N, K] (the nn.Linear weight layout) and A·Bᵀ is returned.
 */
export function matmulF64(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  m: number,
  k: number,
  n: number,
  opts: { transposeB?: boolean } = {},
): Float64Array {
  if (a.length !== m * k)
    throw new TensorError("E_SHAPE", `matmulF64: A has ${a.length} elements, expected M*K = ${m}*${k}`);
  if (b.length !== k * n)
    throw new TensorError("E_SHAPE", `matmulF64: B has ${b.length} elements, expected K*N = ${k}*${n}`);
  const out = new Float64Array(m * n);
  if (opts.transposeB) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += a[i * k + p]! * b[j * k + p]!;
        out[i * n + j] = s;
      }
    }
    return out;
  }
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const av = a[i * k + p]!;
      for (let j = 0; j < n; j++) out[i * n + j] += av * b[p * n + j]!;
    }
  }
  return out;
}
