/** A toy-shapes model folder's `dataset.json` (tools/train-toy writes it): the detector's spec and every caption. */
import { join } from "node:path";
import { checkJsonNesting, MAX_JSON_FILE_BYTES, readInputFile } from "@svdquant/tensor";
import { MetricsError } from "./errors.js";
import { parseShapesSpec, type ShapesSpec } from "./toy-shapes.js";

export interface ShapesDataset {
  readonly spec: ShapesSpec;
  /** The data set's captions (empty ones dropped). */
  readonly captions: string[];
}

/** Read `<modelDir>/dataset.json` through the bounded reader; one E_IO / E_ARGUMENT line naming the file on bad input. */
export async function readShapesDataset(modelDir: string): Promise<ShapesDataset> {
  const file = join(modelDir, "dataset.json");
  let json: { spec?: unknown; captions?: unknown };
  try {
    const text = (await readInputFile(file, MAX_JSON_FILE_BYTES)).toString("utf8");
    checkJsonNesting(text, file);
    json = JSON.parse(text) as typeof json;
  } catch (e) {
    throw new MetricsError("E_IO", `cannot read the toy model's data set: ${(e as Error).message}`, { file });
  }
  if (!Array.isArray(json.captions) || json.captions.some((c) => typeof c !== "string"))
    throw new MetricsError("E_ARGUMENT", `"captions" must be a list of strings`, { file });
  return {
    spec: parseShapesSpec(json.spec, file),
    captions: (json.captions as string[]).filter((c) => c.trim() !== ""),
  };
}
