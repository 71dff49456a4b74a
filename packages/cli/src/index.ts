import { readFileSync } from "node:fs";
import { escapeForTerminal } from "@svdquant/tensor";
import { Command, CommanderError } from "commander";
import { registerCalibrate } from "./commands/calibrate.js";
import { registerDemo } from "./commands/demo.js";
import { registerEval } from "./commands/eval.js";
import { registerExperiment } from "./commands/experiment.js";
import { registerGenerate } from "./commands/generate.js";
import { registerInspect } from "./commands/inspect.js";
import { registerQuantize } from "./commands/quantize.js";
import { type CliIO, printable, processIO } from "./io.js";

export { type EvalCliOptions, progressBar } from "./commands/eval.js";
export { formatInspect, type InspectReport, inspectCheckpoint } from "./commands/inspect.js";
export { CliError, type CliErrorCode } from "./errors.js";
export { type CliIO, printable } from "./io.js";

/** This package's version (package.json is one level above src/ and dist/). */
export const VERSION: string = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version;

/** Each command lives in commands/NAME.ts and registers itself here. */
const COMMANDS: ((program: Command, io: CliIO) => void)[] = [
  registerInspect,
  registerQuantize,
  registerCalibrate,
  registerGenerate,
  registerDemo,
  registerExperiment,
  registerEval,
];

/** Build the `svdquant` program writing to `io`. */
export function buildProgram(io: CliIO): Command {
  const program = new Command("svdquant")
    .description("SVDQuant W4A4 quantization for diffusion transformers")
    .version(VERSION, "-V, --version", "print the version of @svdquant/cli")
    .exitOverride()
    .showSuggestionAfterError(false) // "(Did you mean …?)" would be a second line; errors are one line
    // commander's own messages quote what the user typed: escaped like everything else printed
    .configureOutput({ writeOut: io.out, writeErr: (s) => io.err(printable(s)) });
  for (const register of COMMANDS) register(program, io);
  return program;
}

/** Run the CLI; resolves to the process exit code. Errors print one line on stderr and give 1. */
export async function main(argv: string[], io: CliIO = processIO): Promise<number> {
  const program = buildProgram(io);
  if (argv.length === 0) {
    io.out(program.helpInformation());
    io.err("svdquant: no command given (see svdquant --help)\n");
    return 1;
  }
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 1; // commander printed its own message
    // One line: messages that span lines (JSON parser errors, nested causes) are folded, and control characters
    // from file or tensor names are escaped.
    const message = err instanceof Error ? err.message : String(err);
    io.err(`svdquant: ${escapeForTerminal(message.replace(/\s*\n\s*/g, " "))}\n`);
    return 1;
  }
}
