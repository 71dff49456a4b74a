import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { runDemo } from "@svdquant/pipeline";
import type { Command } from "commander";
import { CliError } from "../errors.js";
import type { CliIO } from "../io.js";
import { intIn } from "../options.js";

/** The built-in model (trained by tools/train-toy, shipped in the repository). */
export const TOY_MODEL = resolve(import.meta.dirname, "../../../../models/toy-flux");

/** Prompts in the toy data set's caption grammar (tools/train-toy/shapes.py): evaluation and calibration apart. */
export const DEMO_PROMPTS = [
  "a big red circle on the left",
  "a small blue square at the top",
  "a green triangle in the center",
  "a big yellow cross on the right",
  "a magenta circle at the bottom",
  "a small cyan square on the left",
];
export const CALIBRATION_PROMPTS = [
  "a red square on the right",
  "a big green circle at the top",
  "a small blue triangle on the left",
  "a yellow circle in the center",
  "a cyan cross at the bottom",
  "a big magenta triangle on the right",
  "a small red cross at the top",
  "a blue circle in the center",
];
export const DEMO_METHODS = [
  "svdquant-int4",
  "svdquant-nvfp4",
  "w4a4-naive",
  "w4a4-smoothquant",
  "w4a16-nf4",
  "w8a8-smoothquant",
];

interface DemoCliOptions {
  out: string;
  methods?: string;
  steps: number;
  size: number;
  seed: number;
  maxSequenceLength: number;
  threads: number;
  quick?: boolean;
  json?: boolean;
  lpips?: string;
}

/** `svdquant demo [MODEL_DIR]`: the main job. */
export function registerDemo(program: Command, io: CliIO): void {
  program
    .command("demo")
    .description(
      "quantize a FLUX pipeline (default: the built-in toy model) with SVDQuant and the baselines, generate the same prompts with each, print the quality table and write a grid + report",
    )
    .argument("[model-dir]", "diffusers FLUX pipeline folder", TOY_MODEL)
    .option("--out <dir>", "output folder", "out/demo")
    .option("--methods <list>", `comma-separated methods (default ${DEMO_METHODS.join(",")})`)
    .option("--steps <n>", "sampler steps", intIn(1, 1000), 20)
    .option("--size <px>", "image side in pixels", intIn(16, 4096), 64)
    .option("--seed <n>", "seed of the first prompt (prompt i uses seed + i)", intIn(0, 2 ** 32 - 1), 0)
    .option("--max-sequence-length <n>", "T5 tokens", intIn(1, 4096), 32)
    .option("--threads <n>", "worker threads for quantization", intIn(1, 1024), 2)
    .option("--quick", "4 smoothing candidates and 2 refinement steps instead of the paper's 39 and 100")
    .option("--lpips <file>", "LPIPS AlexNet ONNX model (in0, in1 in [-1, 1] → distance): adds an LPIPS column")
    .option("--json", "print the results as JSON")
    .action(async (modelDir: string, opts: DemoCliOptions) => {
      if (!existsSync(join(modelDir, "model_index.json")))
        throw new CliError("E_ARGUMENT", "not a diffusers pipeline folder (no model_index.json)", modelDir);
      const methods = opts.methods?.split(",").map((m) => m.trim()) ?? DEMO_METHODS;
      const r = await runDemo({
        pipelineDir: modelDir,
        outDir: resolve(opts.out),
        prompts: DEMO_PROMPTS,
        calibrationPrompts: CALIBRATION_PROMPTS,
        seed: opts.seed,
        steps: opts.steps,
        size: opts.size,
        maxSequenceLength: opts.maxSequenceLength,
        guidance: 3.5,
        methods,
        threads: Math.min(opts.threads, (await import("node:os")).availableParallelism()),
        ...(opts.lpips ? { lpipsModel: resolve(opts.lpips) } : {}),
        quantize: opts.quick
          ? {
              grid: "quick",
              refinement: { maxIterations: 2 },
            }
          : {},
        log: opts.json ? undefined : (line) => io.err(`${line}\n`),
      });
      io.out(opts.json ? `${JSON.stringify(r, null, 2)}\n` : `${r.markdown}\nOutputs in ${resolve(opts.out)}\n`);
    });
}
