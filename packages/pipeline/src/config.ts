/**
 * The whole-model quantization config: data (JSON), checked with one schema, every default from the paper.
 */

import { resolve } from "node:path";
import { DEFAULT_RANK } from "@svdquant/int4";
import { matchesPattern as matches, mergeRecipe, type Recipe, SVDQUANT_RECIPE, validateRecipe } from "@svdquant/models";
import { z } from "zod";
import { PipelineError } from "./errors.js";

const calibrationSchema = z
  .object({
    /**
     * Where the calibration inputs come from: "synthetic" (seeded latents and embeddings, for tests and reduced
     * CPU runs) or a safetensors file of recorded model inputs (`sample.<i>.<input>` tensors, see README).
     */
    source: z
      .union([
        z.literal("synthetic"),
        z.object({ file: z.string().min(1) }).strict(),
        z
          .object({
            /** Caption prompts (or a text file, one per line); the first `samples` are used. */
            prompts: z.union([z.array(z.string().min(1)).min(1), z.object({ file: z.string().min(1) }).strict()]),
            /** The diffusers pipeline folder (text encoders, tokenizers, VAE, scheduler); default: the model folder's parent. */
            pipeline: z.string().min(1).optional(),
            /**
             * Guidance scale: FLUX's guidance embedding (default 3.5, FLUX.1-dev), PixArt-Σ's classifier-free
             * guidance (default 4.5; both branches are recorded; ≤ 1 turns CFG off).
             */
            guidance: z.number().min(0).max(100).optional(),
          })
          .strict(),
      ])
      .default("synthetic"),
    /** Calibration samples (prompts); the reference quantizer uses 128 caption prompts. */
    samples: z.number().int().min(1).max(100_000).default(2),
    /** Sampler steps recorded per sample (every step of the schedule); synthetic: steps of a linear σ schedule. */
    steps: z.number().int().min(1).max(1000).default(2),
    /**
     * Image tokens per side (latent side / patch size 2; prompt calibration samples images of side × 2 × VAE factor
     * pixels) and text tokens (prompt calibration: the T5 max_sequence_length).
     */
    imageSide: z.number().int().min(1).max(1024).default(4),
    textTokens: z.number().int().min(1).max(4096).default(8),
    /** Tokens kept per layer input (bounded reservoir, seeded); the search and refinement measure on them. */
    reservoir: z
      .number()
      .int()
      .min(1)
      .max(1 << 20)
      .default(256),
    seed: z.number().int().min(0).max(0xffffffff).default(0),
  })
  .strict();

/**
 * The reduced smoothing search (`grid: "quick"`): 4 (α, β) candidates spanning the paper's grid — none, the activation
 * half, both halves, activation-heavy — for demos, CI and smoke runs where the 39-point search costs too much.
 */
export const QUICK_GRID: readonly { alpha: number; beta: number }[] = [
  { alpha: 0, beta: 0 },
  { alpha: 0.5, beta: 0 },
  { alpha: 0.5, beta: 0.5 },
  { alpha: 0.8, beta: 0.2 },
];

export const quantizeConfigSchema = z
  .object({
    /**
     * Residual format of the W4A4 layers: INT4 g64 or NVFP4 g16 (SVDQuant §5.1; the published checkpoint format), or
     * the opt-in Hopper format "int4p2" (@svdquant/int4 p2.ts: group scales S·2^e, one FP8 GEMM per layer on
     * @svdquant/engine-cuda; its own tensors, see the README's checkpoint table). int4p2 layers that read one input
     * share one low-rank branch, as the engine's one activation operand needs; the engine runs rank 32 (or 0).
     */
    format: z.enum(["int4", "nvfp4", "int4p2"]).default("int4"),
    /** Rank of the 16-bit branch (SVDQuant §5.1: 32). */
    rank: z.number().int().min(0).max(4096).default(DEFAULT_RANK),
    /** Refinement of the branch against the 4-bit residual (0 = none); stops early on the output error. */
    refinement: z
      .object({
        maxIterations: z.number().int().min(0).max(1000).default(100),
        patience: z.number().int().min(1).max(1000).default(3),
        minImprovement: z.number().min(0).max(1).default(1e-4),
      })
      .strict()
      .default({ maxIterations: 100, patience: 3, minImprovement: 1e-4 }),
    /**
     * Smoothing candidates (α, β) searched per input (λ_j = max|X_j|^α / max|W_j|^β): "paper" = the 39 of
     * SVDQuant's search (α ∈ {0, .05, …, .95} with β = 0 or 1 − α), "quick" = the 4 of `QUICK_GRID`, or an explicit
     * list.
     */
    grid: z
      .union([
        z.literal("paper"),
        z.literal("quick"),
        z
          .array(z.object({ alpha: z.number().min(0).max(1), beta: z.number().min(0).max(1) }).strict())
          .min(1)
          .max(1000),
      ])
      .default("paper"),
    /**
     * Run the smoothing search and the refinement on @svdquant/kernels' native float32 GEMMs (the quantizer's kernel
     * path, 15x faster at FLUX sizes, same λ and error within 0.1 %); false: the float64 TypeScript path.
     */
    kernels: z.boolean().default(true),
    /** Seed of the randomized SVD. */
    seed: z.number().int().min(0).max(0xffffffff).default(0),
    /** Overrides of the default recipe (rules first, treatments by name): see @svdquant/models' Recipe. */
    recipe: z.record(z.string(), z.unknown()).optional(),
    calibration: calibrationSchema.default(calibrationSchema.parse({})),
  })
  .strict();

export type QuantizeConfig = z.infer<typeof quantizeConfigSchema>;
export type CalibrationConfig = QuantizeConfig["calibration"];

/**
 * The default recipe of the pipeline: SVDQuant's (W4A4 transformer-block linears, W4A16 AdaNorm linears, 16-bit
 * embedders and final projection) with `norm_out.linear` kept 16-bit as the published checkpoints keep it.
 */
export const PIPELINE_RECIPE: Recipe = mergeRecipe(SVDQUANT_RECIPE, {
  name: "svdquant-published",
  rules: [{ match: "norm_out.linear", treatment: "16bit", why: "16-bit in the published checkpoints" }],
});

/** Parse a config object (e.g. from JSON); throws one E_CONFIG line naming the field at fault. */
export function parseQuantizeConfig(raw: unknown, where = "config"): QuantizeConfig {
  const r = quantizeConfigSchema.safeParse(raw ?? {});
  if (!r.success) {
    const i = r.error.issues[0]!;
    const path = i.path.length > 0 ? i.path.join(".") : "(root)";
    throw new PipelineError("E_CONFIG", `${path}: ${i.message}`, where);
  }
  return r.data;
}

/** The config with its file paths (calibration inputs, prompts, pipeline folder) resolved against `baseDir`. */
export function resolveConfigPaths(config: QuantizeConfig, baseDir: string): QuantizeConfig {
  const src = config.calibration.source;
  if (src === "synthetic") return config;
  const abs = (p: string) => resolve(baseDir, p);
  const source =
    "file" in src
      ? { file: abs(src.file) }
      : {
          ...src,
          prompts: Array.isArray(src.prompts) ? src.prompts : { file: abs(src.prompts.file) },
          ...(src.pipeline !== undefined ? { pipeline: abs(src.pipeline) } : {}),
        };
  return { ...config, calibration: { ...config.calibration, source } };
}

/** The explicit candidate list of `config.grid` (a fresh array), or undefined for "paper" (the quantizer's default). */
export function smoothingGrid(config: QuantizeConfig): { alpha: number; beta: number }[] | undefined {
  if (config.grid === "paper") return undefined;
  return [...(config.grid === "quick" ? QUICK_GRID : config.grid)];
}

/** The recipe a config resolves to (the default with the config's overrides merged in). */
export function recipeOf(config: QuantizeConfig, where = "config"): Recipe {
  if (config.recipe === undefined) return PIPELINE_RECIPE;
  try {
    return mergeRecipe(PIPELINE_RECIPE, validateRecipeOverride(config.recipe));
  } catch (e) {
    throw new PipelineError("E_CONFIG", `recipe: ${(e as Error).message}`, where, { cause: e });
  }
}

function validateRecipeOverride(o: Record<string, unknown>): Partial<Recipe> {
  // A full recipe validates as is; a partial one is validated after the merge (mergeRecipe validates).
  if ("rules" in o && "treatments" in o && "default" in o && "inputGroups" in o && "name" in o)
    return validateRecipe(o);
  return o as Partial<Recipe>;
}

/** The treatment of one model layer under a recipe, in the pipeline's terms. */
export type LayerTreatment = { kind: "w4a4" } | { kind: "w4a16"; groupSize: number } | { kind: "dense" };

export function treatmentOfLayer(recipe: Recipe, name: string): LayerTreatment {
  let t: Recipe["treatments"][string] | undefined;
  for (const r of recipe.rules) {
    if (matches(r.match, name)) {
      t = recipe.treatments[r.treatment];
      break;
    }
  }
  t ??= recipe.treatments[recipe.default];
  if (t === undefined || t.kind === "dense") return { kind: "dense" };
  const hasW = t.weight !== null && t.weight !== undefined;
  const hasA = t.act !== null && t.act !== undefined;
  if (t.kind === "w4a4-packed" || (hasW && hasA)) return { kind: "w4a4" };
  if (t.kind === "w4a16-packed" || hasW) return { kind: "w4a16", groupSize: t.weight?.groupSize || 64 };
  return { kind: "dense" };
}
