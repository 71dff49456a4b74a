import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseModelConfig } from "@svdquant/models";
import { describe, expect, it } from "vitest";
import { modelSizes, parseQuantizeConfig } from "../src/index.ts";
import { FIXTURES } from "./helpers.ts";

const GiB = 2 ** 30;

async function manifest(name: string) {
  const m = JSON.parse(await readFile(join(FIXTURES, "manifests", `${name}.json`), "utf8"));
  return { config: parseModelConfig({ ...m.config, _class_name: m.class }, name), parameters: m.num_parameters };
}

describe("model sizes from the config and the packing rules", () => {
  it("FLUX.1-dev: 22.17 GiB BF16 → about 6.1 GiB SVDQuant INT4 (SVDQuant Table: 22.2 → 6.1 GiB)", async () => {
    const { config, parameters } = await manifest("flux.1-dev");
    const s = modelSizes(config, parseQuantizeConfig({}));
    expect(s.parameters).toBe(parameters);
    expect(s.bf16Bytes / GiB).toBeCloseTo(22.17, 2);
    expect(s.svdquantBytes / GiB).toBeGreaterThan(5.9);
    expect(s.svdquantBytes / GiB).toBeLessThan(6.5);
    expect(s.nf4Bytes).toBeGreaterThan(s.svdquantBytes * 0.9);
  });

  it("PixArt-Σ parameters match the manifest", async () => {
    const { config, parameters } = await manifest("pixart-sigma-xl-2-1024-ms");
    expect(modelSizes(config, parseQuantizeConfig({})).parameters).toBe(parameters);
  });
});
