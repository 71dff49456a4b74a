/**
 * Evaluation and calibration prompts: the toy model's own captions (its dataset.json) or a prompt file of the user's
 * (one prompt a line: the MJHQ-30K / sDCI subsets of the paper), with a seeded subset for quick runs.
 */
import { SeededRng } from "@svdquant/lowrank";
import { readShapesDataset } from "@svdquant/metrics";
import { readInputFile } from "@svdquant/tensor";
import { z } from "zod";
import { ExperimentError } from "./errors.js";

/** Prompt files are text, one prompt a line; 5000 captions of MJHQ/sDCI take well under 1 MiB. */
const MAX_PROMPT_FILE_BYTES = 64 * 2 ** 20;

export const promptSourceSchema = z.union([
  z
    .object({
      /** The toy model's captions (models/toy-flux/dataset.json `captions`, the empty caption left out). */
      toyCaptions: z.literal(true),
    })
    .strict(),
  z
    .object({
      /** A text file of prompts, one a line (relative paths: to the repository root). */
      file: z.string().min(1),
    })
    .strict(),
]);
export type PromptSource = z.infer<typeof promptSourceSchema>;

/** `count` items of `all` drawn without replacement by a seeded Fisher–Yates shuffle (all of them if fewer). */
export function seededSubset<T>(all: readonly T[], count: number, seed: number): T[] {
  const a = [...all];
  const rng = new SeededRng(seed);
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a.slice(0, Math.min(count, a.length));
}

/** The toy model's data set: the detector's spec and every caption (@svdquant/metrics' one reader of dataset.json). */
export const readToyDataset = readShapesDataset;

/** Every prompt of a source (a toy model folder for `toyCaptions`; paths resolved by the caller). */
export async function readPrompts(source: PromptSource, modelDir: string): Promise<string[]> {
  if ("toyCaptions" in source) return (await readToyDataset(modelDir)).captions;
  let text: string;
  try {
    text = (await readInputFile(source.file, MAX_PROMPT_FILE_BYTES)).toString("utf8");
  } catch (e) {
    throw new ExperimentError("E_IO", `${source.file}: cannot read the prompt file: ${(e as Error).message}`);
  }
  const prompts = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "");
  if (prompts.length === 0) throw new ExperimentError("E_CONFIG", `${source.file}: the prompt file holds no prompts`);
  return prompts;
}

/**
 * Evaluation prompts (a seeded subset of `count`) and calibration prompts (a seeded subset of `calibrationCount`
 * from the prompts left over, so the two never overlap).
 */
export function splitPrompts(
  all: readonly string[],
  count: number,
  calibrationCount: number,
  seed: number,
): { evaluation: string[]; calibration: string[] } {
  const shuffled = seededSubset([...new Set(all)], all.length, seed);
  if (shuffled.length < count + calibrationCount)
    throw new ExperimentError(
      "E_CONFIG",
      `${count} evaluation + ${calibrationCount} calibration prompts asked for, but only ${shuffled.length} distinct prompts exist`,
    );
  return { evaluation: shuffled.slice(0, count), calibration: shuffled.slice(count, count + calibrationCount) };
}
