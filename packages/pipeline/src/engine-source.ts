/**
 * An int4p2 checkpoint of `quantizeModel` as the GPU engine reads it (@svdquant/engine-cuda's `WeightSource`:
 * diffusers layer names, `FluxEngine.load` / `PixArtEngine.load`), tensor by tensor, without reading the file whole:
 *
 * | engine source name                       | from the file                                                        |
 * | ---------------------------------------- | -------------------------------------------------------------------- |
 * | `<member>.p2_codes`, `.p2_exponents`,    | the member's rows [r0, r1) of its unit (e.g. `attn.to_k` of          |
 * | `.p2_wscale`, `.proj_up`, `.bias`        | `qkv_proj`): row slices, no decoding                                 |
 * | `<member>.proj_down`, `.smooth_factor`   | the unit's (one branch, one λ for every member)                      |
 * | `<layer>.qweight`, `.wscales`, `.wzeros`, `.bias` (W4A16) | re-packed with the AdaNorm rows in diffusers' chunk order and the +1 of `scale` out of the bias (the published checkpoints' convention undone) |
 * | every other name                         | the file's 16-bit tensor (block renames such as `norm_q` undone)     |
 *
 * Only int4p2 files: the published int4 layout splits a FLUX single block's proj_out along K, which the engine runs
 * as one layer, so such files are refused with one line.
 */
import { packW4A16Layer } from "@svdquant/int4";
import { type ModelConfig, modelParams, parseModelConfig } from "@svdquant/models";
import { SafetensorsFile, Tensor } from "@svdquant/tensor";
import { checkpointFormat, w4a16ModelRecord } from "./checkpoint.js";
import { PipelineError } from "./errors.js";
import { layoutOf, type UnitSpec } from "./layout.js";

/** The engine's weight source over an int4p2 checkpoint (structurally @svdquant/engine-cuda's WeightSource). */
export interface EngineCheckpointSource {
  readonly config: ModelConfig;
  has(name: string): boolean;
  read(name: string): Promise<Tensor>;
  close(): Promise<void>;
}

/** Rows [r0, r1) of a row-major tensor (first axis). */
function rowSlice(t: Tensor, r0: number, r1: number): Tensor {
  const rows = t.shape[0]!;
  const per = t.numel / rows;
  const shape = [r1 - r0, ...t.shape.slice(1)];
  return new Tensor(t.dtype, shape, t.data.slice(r0 * per, r1 * per));
}

/** Per-member row slices of an int4p2 unit; the rest of the unit's tensors are shared. */
const P2_ROW_TENSORS = ["p2_codes", "p2_exponents", "p2_wscale", "proj_up", "bias"] as const;
const P2_SHARED_TENSORS = ["proj_down", "smooth_factor"] as const;

/** Open an int4p2 checkpoint written by `quantizeModel` as the engine's weight source (close it when loaded). */
export async function openEngineSource(path: string): Promise<EngineCheckpointSource> {
  const file = await SafetensorsFile.open(path);
  try {
    const raw = file.metadata.config;
    if (raw === undefined)
      throw new PipelineError("E_CHECKPOINT", "no `config` metadata: not a quantized single-file checkpoint", path);
    let config: ModelConfig;
    try {
      config = parseModelConfig(JSON.parse(raw) as Record<string, unknown>, `${path} (config metadata)`);
    } catch (e) {
      throw new PipelineError("E_CHECKPOINT", `unreadable config metadata: ${(e as Error).message}`, path, {
        cause: e,
      });
    }
    const format = checkpointFormat(file.metadata, path);
    if (format !== "int4p2")
      throw new PipelineError(
        "E_UNSUPPORTED",
        `the engine loads int4p2 pipeline checkpoints (svdquant quantize --format int4p2); this one is ${format}`,
        path,
      );
    const shapes = new Map(modelParams(config).map((p) => [p.name, p.shape]));
    const layout = layoutOf(config, "int4p2");
    // engine name → how to read it
    const readers = new Map<string, () => Promise<Tensor>>();
    const fileNames = new Set(file.names());
    const consumed = new Set<string>();
    let w4a16Cache: { unit: string; tensors: Record<string, Tensor> } | undefined;
    const visit = (prefix: string, u: UnitSpec) => {
      const unit = prefix + u.file;
      if (file.has(`${unit}.p2_codes`)) {
        let r0 = 0;
        for (const m of u.members) {
          const rows = shapes.get(`${prefix}${m}.weight`)?.[0];
          if (rows === undefined) throw new PipelineError("E_CHECKPOINT", "the config has no such layer", prefix + m);
          const a = r0;
          r0 += rows;
          for (const t of P2_ROW_TENSORS)
            if (file.has(`${unit}.${t}`))
              readers.set(`${prefix}${m}.${t}`, async () => rowSlice(await file.read(`${unit}.${t}`), a, a + rows));
          for (const t of P2_SHARED_TENSORS)
            if (file.has(`${unit}.${t}`)) readers.set(`${prefix}${m}.${t}`, () => file.read(`${unit}.${t}`));
        }
        const n = file.info(`${unit}.p2_codes`).shape[0];
        if (n !== r0)
          throw new PipelineError("E_CHECKPOINT", `int4p2 unit has ${n} rows, its layers ${r0}`, `${unit}.p2_codes`);
        for (const t of fileNames) if (t.startsWith(`${unit}.`)) consumed.add(t);
      } else if (file.has(`${unit}.wzeros`)) {
        const m = u.members[0]!;
        const n = shapes.get(`${prefix}${m}.weight`)?.[0];
        if (n === undefined) throw new PipelineError("E_CHECKPOINT", "the config has no such layer", prefix + m);
        const packed = async (): Promise<Record<string, Tensor>> => {
          if (w4a16Cache?.unit !== unit) {
            const t: Record<string, Tensor> = {};
            for (const k of ["qweight", "wscales", "wzeros", "bias"])
              if (file.has(`${unit}.${k}`)) t[k] = await file.read(`${unit}.${k}`);
            const rec = w4a16ModelRecord(t, u, unit, n);
            w4a16Cache = { unit, tensors: packW4A16Layer(rec.q, rec.bias, { dtype: "BF16", name: unit }) };
          }
          return w4a16Cache.tensors;
        };
        for (const k of ["qweight", "wscales", "wzeros", "bias"])
          if (k !== "bias" || file.has(`${unit}.bias`))
            readers.set(`${prefix}${m}.${k}`, async () => {
              const t = (await packed())[k];
              if (t === undefined) throw new PipelineError("E_CHECKPOINT", "missing tensor", `${unit}.${k}`);
              return t;
            });
        for (const t of fileNames) if (t.startsWith(`${unit}.`)) consumed.add(t);
      } else if (file.has(`${unit}.qweight`)) {
        throw new PipelineError("E_CHECKPOINT", "an INT4 W4A4 layer (qweight) in an int4p2 checkpoint", unit);
      }
    };
    for (const b of layout.blocks)
      for (let i = 0; i < b.count; i++) {
        const prefix = b.prefix(i);
        for (const u of b.units) visit(prefix, u);
        for (const [model, f] of Object.entries(b.renames))
          if (file.has(prefix + f)) {
            readers.set(prefix + model, () => file.read(prefix + f));
            consumed.add(prefix + f);
          }
      }
    for (const u of layout.head) visit("", u);
    for (const t of fileNames) if (!consumed.has(t) && !readers.has(t)) readers.set(t, () => file.read(t));
    return {
      config,
      has: (name) => readers.has(name),
      read: (name) => {
        const r = readers.get(name);
        if (r === undefined)
          return Promise.reject(new PipelineError("E_CHECKPOINT", "no such tensor in the engine's view", name));
        return r();
      },
      close: () => file.close(),
    };
  } catch (e) {
    await file.close();
    throw e;
  }
}
