import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { SafetensorsFile } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import {
  loadQuantizedModel,
  PipelineError,
  parseQuantizeConfig,
  QUICK_GRID,
  quantizeModel,
  recipeOf,
  resolveConfigPaths,
  smoothingGrid,
  treatmentOfLayer,
} from "../src/index.ts";
import { fluxInputs, modelDir, relFrob, tempDir } from "./helpers.ts";

const CONFIGS = join(import.meta.dirname, "../configs");

describe("quantization configs", () => {
  it("every shipped config parses, with its paths relative to the file", async () => {
    for (const f of (await readdir(CONFIGS)).filter((n) => n.endsWith(".json"))) {
      const c = resolveConfigPaths(
        parseQuantizeConfig(JSON.parse(await readFile(join(CONFIGS, f), "utf8")), f),
        CONFIGS,
      );
      expect(c.rank).toBe(32);
      const src = c.calibration.source;
      if (src !== "synthetic" && "prompts" in src && !Array.isArray(src.prompts))
        expect(src.prompts.file).toBe(join(CONFIGS, "prompts.txt"));
    }
  });

  it("defaults are the paper's; bad fields get one line naming them", () => {
    const c = parseQuantizeConfig({});
    expect(c).toMatchObject({ format: "int4", rank: 32, grid: "paper", refinement: { maxIterations: 100 } });
    for (const [raw, field] of [
      [{ rank: 1.5 }, "rank"],
      [{ format: "int8" }, "format"],
      [{ calibration: { samples: 0 } }, "calibration.samples"],
      [{ grid: [{ alpha: 2, beta: 0 }] }, "grid.0.alpha"],
      [{ extra: 1 }, "(root)"],
    ] as const) {
      const e = (() => {
        try {
          parseQuantizeConfig(raw, "cfg.json");
        } catch (err) {
          return err as PipelineError;
        }
        throw new Error("no error");
      })();
      expect(e).toBeInstanceOf(PipelineError);
      expect(e.code).toBe("E_CONFIG");
      expect(e.message.startsWith(`cfg.json: ${field}`), e.message).toBe(true);
      expect(e.message.includes("\n")).toBe(false);
    }
  });

  it('grid "quick" names the reduced search; "paper" leaves the quantizer its default; a list passes through', () => {
    const quick = smoothingGrid(parseQuantizeConfig({ grid: "quick" }));
    expect(quick).toEqual([
      { alpha: 0, beta: 0 },
      { alpha: 0.5, beta: 0 },
      { alpha: 0.5, beta: 0.5 },
      { alpha: 0.8, beta: 0.2 },
    ]);
    expect(quick).not.toBe(QUICK_GRID); // a fresh array: the caller may not change the shared one
    expect(smoothingGrid(parseQuantizeConfig({}))).toBeUndefined();
    expect(smoothingGrid(parseQuantizeConfig({ grid: [{ alpha: 0.3, beta: 0.7 }] }))).toEqual([
      { alpha: 0.3, beta: 0.7 },
    ]);
    expect(() => parseQuantizeConfig({ grid: "fast" })).toThrow(/grid/);
  });

  it("the recipe is data: a rule keeps the MLP down-projections 16-bit, and that model still loads and runs", async () => {
    const override = { rules: [{ match: "transformer_blocks.*.ff.net.2", treatment: "16bit" }] };
    const config = parseQuantizeConfig({
      grid: [{ alpha: 0.5, beta: 0.5 }],
      refinement: { maxIterations: 0 },
      calibration: { samples: 1, steps: 1 },
      recipe: override,
    });
    expect(treatmentOfLayer(recipeOf(config), "transformer_blocks.0.ff.net.2").kind).toBe("dense");
    expect(treatmentOfLayer(recipeOf(config), "transformer_blocks.0.ff.net.0.proj").kind).toBe("w4a4");
    const out = join(await tempDir(), "q.safetensors");
    await quantizeModel({ modelDir: modelDir("flux-tiny-a"), out, config });
    const f = await SafetensorsFile.open(out);
    expect(f.has("transformer_blocks.0.ff.net.2.weight")).toBe(true);
    expect(f.has("transformer_blocks.0.mlp_fc2.qweight")).toBe(false);
    expect(f.has("transformer_blocks.0.mlp_context_fc2.qweight")).toBe(true);
    await f.close();
    const inp = await fluxInputs();
    const y = await (await loadQuantizedModel(out)).forward(inp as never);
    const yr = await (await loadQuantizedModel(out, { backend: "reference" })).forward(inp as never);
    expect(relFrob(y, yr)).toBeLessThan(1e-5);
  });
});
