import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Conv2d,
  conv2dDirect,
  type GemmBackend,
  getGemmBackend,
  groupNorm,
  imageToRgb8,
  parseVaeConfig,
  setGemmBackend,
  unpackFluxLatents,
  useKernelsGemm,
  VaeDecoder,
  vaeDecoderParams,
} from "../src/index.js";
import { randn } from "./helpers.js";
import { type Loaded, maxUlps, PIPELINE, readPipelineFixture, relErr } from "./pipeline-fixtures.js";
import { randomFolder } from "./reference-pipeline64.js";

let V: Record<string, Loaded>;
const loadV = async () => {
  V ??= (await readPipelineFixture("vae.safetensors")).t;
};

describe("Conv2d (im2col + GEMM) vs a direct float64-accumulated convolution", () => {
  it.each([
    [3, 5, 7, 9, 1 << 24],
    [3, 4, 6, 5, 100], // tiny budget: one output row per band
    [1, 6, 3, 8, 1 << 24],
  ])("k=%i cin=%i cout=%i, %i rows, budget %i", (k, cin, cout, h, budget) => {
    const w = 11;
    const x = randn(cin * h * w, 1);
    const wt = randn(cout * cin * k * k, 2, 0.3);
    const b = randn(cout, 3);
    const y = new Conv2d("t", wt, b, cout, cin, k, undefined, budget).forward(x, h, w);
    expect(relErr(y, conv2dDirect(x, h, w, wt, b, cout, cin, k))).toBeLessThan(1e-6);
  });

  it("through @svdquant/kernels' native f32 GEMM too (k=3, banded)", async () => {
    const kernels = await import("@svdquant/kernels");
    expect(kernels.backendInfo().native).toBe(true); // pnpm build compiles the addon
    const [cin, cout, h, w] = [6, 5, 9, 13];
    const x = randn(cin * h * w, 4);
    const wt = randn(cout * cin * 9, 5, 0.3);
    const b = randn(cout, 6);
    const y = new Conv2d("t", wt, b, cout, cin, 3, kernels.f32GemmBackend(), 3 * w * cin * 9).forward(x, h, w);
    expect(relErr(y, conv2dDirect(x, h, w, wt, b, cout, cin, 3))).toBeLessThan(1e-6);
  });

  it("names the layer on a shape error", () => {
    expect(() => new Conv2d("decoder.conv_in", new Float32Array(5), undefined, 2, 2, 3)).toThrow(
      /decoder\.conv_in: weight has 5 values/,
    );
    expect(() => new Conv2d("c", new Float32Array(4), undefined, 2, 2, 1).forward(new Float32Array(3), 1, 2)).toThrow(
      /c: input has 3 values, expected \[2, 1, 2\]/,
    );
  });

  it("groupNorm normalizes each group to mean 0, variance 1 before the affine", () => {
    const x = randn(4 * 10, 5, 3);
    const y = groupNorm(x, 4, 10, 2, Float32Array.of(1, 1, 1, 1), new Float32Array(4), 0);
    for (let g = 0; g < 2; g++) {
      const s = y.subarray(g * 20, (g + 1) * 20);
      const mean = s.reduce((a, b) => a + b, 0) / 20;
      const v = s.reduce((a, b) => a + (b - mean) ** 2, 0) / 20;
      expect(Math.abs(mean)).toBeLessThan(1e-6);
      expect(Math.abs(v - 1)).toBeLessThan(1e-5);
    }
  });
});

describe.each([
  ["the TypeScript GEMM", false],
  ["@svdquant/kernels' native f32 GEMM", true],
])(`VaeDecoder vs diffusers' AutoencoderKL.decode (float64 reference) with %s`, (_label, native) => {
  let previous: GemmBackend | undefined;
  beforeAll(async () => {
    await loadV();
    if (!native) return;
    const before = getGemmBackend();
    const choice = await useKernelsGemm();
    expect(choice.reason).toBe(""); // pnpm build compiles the addon: missing is a failure, not a skip
    previous = before;
  });
  afterAll(() => {
    if (previous) setGemmBackend(previous);
  });

  it("FLUX 16-channel VAE: unpack, scale/shift, decode within 1e-5", async () => {
    const vae = await VaeDecoder.fromFolder(join(PIPELINE, "flux/vae"));
    expect(vae.config.latentChannels).toBe(16);
    expect(vae.config.shiftFactor).toBeCloseTo(0.1159, 10);
    const [, c, h, w] = V["flux.unpacked"]!.shape as number[];
    const lat = unpackFluxLatents(Float32Array.from(V["flux.packed"]!.data), 1, c!, h!, w!);
    const z = vae.unscale(lat);
    expect(maxUlps(z, V["flux.z"]!.data)).toBe(0);
    const img = vae.decode(z, 1, h!, w!);
    expect(img.length).toBe(V["flux.image"]!.data.length);
    const err = relErr(img, V["flux.image"]!.data);
    console.log("flux VAE rel err vs float64:", err, "vs float32:", relErr(img, V["flux.image_f32"]!.data));
    expect(err).toBeLessThan(1e-5);
  });

  it("PixArt 4-channel VAE (post_quant_conv), batch 2, within 1e-5", async () => {
    const vae = await VaeDecoder.fromFolder(join(PIPELINE, "pixart/vae"));
    expect(vae.config.usePostQuantConv).toBe(true);
    const [b, , h, w] = V["pixart.latents"]!.shape as number[];
    const z = vae.unscale(Float32Array.from(V["pixart.latents"]!.data));
    expect(maxUlps(z, V["pixart.z"]!.data)).toBe(0);
    const img = vae.decode(z, b!, h!, w!);
    const err = relErr(img, V["pixart.image"]!.data);
    console.log("pixart VAE rel err vs float64:", err);
    expect(err).toBeLessThan(1e-5);
  });
});

describe("VaeDecoder input checks and the 8-bit postprocess", () => {
  it("rejects wrong shapes, non-finite latents and unsupported configs", async () => {
    const raw = { latent_channels: 4, block_out_channels: [8], norm_num_groups: 4, use_post_quant_conv: false };
    const { dir } = await randomFolder(
      vaeDecoderParams(parseVaeConfig(raw)),
      raw,
      "diffusion_pytorch_model.safetensors",
      9,
    );
    const vae = await VaeDecoder.fromFolder(dir);
    expect(() => vae.decode(new Float32Array(10), 1, 2, 2)).toThrow(/latents have 10 values, expected \[1, 4, 2, 2\]/);
    expect(() => vae.decode(Float32Array.of(...new Array(15).fill(0), Number.NaN), 1, 2, 2)).toThrow(
      /latent 15 is NaN/,
    );
    expect(() => parseVaeConfig({ up_block_types: ["UpDecoderBlock2D"], block_out_channels: [64, 64] })).toThrow(
      /up_block_types/,
    );
    expect(() => parseVaeConfig({ block_out_channels: [48], norm_num_groups: 32 })).toThrow(/not divisible/);
  });

  it("imageToRgb8 = round((x/2 + 0.5).clamp(0, 1) · 255), NCHW → NHWC", () => {
    const img = Float32Array.of(-1, 1, 0, 2, -3, 0.5, 0.1, -0.2, 0.3, 0.4, 0.5, 0.6);
    const rgb = imageToRgb8(img, 1, 3, 2, 2);
    // float32 steps as torch/numpy; 0.4 → 0.7·255 is exactly 178.5 in float32 → 178 (half to even), 179 in float64
    const f = Math.fround;
    const even = (x: number) => (x % 1 === 0.5 ? 2 * Math.round(x / 2) : Math.round(x));
    const ref = (v: number) => even(f(Math.min(1, Math.max(0, f(f(v / 2) + 0.5))) * 255));
    expect(Array.from(rgb)).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11].map((i) => ref(img[i]!)));
    expect(rgb[5]).toBe(178);
    expect(rgb[6]).toBe(128); // 0 → 127.5 → 128
    expect(() => imageToRgb8(Float32Array.of(Number.NaN, 0, 0), 1, 3, 1, 1)).toThrow(/NaN/);
  });
});
