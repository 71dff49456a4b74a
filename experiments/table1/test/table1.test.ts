import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { toyFidModel, toyLpipsModel, toyWeights } from "@svdquant/metrics";
import { describe, expect, it } from "vitest";
import { runTable1, selectPreset, table1ConfigSchema } from "../src/index.ts";

const ROOT = resolve(import.meta.dirname, "../../..");
const DIR = resolve(import.meta.dirname, "..");
const committed = JSON.parse(readFileSync(join(DIR, "config.json"), "utf8"));

// CI setting: 2 prompts × 2 steps, two methods (one through the packed checkpoint and the kernels), a 2-candidate
// smoothing grid and 2 refinement steps; LPIPS and FID on small random ONNX graphs (@svdquant/metrics' toy models)
// so their plumbing runs; the committed results come from the full config.
function reducedConfig(extra: Record<string, unknown> = {}) {
  const tmp = mkdtempSync(join(tmpdir(), "table1-"));
  const lpips = join(tmp, "lpips.onnx");
  const fid = join(tmp, "fid.onnx");
  writeFileSync(lpips, toyLpipsModel());
  writeFileSync(fid, toyFidModel(toyWeights(3)));
  const toy = committed.presets.toy;
  const config = {
    ...committed,
    quick: true,
    presets: {
      ...committed.presets,
      toy: { ...toy, quickCount: 2, generation: { ...toy.generation, steps: 2, calibrationCount: 2 } },
    },
    methods: ["w4a4-naive", "svdquant-int4-packed"],
    quantize: { grid: [{ alpha: 0.5, beta: 0.5 }], refinement: { maxIterations: 2 } },
    metrics: { lpips, fid },
    ...extra,
  };
  writeFileSync(join(tmp, "config.json"), JSON.stringify(config));
  return tmp;
}

describe("table1 config", () => {
  it("the committed config parses and holds the paper's protocol", () => {
    const c = table1ConfigSchema.parse(committed);
    expect(c.preset).toBe("toy");
    const dev = c.presets["flux.1-dev/mjhq"]!.generation;
    expect([dev.count, dev.steps, dev.guidance, dev.size]).toEqual([5000, 50, 3.5, 1024]);
    expect(c.presets["flux.1-schnell/sdci"]!.generation.steps).toBe(4);
    const px = c.presets["pixart-sigma/mjhq"]!.generation;
    expect([px.steps, px.guidance]).toEqual([20, 4.5]);
  });

  it("a preset whose paths are unset fails with one line naming the field", () => {
    const c = table1ConfigSchema.parse({ ...committed, preset: "flux.1-dev/mjhq" });
    expect(() => selectPreset(c, "cfg")).toThrow(/presets\["flux.1-dev\/mjhq"\].generation.pipeline is null/);
    const withPath = structuredClone(c);
    withPath.presets["flux.1-dev/mjhq"]!.generation.pipeline = "/x";
    expect(() => selectPreset(withPath, "cfg")).toThrow(/prompts.file is null/);
    expect(() => selectPreset({ ...c, preset: "nope" }, "cfg")).toThrow(/preset "nope" is not in "presets"/);
  });

  it("a bad field is one line naming it", async () => {
    await expect(runTable1(reducedConfig({ methods: [] }), { root: ROOT })).rejects.toThrow(/methods: Too small/);
    await expect(runTable1(reducedConfig({ methods: ["w5a5"] }), { root: ROOT })).rejects.toThrow(
      /unknown method "w5a5"/,
    );
  });
});

describe("table1 on the toy model (reduced)", () => {
  it("scores each method against the 16-bit images, runs LPIPS/FID when their models are given", async () => {
    const dir = reducedConfig();
    const { result, markdown, outDir } = await runTable1(dir, { root: ROOT });
    expect(result.rows.map((r) => r.id)).toEqual(["16-bit", "w4a4-naive", "svdquant-int4-packed"]);
    expect(result.prompts).toHaveLength(2);
    const [ref, naive, svdq] = result.rows;
    expect(ref!.psnr).toBeNull();
    expect(ref!.lpips).toBeNull();
    for (const r of [naive!, svdq!]) {
      expect(r.psnr).toBeGreaterThan(15);
      expect(r.psnr).toBeLessThan(100); // a quantized model does not reproduce the 16-bit bytes
      expect(r.ssim).toBeGreaterThan(0.5);
      expect(r.ssim).toBeLessThan(1);
      expect(r.lpips).toBeGreaterThanOrEqual(0);
      expect(Number.isFinite(r.fid)).toBe(true);
      expect(r.bytes).toBeLessThan(ref!.bytes); // the toy's 192-wide layers pad to 256 in the packed layout
      expect(r.captionAccuracy).toBeGreaterThanOrEqual(0);
    }
    // the packed W4A4 checkpoint at rank 32 is closer to the 16-bit images than naive W4A4
    expect(svdq!.psnr!).toBeGreaterThan(naive!.psnr!);
    expect(result.missing).toHaveProperty("ImageReward");
    expect(result.missing).toHaveProperty("CLIP score");
    expect(result.missing).not.toHaveProperty("LPIPS");
    expect(markdown).toMatch(/\| svdquant-int4-packed \| [0-9.]+ \| missing \| [0-9.]+ \|/);
    for (const f of ["results.json", "table.md", "table1.png", "grid.png"])
      expect(existsSync(join(outDir, f))).toBe(true);
  });
});

describe("table1 on a PixArt-Σ pipeline (reduced: the tiny random fixture, the PixArt-Σ/MJHQ preset)", () => {
  it("runs the preset's protocol (DPM-Solver++, CFG 4.5, 300 T5 tokens) and scores every method", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "table1-pixart-"));
    const prompts = join(tmp, "prompts.txt");
    writeFileSync(prompts, "a small red circle\na blue square on the left\na green triangle\n");
    const px = committed.presets["pixart-sigma/mjhq"];
    const config = {
      ...committed,
      preset: "pixart-sigma/mjhq",
      quick: true,
      presets: {
        ...committed.presets,
        "pixart-sigma/mjhq": {
          ...px,
          quickCount: 2,
          referenceImages: null,
          generation: {
            ...px.generation,
            pipeline: join(ROOT, "fixtures/pipeline/pixart"),
            prompts: { file: prompts },
            steps: 2,
            size: 64,
            calibrationCount: 1,
          },
        },
      },
      methods: ["w4a4-naive", "svdquant-int4-packed"],
      quantize: { grid: [{ alpha: 0.5, beta: 0.5 }], refinement: { maxIterations: 1 }, rank: 8 },
      metrics: { lpips: null, fid: null },
    };
    writeFileSync(join(tmp, "config.json"), JSON.stringify(config));
    const { result } = await runTable1(tmp, { root: ROOT });
    expect(result.rows.map((r) => r.id)).toEqual(["16-bit", "w4a4-naive", "svdquant-int4-packed"]);
    const [ref, naive, svdq] = result.rows;
    expect(ref!.psnr).toBeNull();
    for (const r of [naive!, svdq!]) {
      expect(Number.isFinite(r.psnr!)).toBe(true);
      expect(r.ssim!).toBeGreaterThan(-1);
      expect(r.bytes).toBeGreaterThan(0); // this 32-wide fixture pads to 128 channels: larger than BF16
    }
    // the random fixture has no outliers to speak of, but SVDQuant must still not be worse than naive W4A4
    expect(svdq!.psnr!).toBeGreaterThanOrEqual(naive!.psnr! - 0.5);
  }, 600_000);
});
