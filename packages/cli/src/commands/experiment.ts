import { basename, resolve } from "node:path";
import { jsonForTerminal } from "@svdquant/tensor";
import type { Command } from "commander";
import { CliError } from "../errors.js";
import { findExperimentPackages, loadRunner, resolveExperiment } from "../experiments.js";
import { type CliIO, printable } from "../io.js";

/** `svdquant experiment run EXPERIMENT [--out DIR] [--root DIR] [--json] [--no-figures] [--quiet]`, `experiment list` */
export function registerExperiment(program: Command, io: CliIO): void {
  const exp = program
    .command("experiment")
    .description("run the experiments of a svdquant-ts checkout (experiments/*; they are not installed with the CLI)");
  exp
    .command("run")
    .description("run an experiment folder (its config.json names the runner); prints a Markdown report")
    .argument("<experiment>", "experiment folder holding config.json, or the name of one under experiments/")
    .option("--out <dir>", "output folder (default: the config's, inside the experiment folder)")
    .option("--root <dir>", "repository root that fixture paths are relative to (default: <dir>/../..)")
    .option("--json", "print the results as JSON instead of Markdown")
    .option("--no-figures", "skip the PNG figures")
    .option("--quiet", "no progress lines on stderr")
    .action(
      async (arg: string, opts: { out?: string; root?: string; json?: boolean; figures: boolean; quiet?: boolean }) => {
        const { folder, pkg } = await resolveExperiment(arg, process.cwd());
        const run = await loadRunner(pkg);
        const { markdown, outDir, result } = await run(folder, {
          out: opts.out ? resolve(opts.out) : undefined,
          root: opts.root ? resolve(opts.root) : undefined,
          figures: opts.figures,
          log: opts.quiet ? undefined : (line) => io.err(`${printable(line)}\n`),
        });
        io.out(opts.json ? `${jsonForTerminal(result, 2)}\n` : `${printable(`${markdown}\nOutputs in ${outDir}`)}\n`);
      },
    );
  exp
    .command("list")
    .description("list the experiments found in an experiments/ folder at or above the current folder")
    .action(() => {
      const all = findExperimentPackages([process.cwd()]);
      if (!all.length)
        throw new CliError("E_CONFIG", `no experiments/ folder with experiment packages above ${process.cwd()}`);
      for (const p of all) io.out(`${basename(p.dir)}\t${p.dir}\t(runner ${p.runner}, ${p.name})\n`);
    });
}
