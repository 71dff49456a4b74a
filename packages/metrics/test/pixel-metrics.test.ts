import { join } from "node:path";
import { SafetensorsFile } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { MetricsError, psnr, type RgbImage, ssim } from "../src/index.js";
import { perturb, randomImage, rng } from "./helpers.js";
import { ssimDirect } from "./reference.js";

const FIXTURE = join(import.meta.dirname, "../../../fixtures/metrics/case-a.safetensors");

async function loadFixture() {
  const f = await SafetensorsFile.open(FIXTURE);
  try {
    const get = async (n: string) => {
      const t = await f.read(n);
      return { shape: t.shape, data: Array.from(t.data as ArrayLike<number>) };
    };
    return {
      ref: await get("image_ref"),
      test: await get("image_test"),
      psnr: await get("psnr_per_image"),
      ssim: await get("ssim_mean"),
    };
  } finally {
    await f.close();
  }
}

function imagesOf(t: { shape: readonly number[]; data: number[] }, tag: string): RgbImage[] {
  const [b, c, h, w] = t.shape;
  expect(c).toBe(3);
  const out: RgbImage[] = [];
  for (let i = 0; i < b; i++) {
    out.push({
      width: w,
      height: h,
      data: Float32Array.from(t.data.slice(i * 3 * h * w, (i + 1) * 3 * h * w)),
      name: `${tag}${i}`,
    });
  }
  return out;
}

describe("PSNR/SSIM against torchmetrics (fixtures/metrics/case-a)", async () => {
  const fx = await loadFixture();
  const refs = imagesOf(fx.ref, "ref");
  const tests = imagesOf(fx.test, "test");

  it("PSNR per image (data range 1) within 1e-4", () => {
    const got = refs.map((r, i) => psnr(r, tests[i]));
    for (let i = 0; i < got.length; i++) expect(Math.abs(got[i] - fx.psnr.data[i])).toBeLessThan(1e-4);
  });

  it("SSIM mean over the batch (gaussian 11, σ 1.5) within 1e-4", () => {
    const got = refs.map((r, i) => ssim(r, tests[i])).reduce((a, b) => a + b, 0) / refs.length;
    expect(Math.abs(got - fx.ssim.data[0])).toBeLessThan(1e-4);
  });

  it("rejects images of different sizes and too-small images", () => {
    const small: RgbImage = { width: 8, height: 8, data: new Float32Array(3 * 64).fill(0.5), name: "small.png" };
    expect(() => psnr(refs[0], small)).toThrow(MetricsError);
    expect(() => psnr(refs[0], small)).toThrow(/differ in size.*small\.png/);
    const tiny: RgbImage = { width: 5, height: 9, data: new Float32Array(3 * 45).fill(0.5), name: "tiny.png" };
    expect(() => ssim(tiny, tiny)).toThrow(/larger than 5x5.*5x9/);
  });
});

describe("PSNR/SSIM against a direct float64 reference on seeded random images", () => {
  it("SSIM (separable, reflect) equals the 2-D reference; PSNR equals 10·log10(1/MSE)", () => {
    const r = rng(7);
    for (const [w, h] of [
      [37, 23],
      [16, 40],
      [6, 6],
    ]) {
      const a = randomImage(r, w, h);
      const b = perturb(r, a, 0.2);
      expect(Math.abs(ssim(a, b) - ssimDirect(a, b))).toBeLessThan(1e-12);
      let mse = 0;
      for (let i = 0; i < a.data.length; i++) mse += (a.data[i] - b.data[i]) ** 2;
      expect(psnr(a, b)).toBeCloseTo(10 * Math.log10(a.data.length / mse), 10);
    }
  });
});
