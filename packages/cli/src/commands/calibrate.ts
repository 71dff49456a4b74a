import { dirname, resolve } from "node:path";
import { calibrateModel, parseQuantizeConfig, type QuantizeConfig, resolveConfigPaths } from "@svdquant/pipeline";
import { checkJsonNesting, MAX_JSON_FILE_BYTES, readInputFile } from "@svdquant/tensor";
import { type Command, InvalidArgumentError } from "commander";
import { CliError } from "../errors.js";
import type { CliIO } from "../io.js";
import { intIn } from "../options.js";

export interface CalibrateCliOptions {
  out: string;
  config?: string;
  device: "cpu" | "cuda";
  random?: "flux-dev" | "flux-schnell";
  samples?: number;
  steps?: number;
  synthetic?: boolean;
  json?: boolean;
  progress?: boolean;
}

const oneOf =
  <T extends string>(values: readonly T[]) =>
  (v: string): T => {
    if (!(values as readonly string[]).includes(v))
      throw new InvalidArgumentError(`expected one of ${values.join(", ")}, got "${v}"`);
    return v as T;
  };

/** A quantize config file (JSON) or the default one, paths resolved against the file. */
export async function readQuantizeConfig(path: string | undefined): Promise<QuantizeConfig> {
  let raw: unknown = {};
  if (path !== undefined) {
    // an untrusted file: a bounded regular file, nesting checked before JSON.parse
    const text = (await readInputFile(path, MAX_JSON_FILE_BYTES)).toString("utf8");
    checkJsonNesting(text, path);
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new CliError("E_CONFIG", `not valid JSON: ${(e as Error).message}`, path, e);
    }
  }
  return resolveConfigPaths(
    parseQuantizeConfig(raw, path ?? "default config"),
    path !== undefined ? dirname(resolve(path)) : process.cwd(),
  );
}

/**
 * `svdquant calibrate [MODEL_DIR] --out FILE [--config FILE] [--device cpu|cuda] [--random flux-dev] [--samples N]
 * [--steps N] [--json]`: the calibration statistics of the layers the config's recipe quantizes, one file that
 * `svdquant quantize --calibration FILE` reads.
 */
export function registerCalibrate(program: Command, io: CliIO): void {
  program
    .command("calibrate")
    .description(
      "record the calibration statistics (per-channel absmax + a seeded token reservoir of every quantized layer's input) of a FLUX.1 / PixArt-Σ transformer, on the CPU or the GPU engine",
    )
    .argument("[model-dir]", "diffusers transformer folder (config.json + safetensors); omit with --random")
    .requiredOption(
      "--out <file>",
      "statistics file to write (.safetensors; `svdquant quantize --calibration` reads it)",
    )
    .option("--config <file>", "quantization config (JSON): its calibration section and recipe; default: the paper's")
    .option(
      "--device <device>",
      "cpu, or cuda (the GPU engine's 16-bit mode; FLUX.1)",
      oneOf(["cpu", "cuda"] as const),
      "cpu",
    )
    .option(
      "--random <model>",
      "no checkpoint: full-size weights drawn on the GPU (flux-dev, flux-schnell) — for measuring",
      oneOf(["flux-dev", "flux-schnell"] as const),
    )
    .option("--samples <n>", "override the config's calibration samples", intIn(1, 100_000))
    .option("--steps <n>", "override the config's sampler steps per sample", intIn(1, 1000))
    .option(
      "--synthetic",
      "seeded synthetic latents/embeddings instead of the config's source (no text encoders or recorded inputs needed)",
    )
    .option("--json", "print a machine-readable JSON summary")
    .option("--no-progress", "no progress on stderr")
    .action(async (modelDir: string | undefined, opts: CalibrateCliOptions) => {
      if ((modelDir === undefined) === (opts.random === undefined))
        throw new CliError("E_ARGUMENT", "give a model folder or --random, exactly one");
      if (opts.random !== undefined && opts.device !== "cuda")
        throw new CliError("E_ARGUMENT", "--random draws its weights on the GPU: add --device cuda");
      const base = await readQuantizeConfig(opts.config);
      const config: QuantizeConfig = {
        ...base,
        calibration: {
          ...base.calibration,
          ...(opts.samples !== undefined ? { samples: opts.samples } : {}),
          ...(opts.steps !== undefined ? { steps: opts.steps } : {}),
          ...(opts.synthetic ? { source: "synthetic" as const } : {}),
        },
      };
      const out = resolve(opts.out);
      const tty = process.stderr.isTTY === true && !opts.json;
      let last = 0;
      const r = await calibrateModel({
        ...(modelDir !== undefined ? { modelDir } : {}),
        ...(opts.random !== undefined ? { random: opts.random } : {}),
        device: opts.device,
        config,
        out,
        ...(opts.progress === false
          ? {}
          : {
              onForward: (done: number, total: number, ms: number) => {
                const now = Date.now();
                if (done !== total && now - last < (tty ? 200 : 10_000)) return;
                last = now;
                const t = Number.isFinite(ms) ? ` (${ms.toFixed(0)} ms)` : "";
                io.err(
                  `${tty ? "\r" : ""}calibrating: forward ${done}/${total || "?"}${t}${tty && done !== total ? "" : "\n"}`,
                );
              },
            }),
      });
      const summary = {
        out: r.out,
        device: opts.device,
        layers: r.layers,
        forwards: r.forwards,
        seconds: r.seconds,
        statsHostBytes: r.statsHostBytes,
        ...(r.memory
          ? {
              statsDeviceBytes: r.memory.statsAllocated,
              statsDeviceFreeDrop: r.memory.statsDeviceFreeDrop,
              engine: r.memory.engine,
            }
          : {}),
        ...(r.stepMs.length > 1
          ? { firstStepMs: r.stepMs[0], medianStepMs: [...r.stepMs].sort((a, b) => a - b)[r.stepMs.length >> 1] }
          : {}),
      };
      if (opts.json) io.out(`${JSON.stringify(summary, null, 2)}\n`);
      else
        io.out(
          `${r.out}\n  ${r.layers} layer inputs, ${r.forwards || "all"} forwards on ${opts.device} in ${r.seconds.toFixed(1)} s${summary.medianStepMs !== undefined ? ` (median ${summary.medianStepMs.toFixed(1)} ms a forward)` : ""}\n`,
        );
    });
}
