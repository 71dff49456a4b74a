/**
 * The main job (`svdquant demo` = `pnpm start`) in a reduced setting on the built-in toy model: two prompts, the quick
 * smoothing grid, SVDQuant INT4 on the packed kernels against naive W4A4. Checks what a user reads in the report:
 * every row is there, the quantized images are compared with the 16-bit ones, the pictures still show their captions,
 * and the files (PNGs, grid, report, results) are written.
 */
import { readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readImage, toyLpipsModel } from "@svdquant/metrics";
import { afterAll, describe, expect, it } from "vitest";
import { runDemo } from "../src/index.ts";

const TOY = join(import.meta.dirname, "../../../models/toy-flux");
const out = join(tmpdir(), `svdq-demo-test-${process.pid}`);

describe("svdquant demo on the toy model (reduced)", () => {
  afterAll(() => rm(out, { recursive: true, force: true }));

  it("writes the table, the images and the grid; SVDQuant keeps the pictures closer to 16-bit than naive W4A4", async () => {
    const prompts = ["a big red circle on the left", "a small blue square at the top"];
    // a toy LPIPS graph (mean squared difference of the [−1, 1] inputs) stands in for the AlexNet model
    const lpipsModel = join(tmpdir(), `svdq-demo-lpips-${process.pid}.onnx`);
    await writeFile(lpipsModel, toyLpipsModel());
    const r = await runDemo({
      lpipsModel,
      pipelineDir: TOY,
      outDir: out,
      prompts,
      seed: 7,
      calibrationPrompts: ["a green triangle in the center"],
      steps: 20,
      size: 64,
      maxSequenceLength: 32,
      guidance: 3.5,
      methods: ["svdquant-int4", "w4a4-naive"],
      threads: 1,
      quantize: {
        grid: [
          { alpha: 0.5, beta: 0 },
          { alpha: 0.5, beta: 0.5 },
        ],
        refinement: { maxIterations: 1 },
      },
    });
    expect(r.rows.map((row) => row.method)).toEqual(["16-bit", "svdquant-int4", "w4a4-naive"]);
    const [dense, svdq, naive] = r.rows as [(typeof r.rows)[0], (typeof r.rows)[0], (typeof r.rows)[0]];
    // the trained toy model draws its captions (models/toy-flux/README.md); 4-bit SVDQuant must not lose them
    expect(dense.captionsShown).toBe(2);
    expect(svdq.captionsShown).toBe(2);
    expect(svdq.psnr).toBeGreaterThan(30);
    expect(svdq.psnr!).toBeGreaterThan(naive.psnr!);
    expect(svdq.ssim!).toBeGreaterThan(0.95);
    expect(svdq.bytes).toBeLessThan(dense.bytes);
    for (const row of r.rows) {
      expect(row.images).toHaveLength(2);
      for (const f of row.images) expect((await stat(f)).size).toBeGreaterThan(100);
      expect(row.msPerStep).toBeGreaterThan(0);
    }
    expect(r.markdown).toContain("captions shown");
    expect(r.markdown).toContain("LPIPS ↓");
    expect(dense.lpips).toBeNull();
    // the LPIPS column against an independent float64 computation from the written PNGs
    for (const row of [svdq, naive]) {
      let sum = 0;
      for (const [i, f] of row.images.entries()) {
        const a = await readImage(dense.images[i]!);
        const b = await readImage(f);
        let s = 0;
        for (let j = 0; j < a.data.length; j++) s += ((a.data[j]! - b.data[j]!) / 127.5) ** 2;
        sum += s / a.data.length;
      }
      expect(row.lpips!).toBeCloseTo(sum / row.images.length, 5);
    }
    expect(svdq.lpips!).toBeLessThan(naive.lpips!);
    await rm(lpipsModel, { force: true });
    expect(r.markdown).toContain("| SVDQuant W4A4 INT4 (packed CPU kernels) |");
    const png = await readFile(r.grid);
    expect(png.subarray(1, 4).toString("latin1")).toBe("PNG");
    // grid: 3 rows x 2 columns of 64 px with 4 px gaps → 140 x 212 (IHDR width/height, big-endian)
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([2 * 64 + 3 * 4, 3 * 64 + 4 * 4]);
    const results = JSON.parse(await readFile(join(out, "results.json"), "utf8")) as { rows: unknown[] };
    expect(results.rows).toHaveLength(3);
  }, 600_000);
});
