/**
 * Pipeline entry points run the models' dense layers on @svdquant/kernels' native f32 GEMM (when its addon loads),
 * packed once, and leave a backend the caller chose alone.
 */
import { join } from "node:path";
import { backendInfo } from "@svdquant/kernels";
import { type GemmBackend, getGemmBackend, setGemmBackend, TS_GEMM } from "@svdquant/models";
import { afterEach, describe, expect, it } from "vitest";
import { FluxPipeline, nativeGemm } from "../src/index.ts";

const TOY = join(import.meta.dirname, "../../../models/toy-flux");

describe("the pipeline's GEMM backend", () => {
  afterEach(() => {
    setGemmBackend(TS_GEMM);
  });

  it("keeps a backend the caller set", async () => {
    const mine: GemmBackend = { name: "mine", gemm: TS_GEMM.gemm };
    setGemmBackend(mine);
    expect((await nativeGemm()).backend).toBe(mine);
    await FluxPipeline.load(TOY);
    expect(getGemmBackend()).toBe(mine);
  });

  it.skipIf(!backendInfo().native)(
    "FluxPipeline.load takes the native GEMM; the 16-bit transformer is packed once",
    async () => {
      const pipe = await FluxPipeline.load(TOY);
      expect(getGemmBackend().name).toMatch(/^kernels-f32-/);
      const t = await pipe.transformer();
      const heads = t.headLayers();
      expect(heads.length).toBeGreaterThan(0);
      for (const l of heads) expect("isPrepared" in l && l.isPrepared).toBe(true);
    },
  );
});
