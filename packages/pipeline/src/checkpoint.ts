/**
 * Reading a quantized checkpoint (ours or a published SVDQuant single file) back into records, and loading it
 * into the models with packed layers.
 */
import {
  GELU_SHIFT,
  INT4_GROUP_SIZE,
  QuantError,
  type QuantizedLinear,
  unpackP2Layer,
  unpackW4A4Layer,
  unpackW4A16Layer,
  type W4A16Quantized,
} from "@svdquant/int4";
import { type P2BranchPrecision, p2BranchPrecision } from "@svdquant/kernels";
import {
  DENSE_RECIPE,
  FluxTransformer,
  LinearFactory,
  type LinearLayer,
  type LinearProvider,
  type ModelConfig,
  modelParams,
  PixArtTransformer,
  parseModelConfig,
} from "@svdquant/models";
import { SafetensorsFile, type Tensor } from "@svdquant/tensor";
import { PipelineError } from "./errors.js";
import {
  type LayerBackend,
  P2KernelLinear,
  SplitKLinear,
  W4A4KernelLinear,
  W4A4ReferenceLinear,
  W4A16KernelLinear,
  W4A16ReferenceLinear,
} from "./layers.js";
import { layoutOf, type ModelLayout, type UnitSpec, W4A4_FILE_SUFFIX } from "./layout.js";

/**
 * The branch precision of the int4p2 CPU layers unless LoadQuantizedOptions.p2Branch says otherwise: "bf16", the
 * paper's 16-bit branch (SVDQuant §4). Measured (docs/benchmarks.md "int4p2 branch precision"): it moves the layer
 * output by ‖ΔŶ‖/‖Y‖ ≈ 2–3e-3 and the 4-bit layer error by ≤ 0.11 % (relative) on toy-flux and generated FLUX-shaped
 * layers, and takes the branch's cost from 6.9–24.2 % to 0.8–5.7 % of the layer (FLUX shapes, AMX, 1-thread medians).
 */
export const DEFAULT_P2_BRANCH: P2BranchPrecision = "bf16";

import { nativeGemm } from "./native-gemm.js";
import { permuteAdaNormRows, roundUp } from "./quantize-units.js";
import { RenamedSource } from "./sources.js";

/** A W4A16 layer as read back: rows in the model's order, the AdaNorm +1 removed from the bias. */
export interface W4A16Record {
  readonly name: string;
  readonly q: W4A16Quantized;
  readonly bias: Float32Array | undefined;
}

export interface QuantizedCheckpoint {
  readonly path: string;
  readonly modelConfig: ModelConfig;
  readonly rawConfig: Record<string, unknown>;
  readonly layout: ModelLayout;
  readonly metadata: Readonly<Record<string, string>>;
  /** Residual format of the W4A4 layers, from the `quantization_config` metadata ("int4" covers nvfp4's layout). */
  readonly format: "int4" | "int4p2";
  /** W4A4 units by name (prefix + file name), in-features padded to a multiple of 64. */
  readonly w4a4: ReadonlyMap<string, { unit: UnitSpec; prefix: string; record: QuantizedLinear }>;
  readonly w4a16: ReadonlyMap<string, { unit: UnitSpec; prefix: string; record: W4A16Record }>;
  /** The open file (the 16-bit tensors are read from it on load); close with `close()`. */
  readonly file: SafetensorsFile;
  /** Model tensor name → file tensor name of the 16-bit tensors. */
  readonly dense: ReadonlyMap<string, string>;
  close(): Promise<void>;
}

const SUFFIX_TO_PACKER = Object.fromEntries(Object.entries(W4A4_FILE_SUFFIX).map(([k, v]) => [v, k]));

/** Shapes of the model's parameters by name (from the config). */
function paramShapes(config: ModelConfig): Map<string, readonly number[]> {
  return new Map(modelParams(config).map((p) => [p.name, p.shape]));
}

function memberDims(shapes: Map<string, readonly number[]>, prefix: string, unit: UnitSpec): { n: number; k: number } {
  let n = 0;
  let k = 0;
  for (const m of unit.members) {
    const s = shapes.get(`${prefix}${m}.weight`);
    if (s === undefined) throw new PipelineError("E_CHECKPOINT", "the config has no such layer", prefix + m);
    n += s[0]!;
    k = s.slice(1).reduce((a, b) => a * b, 1);
  }
  if (unit.kSlice !== undefined) k = unit.kSlice[1] - unit.kSlice[0];
  return { n, k };
}

/**
 * The residual format a checkpoint declares: "int4p2" when its `quantization_config` says so (format or
 * weight.dtype), else "int4" (the published layouts, int4 and nvfp4).
 */
export function checkpointFormat(metadata: Readonly<Record<string, string>>, path: string): "int4" | "int4p2" {
  const raw = metadata.quantization_config;
  if (raw === undefined) return "int4";
  let qc: { format?: unknown; weight?: { dtype?: unknown } };
  try {
    qc = JSON.parse(raw) as typeof qc;
  } catch {
    throw new PipelineError("E_CHECKPOINT", "`quantization_config` metadata is not JSON", path);
  }
  return qc?.format === "int4p2" || qc?.weight?.dtype === "int4p2" ? "int4p2" : "int4";
}

/**
 * A W4A16 layer of the file (packW4A16Layer's tensors) as the model computes it: AdaNorm rows back in the model's
 * (diffusers') chunk order and the +1 of the `scale` chunks removed from the bias.
 */
export function w4a16ModelRecord(
  tensors: Readonly<Record<string, Tensor>>,
  unit: UnitSpec,
  name: string,
  n: number,
): W4A16Record {
  const r = unpackW4A16Layer(tensors, { groupSize: INT4_GROUP_SIZE, name });
  let { weight: q, bias } = r;
  if (q.rows !== n) throw new PipelineError("E_CHECKPOINT", `W4A16 layer has ${q.rows} rows, expected ${n}`, name);
  if (unit.adaNorm !== undefined) {
    const { chunks, scaleChunks } = unit.adaNorm;
    const G = q.cols / q.groupSize;
    q = {
      ...q,
      codes: Int8Array.from(permuteAdaNormRows(Float32Array.from(q.codes), n, q.cols, chunks, true)),
      scales: permuteAdaNormRows(q.scales, n, G, chunks, true),
      zeros: permuteAdaNormRows(q.zeros, n, G, chunks, true),
    };
    if (bias !== undefined) {
      const b = permuteAdaNormRows(bias, n, 1, chunks, true);
      const d = n / chunks;
      for (const c of scaleChunks) for (let i = 0; i < d; i++) b[c * d + i]! -= 1;
      bias = b;
    }
  }
  return { name, q, bias };
}

/** Open a quantized checkpoint and read its 4-bit layers into records. */
export async function readQuantizedCheckpoint(path: string): Promise<QuantizedCheckpoint> {
  const file = await SafetensorsFile.open(path);
  try {
    const rawText = file.metadata.config;
    if (rawText === undefined)
      throw new PipelineError("E_CHECKPOINT", "no `config` metadata: not a quantized single-file checkpoint", path);
    let rawConfig: Record<string, unknown>;
    try {
      rawConfig = JSON.parse(rawText) as Record<string, unknown>;
    } catch {
      throw new PipelineError("E_CHECKPOINT", "`config` metadata is not JSON", path);
    }
    const modelConfig = parseModelConfig(rawConfig, `${path} (config metadata)`);
    const format = checkpointFormat(file.metadata, path);
    const layout = layoutOf(modelConfig, format);
    const shapes = paramShapes(modelConfig);
    const w4a4 = new Map<string, { unit: UnitSpec; prefix: string; record: QuantizedLinear }>();
    const w4a16 = new Map<string, { unit: UnitSpec; prefix: string; record: W4A16Record }>();
    const used = new Set<string>();
    const read = async (prefix: string, units: readonly UnitSpec[]) => {
      for (const unit of units) {
        const name = prefix + unit.file;
        const p2 = file.has(`${name}.p2_codes`);
        const w4a4Packed = !file.has(`${name}.wzeros`) && file.has(`${name}.qweight`);
        if (p2 ? format !== "int4p2" : format === "int4p2" && w4a4Packed)
          throw new PipelineError(
            "E_CHECKPOINT",
            `${p2 ? "an int4p2 layer (p2_codes)" : "an INT4 W4A4 layer (qweight)"} in a checkpoint whose quantization_config says ${format}`,
            name,
          );
        if (!file.has(`${name}.qweight`) && !p2) continue; // a 16-bit layer (recipe kept it)
        const { n, k } = memberDims(shapes, prefix, unit);
        const tensors: Record<string, Tensor> = {};
        for (const t of file.names())
          if (t.startsWith(`${name}.`) && !t.slice(name.length + 1).includes(".")) {
            tensors[t.slice(name.length + 1)] = await file.read(t);
            used.add(t);
          }
        if ("wzeros" in tensors) {
          w4a16.set(name, { unit, prefix, record: w4a16ModelRecord(tensors, unit, name, n) });
          continue;
        }
        if (p2) {
          let record: QuantizedLinear;
          try {
            record = unpackP2Layer(tensors, { name });
          } catch (e) {
            if (!(e instanceof QuantError)) throw e;
            throw new PipelineError("E_CHECKPOINT", e.message.replace(/^tensor "[^"]*": /, ""), e.tensor ?? name, {
              cause: e,
            });
          }
          const kp = roundUp(k, INT4_GROUP_SIZE);
          if (record.residual.rows !== n || record.residual.cols !== kp)
            throw new PipelineError(
              "E_CHECKPOINT",
              `int4p2 layer is [${record.residual.rows}, ${record.residual.cols}], the config's is [${n}, ${kp}]`,
              `${name}.p2_codes`,
            );
          w4a4.set(name, { unit, prefix, record });
          continue;
        }
        const packerNames: Record<string, Tensor> = {};
        for (const [suffix, t] of Object.entries(tensors)) {
          const p = SUFFIX_TO_PACKER[suffix] ?? suffix; // published v1 names, or the packer's own (v2) names
          packerNames[p] = t;
        }
        const kp = roundUp(k, INT4_GROUP_SIZE);
        const fp4 = tensors.wscales?.dtype === "F8_E4M3";
        const unsigned = unit.unsigned === true && !fp4;
        const record = unpackW4A4Layer(packerNames, {
          N: n,
          K: kp,
          name,
          act: fp4
            ? { format: "nvfp4", groupSize: 16, shift: 0 }
            : unsigned
              ? { format: "uint4", groupSize: INT4_GROUP_SIZE, shift: GELU_SHIFT }
              : { format: "int4", groupSize: INT4_GROUP_SIZE, shift: 0 },
        });
        w4a4.set(name, { unit, prefix, record });
      }
    };
    for (const b of layout.blocks) for (let i = 0; i < b.count; i++) await read(b.prefix(i), b.units);
    await read("", layout.head);
    // 16-bit tensors under model names
    const dense = new Map<string, string>();
    const renamesByPrefix: { prefix: string; inverse: Map<string, string> }[] = [];
    for (const b of layout.blocks)
      for (let i = 0; i < b.count; i++)
        renamesByPrefix.push({
          prefix: b.prefix(i),
          inverse: new Map(Object.entries(b.renames).map(([model, f]) => [f, model])),
        });
    for (const t of file.names()) {
      if (used.has(t)) continue;
      let model = t;
      for (const { prefix, inverse } of renamesByPrefix)
        if (t.startsWith(prefix)) {
          model = prefix + (inverse.get(t.slice(prefix.length)) ?? t.slice(prefix.length));
          break;
        }
      dense.set(model, t);
    }
    return {
      path,
      modelConfig,
      rawConfig,
      layout,
      metadata: file.metadata,
      format,
      w4a4,
      w4a16,
      file,
      dense,
      close: () => file.close(),
    };
  } catch (e) {
    await file.close();
    throw e;
  }
}

/** The provider of the quantized layers of a checkpoint, by model layer name. */
export function quantizedLayerProvider(
  ckpt: QuantizedCheckpoint,
  backend: LayerBackend,
  p2Branch: P2BranchPrecision = DEFAULT_P2_BRANCH,
): LinearProvider {
  const branch = p2BranchPrecision(p2Branch, "p2Branch");
  const shapes = paramShapes(ckpt.modelConfig);
  // model layer name → how to build it
  const plan = new Map<string, () => LinearLayer>();
  const kSplits = new Map<string, { unitName: string; k0: number; k1: number }[]>();
  for (const [unitName, { unit, prefix, record }] of ckpt.w4a4) {
    if (unit.kSlice !== undefined) {
      const list = kSplits.get(prefix + unit.members[0]!) ?? [];
      list.push({ unitName, k0: unit.kSlice[0], k1: unit.kSlice[1] });
      kSplits.set(prefix + unit.members[0]!, list);
      continue;
    }
    let r0 = 0;
    for (const m of unit.members) {
      const s = shapes.get(`${prefix}${m}.weight`)!;
      const [rows, k] = [s[0]!, s.slice(1).reduce((a, b) => a * b, 1)];
      const a = r0;
      r0 += rows;
      const name = prefix + m;
      plan.set(name, () =>
        backend === "reference"
          ? new W4A4ReferenceLinear(name, record, a, a + rows, k)
          : record.residual.spec.format === "int4p2"
            ? new P2KernelLinear(name, record, a, a + rows, k, branch)
            : new W4A4KernelLinear(name, record, a, a + rows, k),
      );
    }
  }
  for (const [name, splits] of kSplits) {
    const s = shapes.get(`${name}.weight`)!;
    plan.set(name, () => {
      const parts = splits.map(({ unitName, k0, k1 }) => {
        const rec = ckpt.w4a4.get(unitName)!.record;
        const n = rec.residual.rows;
        const layer =
          backend === "reference"
            ? new W4A4ReferenceLinear(unitName, rec, 0, n, k1 - k0)
            : rec.residual.spec.format === "int4p2"
              ? new P2KernelLinear(unitName, rec, 0, n, k1 - k0, branch)
              : new W4A4KernelLinear(unitName, rec, 0, n, k1 - k0);
        return { layer, k0, k1 };
      });
      return new SplitKLinear(name, parts, s[1]!, s[0]!);
    });
  }
  for (const [, { unit, prefix, record }] of ckpt.w4a16) {
    const name = prefix + unit.members[0]!;
    const s = shapes.get(`${name}.weight`)!;
    const k = s.slice(1).reduce((a, b) => a * b, 1);
    plan.set(name, () =>
      backend === "kernels"
        ? new W4A16KernelLinear(name, record.q, record.bias, k)
        : new W4A16ReferenceLinear(name, record.q, record.bias, k),
    );
  }
  return {
    has: (name) => plan.has(name),
    build: (name) => {
      const make = plan.get(name);
      if (make === undefined) throw new PipelineError("E_CHECKPOINT", "not a quantized layer of this checkpoint", name);
      return make();
    },
  };
}

export interface LoadQuantizedOptions {
  /**
   * "kernels" (default): packed native CPU kernels (int4p2: P2KernelLinear on the native f32 GEMM); "reference":
   * float64 fake-quant of the same parameters.
   */
  readonly backend?: LayerBackend;
  /**
   * Precision of the low-rank branch of the int4p2 layers on "kernels" (@svdquant/kernels P2BranchPrecision):
   * default DEFAULT_P2_BRANCH.
   */
  readonly p2Branch?: P2BranchPrecision;
}

export type QuantizedModel = FluxTransformer | PixArtTransformer;

/** Load a quantized checkpoint into a FLUX / PixArt model whose quantized layers run `backend`. */
export async function loadQuantizedModel(path: string, opts: LoadQuantizedOptions = {}): Promise<QuantizedModel> {
  await nativeGemm();
  const ckpt = await readQuantizedCheckpoint(path);
  try {
    const factory = new LinearFactory(DENSE_RECIPE, {
      provider: quantizedLayerProvider(ckpt, opts.backend ?? "kernels", opts.p2Branch),
    });
    const source = new RenamedSource(ckpt.file, ckpt.dense);
    const model =
      ckpt.modelConfig.kind === "flux"
        ? await FluxTransformer.fromSource(ckpt.modelConfig, source, { factory })
        : await PixArtTransformer.fromSource(ckpt.modelConfig, source, { factory });
    model.prepare(); // the 16-bit layers (embedders, final projection) packed once; packed 4-bit layers already are
    return model;
  } finally {
    await ckpt.close();
  }
}
