/** The part of a model-level experiment's config.json that says what to generate, and its resolution to settings. */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { z } from "zod";
import { type MethodResult, type MethodSpec, ModelRunner, type RunSettings } from "./model-run.js";
import { prepareOutDir } from "./output.js";
import { type PromptSource, promptSourceSchema, readPrompts, readToyDataset, splitPrompts } from "./prompts.js";

export const generationSchema = z
  .object({
    /** A diffusers FLUX pipeline folder, relative to the repository root (default: the built-in toy model). */
    pipeline: z.string().min(1).default("models/toy-flux"),
    prompts: promptSourceSchema.default({ toyCaptions: true }),
    /** Evaluation prompts drawn (seeded) from the source; one image each. */
    count: z.number().int().min(1).max(100_000),
    /** Calibration prompts drawn from the rest of the source (never evaluation prompts). */
    calibrationCount: z.number().int().min(1).max(10_000).default(8),
    /** Seed of the prompt draw; prompt i is sampled with seed + i by every method. */
    seed: z.number().int().min(0).max(0xffff_ffff).default(0),
    steps: z.number().int().min(1).max(1000),
    guidance: z.number().min(0).max(100).default(3.5),
    /** Image side in pixels. */
    size: z.number().int().min(16).max(4096),
    /** T5 tokens (FLUX.1: 512; the toy model: 32). */
    maxSequenceLength: z.number().int().min(1).max(4096),
    /** Quantizer settings every method shares (@svdquant/pipeline's config: grid, refinement, rank, kernels). */
    quantize: z.record(z.string(), z.unknown()).default({}),
    /** Worker threads of quantizeModel. */
    threads: z.number().int().min(1).max(1024).default(2),
  })
  .strict();
export type GenerationConfig = z.infer<typeof generationSchema>;

/** Settings of a run: prompts read and split, the toy detector loaded when the folder has a dataset.json. */
export async function resolveGeneration(
  g: GenerationConfig,
  root: string,
  log?: (line: string) => void,
): Promise<RunSettings> {
  const pipelineDir = resolve(root, g.pipeline);
  const source: PromptSource = "file" in g.prompts ? { file: resolve(root, g.prompts.file) } : g.prompts;
  const all = await readPrompts(source, pipelineDir);
  const { evaluation, calibration } = splitPrompts(all, g.count, g.calibrationCount, g.seed);
  const shapes = existsSync(join(pipelineDir, "dataset.json")) ? (await readToyDataset(pipelineDir)).spec : null;
  return {
    pipelineDir,
    prompts: evaluation,
    calibrationPrompts: calibration,
    seed: g.seed,
    steps: g.steps,
    guidance: g.guidance,
    size: g.size,
    maxSequenceLength: g.maxSequenceLength,
    quantize: g.quantize,
    threads: g.threads,
    shapes,
    ...(log ? { log } : {}),
  };
}

/** Options of every model-level experiment's run function. */
export interface ExperimentRunOptions {
  /** The repository root that config paths are relative to (default: the experiment folder's grandparent). */
  readonly root?: string;
  /** Output folder (default: the config's `out`, relative to the experiment folder). */
  readonly out?: string;
  readonly log?: (line: string) => void;
  /** PNG charts and grids (default true). */
  readonly figures?: boolean;
}

/** The root config paths resolve against, and the output folder, prepared (created, previous results removed). */
export async function experimentFolders(
  dir: string,
  configOut: string,
  opts: ExperimentRunOptions,
): Promise<{ root: string; outDir: string }> {
  const root = opts.root ?? resolve(dir, "../..");
  const outDir = opts.out ?? resolve(dir, configOut);
  await prepareOutDir(outDir);
  return { root, outDir };
}

/** The 16-bit row, then one row per method spec, all on one runner (same prompts, seeds and calibration). */
export async function runMethodRows(
  g: GenerationConfig,
  root: string,
  specs: readonly MethodSpec[],
  log?: (line: string) => void,
): Promise<{ settings: RunSettings; rows: MethodResult[] }> {
  const settings = await resolveGeneration(g, root, log);
  const runner = await ModelRunner.open(settings);
  const rows: MethodResult[] = [await runner.reference()];
  for (const spec of specs) rows.push(await runner.run(spec));
  return { settings, rows };
}
