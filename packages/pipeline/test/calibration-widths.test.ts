/**
 * `quantizeModel({ calibration })` (`svdquant quantize --calibration FILE`): a statistics file is checked per layer
 * against the model's input widths, for FLUX and PixArt-Σ alike; a wrong width is one E_CALIBRATION line naming
 * the file, the layer and both widths.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseFluxConfig, parseModelConfig, parsePixArtConfig } from "@svdquant/models";
import { openModelFolder } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import {
  calibrationTargets,
  type InputStats,
  PipelineError,
  parseQuantizeConfig,
  quantizeModel,
  recipeOf,
  writeCalibration,
} from "../src/index.ts";
import { linearInputWidths } from "../src/input-widths.ts";
import { FIXTURES, tempDir } from "./helpers.ts";

const PIXART = join(FIXTURES, "pipeline/pixart/transformer");

describe("linearInputWidths", () => {
  it("PixArt-Σ: each linear reads its block width, FFN width or caption width", () => {
    // the fixture's config with D = 2 × 72 = 144 and caption width 48 (distinct, so a mix-up shows)
    const fixture = JSON.parse(readFileSync(join(PIXART, "config.json"), "utf8"));
    const c = parsePixArtConfig({
      ...fixture,
      num_attention_heads: 2,
      attention_head_dim: 72,
      cross_attention_dim: 144,
      caption_channels: 48,
    });
    const w = linearInputWidths(c);
    for (const b of [0, 1]) {
      const p = `transformer_blocks.${b}.`;
      for (const n of ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "ff.net.0.proj"])
        expect(w.get(p + n), p + n).toBe(144);
      expect(w.get(`${p}attn2.to_k`)).toBe(144); // the caption after its projection to cross_attention_dim
      expect(w.get(`${p}ff.net.2`)).toBe(4 * 144);
    }
    expect(w.get("caption_projection.linear_1")).toBe(48);
    expect(w.get("adaln_single.linear")).toBe(144);
    expect(w.has("pos_embed.proj")).toBe(false); // the patch-embedding conv
  });

  it("FLUX: single-block proj_out reads attention + MLP (5 D), ff.net.2 reads 4 D", () => {
    const c = parseFluxConfig({ num_attention_heads: 2, attention_head_dim: 16, axes_dims_rope: [4, 6, 6] });
    const w = linearInputWidths(c);
    expect(w.get("single_transformer_blocks.0.proj_out")).toBe(5 * 32);
    expect(w.get("transformer_blocks.0.ff.net.2")).toBe(4 * 32);
    expect(w.get("transformer_blocks.0.attn.add_q_proj")).toBe(32);
  });
});

describe("quantize --calibration on PixArt-Σ", async () => {
  const dir = await tempDir();
  const config = parseQuantizeConfig({ grid: [{ alpha: 0.5, beta: 0.5 }], refinement: { maxIterations: 1 }, rank: 8 });
  const folder = await openModelFolder(PIXART);
  const modelConfig = parseModelConfig(folder.config!, "config.json");
  // statistics of every recorded input, each as wide as the layer's weight [N, K] in the fixture (not from the
  // function under test), seeded values
  const stats = new Map<string, InputStats>();
  let seed = 7;
  const draw = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  const targets = calibrationTargets(modelConfig, recipeOf(config));
  for (const name of targets) {
    const K = folder.weights.info(`${name}.weight`)!.shape[1]!;
    const rows = 4;
    stats.set(name, {
      absmax: Float32Array.from({ length: K }, () => 0.5 + draw()),
      tokens: Float32Array.from({ length: rows * K }, () => draw() - 0.5),
      rows,
      tokensSeen: 16,
    });
  }
  await folder.weights.close();
  const quantize = (file: string, out: string) =>
    quantizeModel({ modelDir: PIXART, out: join(dir, out), config, calibration: file });

  it("refuses a layer input of the wrong width in one line naming file, layer and widths", async () => {
    expect(targets.has("transformer_blocks.1.ff.net.2")).toBe(true);
    for (const [name, dk] of [
      ["transformer_blocks.1.ff.net.2", -1],
      ["transformer_blocks.0.attn1.to_q", 8],
    ] as const) {
      const s = stats.get(name)!;
      const K = s.absmax.length + dk;
      const bad = new Map(stats);
      bad.set(name, { ...s, absmax: new Float32Array(K).fill(1), tokens: new Float32Array(s.rows * K).fill(0.1) });
      const file = join(dir, `bad-${dk}.safetensors`);
      await writeCalibration(file, bad, {});
      const err = await quantize(file, `bad${dk}.safetensors`).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PipelineError);
      expect((err as PipelineError).code).toBe("E_CALIBRATION");
      expect((err as PipelineError).where).toBe(file);
      expect((err as Error).message).toContain(`${name} has ${K} channels, the model's layer reads ${s.absmax.length}`);
      expect((err as Error).message.split("\n")).toHaveLength(1);
    }
  });

  it("takes the file with every width right (the quantized checkpoint is written)", async () => {
    const file = join(dir, "good.safetensors");
    await writeCalibration(file, stats, {});
    const r = await quantize(file, "good.svdq.safetensors");
    expect(r.report.length).toBeGreaterThan(0);
  }, 120_000);
});
