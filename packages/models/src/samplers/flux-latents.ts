import { ModelError } from "../errors.js";

/**
 * FLUX latent geometry (FluxPipeline.prepare_latents / _pack_latents / _unpack_latents).
 *
 * | tensor  | shape                     | notes                                        |
 * | ------- | ------------------------- | -------------------------------------------- |
 * | latents | [B, C, H, W]              | VAE latents, H = 2·⌊height / (2·vaeScale)⌋    |
 * | packed  | [B, (H/2)·(W/2), 4·C]     | 2x2 patches, channel-major inside a patch     |
 * | imgIds  | [(H/2)·(W/2), 3]          | (0, row, col) per patch                       |
 */
export interface FluxLatentShape {
  /** Latent height and width (even). */
  readonly h: number;
  readonly w: number;
  /** Image tokens (H/2)·(W/2): the transformer's sequence length and calculate_shift's input. */
  readonly imageSeqLen: number;
}

/** Latent size for an image of height x width pixels; vaeScaleFactor = 2^(len(block_out_channels) − 1) = 8 for FLUX. */
export function fluxLatentShape(height: number, width: number, vaeScaleFactor = 8): FluxLatentShape {
  const h = 2 * Math.floor(height / (vaeScaleFactor * 2));
  const w = 2 * Math.floor(width / (vaeScaleFactor * 2));
  if (!Number.isSafeInteger(height) || !Number.isSafeInteger(width) || h < 2 || w < 2)
    throw new ModelError(
      "E_INPUT",
      `image size ${height}x${width} is too small or not integral (at least ${2 * vaeScaleFactor} pixels a side)`,
      "fluxLatentShape",
    );
  return { h, w, imageSeqLen: (h / 2) * (w / 2) };
}

function check(x: Float32Array, n: number, what: string, shape: string): void {
  if (x.length !== n) throw new ModelError("E_SHAPE", `has ${x.length} values, expected ${shape}`, what);
  if (n === 0) throw new ModelError("E_SHAPE", "is empty", what);
}

/** [B, C, H, W] → [B, (H/2)(W/2), 4C] (FluxPipeline._pack_latents). */
export function packFluxLatents(lat: Float32Array, b: number, c: number, h: number, w: number): Float32Array {
  if (h % 2 !== 0 || w % 2 !== 0) throw new ModelError("E_SHAPE", `H=${h}, W=${w} must be even`, "packFluxLatents");
  check(lat, b * c * h * w, "packFluxLatents", `[${b}, ${c}, ${h}, ${w}]`);
  const out = new Float32Array(lat.length);
  const h2 = h / 2;
  const w2 = w / 2;
  let o = 0;
  for (let bi = 0; bi < b; bi++)
    for (let i = 0; i < h2; i++)
      for (let j = 0; j < w2; j++)
        for (let ci = 0; ci < c; ci++)
          for (let di = 0; di < 2; di++)
            for (let dj = 0; dj < 2; dj++) out[o++] = lat[((bi * c + ci) * h + 2 * i + di) * w + 2 * j + dj]!;
  return out;
}

/** [B, (H/2)(W/2), 4C] → [B, C, H, W] (FluxPipeline._unpack_latents). */
export function unpackFluxLatents(packed: Float32Array, b: number, c: number, h: number, w: number): Float32Array {
  if (h % 2 !== 0 || w % 2 !== 0) throw new ModelError("E_SHAPE", `H=${h}, W=${w} must be even`, "unpackFluxLatents");
  check(packed, b * c * h * w, "unpackFluxLatents", `[${b}, ${(h / 2) * (w / 2)}, ${4 * c}]`);
  const out = new Float32Array(packed.length);
  const h2 = h / 2;
  const w2 = w / 2;
  let o = 0;
  for (let bi = 0; bi < b; bi++)
    for (let i = 0; i < h2; i++)
      for (let j = 0; j < w2; j++)
        for (let ci = 0; ci < c; ci++)
          for (let di = 0; di < 2; di++)
            for (let dj = 0; dj < 2; dj++) out[((bi * c + ci) * h + 2 * i + di) * w + 2 * j + dj] = packed[o++]!;
  return out;
}

/** FluxPipeline._prepare_latent_image_ids: [(H/2)(W/2), 3] rows (0, row, col). */
export function fluxImageIds(h2: number, w2: number): Float32Array {
  const ids = new Float32Array(h2 * w2 * 3);
  for (let i = 0; i < h2; i++)
    for (let j = 0; j < w2; j++) {
      ids[(i * w2 + j) * 3 + 1] = i;
      ids[(i * w2 + j) * 3 + 2] = j;
    }
  return ids;
}

/** The transformer's timestep input for scheduler timestep t: `t / 1000` in float32 (FluxPipeline). */
export function fluxTimestepInput(t: number): number {
  return Math.fround(Math.fround(t) / 1000);
}
