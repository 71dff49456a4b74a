import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  FidFeatureExtractor,
  featureStats,
  frechetDistance,
  type Rgb8Image,
  ssim,
  toPlanar,
  toyClipModel,
  toyFidModel,
  toyImageRewardModel,
  toyLpipsModel,
  toyWeights,
  writePng,
} from "@svdquant/metrics";
import { Tensor, writeSafetensors } from "@svdquant/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli } from "./helpers.ts";

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function image(r: () => number, w: number, h: number): Rgb8Image {
  const data = new Uint8Array(w * h * 3);
  const f = 0.05 + 0.2 * r();
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++)
        data[(y * w + x) * 3 + c] = Math.round(127 + 100 * Math.sin(f * (x + 2 * y) + c) + 20 * (r() - 0.5));
  return { width: w, height: h, data };
}

function noisy(r: () => number, img: Rgb8Image): Rgb8Image {
  return { ...img, data: img.data.map((v) => Math.min(255, Math.max(0, v + Math.round(16 * (r() - 0.5))))) };
}

const run = (args: string[]) => cli(...args);

const root = mkdtempSync(join(tmpdir(), "svdq-eval-"));
const refDir = join(root, "bf16");
const testDir = join(root, "w4a4");
const N = 6;
const refs: Rgb8Image[] = [];
const tests: Rgb8Image[] = [];
const W = toyWeights(5);
const models = {
  fid: join(root, "fid.onnx"),
  lpips: join(root, "lpips.onnx"),
  clip: join(root, "clip.onnx"),
  ir: join(root, "ir.onnx"),
  prompts: join(root, "prompts.safetensors"),
};

beforeAll(async () => {
  mkdirSync(refDir);
  mkdirSync(testDir);
  const r = rng(42);
  const prompts: Record<string, Tensor> = {};
  for (let i = 0; i < N; i++) {
    const a = image(r, 64, 48);
    const b = noisy(r, a);
    refs.push(a);
    tests.push(b);
    const name = `seed-${String(i).padStart(4, "0")}`;
    await writePng(join(refDir, `${name}.png`), a);
    await writePng(join(testDir, `${name}.png`), b);
    prompts[`clip/${name}`] = Tensor.fromFloats(
      "F32",
      [W.clipDim],
      Array.from({ length: W.clipDim }, () => r() - 0.5),
    );
    prompts[`imagereward_ids/${name}`] = new Tensor("I64", [4], BigInt64Array.from([101n, BigInt(1000 + i), 2n, 102n]));
    prompts[`imagereward_mask/${name}`] = new Tensor("I64", [4], BigInt64Array.from([1n, 1n, 1n, 1n]));
  }
  writeFileSync(models.fid, toyFidModel(W));
  writeFileSync(models.lpips, toyLpipsModel());
  writeFileSync(models.clip, toyClipModel(W));
  writeFileSync(models.ir, toyImageRewardModel());
  await writeSafetensors(models.prompts, prompts);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("svdquant eval", () => {
  it("PSNR/SSIM on two folders of PNGs: Markdown table, progress on stderr", async () => {
    const { code, out, err } = await run([
      "eval",
      "--ref",
      refDir,
      "--test",
      testDir,
      "--batch",
      "4",
      "--threads",
      "2",
    ]);
    expect(err).toContain(`${N}/${N} pairs`);
    expect(code).toBe(0);
    expect(out).toContain("| images | FID↓ | IR↑ | LPIPS↓ | PSNR↑ | SSIM↑ | CLIP↑ |");
    // Independent PSNR: per image from the 8-bit data, then averaged.
    let sum = 0;
    for (let i = 0; i < N; i++) {
      let se = 0;
      for (let k = 0; k < refs[i].data.length; k++) se += ((refs[i].data[k] - tests[i].data[k]) / 255) ** 2;
      sum += 10 * Math.log10(refs[i].data.length / se);
    }
    expect(out).toContain(`| ${(sum / N).toFixed(2)} |`);
  });

  it("all metrics with ONNX models, --json and --out", async () => {
    const outFile = join(root, "result.json");
    const { code, out, err } = await run([
      "eval",
      "--ref",
      refDir,
      "--test",
      testDir,
      "--fid-model",
      models.fid,
      "--lpips-model",
      models.lpips,
      "--clip-model",
      models.clip,
      "--imagereward-model",
      models.ir,
      "--prompts",
      models.prompts,
      "--batch",
      "4",
      "--json",
      "--out",
      outFile,
      "--no-progress",
    ]);
    expect(err).toBe("");
    expect(code).toBe(0);
    const r = JSON.parse(out);
    expect(JSON.parse(readFileSync(outFile, "utf8"))).toEqual(r);
    expect(r.count).toBe(N);
    expect(r.perImage.map((p: { name: string }) => p.name)).toEqual(
      Array.from({ length: N }, (_, i) => `seed-${String(i).padStart(4, "0")}`),
    );
    // SSIM and LPIPS (toy graph = mean squared difference in [−1, 1]) per image.
    let lp = 0;
    for (let i = 0; i < N; i++) {
      expect(r.perImage[i].ssim).toBeCloseTo(ssim(toPlanar(refs[i]), toPlanar(tests[i])), 12);
      let s = 0;
      for (let k = 0; k < refs[i].data.length; k++) s += ((2 * (refs[i].data[k] - tests[i].data[k])) / 255) ** 2;
      lp += s / refs[i].data.length;
    }
    expect(r.lpips).toBeCloseTo(lp / N, 5);
    // FID over all 6 pairs at once equals the streamed (batch 4 + 2) result.
    const fx = await FidFeatureExtractor.load(models.fid);
    const flat = (fs: Float32Array[]) => Float64Array.from(fs.flatMap((f) => Array.from(f)));
    const fa = await fx.features(refs);
    const fb = await fx.features(tests);
    await fx.release();
    const want = frechetDistance(featureStats(flat(fa), N, W.fidDim), featureStats(flat(fb), N, W.fidDim));
    expect(r.fidMethod).toBe("sample-factor"); // 6 samples < 16 dims
    expect(r.fidLinalg).toBe("native"); // @svdquant/kernels is built by `pnpm build`
    expect(Math.abs(r.fid - want.value)).toBeLessThan(1e-6 * Math.abs(want.value));
    expect(typeof r.clip).toBe("number");
    expect(typeof r.imageReward).toBe("number");
  });

  it("clear errors: unpaired images, different sizes, missing model, prompts needed", async () => {
    const lonely = join(root, "lonely");
    mkdirSync(lonely);
    await writePng(join(lonely, "seed-0000.png"), tests[0]);
    let res = await run(["eval", "--ref", refDir, "--test", lonely, "--no-progress"]);
    expect(res.code).toBe(1);
    expect(res.err).toMatch(/lonely: lacks 5 reference image\(s\): seed-0001, seed-0002/);

    const small = join(root, "small");
    mkdirSync(small);
    for (let i = 0; i < N; i++)
      await writePng(join(small, `seed-${String(i).padStart(4, "0")}.png`), image(rng(i), 32, 48));
    res = await run(["eval", "--ref", refDir, "--test", small, "--no-progress"]);
    // pairs of a batch decode concurrently: whichever mismatched pair is seen first is named
    expect(res.err).toMatch(/images differ in size: .*(seed-\d{4})\.png \(64x48\) vs .*\1\.png \(32x48\)/);

    res = await run(["eval", "--ref", refDir, "--test", testDir, "--fid-model", join(root, "none.onnx")]);
    expect(res.err).toMatch(/none\.onnx: FID model file not found/);

    res = await run(["eval", "--ref", refDir, "--test", testDir, "--clip-model", models.clip]);
    expect(res.err).toMatch(/need --prompts/);

    const empty = join(root, "empty");
    mkdirSync(empty);
    res = await run(["eval", "--ref", empty, "--test", testDir]);
    expect(res.err).toMatch(/no PNG\/JPEG images in the reference folder/);
  });
});
