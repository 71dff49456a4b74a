import { TensorError } from "./errors.js";
import {
  bf16BitsToF32,
  e4m3BitsToF32,
  e5m2BitsToF32,
  type Fp8Overflow,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToE4m3Bits,
  f32ToE5m2Bits,
  f32ToF16Bits,
} from "./float-bits.js";

/** Element types, named as in the safetensors format. */
export const DTYPES = [
  "F64",
  "F32",
  "F16",
  "BF16",
  "F8_E4M3",
  "F8_E5M2",
  "I64",
  "I32",
  "I16",
  "I8",
  "U64",
  "U32",
  "U16",
  "U8",
  "BOOL",
] as const;
export type DType = (typeof DTYPES)[number];

/** How each dtype is stored in memory: 16- and 8-bit floats are kept as raw bits. */
export interface StorageOf {
  F64: Float64Array;
  F32: Float32Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  F8_E4M3: Uint8Array;
  F8_E5M2: Uint8Array;
  I64: BigInt64Array;
  I32: Int32Array;
  I16: Int16Array;
  I8: Int8Array;
  U64: BigUint64Array;
  U32: Uint32Array;
  U16: Uint16Array;
  U8: Uint8Array;
  BOOL: Uint8Array;
}
export type Storage = StorageOf[DType];

interface DTypeInfo {
  itemsize: number;
  isFloat: boolean;
  /** Order of the reference (Rust) safetensors writer: data is laid out by descending rank, then by name. */
  writerRank: number;
  make: (n: number) => Storage;
  wrap: (buf: ArrayBuffer, byteOffset: number, length: number) => Storage;
}

export const DTYPE_INFO: Readonly<Record<DType, DTypeInfo>> = {
  F64: {
    itemsize: 8,
    isFloat: true,
    writerRank: 17,
    make: (n) => new Float64Array(n),
    wrap: (b, o, n) => new Float64Array(b, o, n),
  },
  F32: {
    itemsize: 4,
    isFloat: true,
    writerRank: 15,
    make: (n) => new Float32Array(n),
    wrap: (b, o, n) => new Float32Array(b, o, n),
  },
  F16: {
    itemsize: 2,
    isFloat: true,
    writerRank: 11,
    make: (n) => new Uint16Array(n),
    wrap: (b, o, n) => new Uint16Array(b, o, n),
  },
  BF16: {
    itemsize: 2,
    isFloat: true,
    writerRank: 12,
    make: (n) => new Uint16Array(n),
    wrap: (b, o, n) => new Uint16Array(b, o, n),
  },
  F8_E4M3: {
    itemsize: 1,
    isFloat: true,
    writerRank: 7,
    make: (n) => new Uint8Array(n),
    wrap: (b, o, n) => new Uint8Array(b, o, n),
  },
  F8_E5M2: {
    itemsize: 1,
    isFloat: true,
    writerRank: 6,
    make: (n) => new Uint8Array(n),
    wrap: (b, o, n) => new Uint8Array(b, o, n),
  },
  I64: {
    itemsize: 8,
    isFloat: false,
    writerRank: 18,
    make: (n) => new BigInt64Array(n),
    wrap: (b, o, n) => new BigInt64Array(b, o, n),
  },
  I32: {
    itemsize: 4,
    isFloat: false,
    writerRank: 13,
    make: (n) => new Int32Array(n),
    wrap: (b, o, n) => new Int32Array(b, o, n),
  },
  I16: {
    itemsize: 2,
    isFloat: false,
    writerRank: 9,
    make: (n) => new Int16Array(n),
    wrap: (b, o, n) => new Int16Array(b, o, n),
  },
  I8: {
    itemsize: 1,
    isFloat: false,
    writerRank: 5,
    make: (n) => new Int8Array(n),
    wrap: (b, o, n) => new Int8Array(b, o, n),
  },
  U64: {
    itemsize: 8,
    isFloat: false,
    writerRank: 19,
    make: (n) => new BigUint64Array(n),
    wrap: (b, o, n) => new BigUint64Array(b, o, n),
  },
  U32: {
    itemsize: 4,
    isFloat: false,
    writerRank: 14,
    make: (n) => new Uint32Array(n),
    wrap: (b, o, n) => new Uint32Array(b, o, n),
  },
  U16: {
    itemsize: 2,
    isFloat: false,
    writerRank: 10,
    make: (n) => new Uint16Array(n),
    wrap: (b, o, n) => new Uint16Array(b, o, n),
  },
  U8: {
    itemsize: 1,
    isFloat: false,
    writerRank: 4,
    make: (n) => new Uint8Array(n),
    wrap: (b, o, n) => new Uint8Array(b, o, n),
  },
  BOOL: {
    itemsize: 1,
    isFloat: false,
    writerRank: 0,
    make: (n) => new Uint8Array(n),
    wrap: (b, o, n) => new Uint8Array(b, o, n),
  },
};

export function isDType(s: unknown): s is DType {
  return typeof s === "string" && (DTYPES as readonly string[]).includes(s);
}

export function itemsize(dtype: DType): number {
  return DTYPE_INFO[dtype].itemsize;
}

export interface EncodeOptions {
  /** Overflow behaviour of the 8-bit float encoders (see float-bits.ts); defaults per format. */
  fp8Overflow?: Fp8Overflow;
}

/**
 * Encode float values into `dtype` storage. Floats round to nearest even; integer dtypes round half to even
 * and reject non-finite or out-of-range values with a TensorError (never a silent wrap); BOOL stores x != 0.
 */
export function encodeFloats(dtype: DType, values: ArrayLike<number>, opts: EncodeOptions = {}): Storage {
  const n = values.length;
  const out = DTYPE_INFO[dtype].make(n);
  switch (dtype) {
    case "F64":
    case "F32": {
      const o = out as Float64Array | Float32Array;
      for (let i = 0; i < n; i++) o[i] = values[i]!;
      return o;
    }
    case "F16": {
      const o = out as Uint16Array;
      for (let i = 0; i < n; i++) o[i] = f32ToF16Bits(values[i]!);
      return o;
    }
    case "BF16": {
      const o = out as Uint16Array;
      for (let i = 0; i < n; i++) o[i] = f32ToBf16Bits(values[i]!);
      return o;
    }
    case "F8_E4M3": {
      const o = out as Uint8Array;
      for (let i = 0; i < n; i++) o[i] = f32ToE4m3Bits(values[i]!, opts.fp8Overflow);
      return o;
    }
    case "F8_E5M2": {
      const o = out as Uint8Array;
      for (let i = 0; i < n; i++) o[i] = f32ToE5m2Bits(values[i]!, opts.fp8Overflow);
      return o;
    }
    case "BOOL": {
      const o = out as Uint8Array;
      for (let i = 0; i < n; i++) o[i] = values[i] !== 0 ? 1 : 0;
      return o;
    }
    case "I64": {
      const o = out as BigInt64Array;
      // 2 ** 63 - 1 is not a float64; every float64 below 2 ** 63 fits, so the bound is exclusive.
      for (let i = 0; i < n; i++) o[i] = BigInt(checkedInt(values[i]!, -(2 ** 63), 2 ** 63, dtype, i, true));
      return o;
    }
    case "U64": {
      const o = out as BigUint64Array;
      // 2 ** 64 - 1 is not a float64 either: the bound is exclusive as for I64.
      for (let i = 0; i < n; i++) o[i] = BigInt(checkedInt(values[i]!, 0, 2 ** 64, dtype, i, true));
      return o;
    }
    default: {
      const [lo, hi] = INT_RANGE[dtype];
      const o = out as Int32Array | Int16Array | Int8Array | Uint32Array | Uint16Array | Uint8Array;
      for (let i = 0; i < n; i++) o[i] = checkedInt(values[i]!, lo, hi, dtype, i);
      return o;
    }
  }
}

const INT_RANGE: Record<"I32" | "I16" | "I8" | "U32" | "U16" | "U8", [number, number]> = {
  I32: [-(2 ** 31), 2 ** 31 - 1],
  I16: [-32768, 32767],
  I8: [-128, 127],
  U32: [0, 2 ** 32 - 1],
  U16: [0, 65535],
  U8: [0, 255],
};

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function checkedInt(x: number, lo: number, hi: number, dtype: DType, i: number, hiExclusive = false): number {
  const r = roundHalfEven(x);
  if (!Number.isFinite(r) || r < lo || r > hi || (hiExclusive && r === hi)) {
    const range = hiExclusive ? `[${lo}, ${hi})` : `[${lo}, ${hi}]`;
    throw new TensorError("E_ARGUMENT", `value ${x} at index ${i} does not fit ${dtype} ${range}`);
  }
  return r;
}

/** Decode `dtype` storage into float32 (I64 beyond 2^24 loses precision, as any float32 cast does). */
export function decodeToFloat32(dtype: DType, data: Storage): Float32Array {
  const n = data.length;
  const out = new Float32Array(n);
  decodeInto(dtype, data, out);
  return out;
}

/** Decode `dtype` storage into float64 (exact for every dtype but I64 beyond 2^53). */
export function decodeToFloat64(dtype: DType, data: Storage): Float64Array {
  const out = new Float64Array(data.length);
  decodeInto(dtype, data, out);
  return out;
}

function decodeInto(dtype: DType, data: Storage, out: Float32Array | Float64Array): void {
  const n = data.length;
  switch (dtype) {
    case "F16": {
      const d = data as Uint16Array;
      for (let i = 0; i < n; i++) out[i] = f16BitsToF32(d[i]!);
      return;
    }
    case "BF16": {
      const d = data as Uint16Array;
      for (let i = 0; i < n; i++) out[i] = bf16BitsToF32(d[i]!);
      return;
    }
    case "F8_E4M3": {
      const d = data as Uint8Array;
      for (let i = 0; i < n; i++) out[i] = e4m3BitsToF32(d[i]!);
      return;
    }
    case "F8_E5M2": {
      const d = data as Uint8Array;
      for (let i = 0; i < n; i++) out[i] = e5m2BitsToF32(d[i]!);
      return;
    }
    case "I64":
    case "U64": {
      const d = data as BigInt64Array | BigUint64Array;
      for (let i = 0; i < n; i++) out[i] = Number(d[i]!);
      return;
    }
    default: {
      const d = data as Exclude<Storage, BigInt64Array | BigUint64Array>;
      for (let i = 0; i < n; i++) out[i] = d[i]!;
    }
  }
}
