import { readFile } from "node:fs/promises";
import { ModelError } from "./errors.js";

// Python's json module writes non-finite floats as the bare tokens Infinity, -Infinity and NaN (diffusers'
// DPMSolverMultistepScheduler config has "lambda_min_clipped": -Infinity); JSON.parse rejects them, so they are
// quoted with this prefix outside string literals and turned back into numbers by the reviver.
const SENTINEL = "__svdquant_nonfinite__:";
const TOKENS = ["-Infinity", "Infinity", "NaN"];

function quoteNonFinite(text: string): string {
  let out = "";
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (inString) {
      out += ch;
      if (ch === "\\") out += text[++i] ?? "";
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') {
      inString = true;
      out += ch;
      continue;
    }
    const tok = TOKENS.find((t) => text.startsWith(t, i));
    if (tok !== undefined) {
      out += `"${SENTINEL}${tok}"`;
      i += tok.length - 1;
    } else out += ch;
  }
  return out;
}

/** Parse a config.json written by Python (accepts Infinity, -Infinity, NaN as values); must be an object. */
export function parsePythonJson(text: string, where: string): Record<string, unknown> {
  let obj: unknown;
  try {
    obj = JSON.parse(text); // the common case, fast for multi-megabyte tokenizer.json files
  } catch {
    try {
      obj = JSON.parse(quoteNonFinite(text), (_k, v) =>
        typeof v === "string" && v.startsWith(SENTINEL) ? Number(v.slice(SENTINEL.length)) : v,
      );
    } catch (e) {
      throw new ModelError("E_CONFIG", `not valid JSON: ${(e as Error).message}`, where);
    }
  }
  if (obj === null || typeof obj !== "object" || Array.isArray(obj))
    throw new ModelError("E_CONFIG", "must be a JSON object", where);
  return obj as Record<string, unknown>;
}

/** Read and parse a JSON config file; a missing or unreadable file is one E_CONFIG line naming it. */
export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new ModelError("E_CONFIG", `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, path);
  }
  return parsePythonJson(text, path);
}

/** Typed field readers for configs of Python classes: each names the key and file on a bad value. */
export class ConfigReader {
  constructor(
    readonly raw: Record<string, unknown>,
    readonly where: string,
  ) {}

  private bad(key: string, want: string): never {
    throw new ModelError("E_CONFIG", `"${key}" must be ${want}, got ${JSON.stringify(this.raw[key])}`, this.where);
  }

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  num(key: string, dflt: number): number {
    const v = this.raw[key] ?? dflt;
    if (typeof v !== "number" || Number.isNaN(v)) this.bad(key, "a number");
    return v;
  }

  posInt(key: string, dflt?: number): number {
    const v = this.raw[key] ?? dflt;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) this.bad(key, "a positive integer");
    return v;
  }

  nonNegInt(key: string, dflt: number): number {
    const v = this.raw[key] ?? dflt;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) this.bad(key, "a non-negative integer");
    return v;
  }

  bool(key: string, dflt: boolean): boolean {
    const v = this.raw[key] ?? dflt;
    if (typeof v !== "boolean") this.bad(key, "a boolean");
    return v;
  }

  str<T extends string>(key: string, dflt: T, allowed: readonly T[]): T {
    const v = this.raw[key] ?? dflt;
    if (typeof v !== "string" || !allowed.includes(v as T)) this.bad(key, `one of ${allowed.join(", ")}`);
    return v as T;
  }

  intList(key: string, dflt?: readonly number[]): number[] {
    const v = this.raw[key] ?? dflt;
    if (!Array.isArray(v) || v.length === 0 || v.some((x) => !Number.isSafeInteger(x) || x <= 0))
      this.bad(key, "a non-empty list of positive integers");
    return [...(v as number[])];
  }

  /** A feature this implementation does not have: any value but `off` is E_UNSUPPORTED. */
  unsupported(key: string, off: unknown): void {
    const v = this.raw[key];
    if (v !== undefined && v !== null && v !== off)
      throw new ModelError(
        "E_UNSUPPORTED",
        `"${key}" = ${JSON.stringify(v)} is not supported (only ${JSON.stringify(off)})`,
        this.where,
      );
  }
}
