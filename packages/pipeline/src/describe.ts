/** A header-only summary of a quantized checkpoint: each 4-bit layer's format and bytes, and the compression. */
import { type ModelConfig, modelParams, parseModelConfig } from "@svdquant/models";
import { SafetensorsFile } from "@svdquant/tensor";
import { checkpointFormat } from "./checkpoint.js";
import { PipelineError } from "./errors.js";
import { layoutOf, type UnitSpec } from "./layout.js";

export interface QuantizedLayerSummary {
  readonly name: string;
  readonly format: "w4a4-int4" | "w4a4-nvfp4" | "w4a4-int4p2" | "w4a16-int4";
  readonly bytes: number;
  /** Bytes of the same layer's weight and bias in BF16. */
  readonly bf16Bytes: number;
}

export interface QuantizedCheckpointSummary {
  readonly model: ModelConfig["kind"];
  readonly layers: readonly QuantizedLayerSummary[];
  /** Tensor data bytes of the file. */
  readonly bytes: number;
  /** The model in BF16 (every parameter 2 bytes). */
  readonly bf16Bytes: number;
  readonly quantizationConfig: unknown;
}

/** Undefined when the file carries no quantization metadata (a plain checkpoint). */
export async function describeQuantizedCheckpoint(path: string): Promise<QuantizedCheckpointSummary | undefined> {
  const f = await SafetensorsFile.open(path);
  try {
    const qc = f.metadata.quantization_config;
    const cfg = f.metadata.config;
    if (qc === undefined || cfg === undefined) return undefined;
    let config: ModelConfig;
    let quantizationConfig: unknown;
    try {
      config = parseModelConfig(JSON.parse(cfg) as Record<string, unknown>, `${path} (config metadata)`);
      quantizationConfig = JSON.parse(qc);
    } catch (e) {
      throw new PipelineError("E_CHECKPOINT", `unreadable metadata: ${(e as Error).message}`, path, { cause: e });
    }
    const shape = new Map(modelParams(config).map((p) => [p.name, p.shape]));
    const numel = (s: readonly number[] | undefined) => (s ?? []).reduce((a, b) => a * b, 1);
    const bytesOf = (n: string) => f.info(n).dataOffsets[1] - f.info(n).dataOffsets[0];
    const layers: QuantizedLayerSummary[] = [];
    const layout = layoutOf(config, checkpointFormat(f.metadata, path));
    const visit = (prefix: string, u: UnitSpec) => {
      const name = prefix + u.file;
      const p2 = f.has(`${name}.p2_codes`);
      if (!f.has(`${name}.qweight`) && !p2) return;
      const own = f.names().filter((t) => t.startsWith(`${name}.`) && !t.slice(name.length + 1).includes("."));
      let bf16 = 0;
      for (const m of u.members) {
        const w = numel(shape.get(`${prefix}${m}.weight`));
        const frac = u.kSlice ? (u.kSlice[1] - u.kSlice[0]) / numel(shape.get(`${prefix}${m}.weight`)?.slice(1)) : 1;
        bf16 += 2 * w * frac + (u.kSlice && u.kSlice[0] !== 0 ? 0 : 2 * numel(shape.get(`${prefix}${m}.bias`)));
      }
      const format = p2
        ? "w4a4-int4p2"
        : f.has(`${name}.wzeros`)
          ? "w4a16-int4"
          : f.info(`${name}.wscales`).dtype === "F8_E4M3"
            ? "w4a4-nvfp4"
            : "w4a4-int4";
      layers.push({ name, format, bytes: own.reduce((a, t) => a + bytesOf(t), 0), bf16Bytes: Math.round(bf16) });
    };
    for (const b of layout.blocks) for (let i = 0; i < b.count; i++) for (const u of b.units) visit(b.prefix(i), u);
    for (const u of layout.head) visit("", u);
    const bytes = f.names().reduce((a, t) => a + bytesOf(t), 0);
    const bf16Bytes = 2 * modelParams(config).reduce((a, p) => a + numel(p.shape), 0);
    return { model: config.kind, layers, bytes, bf16Bytes, quantizationConfig };
  } finally {
    await f.close();
  }
}
