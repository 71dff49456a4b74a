/** What every experiment writes: results.json, table.md, PNG charts and an image grid, replaced together. */
import { mkdir } from "node:fs/promises";
import { cpus } from "node:os";
import { join } from "node:path";
import { backendInfo } from "@svdquant/kernels";
import { encodePng, imageGrid } from "@svdquant/pipeline";
import { type AtomicData, checkOutputPath, writeFilesAtomic } from "@svdquant/tensor";
import { ExperimentError } from "./errors.js";
import type { MethodResult } from "./model-run.js";

/** CPU model, cores and the native kernels' ISA path (or the TypeScript fallback), for every report. */
export function machineLine(): string {
  const info = backendInfo();
  return `${info.cpu} (${cpus().length} cores), kernels ${info.native ? `native ${info.isa}` : "TypeScript"} path, ${info.threads} threads`;
}

/** Create `outDir` and check that results can be written there, before a long run. */
export async function prepareOutDir(outDir: string): Promise<void> {
  try {
    await mkdir(outDir, { recursive: true });
  } catch (e) {
    throw new ExperimentError("E_IO", `${outDir}: cannot create the output folder: ${(e as Error).message}`);
  }
  await checkOutputPath(join(outDir, "results.json"));
}

/** Rows = methods, columns = the first `columns` prompts, as PNG bytes (prompts in its tEXt metadata). */
export function methodGrid(rows: readonly MethodResult[], columns: number): Uint8Array {
  const first = rows[0]?.images[0];
  if (!first) throw new ExperimentError("E_CONFIG", "no images to put on a grid");
  const cells = rows.map((r) => r.images.slice(0, columns).map((i) => i.rgb));
  const g = imageGrid(cells, first.width, first.height);
  return encodePng(g, g.width, g.height, {
    rows: rows.map((r) => r.id).join(", "),
    columns: rows[0]!.perImage
      .slice(0, columns)
      .map((p) => p.prompt)
      .join(" | "),
  });
}

/** Everything but the images, for results.json. */
export function serializable(r: MethodResult): Omit<MethodResult, "images"> {
  const { images: _images, ...rest } = r;
  return rest;
}

/** Write every output of a run at once (a failure leaves the previous set). */
export async function writeOutputs(outDir: string, files: { name: string; data: AtomicData }[]): Promise<string[]> {
  await writeFilesAtomic(files.map((f) => ({ path: join(outDir, f.name), data: f.data })));
  return files.map((f) => join(outDir, f.name));
}

export const fmt = (v: number | null | undefined, digits: number): string =>
  v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(digits);
