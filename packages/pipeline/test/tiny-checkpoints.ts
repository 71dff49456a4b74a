/**
 * The shared fixture of the end-to-end tests (end-to-end.test.ts, int4p2.test.ts): the reduced search, a tiny
 * model quantized into a fresh temp folder, the file's data bytes and what the size model predicts, and the three
 * forwards they compare (the native kernels, the float64 fake-quant reference, the 16-bit model).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { FluxTransformer, PixArtTransformer, parseModelConfig } from "@svdquant/models";
import { SafetensorsFile } from "@svdquant/tensor";
import {
  type LoadQuantizedOptions,
  loadQuantizedModel,
  modelSizes,
  parseQuantizeConfig,
  type QuantizeConfig,
  type QuantizeModelResult,
  quantizeModel,
} from "../src/index.ts";
import { fluxInputs, modelDir, pixartInputs, tempDir } from "./helpers.ts";

export type TinyModel = "flux-tiny-a" | "pixart-tiny-a";

/**
 * A reduced search keeps the suite fast: 4 smoothing candidates instead of the paper's 39, 2 refinement steps, one
 * calibration sample of 2 steps; `fields` (format, rank, …) are set on top.
 */
export function reducedConfig(fields: Record<string, unknown> = {}): QuantizeConfig {
  return parseQuantizeConfig({
    grid: "quick",
    refinement: { maxIterations: 2 },
    calibration: { samples: 1, steps: 2 },
    ...fields,
  });
}

/** `model` quantized with `config` into a fresh temp folder as `file`. */
export async function quantizeTiny(
  model: TinyModel,
  config: QuantizeConfig,
  file: string,
): Promise<{ dir: string; out: string; res: QuantizeModelResult }> {
  const dir = await tempDir();
  const out = join(dir, file);
  const res = await quantizeModel({ modelDir: modelDir(model), out, config });
  return { dir, out, res };
}

/** Sum of the tensor data bytes of a safetensors file. */
export async function dataBytes(path: string): Promise<number> {
  const f = await SafetensorsFile.open(path);
  let bytes = 0;
  for (const n of f.names()) bytes += f.info(n).dataOffsets[1] - f.info(n).dataOffsets[0];
  await f.close();
  return bytes;
}

/** The checkpoint bytes the size model predicts for `model` under `config`. */
export async function predictedBytes(model: TinyModel, config: QuantizeConfig): Promise<number> {
  const raw = JSON.parse(await readFile(join(modelDir(model), "config.json"), "utf8"));
  return modelSizes(parseModelConfig(raw, model), config).svdquantBytes;
}

/**
 * A checkpoint of `model` run on the model's reference inputs: `y` on the native kernels (the default backend, `opts`),
 * `yr` on the float64 fake-quant reference, `y16` the 16-bit model's output.
 */
/** The native-kernel forward of a checkpoint on the model's reference inputs (`opts` as loadQuantizedModel's). */
export async function nativeForward(out: string, model: TinyModel, opts: LoadQuantizedOptions = {}) {
  const inp = model === "flux-tiny-a" ? await fluxInputs() : await pixartInputs();
  return (await loadQuantizedModel(out, opts)).forward(inp as never);
}

export async function tinyForwards(
  out: string,
  model: TinyModel,
  opts: LoadQuantizedOptions = {},
): Promise<{ y: Float32Array; yr: Float32Array; y16: Float32Array }> {
  const flux = model === "flux-tiny-a";
  const inp = flux ? await fluxInputs() : await pixartInputs();
  const y = await (await loadQuantizedModel(out, opts)).forward(inp as never);
  const yr = await (await loadQuantizedModel(out, { backend: "reference" })).forward(inp as never);
  const m = flux
    ? await FluxTransformer.fromFolder(modelDir(model))
    : await PixArtTransformer.fromFolder(modelDir(model));
  return { y, yr, y16: await m.forward(inp as never) };
}
