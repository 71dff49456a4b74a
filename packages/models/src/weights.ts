import { DTYPE_INFO, firstNonFinite, openModelFolder, Tensor, type TensorSource } from "@svdquant/tensor";
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

/**
 * Weights must be finite: a NaN or Inf weight turns every output of the forward into NaN, silently. Checked once per
 * tensor as it is loaded, on the stored bits (no decoding pass), resident or streamed.
 */
function checkFinite(t: Tensor, source: TensorSource, name: string): void {
  const at = firstNonFinite(t);
  if (at >= 0) {
    const v = t.dtype === "F32" || t.dtype === "F64" ? String(t.data[at]) : "NaN/Inf";
    throw new ModelError("E_WEIGHTS", `holds a non-finite value (${v}) at flat index ${at}`, `${source.path}: ${name}`);
  }
}

/**
 * Check the config's block counts against the checkpoint BEFORE anything sized by the config is built: a config
 * claiming 10^7 layers must fail here, not after allocating 10^7 layers' parameter specs. `groups` are state-dict
 * prefixes (`transformer_blocks.`) and the count the config gives for each; the checkpoint must hold at least that
 * many blocks under each prefix, the last one included.
 */
export function checkBlockCounts(
  source: TensorSource,
  groups: readonly { prefix: string; count: number; key: string }[],
): void {
  const seen = groups.map(() => new Set<number>());
  for (const name of source.names()) {
    groups.forEach((g, gi) => {
      if (!name.startsWith(g.prefix)) return;
      const m = /^(\d+)\./.exec(name.slice(g.prefix.length));
      if (m !== null) seen[gi]!.add(Number(m[1]));
    });
  }
  groups.forEach((g, gi) => {
    const have = seen[gi]!;
    const max = have.size === 0 ? -1 : Math.max(...have);
    // More blocks in the checkpoint than the config says are reported by rejectUnexpectedTensors; fewer (or a
    // last block missing) is what a hostile config looks like, and it is caught here before any allocation.
    if (g.count > have.size || (g.count > 0 && !have.has(g.count - 1)))
      throw new ModelError(
        "E_CONFIG",
        `config says ${g.key} = ${g.count}, but the checkpoint holds ${have.size} blocks under "${g.prefix}"` +
          (have.size > 0 ? ` (indices up to ${max})` : ""),
        source.path,
      );
  });
}

/** Read the tensors of `specs` (names relative to `prefix`), validated (shapes, float dtype, finite values). */
export async function loadWeightSet(
  source: TensorSource,
  specs: readonly ParamSpec[],
  prefix = "",
): Promise<WeightSet> {
  checkSpecs(source, specs, prefix);
  const m = new Map<string, Tensor>();
  for (const s of specs) {
    let t = await source.read(prefix + s.name);
    checkFinite(t, source, prefix + s.name);
    if (t.dtype === "F64") t = t.to("F32");
    m.set(s.name, t);
  }
  return new WeightSet(prefix, m);
}

/** Read one block's tensors: into the streaming arena when given, else into their own buffers. */
export function loadBlockWeights(
  source: TensorSource,
  specs: readonly ParamSpec[],
  prefix: string,
  arena: BlockArena | undefined,
): Promise<WeightSet> {
  return arena ? arena.load(source, specs, prefix) : loadWeightSet(source, specs, prefix);
}

/**
 * Open a diffusers model folder (config.json + safetensors, sharded or not), parse its config and build the model
 * from its weights; the weights are closed unless the model streams from them (or building fails).
 */
export async function loadFromFolder<C, M>(
  dir: string,
  streaming: boolean | undefined,
  parse: (raw: Record<string, unknown>, where: string) => C,
  build: (config: C, source: TensorSource) => Promise<M>,
): Promise<M> {
  const folder = await openModelFolder(dir);
  if (folder.config === undefined) throw new ModelError("E_CONFIG", "no config.json in the model folder", dir);
  try {
    const model = await build(parse(folder.config, `${dir}/config.json`), folder.weights);
    if (!streaming) await folder.weights.close();
    return model;
  } catch (err) {
    await folder.weights.close();
    throw err;
  }
}

/** Tensor names in `source` that no spec accounts for (a checkpoint of another architecture/config). */
export function unexpectedTensors(source: TensorSource, specs: readonly ParamSpec[]): string[] {
  const known = new Set(specs.map((s) => s.name));
  return source.names().filter((n) => !known.has(n));
}

/** Throws naming the first few tensors of `source` that no spec accounts for (a checkpoint of another config). */
export function rejectUnexpectedTensors(source: TensorSource, specs: readonly ParamSpec[], model: string): void {
  const extra = unexpectedTensors(source, specs);
  if (extra.length > 0)
    throw new ModelError(
      "E_WEIGHTS",
      `${extra.length} tensors do not belong to this ${model} config, e.g. ${extra.slice(0, 3).join(", ")}`,
      source.path,
    );
}

/**
 * One reusable buffer that holds the weights of one block at a time, for streaming. Each `load` reads the
 * block's tensors straight from their files into the arena (overwriting the previous block, through the
 * source's `readInto`), so walking a model needs one block of weight memory however many blocks there are,
 * without waiting for the garbage collector to free per-tensor buffers. A WeightSet from `load` is valid until
 * the next `load`. Sources without `readInto` (in-memory ones) are copied in.
 */
export class BlockArena {
  private buffer = new ArrayBuffer(0);

  get byteLength(): number {
    return this.buffer.byteLength;
  }

  async load(source: TensorSource, specs: readonly ParamSpec[], prefix = ""): Promise<WeightSet> {
    checkSpecs(source, specs, prefix);
    const infos = specs.map((s) => source.info(prefix + s.name));
    const offsets: number[] = [];
    let total = 0;
    for (const info of infos) {
      total = Math.ceil(total / 8) * 8; // 8-byte alignment for any typed-array view
      offsets.push(total);
      total += info.dataOffsets[1] - info.dataOffsets[0];
    }
    if (total > this.buffer.byteLength) this.buffer = new ArrayBuffer(total);
    const m = new Map<string, Tensor>();
    for (const [i, info] of infos.entries()) {
      const bytes = info.dataOffsets[1] - info.dataOffsets[0];
      const view = new Uint8Array(this.buffer, offsets[i]!, bytes);
      const name = prefix + specs[i]!.name;
      if (source.readInto) await source.readInto(name, view);
      else {
        const t = await source.read(name);
        view.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      }
      const di = DTYPE_INFO[info.dtype];
      let t = new Tensor(info.dtype, specs[i]!.shape, di.wrap(this.buffer, offsets[i]!, bytes / di.itemsize) as never);
      checkFinite(t, source, name);
      if (t.dtype === "F64") t = t.to("F32");
      m.set(specs[i]!.name, t);
    }
    return new WeightSet(prefix, m);
  }

  /** Drop the buffer (the source's files belong to the source). */
  async close(): Promise<void> {
    this.buffer = new ArrayBuffer(0);
  }
}
