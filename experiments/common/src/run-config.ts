/** The part of a model-level experiment's config.json that says what to generate, and its resolution to settings. */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { z } from "zod";
import type { RunSettings } from "./model-run.js";
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
