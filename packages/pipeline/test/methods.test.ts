import { FluxTransformer, parseModelConfig } from "@svdquant/models";
import { openModelFolder } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { loadWithMethod, parseQuantizeConfig, quantizedLayers, recordCalibration } from "../src/index.ts";
import { fluxInputs, modelDir, relFrob } from "./helpers.ts";

describe("loadWithMethod: a quantizer method on every recipe-quantized layer of a model", () => {
  it("SVDQuant INT4 on the kernel path (rank ≥ 1) and on the float64 path (rank 0): closer to 16-bit with a branch", async () => {
    const dir = modelDir("flux-tiny-a");
    const folder = await openModelFolder(dir);
    const config = parseModelConfig(folder.config ?? {}, dir);
    const q = parseQuantizeConfig({ refinement: { maxIterations: 0 } });
    const stats = await recordCalibration(
      config,
      folder.weights,
      q.calibration,
      new Set(quantizedLayers(config, q).keys()),
    );
    await folder.weights.close();
    const inputs = await fluxInputs();
    const ref = await (await FluxTransformer.fromFolder(dir)).forward(inputs);
    const err: Record<number, number> = {};
    for (const rank of [0, 16]) {
      const m = await loadWithMethod(dir, "svdquant-int4", stats, { ...q, rank });
      const y = await (m.model as FluxTransformer).forward(inputs);
      expect(y.every(Number.isFinite)).toBe(true);
      err[rank] = relFrob(y, ref);
    }
    expect(err[0]!).toBeGreaterThan(0);
    expect(err[16]!).toBeGreaterThan(0);
    expect(err[16]!).toBeLessThan(err[0]!);
    expect(err[16]!).toBeLessThan(0.5);
  });
});
