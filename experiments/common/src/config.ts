import { join } from "node:path";
import { checkJsonNesting, MAX_JSON_FILE_BYTES, readInputFile } from "@svdquant/tensor";
import type { z } from "zod";
import { ExperimentError } from "./errors.js";

/** Read `<dir>/config.json` (bounded, regular file, nesting checked) and check it with `schema`: one line on error. */
export async function readConfig<S extends z.ZodType>(dir: string, schema: S): Promise<z.infer<S>> {
  const path = join(dir, "config.json");
  let text: string;
  try {
    text = (await readInputFile(path, MAX_JSON_FILE_BYTES)).toString("utf8");
  } catch (e) {
    throw new ExperimentError("E_IO", `${path}: cannot read the experiment config: ${(e as Error).message}`, {
      cause: e,
    });
  }
  checkJsonNesting(text, path);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ExperimentError("E_CONFIG", `${path}: cannot parse experiment config: ${(e as Error).message}`);
  }
  return parseConfig(schema, raw, path);
}

/** Check a config object with `schema`; the first issue becomes one E_CONFIG line naming the field. */
export function parseConfig<S extends z.ZodType>(schema: S, raw: unknown, where: string): z.infer<S> {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    const field = i.path.length > 0 ? i.path.join(".") : "(root)";
    throw new ExperimentError("E_CONFIG", `${where}: ${field}: ${i.message}`);
  }
  return r.data;
}
