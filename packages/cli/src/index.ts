import { Command, CommanderError } from "commander";
import { formatInspect, inspectCheckpoint } from "./inspect.js";

export { formatInspect, type InspectReport, inspectCheckpoint } from "./inspect.js";

/** Build the `svdquant` program; `out`/`err` are where it writes (stdout/stderr by default). */
export function buildProgram(io: { out: (s: string) => void; err: (s: string) => void }): Command {
  const program = new Command("svdquant")
    .description("SVDQuant W4A4 quantization for diffusion transformers")
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err });

  program
    .command("inspect")
    .description("summarize a .safetensors file, a *.safetensors.index.json shard index, or a diffusers model folder")
    .argument("<path>", "checkpoint to inspect")
    .option("--json", "print a machine-readable JSON object")
    .action(async (path: string, opts: { json?: boolean }) => {
      const r = await inspectCheckpoint(path);
      if (opts.json) {
        io.out(
          `${JSON.stringify({ tensors: r.tensors, metadata: r.metadata, parameters: r.parameters, bytes: r.bytes }, null, 2)}\n`,
        );
      } else {
        io.out(`${formatInspect(path, r)}\n`);
      }
    });
  return program;
}

/** Run the CLI; resolves to the process exit code. Errors print one line on stderr and give 1. */
export async function main(
  argv: string[],
  io = { out: (s: string) => process.stdout.write(s), err: (s: string) => process.stderr.write(s) },
): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 1; // commander already printed its message
    io.err(`svdquant: ${(err as Error).message}\n`);
    return 1;
  }
}
