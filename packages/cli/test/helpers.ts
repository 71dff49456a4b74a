// What the CLI tests share: `main` run in-process with its output captured, and a temp folder per test file.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import { main } from "../src/index.ts";

/** The repository root (fixtures/ lives there). */
export const ROOT = join(import.meta.dirname, "../../..");

/** `svdquant ARGV…` in this process: exit code, stdout and stderr. */
export async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) });
  return { code, out, err };
}

/**
 * A temp folder made before the calling file's tests and removed after them (call at the file's top level); with
 * `config`, the JSON file `config.json` in it.
 */
export function tempFolder(prefix: string, config?: unknown): { readonly path: string; readonly config: string } {
  let path = "";
  beforeAll(async () => {
    path = await mkdtemp(join(tmpdir(), prefix));
    if (config !== undefined) await writeFile(join(path, "config.json"), JSON.stringify(config));
  });
  afterAll(() => rm(path, { recursive: true, force: true }));
  return {
    get path() {
      return path;
    },
    get config() {
      return join(path, "config.json");
    },
  };
}
