import { KernelsError } from "./errors.js";

type Typed = Float32Array | Float64Array | Int8Array | Uint8Array | Uint16Array | Uint32Array | Int32Array;
type Ctor<T extends Typed> = { new (n: number): T; name: string };

/** Checks that a dimension is a positive (or, with allowZero, non-negative) safe integer. */
export function dim(name: string, v: number, allowZero = false): number {
  if (!Number.isSafeInteger(v) || v < (allowZero ? 0 : 1))
    throw new KernelsError(
      "E_SHAPE",
      `dimension ${name} must be a ${allowZero ? "non-negative" : "positive"} integer, got ${v}`,
    );
  return v;
}

/** Checks that `v` is a `ctor` typed array of exactly `shape` elements (row-major). */
export function tensor<T extends Typed>(name: string, v: unknown, ctor: Ctor<T>, shape: readonly number[]): T {
  if (!(v instanceof (ctor as unknown as new (...a: never[]) => T)))
    throw new KernelsError(
      "E_DTYPE",
      `expected a ${ctor.name}, got ${v === null ? "null" : typeof v === "object" ? (v as object).constructor.name : typeof v}`,
      { tensor: name },
    );
  const n = shape.reduce((a, b) => a * b, 1);
  if (v.length !== n)
    throw new KernelsError("E_LENGTH", `shape [${shape.join(", ")}] needs ${n} elements, got ${v.length}`, {
      tensor: name,
    });
  return v;
}

export function multipleOf(name: string, v: number, m: number, why: string): void {
  if (v % m !== 0) throw new KernelsError("E_SHAPE", `${name} = ${v} must be a multiple of ${m} (${why})`);
}

/** Throws when a float array holds a NaN or ±Inf (weights are checked once, when packed). */
export function finite(name: string, v: Float32Array | Float64Array): void {
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (x - x !== 0) throw new KernelsError("E_VALUE", `non-finite value ${x} at flat index ${i}`, { tensor: name });
  }
}

/** Throws when an integer code array leaves [lo, hi]. */
export function codeRange(name: string, v: Int8Array, lo: number, hi: number): void {
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (x < lo || x > hi)
      throw new KernelsError("E_VALUE", `code ${x} at flat index ${i} is outside [${lo}, ${hi}]`, { tensor: name });
  }
}

/**
 * Checks that a structured argument (packed weight, quantized activations) is an object, and of `kind` when given:
 * `gemmW4A4(null, w)` is a KernelsError naming the argument, not a TypeError from reading a field of null.
 */
export function record<T extends object>(name: string, v: T, expected?: { kind: string; type: string }): T {
  if (v === null || typeof v !== "object")
    throw new KernelsError("E_ARGUMENT", `expected an object, got ${v === null ? "null" : typeof v}`, { tensor: name });
  const k = (v as { kind?: unknown }).kind;
  if (expected !== undefined && k !== expected.kind)
    throw new KernelsError("E_ARGUMENT", `expected a ${expected.type} weight, got kind ${String(k)}`, { tensor: name });
  return v;
}
