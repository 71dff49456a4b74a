/**
 * `generateImages`: prompts (or precomputed embeddings) → PNGs with their settings in the metadata, for a diffusers
 * pipeline folder whose model_index.json names FluxPipeline or PixArtSigmaPipeline.
 */
import { constants } from "node:fs";
import { access, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { readModelIndex } from "@svdquant/models";
import { writeFileAtomic } from "@svdquant/tensor";
import { PipelineError } from "./errors.js";
import {
  conditioningFromFile,
  FLUX_DEFAULTS,
  type FluxGenerateSettings,
  FluxPipeline,
  type SampledImage,
  sampleFlux,
} from "./generate.js";
import { PIXART_DEFAULTS, type PixArtGenerateSettings, PixArtPipeline, samplePixArt } from "./generate-pixart.js";
import type { LayerBackend } from "./layers.js";
import { encodePng } from "./png.js";

/** The pipeline classes `generateImages` runs, by model_index.json `_class_name`. */
export const PIPELINE_KINDS = { FluxPipeline: "flux", PixArtSigmaPipeline: "pixart" } as const;
export type PipelineKind = (typeof PIPELINE_KINDS)[keyof typeof PIPELINE_KINDS];

/** Which pipeline a folder holds (model_index.json `_class_name`); anything else is one E_CONFIG line. */
export async function pipelineKind(dir: string): Promise<PipelineKind> {
  const index = await readModelIndex(dir);
  const kind = (PIPELINE_KINDS as Record<string, PipelineKind>)[index.className];
  if (kind === undefined)
    throw new PipelineError(
      "E_CONFIG",
      `model_index.json names ${index.className}; supported: ${Object.keys(PIPELINE_KINDS).join(", ")}`,
      join(dir, "model_index.json"),
    );
  return kind;
}

export interface GenerateOptions {
  /** A diffusers FLUX or PixArt-Σ pipeline folder (model_index.json, transformer/, vae/, text encoders, tokenizers, scheduler/). */
  readonly pipelineDir: string;
  /** A packed SVDQuant checkpoint of the transformer (default: the folder's 16-bit transformer). */
  readonly quantized?: string;
  readonly backend?: LayerBackend;
  /** Prompts, or a safetensors file of precomputed embeddings (FLUX: prompt_embeds + pooled_prompt_embeds; PixArt: prompt_embeds + prompt_attention_mask [+ negative_*]). */
  readonly prompts?: readonly string[];
  readonly embeddings?: string;
  /** Sampler steps (default FLUX 28, PixArt-Σ 20). */
  readonly steps?: number;
  /** FLUX: the guidance embedding's scale (3.5); PixArt: the classifier-free guidance scale (4.5; ≤ 1 turns CFG off). */
  readonly guidance?: number;
  /** Pixels (default FLUX 1024; PixArt sample_size × VAE factor). */
  readonly height?: number;
  readonly width?: number;
  /** T5 tokens (default FLUX 512, PixArt-Σ 300). */
  readonly maxSequenceLength?: number;
  /** PixArt: the negative prompt of classifier-free guidance (default ""). */
  readonly negativePrompt?: string;
  /** PixArt: generate at the closest aspect-ratio bin and resize back (default true, as diffusers). */
  readonly resolutionBinning?: boolean;
  /** Seed of the first image of each prompt; image j of a prompt uses seed + j. */
  readonly seed?: number;
  /** Images per prompt. */
  readonly batch?: number;
  readonly outDir: string;
  readonly onStep?: (image: number, done: number, total: number) => void;
}

/** One model's sampler behind `generateImages`: conditioning rows, one image per (row, seed), PNG settings. */
interface ImageSampler {
  readonly rows: number;
  readonly settings: Readonly<Record<string, string>>;
  sample(row: number, seed: number, onStep: (done: number, total: number) => void): Promise<SampledImage>;
}

async function fluxSampler(o: GenerateOptions): Promise<ImageSampler> {
  if (o.negativePrompt !== undefined || o.resolutionBinning !== undefined)
    throw new PipelineError("E_CONFIG", "negative prompts and resolution binning are PixArt-Σ options", o.pipelineDir);
  const s: FluxGenerateSettings = {
    steps: o.steps ?? FLUX_DEFAULTS.steps,
    guidance: o.guidance ?? FLUX_DEFAULTS.guidance,
    height: o.height ?? FLUX_DEFAULTS.height,
    width: o.width ?? FLUX_DEFAULTS.width,
    maxSequenceLength: o.maxSequenceLength ?? FLUX_DEFAULTS.maxSequenceLength,
  };
  const pipe = await FluxPipeline.load(o.pipelineDir);
  const cond = o.prompts ? pipe.encode(o.prompts, s.maxSequenceLength) : await conditioningFromFile(o.embeddings!);
  const transformer = await pipe.transformer(o.quantized, o.backend);
  return {
    rows: cond.batch,
    settings: {
      pipeline: "FluxPipeline",
      steps: String(s.steps),
      guidance: String(s.guidance),
      max_sequence_length: String(s.maxSequenceLength),
    },
    sample: (row, seed, onStep) => sampleFlux(pipe, transformer, cond, s, { row, seed, onStep }),
  };
}

async function pixartSampler(o: GenerateOptions): Promise<ImageSampler> {
  const pipe = await PixArtPipeline.load(o.pipelineDir);
  const transformer = await pipe.transformer(o.quantized, o.backend);
  const side = transformer.config.sampleSize * pipe.vae.scaleFactor; // default height/width of the pipeline
  const s: PixArtGenerateSettings = {
    steps: o.steps ?? PIXART_DEFAULTS.steps,
    guidance: o.guidance ?? PIXART_DEFAULTS.guidance,
    height: o.height ?? side,
    width: o.width ?? side,
    maxSequenceLength: o.maxSequenceLength ?? PIXART_DEFAULTS.maxSequenceLength,
    resolutionBinning: o.resolutionBinning ?? PIXART_DEFAULTS.resolutionBinning,
  };
  const negative = s.guidance > 1 ? (o.negativePrompt ?? PIXART_DEFAULTS.negativePrompt) : undefined;
  const cond = o.prompts
    ? pipe.encode(o.prompts, negative, s.maxSequenceLength)
    : await pipe.conditioningFromFile(o.embeddings!, negative);
  return {
    rows: cond.batch,
    settings: {
      pipeline: "PixArtSigmaPipeline",
      steps: String(s.steps),
      guidance: String(s.guidance),
      ...(negative !== undefined ? { negative_prompt: negative } : {}),
      max_sequence_length: String(s.maxSequenceLength),
      resolution_binning: String(s.resolutionBinning),
    },
    sample: (row, seed, onStep) => samplePixArt(pipe, transformer, cond, s, { row, seed, onStep }),
  };
}

const slug = (s: string) =>
  s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "")
    .slice(0, 48) || "prompt";

/** Generate PNGs (settings in their tEXt metadata) into `outDir`; returns their paths in prompt-major order. */
export async function generateImages(o: GenerateOptions): Promise<string[]> {
  const seed = o.seed ?? 0;
  const batch = o.batch ?? 1;
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new PipelineError("E_CONFIG", `seed must be an integer ≥ 0, got ${seed}`);
  if (!Number.isSafeInteger(batch) || batch < 1 || batch > 1024)
    throw new PipelineError("E_CONFIG", `batch must be an integer in [1, 1024], got ${batch}`);
  if ((o.prompts === undefined) === (o.embeddings === undefined))
    throw new PipelineError("E_CONFIG", "give either prompts or an embeddings file");
  const kind = await pipelineKind(o.pipelineDir);
  await mkdir(o.outDir, { recursive: true });
  await access(o.outDir, constants.W_OK).catch(() => {
    throw new PipelineError("E_CONFIG", "the output folder is not writable", o.outDir);
  });
  const sampler = kind === "flux" ? await fluxSampler(o) : await pixartSampler(o);
  const files: string[] = [];
  let image = 0;
  for (let row = 0; row < sampler.rows; row++)
    for (let j = 0; j < batch; j++) {
      const sd = seed + j;
      const idx = image++;
      const r = await sampler.sample(row, sd, (d, t) => o.onStep?.(idx, d, t));
      const prompt = o.prompts?.[row] ?? `embeddings ${row}`;
      const file = join(o.outDir, `${String(idx).padStart(3, "0")}-${slug(prompt)}-s${sd}.png`);
      const png = encodePng(r.rgb, r.width, r.height, {
        prompt,
        seed: String(sd),
        ...sampler.settings,
        size: `${r.width}x${r.height}`,
        model: o.pipelineDir,
        ...(o.quantized ? { quantized: o.quantized } : {}),
        software: "svdquant-ts",
      });
      await writeFileAtomic(file, png);
      files.push(file);
    }
  return files;
}
