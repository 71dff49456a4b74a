import { join } from "node:path";
import { SafetensorsFile } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { MetricsError, psnr, type RgbImage, ssim } from "../src/index.js";
import { perturb, randomImage, rng } from "./helpers.js";

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

/** Direct float64 reference: a 2-D (non-separable) 11x11 window over a reflect-padded image, no crop. */
function ssimReference(a: RgbImage, b: RgbImage): number {
  const g: number[] = [];
  let s = 0;
  for (let i = 0; i < 11; i++) {
    g.push(Math.exp(-(((i - 5) / 1.5) ** 2) / 2));
    s += g[i];
  }
  const w = g.map((v) => v / s);
  const refl = (i: number, n: number) => (i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);
  const { width: W, height: H } = a;
  let tot = 0;
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        let mx = 0;
        let my = 0;
        let mxx = 0;
        let myy = 0;
        let mxy = 0;
        for (let i = 0; i < 11; i++)
          for (let j = 0; j < 11; j++) {
            const q = (c * H + refl(y + i - 5, H)) * W + refl(x + j - 5, W);
            const k = w[i] * w[j];
            const u = a.data[q];
            const v = b.data[q];
            mx += k * u;
            my += k * v;
            mxx += k * u * u;
            myy += k * v * v;
            mxy += k * u * v;
          }
        const vx = Math.max(mxx - mx * mx, 0);
        const vy = Math.max(myy - my * my, 0);
        tot += ((2 * mx * my + 1e-4) * (2 * (mxy - mx * my) + 9e-4)) / ((mx * mx + my * my + 1e-4) * (vx + vy + 9e-4));
      }
  return tot / (3 * W * H);
}

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
      expect(Math.abs(ssim(a, b) - ssimReference(a, b))).toBeLessThan(1e-12);
      let mse = 0;
      for (let i = 0; i < a.data.length; i++) mse += (a.data[i] - b.data[i]) ** 2;
      expect(psnr(a, b)).toBeCloseTo(10 * Math.log10(a.data.length / mse), 10);
    }
  });
});
