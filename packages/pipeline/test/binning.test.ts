/**
 * PixArt resolution binning against diffusers (fixtures/pipeline/pixart-reference.safetensors, made by
 * tools/make-pixart-reference.py): the four aspect-ratio tables, classify_height_width_bin on a grid of sizes, and
 * resize_and_crop_tensor (torch bilinear, align_corners=False) of a random image.
 */
import { join } from "node:path";
import { SafetensorsFile } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { aspectRatioBins, classifyHeightWidthBin, PipelineError, resizeAndCrop } from "../src/index.ts";
import { FIXTURES, relFrob } from "./helpers.ts";

describe("resolution binning vs diffusers", async () => {
  const f = await SafetensorsFile.open(join(FIXTURES, "pipeline/pixart-reference.safetensors"));
  const bins = JSON.parse(f.metadata.bins!) as {
    tables: Record<string, [number, number, number][]>;
    queries: [number, number][];
    classified: Record<string, [number, number][]>;
  };
  const resize = Object.fromEntries(
    await Promise.all(
      f
        .names()
        .filter((n) => n.startsWith("resize."))
        .map(async (n) => [n, await f.read(n)] as const),
    ),
  );
  await f.close();
  const sampleSize = { "256": 32, "512": 64, "1024": 128, "2048": 256 } as const;

  it("holds the four ASPECT_RATIO_*_BIN tables and classifies sizes as classify_height_width_bin", () => {
    for (const [px, table] of Object.entries(bins.tables)) {
      const ours = aspectRatioBins(sampleSize[px as keyof typeof sampleSize]);
      expect(ours.map((b) => [...b])).toEqual(table);
      const got = bins.queries.map(([h, w]) => {
        const r = classifyHeightWidthBin(h, w, ours);
        return [r.height, r.width];
      });
      expect(got).toEqual(bins.classified[px]);
    }
    expect(() => aspectRatioBins(48)).toThrow(PipelineError);
  });

  it("resize_and_crop_tensor within float32 rounding", () => {
    const x = resize["resize.input"]!;
    const [, c, h, w] = x.shape as [number, number, number, number];
    for (const [name, t] of Object.entries(resize)) {
      if (name === "resize.input") continue;
      const [, , nh, nw] = t.shape as [number, number, number, number];
      const y = resizeAndCrop(x.toFloat32(), 1, c, h, w, nh, nw);
      expect(relFrob(y, t.toFloat32())).toBeLessThan(1e-6);
    }
  });
});
