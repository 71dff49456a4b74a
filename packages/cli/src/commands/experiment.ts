import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { runAblation } from "@svdquant/experiment-ablation-layer";
import type { Command } from "commander";
import type { CliIO } from "../io.js";

type Runner = (
  dir: string,
  opts: { root?: string; out?: string; log?: (line: string) => void; figures?: boolean },
) => Promise<{ markdown: string; outDir: string; result: unknown }>;

/** Experiment runners by the "runner" field of an experiment folder's config.json. */
const RUNNERS: Record<string, Runner> = {
  "ablation-layer": runAblation,
};

function runnerOf(dir: string): string {
  const path = join(dir, "config.json");
  let cfg: { runner?: unknown };
  try {
    cfg = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new Error(`${path}: cannot read experiment config: ${(e as Error).message}`);
  }
  if (typeof cfg.runner !== "string" || !(cfg.runner in RUNNERS))
    throw new Error(`${path}: unknown runner ${JSON.stringify(cfg.runner)}; known: ${Object.keys(RUNNERS).join(", ")}`);
  return cfg.runner;
}

/** `svdquant experiment run DIR [--out DIR] [--root DIR] [--json] [--no-figures] [--quiet]` */
export function registerExperiment(program: Command, io: CliIO): void {
  const exp = program.command("experiment").description("run the experiments under experiments/");
  exp
    .command("run")
    .description("run an experiment folder (its config.json names the runner); prints a Markdown report")
    .argument("<dir>", "experiment folder, e.g. experiments/ablation-layer")
    .option("--out <dir>", "output folder (default: the config's, inside the experiment folder)")
    .option("--root <dir>", "repository root that fixture paths are relative to (default: <dir>/../..)")
    .option("--json", "print the results as JSON instead of Markdown")
    .option("--no-figures", "skip the PNG figures")
    .option("--quiet", "no progress lines on stderr")
    .action(
      async (dir: string, opts: { out?: string; root?: string; json?: boolean; figures: boolean; quiet?: boolean }) => {
        const folder = resolve(dir);
        const run = RUNNERS[runnerOf(folder)]!;
        const { markdown, outDir, result } = await run(folder, {
          out: opts.out ? resolve(opts.out) : undefined,
          root: opts.root ? resolve(opts.root) : undefined,
          figures: opts.figures,
          log: opts.quiet ? undefined : (line) => io.err(`${line}\n`),
        });
        io.out(opts.json ? `${JSON.stringify(result, null, 2)}\n` : `${markdown}\nOutputs in ${outDir}\n`);
      },
    );
}
