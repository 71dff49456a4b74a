import { join, resolve } from "node:path";
import { runAblation } from "@svdquant/experiment-ablation-layer";
import { checkJsonNesting, jsonForTerminal, MAX_JSON_FILE_BYTES, readInputFile } from "@svdquant/tensor";
import type { Command } from "commander";
import { CliError } from "../errors.js";
import { type CliIO, printable } from "../io.js";

type Runner = (
  dir: string,
  opts: { root?: string; out?: string; log?: (line: string) => void; figures?: boolean },
) => Promise<{ markdown: string; outDir: string; result: unknown }>;

/** Experiment runners by the "runner" field of an experiment folder's config.json. */
const RUNNERS: Record<string, Runner> = {
  "ablation-layer": runAblation,
};

async function runnerOf(dir: string): Promise<string> {
  const path = join(dir, "config.json");
  const text = (await readInputFile(path, MAX_JSON_FILE_BYTES)).toString("utf8"); // a regular file, bounded
  checkJsonNesting(text, path);
  let cfg: { runner?: unknown };
  try {
    cfg = JSON.parse(text);
  } catch (e) {
    throw new CliError("E_CONFIG", `cannot parse experiment config: ${(e as Error).message}`, path, e);
  }
  const runner = cfg?.runner;
  if (typeof runner !== "string" || !Object.hasOwn(RUNNERS, runner))
    throw new CliError(
      "E_CONFIG",
      `unknown runner ${JSON.stringify(runner)}; known: ${Object.keys(RUNNERS).join(", ")}`,
      path,
    );
  return runner;
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
        const run = RUNNERS[await runnerOf(folder)]!;
        const { markdown, outDir, result } = await run(folder, {
          out: opts.out ? resolve(opts.out) : undefined,
          root: opts.root ? resolve(opts.root) : undefined,
          figures: opts.figures,
          log: opts.quiet ? undefined : (line) => io.err(`${printable(line)}\n`),
        });
        io.out(opts.json ? `${jsonForTerminal(result, 2)}\n` : `${printable(`${markdown}\nOutputs in ${outDir}`)}\n`);
      },
    );
}
