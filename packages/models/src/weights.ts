import type { Tensor, TensorSource } from "@svdquant/tensor";
import { ModelError } from "./errors.js";
import type { ParamSpec } from "./params.js";

const FLOAT_DTYPES = new Set(["F32", "BF16", "F16", "F64"]);

/** Tensors of one module (the whole model, or one block), by name relative to its prefix. */
export class WeightSet {
  private readonly tensors: Map<string, Tensor>;
  readonly prefix: string;
  constructor(prefix: string, tensors: Map<string, Tensor>) {
    this.prefix = prefix;
    this.tensors = tensors;
  }
  get(name: string): Tensor {
    const t = this.tensors.get(name);
    if (t === undefined) throw new ModelError("E_WEIGHTS", "missing tensor", `${this.prefix}${name}`);
    return t;
  }
  maybe(name: string): Tensor | undefined {
    return this.tensors.get(name);
  }
  f32(name: string): Float32Array {
    const t = this.get(name);
    return t.dtype === "F32" ? (t.data as Float32Array) : t.toFloat32();
  }
  get bytes(): number {
    let n = 0;
    for (const t of this.tensors.values()) n += t.byteLength;
    return n;
  }
}

/** Check that `source` holds `prefix + spec.name` with exactly the spec's shape (and a float dtype). */
export function checkSpecs(source: TensorSource, specs: readonly ParamSpec[], prefix = ""): void {
  for (const s of specs) {
    const name = prefix + s.name;
    if (!source.has(name))
      throw new ModelError(
        "E_WEIGHTS",
        `missing tensor (expected shape [${s.shape.join(", ")}])`,
        `${source.path}: ${name}`,
      );
    const info = source.info(name);
    if (info.shape.length !== s.shape.length || info.shape.some((d, i) => d !== s.shape[i]))
      throw new ModelError(
        "E_WEIGHTS",
        `shape [${info.shape.join(", ")}] does not match the config's [${s.shape.join(", ")}]`,
        `${source.path}: ${name}`,
      );
    if (!FLOAT_DTYPES.has(info.dtype))
      throw new ModelError("E_WEIGHTS", `dtype ${info.dtype} is not a float type`, `${source.path}: ${name}`);
  }
}

/** Read the tensors of `specs` (names relative to `prefix`), validated. */
export async function loadWeightSet(
  source: TensorSource,
  specs: readonly ParamSpec[],
  prefix = "",
): Promise<WeightSet> {
  checkSpecs(source, specs, prefix);
  const m = new Map<string, Tensor>();
  for (const s of specs) {
    let t = await source.read(prefix + s.name);
    if (t.dtype === "F64") t = t.to("F32");
    m.set(s.name, t);
  }
  return new WeightSet(prefix, m);
}

/** Tensor names in `source` that no spec accounts for (a checkpoint of another architecture/config). */
export function unexpectedTensors(source: TensorSource, specs: readonly ParamSpec[]): string[] {
  const known = new Set(specs.map((s) => s.name));
  return source.names().filter((n) => !known.has(n));
}
