import { describeQuantizedCheckpoint, type QuantizedCheckpointSummary } from "@svdquant/pipeline";
import {
  DTYPE_INFO,
  type DType,
  escapeForTerminal,
  jsonForTerminal,
  numelOf,
  openCheckpoint,
  type TensorSource,
} from "@svdquant/tensor";
import type { Command } from "commander";
import type { CliIO } from "../io.js";

export interface InspectReport {
  tensors: { name: string; dtype: DType; shape: number[] }[];
  metadata: Record<string, string>;
  parameters: number;
  bytes: number;
  bytesByDtype: Partial<Record<DType, number>>;
  /** Present for a quantized single-file checkpoint: per-layer formats and bytes, compression vs BF16. */
  quantized?: QuantizedCheckpointSummary;
}

/** Summarize a .safetensors file, a shard index or a model folder, reading headers only. */
export async function inspectCheckpoint(path: string): Promise<InspectReport> {
  const src: TensorSource = await openCheckpoint(path);
  try {
    const tensors: InspectReport["tensors"] = [];
    const bytesByDtype: Partial<Record<DType, number>> = {};
    let parameters = 0;
    let bytes = 0;
    for (const name of src.names()) {
      const info = src.info(name);
      const n = numelOf(info.shape);
      const b = n * DTYPE_INFO[info.dtype].itemsize;
      tensors.push({ name, dtype: info.dtype, shape: [...info.shape] });
      parameters += n;
      bytes += b;
      bytesByDtype[info.dtype] = (bytesByDtype[info.dtype] ?? 0) + b;
    }
    const quantized = path.endsWith(".safetensors") ? await describeQuantizedCheckpoint(path) : undefined;
    return {
      tensors,
      metadata: { ...src.metadata },
      parameters,
      bytes,
      bytesByDtype,
      ...(quantized ? { quantized } : {}),
    };
  } finally {
    await src.close();
  }
}

/** "3.52x smaller than BF16", or "1.40x larger than BF16" for layers that padding makes bigger. */
function ratioText(bf16: number, bytes: number): string {
  return bf16 >= bytes
    ? `${(bf16 / bytes).toFixed(2)}x smaller than BF16`
    : `${(bytes / bf16).toFixed(2)}x larger than BF16 (padding)`;
}

/** The text report; every string from the file (path, metadata) is escaped for the terminal. */
export function formatInspect(path: string, r: InspectReport): string {
  const e = escapeForTerminal;
  const lines = [
    `${e(path)}`,
    `  tensors:    ${r.tensors.length}`,
    `  parameters: ${r.parameters.toLocaleString("en-US")}`,
    `  bytes:      ${r.bytes.toLocaleString("en-US")}`,
  ];
  for (const [dt, b] of Object.entries(r.bytesByDtype))
    lines.push(`    ${dt.padEnd(8)} ${b.toLocaleString("en-US")} bytes`);
  const q = r.quantized;
  if (q !== undefined) {
    lines.push(
      `  quantized ${q.model}: ${q.layers.length} 4-bit layers; ${q.bytes.toLocaleString("en-US")} bytes vs ${q.bf16Bytes.toLocaleString("en-US")} in BF16 (${ratioText(q.bf16Bytes, q.bytes)})`,
    );
    const byFormat = new Map<string, { n: number; bytes: number; bf16: number }>();
    for (const l of q.layers) {
      const e = byFormat.get(l.format) ?? { n: 0, bytes: 0, bf16: 0 };
      byFormat.set(l.format, { n: e.n + 1, bytes: e.bytes + l.bytes, bf16: e.bf16 + l.bf16Bytes });
    }
    for (const [fmt, e] of byFormat)
      lines.push(
        `    ${fmt.padEnd(11)} ${String(e.n).padStart(5)} layers ${e.bytes.toLocaleString("en-US").padStart(16)} bytes (${ratioText(e.bf16, e.bytes)})`,
      );
    lines.push("  layers:");
    for (const l of q.layers)
      lines.push(
        `    ${l.name}  ${l.format}  ${l.bytes.toLocaleString("en-US")} bytes (${(l.bf16Bytes / l.bytes).toFixed(2)}x)`,
      );
  }
  const meta = Object.entries(r.metadata);
  if (meta.length > 0) {
    lines.push("  metadata:");
    for (const [k, v] of meta) lines.push(`    ${e(k)}: ${e(v)}`);
  }
  return lines.join("\n");
}

/** `svdquant inspect PATH [--json]` */
export function registerInspect(program: Command, io: CliIO): void {
  program
    .command("inspect")
    .description("summarize a .safetensors file, a *.safetensors.index.json shard index, or a diffusers model folder")
    .argument("<path>", "checkpoint to inspect")
    .option("--json", "print a machine-readable JSON object")
    .action(async (path: string, opts: { json?: boolean }) => {
      const r = await inspectCheckpoint(path);
      if (opts.json) {
        const { tensors, metadata, parameters, bytes, quantized } = r;
        io.out(
          `${jsonForTerminal({ tensors, metadata, parameters, bytes, ...(quantized ? { quantized } : {}) }, 2)}\n`,
        );
      } else {
        io.out(`${formatInspect(path, r)}\n`);
      }
    });
}
