import { basename, dirname, resolve } from "node:path";
import {
  maxThreads,
  parseQuantizeConfig,
  type QuantizeEvent,
  quantizeModel,
  resolveConfigPaths,
} from "@svdquant/pipeline";
import { checkJsonNesting, MAX_JSON_FILE_BYTES, readInputFile } from "@svdquant/tensor";
import cliProgress from "cli-progress";
import { type Command, Option } from "commander";
import { CliError } from "../errors.js";
import type { CliIO } from "../io.js";
import { intIn } from "../options.js";

/** Progress on stderr: a bar per stage (block, ETA) when stderr is a terminal, one line per stage otherwise. */
function progressReporter(io: CliIO, tty: boolean): { onEvent: (e: QuantizeEvent) => void; stop: () => void } {
  let bar: cliProgress.SingleBar | undefined;
  let stage = "";
  const stop = () => {
    bar?.stop();
    bar = undefined;
  };
  return {
    stop,
    onEvent: (e) => {
      if (e.stage === "write") {
        stop();
        io.err(`writing ${e.path}\n`);
        return;
      }
      const label = e.stage === "calibrate" ? "calibrating" : "quantizing";
      if (stage !== e.stage) {
        stop();
        stage = e.stage;
        if (tty && e.total > 0) {
          bar = new cliProgress.SingleBar(
            { format: `${label} [{bar}] {value}/{total} {item} | ETA {eta_formatted}`, stream: process.stderr },
            cliProgress.Presets.shades_classic,
          );
          bar.start(e.total, 0, { item: "" });
        } else if (!tty) io.err(`${label}…\n`);
      }
      const item = e.stage === "quantize" ? `${e.block}${e.resumed ? " (resumed)" : ""}` : "forwards";
      bar?.update(e.done, { item });
    },
  };
}

export interface QuantizeCliOptions {
  config?: string;
  out?: string;
  resume?: boolean;
  json?: boolean;
  progress?: boolean;
  threads?: number;
  calibration?: string;
  format?: "int4" | "nvfp4" | "int4p2";
}

/** `svdquant quantize MODEL_DIR [--config FILE] [--format F] [--out FILE] [--calibration FILE] [--resume] [--json]` */
export function registerQuantize(program: Command, io: CliIO): void {
  program
    .command("quantize")
    .description(
      "quantize a diffusers FLUX.1 / PixArt-Σ transformer folder with SVDQuant into one packed 4-bit checkpoint",
    )
    .argument("<model-dir>", "diffusers transformer folder (config.json + safetensors)")
    .option("--config <file>", "quantization config (JSON; see @svdquant/pipeline's README), default: the paper's")
    .addOption(
      new Option(
        "--format <format>",
        "residual format (overrides the config's `format`): int4 (default, the published INT4 g64 checkpoints), nvfp4, or the opt-in Hopper format int4p2 (power-of-two group scales, one FP8 GEMM per layer on @svdquant/engine-cuda)",
      ).choices(["int4", "nvfp4", "int4p2"]),
    )
    .option("--out <file>", "output .safetensors (default: ./<model>.svdq-<format>-r<rank>.safetensors)")
    .option(
      "--calibration <file>",
      "statistics recorded by `svdquant calibrate` (e.g. on the GPU: --device cuda) instead of recording them here",
    )
    .option("--resume", "continue an interrupted run from <out>.parts/ (refused if the model or config changed)")
    .option(
      "--threads <n>",
      `worker threads quantizing layers in parallel (1 to ${maxThreads()}, default 1)`,
      intIn(1, maxThreads(), "the cores available"),
    )
    .option("--json", "print a machine-readable JSON summary")
    .option("--no-progress", "no progress on stderr")
    .action(async (modelDir: string, opts: QuantizeCliOptions) => {
      let raw: unknown = {};
      if (opts.config !== undefined) {
        // an untrusted file: a bounded regular file, nesting checked before JSON.parse
        const text = (await readInputFile(opts.config, MAX_JSON_FILE_BYTES)).toString("utf8");
        checkJsonNesting(text, opts.config);
        try {
          raw = JSON.parse(text);
        } catch (e) {
          throw new CliError("E_CONFIG", `not valid JSON: ${(e as Error).message}`, opts.config, e);
        }
      }
      if (opts.format !== undefined && raw !== null && typeof raw === "object" && !Array.isArray(raw))
        raw = { ...raw, format: opts.format };
      // paths inside a config file are relative to the file
      const config = resolveConfigPaths(
        parseQuantizeConfig(raw, opts.config ?? "default config"),
        opts.config !== undefined ? dirname(resolve(opts.config)) : process.cwd(),
      );
      const out = resolve(
        opts.out ?? `${basename(resolve(modelDir))}.svdq-${config.format}-r${config.rank}.safetensors`,
      );
      const progress =
        opts.progress === false ? undefined : progressReporter(io, process.stderr.isTTY === true && !opts.json);
      let r: Awaited<ReturnType<typeof quantizeModel>>;
      try {
        r = await quantizeModel({
          modelDir,
          out,
          config,
          resume: opts.resume === true,
          ...(opts.calibration !== undefined ? { calibration: opts.calibration } : {}),
          ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
          ...(progress ? { onEvent: progress.onEvent } : {}),
        });
      } finally {
        progress?.stop();
      }
      const mean = r.report.reduce((a, l) => a + l.relError, 0) / Math.max(r.report.length, 1);
      if (opts.json)
        io.out(
          `${JSON.stringify({ out: r.out, bytes: r.bytes, report: r.reportPath, layers: r.report.length, meanRelError: mean }, null, 2)}\n`,
        );
      else
        io.out(
          `${r.out}\n  ${r.report.length} quantized layers, ${r.bytes.toLocaleString("en-US")} bytes, mean output rel. error ${mean.toFixed(4)}\n  per-layer report: ${r.reportPath}\n`,
        );
    });
}
