import { stat } from "node:fs/promises";
import { join } from "node:path";
import { ModelError } from "./errors.js";
import { readConfigFile } from "./json-config.js";

/** One entry of a diffusers `model_index.json`: the library and class of a component folder. */
export interface PipelineComponent {
  readonly name: string;
  readonly library: string | null;
  readonly className: string | null;
  /** `<pipeline dir>/<name>`. */
  readonly dir: string;
}

/** A diffusers pipeline folder: `model_index.json` (`_class_name`, components) and its component folders. */
export interface PipelineIndex {
  readonly dir: string;
  readonly className: string;
  readonly components: ReadonlyMap<string, PipelineComponent>;
}

/**
 * Read `dir/model_index.json` (FluxPipeline: scheduler, text_encoder, text_encoder_2, tokenizer, tokenizer_2,
 * transformer, vae; PixArtSigmaPipeline: scheduler, text_encoder, tokenizer, transformer, vae). Entries whose
 * value is [null, null] (an absent optional component) are skipped.
 */
export async function readModelIndex(dir: string): Promise<PipelineIndex> {
  const path = join(dir, "model_index.json");
  const raw = await readConfigFile(path);
  const cls = raw._class_name;
  if (typeof cls !== "string") throw new ModelError("E_CONFIG", "_class_name must be a string", path);
  const components = new Map<string, PipelineComponent>();
  for (const [name, v] of Object.entries(raw)) {
    if (name.startsWith("_")) continue;
    if (!Array.isArray(v) || v.length !== 2) continue; // plain options (e.g. force_zeros_for_empty_prompt)
    const [library, className] = v as [unknown, unknown];
    if (library === null && className === null) continue;
    if (typeof library !== "string" || typeof className !== "string")
      throw new ModelError("E_CONFIG", `component "${name}" must be [library, class], got ${JSON.stringify(v)}`, path);
    components.set(name, { name, library, className, dir: join(dir, name) });
  }
  return { dir, className: cls, components };
}

/** The folder of component `name`, checked to exist; a missing one is one E_CONFIG line naming it. */
export async function componentDir(index: PipelineIndex, name: string): Promise<string> {
  const c = index.components.get(name);
  if (c === undefined)
    throw new ModelError(
      "E_CONFIG",
      `${index.className} has no component "${name}" (has ${[...index.components.keys()].join(", ")})`,
      join(index.dir, "model_index.json"),
    );
  const ok = await stat(c.dir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!ok) throw new ModelError("E_CONFIG", `component folder is missing`, c.dir);
  return c.dir;
}
