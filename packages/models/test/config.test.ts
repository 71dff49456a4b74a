import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  fluxParams,
  ModelError,
  modelParams,
  PRESET_CONFIGS,
  parseFluxConfig,
  parseModelConfig,
  parsePixArtConfig,
  presetConfig,
} from "../src/index.js";
import { FIXTURES } from "./helpers.js";

interface Manifest {
  class: string;
  config: Record<string, unknown>;
  num_parameters: number;
  parameters: Record<string, number[]>;
}
const manifest = (name: string): Manifest =>
  JSON.parse(readFileSync(join(FIXTURES, "manifests", `${name}.json`), "utf8")) as Manifest;

describe("parameter names and shapes match the real checkpoints' manifests", () => {
  for (const name of Object.keys(PRESET_CONFIGS) as (keyof typeof PRESET_CONFIGS)[]) {
    it(name, () => {
      const m = manifest(name);
      const fromPreset = modelParams(presetConfig(name));
      // The manifest's own config (class defaults + overrides) gives the same list.
      const fromManifest = modelParams(parseModelConfig({ _class_name: m.class, ...m.config }));
      expect(fromManifest).toEqual(fromPreset);
      // Same names in the same (module registration) order, same shapes.
      expect(fromPreset.map((p) => p.name)).toEqual(Object.keys(m.parameters));
      for (const p of fromPreset) expect([name, p.name, [...p.shape]]).toEqual([name, p.name, m.parameters[p.name]]);
      const count = fromPreset.reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
      expect(count).toBe(m.num_parameters);
    });
  }
});

describe("config parsing", () => {
  it("reads the fixture configs", () => {
    const f = parseFluxConfig(JSON.parse(readFileSync(join(FIXTURES, "models/flux-tiny-a/config.json"), "utf8")));
    expect(f).toMatchObject({
      inChannels: 16,
      outChannels: 16,
      numLayers: 2,
      numSingleLayers: 3,
      numAttentionHeads: 4,
    });
    const p = parsePixArtConfig(JSON.parse(readFileSync(join(FIXTURES, "models/pixart-tiny-a/config.json"), "utf8")));
    expect(p).toMatchObject({ outChannels: 8, interpolationScale: 1, crossAttentionDim: 32, captionChannels: 24 });
    expect(presetConfig("pixart-sigma-xl-2-1024-ms")).toMatchObject({ interpolationScale: 2, sampleSize: 128 });
  });

  const bad: [string, () => unknown, RegExp][] = [
    [
      "unknown key",
      () => parseFluxConfig({ _class_name: "FluxTransformer2DModel", num_heads: 3 }),
      /unknown key "num_heads"/,
    ],
    [
      "wrong class",
      () => parseFluxConfig({ _class_name: "PixArtTransformer2DModel" }),
      /expected "FluxTransformer2DModel"/,
    ],
    [
      "rope axes do not cover head dim",
      () => parseFluxConfig({ attention_head_dim: 64, axes_dims_rope: [16, 56, 56] }),
      /sums to 128.*attention_head_dim = 64/,
    ],
    ["non-integer", () => parseFluxConfig({ num_layers: 1.5 }), /"num_layers" must be a non-negative integer/],
    ["boolean", () => parseFluxConfig({ guidance_embeds: "yes" }), /"guidance_embeds" must be a boolean/],
    ["unsupported norm", () => parsePixArtConfig({ norm_type: "ada_norm_zero" }), /"norm_type".*not supported/],
    [
      "additional conditions (sample_size 128 default)",
      () => parsePixArtConfig({ sample_size: 128 }),
      /use_additional_conditions.*not supported/,
    ],
    [
      "cross-attention width vs caption projection",
      () => parsePixArtConfig({ caption_channels: 4096, cross_attention_dim: 512, use_additional_conditions: false }),
      /cross_attention_dim 512 must equal the inner dim 1152/,
    ],
    ["sample not a multiple of patch", () => parsePixArtConfig({ sample_size: 65 }), /multiple of patch_size/],
    ["unknown class", () => parseModelConfig({ _class_name: "UNet2DModel" }), /is not one of/],
  ];
  for (const [what, fn, msg] of bad) {
    it(`rejects: ${what}`, () => {
      expect(fn).toThrow(ModelError);
      expect(fn).toThrow(msg);
    });
  }

  it("dev has the guidance embedder, schnell not", () => {
    const dev = fluxParams(parseFluxConfig({ guidance_embeds: true }));
    const schnell = fluxParams(parseFluxConfig({}));
    expect(dev.length - schnell.length).toBe(4);
  });
});
