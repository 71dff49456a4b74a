import { escapeForTerminal } from "@svdquant/tensor";

/** Where the CLI writes; tests pass collectors, the binary passes stdout/stderr. */
export interface CliIO {
  out: (s: string) => void;
  err: (s: string) => void;
}

export const processIO: CliIO = {
  out: (s) => void process.stdout.write(s),
  err: (s) => void process.stderr.write(s),
};

/**
 * Multi-line text for the terminal: each line through `escapeForTerminal` (control characters and bidi marks from
 * file names, tensor names or metadata become visible escapes), the line breaks kept.
 */
export function printable(text: string): string {
  return text.split("\n").map(escapeForTerminal).join("\n");
}
