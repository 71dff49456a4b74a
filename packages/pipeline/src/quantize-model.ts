/**
 * Whole-model SVDQuant: checkpoint → calibration → block-by-block quantization (resumable) → one packed
 * checkpoint in the published single-file format.
 *
 * Memory: calibration streams the 16-bit model (one block of weights resident) and keeps one bounded reservoir
 * per recorded layer input; quantization reads one block's weights at a time. Each finished block is written
 * atomically to `<out>.parts/`; a run started again with `resume` skips finished blocks. The state folder holds a
 * fingerprint of the model (config + tensor table) and of the quantization config; a run on another model or
 * config refuses to mix with it. Every step is seeded: an interrupted + resumed run writes the same bytes as an
 * uninterrupted one.
 */
import { createHash } from "node:crypto";
import { mkdir, rm, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { type ModelConfig, parseModelConfig } from "@svdquant/models";
import {
  checkOutputPath,
  openModelFolder,
  readInputFile,
  SafetensorsFile,
  type Tensor,
  type TensorSource,
  writeFileAtomic,
  writeSafetensors,
} from "@svdquant/tensor";
import { type InputStats, readCalibration, recordCalibration, writeCalibration } from "./calibrate.js";
import { type LayerTreatment, type QuantizeConfig, recipeOf, treatmentOfLayer } from "./config.js";
import { PipelineError } from "./errors.js";
import { linearInputWidths } from "./input-widths.js";
import { layoutOf, type ModelLayout, type UnitSpec } from "./layout.js";
import {
  type LayerReport,
  quantizeW4A16Unit,
  toBf16,
  type UnitWeight,
  unitCalibration,
  w4a4FileTensors,
  w4a16FileTensors,
} from "./quantize-units.js";
import { QuantizePool } from "./workers.js";

/** Version of the state/metadata written by this module. */
export const FORMAT_VERSION = 1;

export type QuantizeEvent =
  | { readonly stage: "calibrate"; readonly done: number; readonly total: number }
  | {
      readonly stage: "quantize";
      readonly block: string;
      readonly done: number;
      readonly total: number;
      readonly resumed: boolean;
    }
  | { readonly stage: "write"; readonly path: string };

export interface QuantizeModelOptions {
  /** A diffusers transformer folder (config.json + safetensors, sharded or not). */
  readonly modelDir: string;
  /** Output .safetensors path; the report goes to `<out>.report.json`, state to `<out>.parts/`. */
  readonly out: string;
  readonly config: QuantizeConfig;
  /** Continue a previous run's state (refused when it belongs to another model or config). */
  readonly resume?: boolean;
  readonly onEvent?: (e: QuantizeEvent) => void;
  /** Worker threads quantizing a block's layers in parallel (default: 1, the calling thread). */
  readonly threads?: number;
  /**
   * A statistics file recorded earlier (`svdquant calibrate`, e.g. on the GPU engine; writeCalibration's format)
   * instead of recording: it must hold every layer input the recipe quantizes, with the model's widths.
   */
  readonly calibration?: string;
}

export interface QuantizeModelResult {
  readonly out: string;
  readonly reportPath: string;
  readonly report: readonly LayerReport[];
  readonly bytes: number;
}

/** Which units of a layout are quantized, by the recipe; throws when a recipe splits a fused unit. */
function unitTreatment(recipe: ReturnType<typeof recipeOf>, prefix: string, unit: UnitSpec): LayerTreatment {
  const ts = unit.members.map((m) => treatmentOfLayer(recipe, prefix + m));
  const first = ts[0]!;
  if (ts.some((t) => t.kind !== first.kind))
    throw new PipelineError(
      "E_CONFIG",
      `the recipe treats the fused layers ${unit.members.join(", ")} differently; they are one layer in the checkpoint`,
      prefix + unit.file,
    );
  if (unit.adaNorm !== undefined && first.kind === "w4a4")
    throw new PipelineError("E_CONFIG", "AdaNorm modulation layers run W4A16 or 16-bit, not W4A4", prefix + unit.file);
  return first;
}

/** A statistics file's entries for `targets`, each checked against the model's input width (one line per fault). */
async function readStatsFor(
  path: string,
  config: ModelConfig,
  targets: ReadonlySet<string>,
): Promise<Map<string, InputStats>> {
  const all = (await readCalibration(path)).stats;
  const widths = linearInputWidths(config);
  const out = new Map<string, InputStats>();
  for (const name of targets) {
    const s = all.get(name);
    if (s === undefined) throw new PipelineError("E_CALIBRATION", `no statistics of layer input ${name}`, path);
    const k = widths.get(name);
    if (k !== undefined && s.absmax.length !== k)
      throw new PipelineError(
        "E_CALIBRATION",
        `${name} has ${s.absmax.length} channels, the model's layer reads ${k}`,
        path,
      );
    if (s.rows === 0 || s.tokens.length !== s.rows * s.absmax.length)
      throw new PipelineError("E_CALIBRATION", `${name}: ${s.rows} kept tokens of ${s.absmax.length} channels`, path);
    out.set(name, s);
  }
  return out;
}

/** Names of the layers whose inputs calibration records (one per quantized input). */
export function calibrationTargets(config: ModelConfig, recipe: ReturnType<typeof recipeOf>): Set<string> {
  const layout = layoutOf(config);
  const out = new Set<string>();
  const add = (prefix: string, units: readonly UnitSpec[]) => {
    for (const u of units) if (unitTreatment(recipe, prefix, u).kind === "w4a4") out.add(prefix + u.members[0]!);
  };
  for (const b of layout.blocks) for (let i = 0; i < b.count; i++) add(b.prefix(i), b.units);
  add("", layout.head);
  return out;
}

async function fingerprintOf(
  source: TensorSource,
  modelConfig: unknown,
  config: QuantizeConfig,
  statsFile?: string,
): Promise<string> {
  const h = createHash("sha256");
  h.update(JSON.stringify({ v: FORMAT_VERSION, modelConfig, config }));
  if (statsFile !== undefined) {
    const s = await stat(statsFile).catch(() => undefined);
    h.update(`statistics:${resolve(statsFile)}:${s?.size ?? -1}:${s?.mtimeMs ?? -1}`);
  }
  for (const n of [...source.names()].sort()) {
    const i = source.info(n);
    h.update(`${n}|${i.dtype}|${i.shape.join(",")}|${i.dataOffsets.join(",")}\n`);
  }
  // files the calibration reads: their size and time (a changed file is another calibration)
  const src = config.calibration.source;
  const files =
    src === "synthetic" ? [] : "file" in src ? [src.file] : Array.isArray(src.prompts) ? [] : [src.prompts.file];
  for (const f of files) {
    const s = await stat(f).catch(() => undefined);
    h.update(`calibration:${f}:${s?.size ?? -1}:${s?.mtimeMs ?? -1}`);
  }
  return h.digest("hex").slice(0, 32);
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** Open (or create) the resumable state folder; refuses a state of another model/config. */
async function openState(dir: string, fingerprint: string, resume: boolean): Promise<void> {
  const statePath = join(dir, "state.json");
  if (await exists(dir)) {
    if (!resume)
      throw new PipelineError(
        "E_RESUME",
        "a previous run left its state here; pass --resume to continue it, or delete the folder to start over",
        dir,
      );
    let prev: { fingerprint?: string } = {};
    try {
      prev = JSON.parse((await readInputFile(statePath, 1 << 20)).toString("utf8")) as { fingerprint?: string };
    } catch {
      throw new PipelineError("E_RESUME", "state.json is missing or unreadable; delete the folder to start over", dir);
    }
    if (prev.fingerprint !== fingerprint)
      throw new PipelineError(
        "E_RESUME",
        `the state belongs to another model or config (${prev.fingerprint} vs ${fingerprint}); delete the folder to start over`,
        dir,
      );
    return;
  }
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(statePath, `${JSON.stringify({ version: FORMAT_VERSION, fingerprint }, null, 1)}\n`);
}

/** Read the tensors of one block (names under `prefix`) from the source as float32 by relative name. */
async function readBlock(source: TensorSource, prefix: string): Promise<Map<string, Tensor>> {
  const out = new Map<string, Tensor>();
  for (const n of source.names()) if (n.startsWith(prefix)) out.set(n.slice(prefix.length), await source.read(n));
  return out;
}

function unitWeight(tensors: ReadonlyMap<string, Tensor>, prefix: string, unit: UnitSpec): UnitWeight {
  const ws: Float32Array[] = [];
  const bs: (Float32Array | undefined)[] = [];
  const rows: number[] = [];
  let k = -1;
  for (const m of unit.members) {
    const w = tensors.get(`${m}.weight`);
    if (w === undefined) throw new PipelineError("E_MODEL", "missing tensor", `${prefix}${m}.weight`);
    const shape = w.rank === 2 ? w.shape : [w.shape[0]!, w.numel / w.shape[0]!]; // conv patch embed: [D, C·p·p]
    const [n, kk] = shape as [number, number];
    if (k >= 0 && kk !== k)
      throw new PipelineError("E_MODEL", `fused layers disagree on K (${kk} vs ${k})`, prefix + m);
    k = kk;
    ws.push(w.toFloat32());
    bs.push(tensors.get(`${m}.bias`)?.toFloat32());
    rows.push(n);
  }
  const n = rows.reduce((a, b) => a + b, 0);
  let weight = new Float32Array(n * k);
  let off = 0;
  ws.forEach((w) => {
    weight.set(w, off);
    off += w.length;
  });
  let bias: Float32Array | undefined;
  if (bs.some((b) => b !== undefined)) {
    bias = new Float32Array(n);
    let o = 0;
    bs.forEach((b, i) => {
      if (b) bias!.set(b, o);
      o += rows[i]!;
    });
  }
  if (unit.kSlice !== undefined) {
    const [k0, k1] = unit.kSlice;
    if (k1 > k) throw new PipelineError("E_MODEL", `K-slice [${k0}, ${k1}) exceeds K = ${k}`, prefix + unit.members[0]);
    const sliced = new Float32Array(n * (k1 - k0));
    for (let r = 0; r < n; r++) sliced.set(weight.subarray(r * k + k0, r * k + k1), r * (k1 - k0));
    weight = sliced;
    if (k0 !== 0) bias = undefined; // the bias of a K-split layer goes with its first slice
    k = k1 - k0;
  }
  return { n, k, weight, bias, memberRows: rows };
}

/** Quantize the units of one block (or the head: prefix "") into file tensors. */
async function quantizeUnits(
  pool: QuantizePool,
  prefix: string,
  units: readonly UnitSpec[],
  tensors: ReadonlyMap<string, Tensor>,
  renames: Readonly<Record<string, string>>,
  recipe: ReturnType<typeof recipeOf>,
  stats: ReadonlyMap<string, InputStats>,
  config: QuantizeConfig,
): Promise<{ tensors: Record<string, Tensor>; reports: LayerReport[] }> {
  const out: Record<string, Tensor> = {};
  const reports: LayerReport[] = [];
  const covered = new Set<string>();
  const groups = new Map<string, { spec: UnitSpec; name: string; w: UnitWeight }[]>();
  for (const unit of units) {
    const t = unitTreatment(recipe, prefix, unit);
    if (t.kind === "dense") continue;
    for (const m of unit.members) covered.add(m);
    const w = unitWeight(tensors, prefix, unit);
    const name = prefix + unit.file;
    if (t.kind === "w4a16") {
      const r = quantizeW4A16Unit(unit, name, w, t.groupSize);
      Object.assign(out, w4a16FileTensors(name, r.q, r.bias));
      reports.push(r.report);
      continue;
    }
    const g = groups.get(unit.input) ?? [];
    g.push({ spec: unit, name, w });
    groups.set(unit.input, g);
  }
  const tasks = [...groups.values()].map((g) => {
    const u = g[0]!.spec;
    const target = prefix + u.members[0]!;
    const s = stats.get(target);
    if (s === undefined) throw new PipelineError("E_CALIBRATION", "no calibration statistics for this input", target);
    return pool.run({ units: g, calibration: unitCalibration(u, s, s.absmax.length), config });
  });
  const results = await Promise.all(tasks);
  [...groups.values()].forEach((g, gi) => {
    const r = results[gi]!;
    for (const [i, rec] of r.records.entries()) Object.assign(out, w4a4FileTensors(g[i]!.name, rec));
    reports.push(...r.reports);
  });
  // reports in the layout's order
  const order = new Map(units.map((u, i) => [prefix + u.file, i]));
  reports.sort((a, b) => (order.get(a.layer) ?? 0) - (order.get(b.layer) ?? 0));
  // 16-bit tensors: everything not covered by a quantized layer, BF16, renamed where the format says so
  for (const [rel, t] of tensors) {
    const m = /^(.*)\.(weight|bias)$/.exec(rel);
    if (m !== null && covered.has(m[1]!)) continue;
    out[prefix + (renames[rel] ?? rel)] = toBf16(t);
  }
  return { tensors: out, reports };
}

/**
 * `quantization_config` metadata of the published format (read by the reference engine's loader). int4p2 files
 * describe their own format there (`weight.dtype` "int4p2", `format` "int4p2"); no published engine reads them.
 */
export function quantizationConfigMetadata(config: QuantizeConfig): Record<string, unknown> {
  if (config.format === "int4p2")
    return {
      method: "svdquant",
      format: "int4p2",
      // @svdquant/int4 p2.ts: INT4 codes, group scale = f32 row scale · 2^e, e in [-9, 5]
      weight: { dtype: "int4p2", scale_dtype: "f32_row_x_pow2", group_size: 64 },
      activation: { dtype: "int4p2", scale_dtype: "pow2", group_size: 64 },
      rank: config.rank,
    };
  const fp4 = config.format === "nvfp4";
  const side = {
    dtype: fp4 ? "fp4_e2m1_all" : "int4",
    scale_dtype: fp4 ? "fp8_e4m3_nan" : null,
    group_size: fp4 ? 16 : 64,
  };
  return {
    method: "svdquant",
    weight: { ...side, scale_dtype: fp4 ? [null, "fp8_e4m3_nan"] : null },
    activation: side,
    rank: config.rank,
  };
}

/** Run the whole flow; see the module comment. */
export async function quantizeModel(opts: QuantizeModelOptions): Promise<QuantizeModelResult> {
  const { config } = opts;
  const recipe = recipeOf(config);
  await checkOutputPath(opts.out); // a bad output path fails before any work
  const pool = new QuantizePool(opts.threads ?? 1);
  const folder = await openModelFolder(opts.modelDir).catch(async (e) => {
    await pool.close();
    throw e;
  });
  const source = folder.weights;
  try {
    if (folder.config === undefined)
      throw new PipelineError("E_MODEL", "no config.json in the model folder", opts.modelDir);
    let modelConfig: ModelConfig;
    try {
      modelConfig = parseModelConfig(folder.config, join(opts.modelDir, "config.json"));
    } catch (e) {
      throw new PipelineError("E_MODEL", (e as Error).message, opts.modelDir, { cause: e });
    }
    const layout: ModelLayout = layoutOf(modelConfig, config.format);
    const fingerprint = await fingerprintOf(source, folder.config, config, opts.calibration);
    const stateDir = `${opts.out}.parts`;
    await openState(stateDir, fingerprint, opts.resume === true);

    // 1. calibration (persisted, so a resumed run does not repeat it)
    const calPath = join(stateDir, "calibration.safetensors");
    let stats: Map<string, InputStats>;
    if (await exists(calPath)) stats = (await readCalibration(calPath)).stats;
    else if (opts.calibration !== undefined) {
      stats = await readStatsFor(opts.calibration, modelConfig, calibrationTargets(modelConfig, recipe));
      await writeCalibration(calPath, stats, { fingerprint });
    } else {
      const targets = calibrationTargets(modelConfig, recipe);
      const total =
        "file" in Object(config.calibration.source) ? 0 : config.calibration.samples * config.calibration.steps;
      stats = await recordCalibration(
        modelConfig,
        source,
        config.calibration,
        targets,
        (done) => opts.onEvent?.({ stage: "calibrate", done, total }),
        dirname(resolve(opts.modelDir)),
      );
      await writeCalibration(calPath, stats, { fingerprint });
    }

    // 2. blocks, then the head; each persisted atomically
    const parts: { prefix: string; units: readonly UnitSpec[]; renames: Readonly<Record<string, string>> }[] = [];
    for (const b of layout.blocks)
      for (let i = 0; i < b.count; i++) parts.push({ prefix: b.prefix(i), units: b.units, renames: b.renames });
    const report: LayerReport[] = [];
    const partFiles: string[] = [];
    for (let p = 0; p < parts.length; p++) {
      const { prefix, units, renames } = parts[p]!;
      const file = join(stateDir, `block-${prefix}safetensors`);
      partFiles.push(file);
      const resumed = await exists(file);
      if (!resumed) {
        const tensors = await readBlock(source, prefix);
        const r = await quantizeUnits(pool, prefix, units, tensors, renames, recipe, stats, config);
        await writeSafetensors(file, sortedRecord(r.tensors), { report: JSON.stringify(r.reports) });
      }
      const f = await SafetensorsFile.open(file);
      report.push(...(JSON.parse(f.metadata.report ?? "[]") as LayerReport[]));
      await f.close();
      opts.onEvent?.({ stage: "quantize", block: prefix, done: p + 1, total: parts.length + 1, resumed });
    }
    const head = new Map<string, Tensor>();
    const blockPrefixes = layout.blocks.map((b) => b.prefix(0).replace(/0\.$/, ""));
    for (const n of source.names())
      if (!blockPrefixes.some((bp) => n.startsWith(bp))) head.set(n, await source.read(n));
    const hq = await quantizeUnits(pool, "", layout.head, head, {}, recipe, stats, config);
    report.push(...hq.reports);
    opts.onEvent?.({
      stage: "quantize",
      block: "head",
      done: parts.length + 1,
      total: parts.length + 1,
      resumed: false,
    });

    // 3. one file: head + every block, sorted names, metadata of the published format
    const all: Record<string, Tensor> = { ...hq.tensors };
    for (const file of partFiles) {
      const f = await SafetensorsFile.open(file);
      try {
        for (const n of f.names()) all[n] = await f.read(n);
      } finally {
        await f.close();
      }
    }
    opts.onEvent?.({ stage: "write", path: opts.out });
    const metadata: Record<string, string> = {
      config: JSON.stringify(folder.config),
      model_class: layout.modelClass,
      quantization_config: JSON.stringify(quantizationConfigMetadata(config)),
      svdquant_ts: JSON.stringify({ version: FORMAT_VERSION, fingerprint, recipe: recipe.name, config }),
    };
    await writeSafetensors(opts.out, sortedRecord(all), metadata);
    const reportPath = `${opts.out}.report.json`;
    await writeFileAtomic(reportPath, `${JSON.stringify({ fingerprint, config, layers: report }, null, 1)}\n`);
    await rm(stateDir, { recursive: true, force: true });
    const bytes = (await stat(opts.out)).size;
    return { out: opts.out, reportPath, report, bytes };
  } finally {
    await source.close();
    await pool.close();
  }
}

function sortedRecord(t: Record<string, Tensor>): Map<string, Tensor> {
  return new Map(
    Object.keys(t)
      .sort()
      .map((k) => [k, t[k]!]),
  );
}
