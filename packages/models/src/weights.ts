import { type FileHandle, open } from "node:fs/promises";
import { DTYPE_INFO, Tensor, type TensorSource } from "@svdquant/tensor";
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

/**
 * One reusable buffer that holds the weights of one block at a time, for streaming. Each `load` reads the
 * block's tensors straight from their files into the arena (overwriting the previous block), so walking a
 * model needs one block of weight memory however many blocks there are, without waiting for the garbage
 * collector to free per-tensor buffers. A WeightSet from `load` is valid until the next `load`.
 */
export class BlockArena {
  private buffer = new ArrayBuffer(0);
  private readonly files = new Map<string, { handle: FileHandle; dataStart: number }>();

  get byteLength(): number {
    return this.buffer.byteLength;
  }

  async load(source: TensorSource, specs: readonly ParamSpec[], prefix = ""): Promise<WeightSet> {
    checkSpecs(source, specs, prefix);
    const layout: { name: string; file: string; begin: number; bytes: number; offset: number }[] = [];
    let total = 0;
    for (const s of specs) {
      const info = source.info(prefix + s.name);
      const [begin, end] = info.dataOffsets;
      total = Math.ceil(total / 8) * 8; // 8-byte alignment for any typed-array view
      layout.push({ name: s.name, file: info.file, begin, bytes: end - begin, offset: total });
      total += end - begin;
    }
    if (total > this.buffer.byteLength) this.buffer = new ArrayBuffer(total);
    const m = new Map<string, Tensor>();
    for (const [i, l] of layout.entries()) {
      const f = await this.file(l.file);
      const view = new Uint8Array(this.buffer, l.offset, l.bytes);
      let done = 0;
      while (done < l.bytes) {
        const { bytesRead } = await f.handle.read(view, done, l.bytes - done, f.dataStart + l.begin + done);
        if (bytesRead === 0)
          throw new ModelError("E_WEIGHTS", "file ended inside the tensor's data", `${l.file}: ${prefix}${l.name}`);
        done += bytesRead;
      }
      const info = source.info(prefix + l.name);
      const di = DTYPE_INFO[info.dtype];
      let t = new Tensor(info.dtype, specs[i]!.shape, di.wrap(this.buffer, l.offset, l.bytes / di.itemsize) as never);
      if (t.dtype === "F64") t = t.to("F32");
      m.set(l.name, t);
    }
    return new WeightSet(prefix, m);
  }

  private async file(path: string): Promise<{ handle: FileHandle; dataStart: number }> {
    let f = this.files.get(path);
    if (f === undefined) {
      const handle = await open(path, "r");
      const len = Buffer.alloc(8);
      await handle.read(len, 0, 8, 0);
      f = { handle, dataStart: 8 + Number(len.readBigUInt64LE(0)) }; // safetensors: u64 LE header length, header, data
      this.files.set(path, f);
    }
    return f;
  }

  async close(): Promise<void> {
    await Promise.all([...this.files.values()].map((f) => f.handle.close()));
    this.files.clear();
    this.buffer = new ArrayBuffer(0);
  }
}
