import { readdir, stat } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import { TensorError } from "./errors.js";
import { checkJsonNesting, MAX_JSON_FILE_BYTES, readInputFile } from "./input-file.js";
import { SafetensorsFile, type TensorSource } from "./safetensors.js";
import type { TensorInfo } from "./safetensors-header.js";
import type { Tensor } from "./tensor.js";

/**
 * A checkpoint split over several files, as `save_pretrained` writes it:
 * `NAME.safetensors.index.json` = { "metadata": {...}, "weight_map": { tensor: "shard file name" } }.
 * Every shard header is opened and validated up front; every tensor of the map must be in its shard.
 */
export class ShardedCheckpoint implements TensorSource {
  readonly path: string;
  readonly metadata: Readonly<Record<string, string>>;
  private readonly shards: ReadonlyMap<string, SafetensorsFile>;
  private readonly weightMap: ReadonlyMap<string, string>;

  private constructor(
    path: string,
    metadata: Record<string, string>,
    shards: Map<string, SafetensorsFile>,
    weightMap: Map<string, string>,
  ) {
    this.path = path;
    this.metadata = metadata;
    this.shards = shards;
    this.weightMap = weightMap;
  }

  static async open(indexPath: string): Promise<ShardedCheckpoint> {
    const text = (await readInputFile(indexPath, MAX_JSON_FILE_BYTES)).toString("utf8");
    checkJsonNesting(text, indexPath);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (cause) {
      throw new TensorError("E_INDEX", `cannot read the shard index: ${(cause as Error).message}`, {
        file: indexPath,
        cause,
      });
    }
    const obj = json as { weight_map?: unknown; metadata?: unknown };
    if (
      obj === null ||
      typeof obj !== "object" ||
      obj.weight_map === null ||
      typeof obj.weight_map !== "object" ||
      Array.isArray(obj.weight_map)
    ) {
      throw new TensorError("E_INDEX", "shard index must be an object with a weight_map object", { file: indexPath });
    }
    const metadata: Record<string, string> = {};
    if (obj.metadata !== undefined && obj.metadata !== null && typeof obj.metadata === "object") {
      for (const [k, v] of Object.entries(obj.metadata as Record<string, unknown>))
        metadata[k] = typeof v === "string" ? v : JSON.stringify(v); // e.g. total_size: 123 -> "123"
    }
    const dir = dirname(resolve(indexPath));
    const weightMap = new Map<string, string>();
    for (const [name, file] of Object.entries(obj.weight_map as Record<string, unknown>)) {
      if (typeof file !== "string" || file.length === 0)
        throw new TensorError("E_INDEX", "weight_map value must be a file name", { file: indexPath, tensor: name });
      const full = resolve(dir, file);
      if (!full.startsWith(dir + sep))
        throw new TensorError("E_INDEX", `shard "${file}" lies outside the checkpoint folder`, {
          file: indexPath,
          tensor: name,
        });
      weightMap.set(name, full);
    }
    const shards = new Map<string, SafetensorsFile>();
    try {
      for (const file of new Set(weightMap.values())) shards.set(file, await SafetensorsFile.open(file));
      for (const [name, file] of weightMap) {
        if (!shards.get(file)!.has(name))
          throw new TensorError("E_INDEX", `weight_map puts it in ${basename(file)}, which does not hold it`, {
            file: indexPath,
            tensor: name,
          });
      }
    } catch (err) {
      await Promise.all([...shards.values()].map((s) => s.close()));
      throw err;
    }
    return new ShardedCheckpoint(indexPath, metadata, shards, weightMap);
  }

  names(): string[] {
    return [...this.weightMap.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  }
  has(name: string): boolean {
    return this.weightMap.has(name);
  }
  info(name: string): TensorInfo & { readonly file: string } {
    return this.shardOf(name).info(name);
  }
  async read(name: string): Promise<Tensor> {
    return this.shardOf(name).read(name); // async: a missing name rejects, as SafetensorsFile.read does
  }
  async readInto(name: string, dst: Uint8Array): Promise<void> {
    return this.shardOf(name).readInto(name, dst);
  }
  async close(): Promise<void> {
    await Promise.all([...this.shards.values()].map((s) => s.close()));
  }
  private shardOf(name: string): SafetensorsFile {
    const file = this.weightMap.get(name);
    if (file === undefined)
      throw new TensorError("E_NOT_FOUND", "no such tensor in the shard index", { file: this.path, tensor: name });
    return this.shards.get(file)!;
  }
}

/** Weight file names diffusers/transformers write, in the order they are looked for. */
const DEFAULT_WEIGHT_NAMES = [
  "diffusion_pytorch_model.safetensors.index.json",
  "diffusion_pytorch_model.safetensors",
  "model.safetensors.index.json",
  "model.safetensors",
];

export interface ModelFolder {
  readonly dir: string;
  /** Parsed config.json, or undefined when the folder has none. */
  readonly config: Record<string, unknown> | undefined;
  readonly weights: TensorSource;
}

/** Open a diffusers-style model folder: `config.json` plus one weight file or one shard index. */
export async function openModelFolder(dir: string): Promise<ModelFolder> {
  let files: string[];
  try {
    files = await readdir(dir);
  } catch (cause) {
    throw new TensorError("E_IO", `cannot list the model folder: ${(cause as Error).message}`, { file: dir, cause });
  }
  let config: Record<string, unknown> | undefined;
  if (files.includes("config.json")) {
    const text = (await readInputFile(join(dir, "config.json"), MAX_JSON_FILE_BYTES)).toString("utf8");
    checkJsonNesting(text, join(dir, "config.json"));
    try {
      config = JSON.parse(text) as Record<string, unknown>;
    } catch (cause) {
      throw new TensorError("E_HEADER_JSON", `config.json is not valid JSON: ${(cause as Error).message}`, {
        file: join(dir, "config.json"),
        cause,
      });
    }
  }
  let weightFile = DEFAULT_WEIGHT_NAMES.find((n) => files.includes(n));
  if (weightFile === undefined) {
    const candidates = files.filter((f) => f.endsWith(".safetensors.index.json"));
    const singles = files.filter((f) => f.endsWith(".safetensors"));
    const pick = candidates.length > 0 ? candidates : singles;
    if (pick.length !== 1) {
      throw new TensorError(
        "E_NOT_FOUND",
        pick.length === 0
          ? "no .safetensors weights in the folder"
          : `several weight files, cannot choose: ${pick.join(", ")}`,
        { file: dir },
      );
    }
    weightFile = pick[0]!;
  }
  const weights = await openCheckpoint(join(dir, weightFile));
  return { dir, config, weights };
}

/** Open a `.safetensors` file, a `*.safetensors.index.json` shard index, or a model folder. */
export async function openCheckpoint(path: string): Promise<TensorSource> {
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch (cause) {
    throw new TensorError("E_IO", `cannot open: ${(cause as Error).message}`, { file: path, cause });
  }
  if (isDir) return (await openModelFolder(path)).weights;
  if (path.endsWith(".index.json")) return ShardedCheckpoint.open(path);
  return SafetensorsFile.open(path);
}
