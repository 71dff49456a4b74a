import { FLUX_DEFAULTS, generateImages, PIXART_DEFAULTS } from "@svdquant/pipeline";
import cliProgress from "cli-progress";
import { type Command, InvalidArgumentError } from "commander";
import { CliError } from "../errors.js";
import type { CliIO } from "../io.js";
import { intIn } from "../options.js";

function positive(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`expected a number ≥ 0, got "${v}"`);
  return n;
}
function size(v: string): [number, number] {
  const m = /^(\d+)(?:x(\d+))?$/.exec(v);
  const w = Number(m?.[1]);
  const h = Number(m?.[2] ?? m?.[1]);
  if (m === null || !(w >= 16 && h >= 16 && w <= 4096 && h <= 4096))
    throw new InvalidArgumentError(`expected WIDTHxHEIGHT or SIDE from 16 to 4096, got "${v}"`);
  return [w, h];
}

interface GenerateCliOptions {
  quantized?: string;
  prompt?: string[];
  embeddings?: string;
  steps?: number;
  guidance?: number;
  seed?: number;
  size?: [number, number];
  batch?: number;
  maxSequenceLength?: number;
  negativePrompt?: string;
  binning?: boolean;
  reference?: boolean;
  out: string;
  progress?: boolean;
}

/** `svdquant generate MODEL_DIR [--quantized FILE] --prompt TEXT | --embeddings FILE [...] --out DIR` */
export function registerGenerate(program: Command, io: CliIO): void {
  program
    .command("generate")
    .description(
      "text → image with a diffusers FLUX or PixArt-Σ pipeline folder (model_index.json decides) on the CPU (16-bit, or a packed SVDQuant transformer)",
    )
    .argument(
      "<model-dir>",
      "diffusers pipeline folder (model_index.json, transformer/, vae/, text encoders, tokenizers)",
    )
    .option("--quantized <file>", "packed SVDQuant checkpoint of the transformer (from `svdquant quantize`)")
    .option("--prompt <text...>", "one or more prompts")
    .option(
      "--embeddings <file>",
      "precomputed embeddings (.safetensors) instead of prompts: FLUX prompt_embeds + pooled_prompt_embeds, PixArt prompt_embeds + prompt_attention_mask [+ negative_*]",
    )
    .option(
      "--steps <n>",
      `sampler steps (default FLUX ${FLUX_DEFAULTS.steps}, PixArt-Σ ${PIXART_DEFAULTS.steps})`,
      intIn(1, 1000),
    )
    .option(
      "--guidance <g>",
      `FLUX: guidance-embedding scale (default ${FLUX_DEFAULTS.guidance}); PixArt-Σ: classifier-free guidance (default ${PIXART_DEFAULTS.guidance}, ≤ 1 = off)`,
      positive,
    )
    .option("--seed <n>", "seed of the first image of each prompt (default 0)", intIn(0, 2 ** 32 - 1))
    .option(
      "--size <WxH>",
      `image size in pixels (default FLUX ${FLUX_DEFAULTS.width}x${FLUX_DEFAULTS.height}, PixArt-Σ the transformer's sample_size × VAE factor)`,
      size,
    )
    .option("--batch <n>", "images per prompt, seeds seed, seed+1, … (default 1)", intIn(1, 1024))
    .option(
      "--max-sequence-length <n>",
      `T5 tokens (default FLUX ${FLUX_DEFAULTS.maxSequenceLength}, PixArt-Σ ${PIXART_DEFAULTS.maxSequenceLength})`,
      intIn(1, 4096),
    )
    .option("--negative-prompt <text>", "PixArt-Σ: the negative prompt of classifier-free guidance (default empty)")
    .option("--no-binning", "PixArt-Σ: generate at exactly --size instead of the closest aspect-ratio bin")
    .option("--reference", "run the quantized layers in float64 fake-quant instead of the packed kernels")
    .requiredOption("--out <dir>", "output folder for the PNGs")
    .option("--no-progress", "no progress bar on stderr")
    .action(async (modelDir: string, opts: GenerateCliOptions) => {
      if ((opts.prompt === undefined) === (opts.embeddings === undefined))
        throw new CliError("E_ARGUMENT", "give --prompt TEXT or --embeddings FILE (one of them)");
      let bar: cliProgress.SingleBar | undefined;
      const tty = process.stderr.isTTY === true && opts.progress !== false;
      try {
        const files = await generateImages({
          pipelineDir: modelDir,
          outDir: opts.out,
          ...(opts.quantized ? { quantized: opts.quantized } : {}),
          ...(opts.reference ? { backend: "reference" as const } : {}),
          ...(opts.prompt ? { prompts: opts.prompt } : {}),
          ...(opts.embeddings ? { embeddings: opts.embeddings } : {}),
          ...(opts.steps !== undefined ? { steps: opts.steps } : {}),
          ...(opts.guidance !== undefined ? { guidance: opts.guidance } : {}),
          ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
          ...(opts.size ? { width: opts.size[0], height: opts.size[1] } : {}),
          ...(opts.batch !== undefined ? { batch: opts.batch } : {}),
          ...(opts.maxSequenceLength !== undefined ? { maxSequenceLength: opts.maxSequenceLength } : {}),
          ...(opts.negativePrompt !== undefined ? { negativePrompt: opts.negativePrompt } : {}),
          ...(opts.binning === false ? { resolutionBinning: false } : {}),
          onStep: (image, done, total) => {
            if (!tty) return;
            if (bar === undefined) {
              bar = new cliProgress.SingleBar(
                { format: "image {image} [{bar}] step {value}/{total} | ETA {eta_formatted}", stream: process.stderr },
                cliProgress.Presets.shades_classic,
              );
              bar.start(total, 0, { image });
            }
            bar.update(done, { image });
            if (done === total) {
              bar.stop();
              bar = undefined;
            }
          },
        });
        for (const f of files) io.out(`${f}\n`);
      } finally {
        bar?.stop();
      }
    });
}
