import { availableParallelism } from "node:os";
import { evaluateFolders, formatMarkdown, MAX_BATCH } from "@svdquant/metrics";
import { checkOutputPath, jsonForTerminal, writeFileAtomic } from "@svdquant/tensor";
import { type Command, InvalidArgumentError } from "commander";
import { type CliIO, printable } from "../io.js";

export interface EvalCliOptions {
  ref: string;
  test: string;
  fidModel?: string;
  lpipsModel?: string;
  clipModel?: string;
  imagerewardModel?: string;
  prompts?: string;
  batch: number;
  threads: number;
  json?: boolean;
  out?: string;
  progress: boolean;
}

/** A one-line progress bar, redrawn in place with \r, at most every 200 ms and at the end. */
export function progressBar(io: CliIO): (done: number, total: number) => void {
  const t0 = Date.now();
  let last = 0;
  return (done, total) => {
    const now = Date.now();
    if (done < total && now - last < 200) return;
    last = now;
    const width = 30;
    const filled = Math.round((width * done) / total);
    const rate = done / Math.max((now - t0) / 1000, 1e-3);
    io.err(
      `\r[${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total} pairs, ${rate.toFixed(1)}/s${done === total ? "\n" : ""}`,
    );
  };
}

/** A parser of integer options in [1, max] (commander reports its error as one line naming the option). */
function intIn(max: number, what: string): (v: string) => number {
  return (v) => {
    const n = /^\s*\d+\s*$/.test(v) ? Number(v) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < 1 || n > max)
      throw new InvalidArgumentError(`expected an integer in [1, ${max}] (${what}), got "${v}"`);
    return n;
  };
}

/** `svdquant eval --ref DIR --test DIR [--fid-model X.onnx --lpips-model Y.onnx ...] [--json]` */
export function registerEval(program: Command, io: CliIO): void {
  program
    .command("eval")
    .description(
      "compare a folder of quantized-model images with the 16-bit model's images (paired by file name): " +
        "PSNR, SSIM, and, given ONNX models, FID, LPIPS, CLIP score, ImageReward",
    )
    .requiredOption("--ref <dir>", "folder of the 16-bit model's images (PNG/JPEG)")
    .requiredOption("--test <dir>", "folder of the quantized model's images, same file names")
    .option("--fid-model <file>", "Inception-v3 pool ONNX: images [N,3,299,299] in [0,255] → features [N,2048]")
    .option("--lpips-model <file>", "LPIPS ONNX: in0, in1 [N,3,H,W] in [-1,1] → distance [N,1,1,1]")
    .option("--clip-model <file>", "CLIP ViT-L/14 image ONNX: pixel_values [N,3,224,224] → image_embeds [N,768]")
    .option("--imagereward-model <file>", "ImageReward ONNX: pixel_values, input_ids, attention_mask → reward [N]")
    .option(
      "--prompts <file>",
      "safetensors of per-image prompt data for CLIP/ImageReward (see @svdquant/metrics docs)",
    )
    .option(
      "--batch <n>",
      `images per step and per ONNX batch (at most ${MAX_BATCH})`,
      intIn(MAX_BATCH, "images per step"),
      8,
    )
    .option(
      "--threads <n>",
      "worker threads decoding images and computing PSNR/SSIM (default: cores, at most 8; at most the cores)",
      intIn(availableParallelism(), "the available parallelism"),
      Math.min(availableParallelism(), 8),
    )
    .option("--json", "print the full result (with per-image values) as JSON instead of a Markdown table")
    .option("--out <file>", "also write the JSON result to this file")
    .option("--no-progress", "no progress bar on stderr")
    .action(async (opts: EvalCliOptions) => {
      if (opts.out) await checkOutputPath(opts.out); // before the run, not after it
      const r = await evaluateFolders({
        refDir: opts.ref,
        testDir: opts.test,
        fidModel: opts.fidModel,
        lpipsModel: opts.lpipsModel,
        clipModel: opts.clipModel,
        imageRewardModel: opts.imagerewardModel,
        prompts: opts.prompts,
        batchSize: opts.batch,
        threads: opts.threads,
        onProgress: opts.progress ? progressBar(io) : undefined,
      });
      if (opts.out) await writeFileAtomic(opts.out, `${JSON.stringify(r, null, 2)}\n`);
      io.out(opts.json ? `${jsonForTerminal(r, 2)}\n` : `${printable(formatMarkdown(r))}\n`);
    });
}
