import { describe, expect, it } from "vitest";
import { type FluxInputs, FluxTransformer, type PixArtInputs, PixArtTransformer } from "../src/index.js";
import { makeRandomModel, randn, relErr, rows64 } from "./helpers.js";
import { fluxRef64, pixartRef64 } from "./reference64.js";

const FLUX_RAW = {
  _class_name: "FluxTransformer2DModel",
  attention_head_dim: 16,
  axes_dims_rope: [4, 6, 6],
  guidance_embeds: true,
  in_channels: 8,
  joint_attention_dim: 20,
  num_attention_heads: 2,
  num_layers: 2,
  num_single_layers: 2,
  pooled_projection_dim: 12,
};

function gridIds(h: number, w: number): Float32Array {
  const ids = new Float32Array(h * w * 3);
  for (let i = 0; i < h; i++)
    for (let j = 0; j < w; j++) {
      ids[(i * w + j) * 3 + 1] = i;
      ids[(i * w + j) * 3 + 2] = j;
    }
  return ids;
}

function fluxInputs(b: number, gh: number, gw: number, st: number, seed: number): FluxInputs {
  const si = gh * gw;
  return {
    batch: b,
    imgTokens: si,
    txtTokens: st,
    hiddenStates: randn(b * si * 8, seed),
    encoderHiddenStates: randn(b * st * 20, seed + 1),
    pooledProjections: randn(b * 12, seed + 2),
    timestep: Array.from({ length: b }, (_, i) => 0.13 + 0.61 * i),
    guidance: Array.from({ length: b }, (_, i) => 3.5 - i),
    imgIds: gridIds(gh, gw),
    txtIds: new Float32Array(st * 3),
  };
}

function sliceBatch(x: Float32Array, b: number, i: number): Float32Array {
  const n = x.length / b;
  return x.slice(i * n, (i + 1) * n);
}

describe("FLUX: batch > 1, non-square grids", () => {
  it("matches an independent float64 forward on a 3x5 grid, batch 2, with guidance", async () => {
    const { dir, weights } = await makeRandomModel(FLUX_RAW, 11);
    const model = await FluxTransformer.fromFolder(dir);
    const inp = fluxInputs(2, 3, 5, 7, 100);
    const out = await model.forward(inp, { attention: { queryBlock: 4 } });
    for (let bi = 0; bi < 2; bi++) {
      const ref = fluxRef64(
        weights,
        { heads: 2, axes: [4, 6, 6], double: 2, single: 2, guidance: true },
        rows64(inp.hiddenStates, 15, 8, bi * 15 * 8),
        rows64(inp.encoderHiddenStates, 7, 20, bi * 7 * 20),
        Float64Array.from(inp.pooledProjections.subarray(bi * 12, bi * 12 + 12)),
        inp.timestep[bi]!,
        inp.guidance![bi],
        Array.from({ length: 15 }, (_, t) => Array.from(inp.imgIds.subarray(t * 3, t * 3 + 3))),
        Array.from({ length: 7 }, () => [0, 0, 0]),
      );
      const flat = Float64Array.from(ref.flatMap((r) => Array.from(r)));
      const err = relErr(sliceBatch(out, 2, bi), flat);
      expect(err).toBeLessThan(1e-5);
    }
  });

  it("batch 2 equals two batch-1 runs; attention query blocking does not change the result", async () => {
    const { dir } = await makeRandomModel(FLUX_RAW, 12);
    const model = await FluxTransformer.fromFolder(dir);
    const inp = fluxInputs(2, 4, 2, 5, 200);
    const both = await model.forward(inp);
    for (let bi = 0; bi < 2; bi++) {
      const one: FluxInputs = {
        ...inp,
        batch: 1,
        hiddenStates: sliceBatch(inp.hiddenStates, 2, bi),
        encoderHiddenStates: sliceBatch(inp.encoderHiddenStates, 2, bi),
        pooledProjections: sliceBatch(inp.pooledProjections, 2, bi),
        timestep: [inp.timestep[bi]!],
        guidance: [inp.guidance![bi]!],
      };
      expect(relErr(await model.forward(one), sliceBatch(both, 2, bi))).toBeLessThan(1e-6);
    }
    const a = await model.forward(inp, { attention: { queryBlock: 1 } });
    const c = await model.forward(inp, { attention: { queryBlock: Number.POSITIVE_INFINITY } });
    expect(relErr(a, both)).toBeLessThan(1e-6);
    expect(relErr(c, both)).toBeLessThan(1e-6);
    // The two batch items differ (different inputs and timesteps), so the comparison above is not vacuous.
    expect(relErr(sliceBatch(both, 2, 0), sliceBatch(both, 2, 1))).toBeGreaterThan(0.1);
  });

  it("rejects inputs of the wrong size, missing guidance and non-finite values", async () => {
    const { dir } = await makeRandomModel(FLUX_RAW, 13);
    const model = await FluxTransformer.fromFolder(dir);
    const inp = fluxInputs(1, 2, 2, 3, 300);
    await expect(model.forward({ ...inp, imgTokens: 5 })).rejects.toThrow(
      /FluxInputs.hiddenStates: has 32 values, expected \[1, 5, 8\]/,
    );
    await expect(model.forward({ ...inp, guidance: undefined })).rejects.toThrow(/guidance_embeds/);
    const bad = inp.pooledProjections.slice();
    bad[3] = Number.NaN;
    await expect(model.forward({ ...inp, pooledProjections: bad })).rejects.toThrow(
      /pooledProjections: element 3 is NaN/,
    );
  });
});

const PIX_RAW = {
  _class_name: "PixArtTransformer2DModel",
  attention_head_dim: 8,
  caption_channels: 10,
  cross_attention_dim: 16,
  in_channels: 4,
  num_attention_heads: 2,
  num_layers: 2,
  out_channels: 8,
  patch_size: 2,
  sample_size: 8,
  interpolation_scale: 0.5,
};

function pixInputs(b: number, h: number, w: number, l: number, seed: number): PixArtInputs {
  return {
    batch: b,
    height: h,
    width: w,
    textTokens: l,
    hiddenStates: randn(b * 4 * h * w, seed),
    encoderHiddenStates: randn(b * l * 10, seed + 1),
    timestep: Array.from({ length: b }, (_, i) => 500 - 377 * i),
  };
}

describe("PixArt: batch > 1, non-square grids, padded text masks", () => {
  it("matches an independent float64 forward on a 6x10 latent (3x5 patches), batch 2, with a mask", async () => {
    const { dir, weights } = await makeRandomModel(PIX_RAW, 21);
    const model = await PixArtTransformer.fromFolder(dir);
    const mask = [1, 1, 1, 0, 0, 1, 1, 1, 1, 0];
    const inp = { ...pixInputs(2, 6, 10, 5, 400), encoderAttentionMask: mask };
    const out = await model.forward(inp);
    expect(out.length).toBe(2 * 8 * 60);
    for (let bi = 0; bi < 2; bi++) {
      const ref = pixartRef64(
        weights,
        { heads: 2, layers: 2, patch: 2, inC: 4, outC: 8, sample: 8, interp: 0.5 },
        Float64Array.from(sliceBatch(inp.hiddenStates, 2, bi)),
        6,
        10,
        rows64(inp.encoderHiddenStates, 5, 10, bi * 50),
        mask.slice(bi * 5, bi * 5 + 5),
        inp.timestep[bi]!,
      );
      expect(relErr(sliceBatch(out, 2, bi), ref)).toBeLessThan(1e-5);
    }
  });

  it("padded tokens under the mask equal the run without them; the mask matters", async () => {
    const { dir } = await makeRandomModel(PIX_RAW, 22);
    const model = await PixArtTransformer.fromFolder(dir);
    const full = pixInputs(1, 8, 4, 6, 500);
    const masked = await model.forward({ ...full, encoderAttentionMask: [1, 1, 1, 1, 0, 0] });
    const short = await model.forward({
      ...full,
      textTokens: 4,
      encoderHiddenStates: full.encoderHiddenStates.slice(0, 4 * 10),
    });
    expect(relErr(masked, short)).toBeLessThan(1e-6);
    const unmasked = await model.forward(full);
    expect(relErr(unmasked, short)).toBeGreaterThan(1e-3);
  });

  it("batch 2 equals two batch-1 runs", async () => {
    const { dir } = await makeRandomModel(PIX_RAW, 23);
    const model = await PixArtTransformer.fromFolder(dir);
    const inp = { ...pixInputs(2, 4, 6, 3, 600), encoderAttentionMask: [1, 1, 0, 1, 1, 1] };
    const both = await model.forward(inp);
    for (let bi = 0; bi < 2; bi++) {
      const one = await model.forward({
        ...inp,
        batch: 1,
        hiddenStates: sliceBatch(inp.hiddenStates, 2, bi),
        encoderHiddenStates: sliceBatch(inp.encoderHiddenStates, 2, bi),
        encoderAttentionMask: inp.encoderAttentionMask.slice(bi * 3, bi * 3 + 3),
        timestep: [inp.timestep[bi]!],
      });
      expect(relErr(one, sliceBatch(both, 2, bi))).toBeLessThan(1e-6);
    }
  });

  it("rejects latents that are not a multiple of the patch size", async () => {
    const { dir } = await makeRandomModel(PIX_RAW, 24);
    const model = await PixArtTransformer.fromFolder(dir);
    await expect(model.forward({ ...pixInputs(1, 4, 4, 2, 1), height: 5 })).rejects.toThrow(
      /multiples of patch_size 2/,
    );
  });
});
