/*
 * Text from files (tensor names, metadata, paths, config values) reaches the terminal in reports and error
 * messages. Control characters in it are commands to the terminal (ESC [ … rewrites the screen, OSC 52 writes the
 * clipboard, a bare CR hides what came before), and bidirectional overrides make text display as something else
 * ("Trojan Source", CVE-2021-42574). Everything printed from untrusted text goes through these two functions.
 */

// C0 controls, DEL, C1 controls, and the Unicode bidi embedding/override/isolate marks (U+200E/F, U+202A–E,
// U+2066–9) plus the line/paragraph separators U+2028/9 (the Unicode Bidi Algorithm, UAX #9, table 4).
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

// What JSON.stringify leaves raw (it escapes C0 inside strings; a literal newline is only its indentation).
const UNSAFE_IN_JSON = /[\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function hex(c: string): string {
  return c
    .charCodeAt(0)
    .toString(16)
    .padStart(c.charCodeAt(0) > 0xff ? 4 : 2, "0");
}

/**
 * `s` with every control character and bidi mark replaced by a visible escape (`\n`, `\t`, `\r`, `\x1b`, `\u202e`),
 * and backslashes doubled so that an escape in the output always means one in the input. Printable text, including
 * non-ASCII letters, passes unchanged.
 */
export function escapeForTerminal(s: string): string {
  return String(s)
    .replace(/\\/g, "\\\\")
    .replace(UNSAFE, (c) => {
      if (c === "\n") return "\\n";
      if (c === "\t") return "\\t";
      if (c === "\r") return "\\r";
      return c.charCodeAt(0) > 0xff ? `\\u${hex(c)}` : `\\x${hex(c)}`;
    });
}

/**
 * JSON.stringify for a terminal: JSON.stringify already escapes C0 controls, but not DEL, C1 controls or bidi marks;
 * those become `\uXXXX` escapes, so the output is the same JSON value and prints safely.
 */
export function jsonForTerminal(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(
    UNSAFE_IN_JSON,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
