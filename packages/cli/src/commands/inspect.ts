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
    return { tensors, metadata: { ...src.metadata }, parameters, bytes, bytesByDtype };
  } finally {
    await src.close();
  }
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
        const { tensors, metadata, parameters, bytes } = r;
        io.out(`${jsonForTerminal({ tensors, metadata, parameters, bytes }, 2)}\n`);
      } else {
        io.out(`${formatInspect(path, r)}\n`);
      }
    });
}
