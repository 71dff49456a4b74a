/**
 * PixArt's resolution binning (diffusers' PixArtSigmaPipeline with `use_resolution_binning=True`, its default):
 * the requested size is replaced by the closest trained aspect-ratio bin of the transformer's sample_size, the
 * image is generated at the bin's size, and the decoded image is resized (bilinear) and center-cropped back to the
 * requested size (PixArtImageProcessor.classify_height_width_bin / resize_and_crop_tensor).
 */
import { PipelineError } from "./errors.js";

/** One bin: aspect ratio (height / width, as the table's key) → [height, width] in pixels. */
export type AspectRatioBin = readonly [ratio: number, height: number, width: number];

// diffusers pipeline_pixart_alpha.py ASPECT_RATIO_256_BIN (ratio: height x width); the 512 and 1024 tables are the
// same ratios at 2x and 4x the sizes, the 2048 table (pipeline_pixart_sigma.py) at 8x with seven more ratios.
const BASE_256: readonly AspectRatioBin[] = (
  [
    [0.25, 128, 512],
    [0.28, 128, 464],
    [0.32, 144, 448],
    [0.33, 144, 432],
    [0.35, 144, 416],
    [0.4, 160, 400],
    [0.42, 160, 384],
    [0.48, 176, 368],
    [0.5, 176, 352],
    [0.52, 176, 336],
    [0.57, 192, 336],
    [0.6, 192, 320],
    [0.68, 208, 304],
    [0.72, 208, 288],
    [0.78, 224, 288],
    [0.82, 224, 272],
    [0.88, 240, 272],
    [0.94, 240, 256],
    [1.0, 256, 256],
    [1.07, 256, 240],
    [1.13, 272, 240],
    [1.21, 272, 224],
    [1.29, 288, 224],
    [1.38, 288, 208],
    [1.46, 304, 208],
    [1.67, 320, 192],
    [1.75, 336, 192],
    [2.0, 352, 176],
    [2.09, 368, 176],
    [2.4, 384, 160],
    [2.5, 400, 160],
    [3.0, 432, 144],
    [4.0, 512, 128],
  ] as const
).map((b) => b as AspectRatioBin);

/** ASPECT_RATIO_2048_BIN's ratios beyond the base table (pipeline_pixart_sigma.py), sizes in pixels. */
const EXTRA_2048: readonly AspectRatioBin[] = [
  [0.26, 1024, 3968],
  [0.27, 1024, 3840],
  [2.89, 3328, 1152],
  [3.11, 3584, 1152],
  [3.62, 3712, 1024],
  [3.75, 3840, 1024],
  [3.88, 3968, 1024],
];

const scaled = (m: number): AspectRatioBin[] => BASE_256.map(([r, h, w]) => [r, h * m, w * m] as const);

/** The bin table of a PixArt transformer's sample_size (256 → 2048 px, 128 → 1024, 64 → 512, 32 → 256), ratios ascending. */
export function aspectRatioBins(sampleSize: number): readonly AspectRatioBin[] {
  switch (sampleSize) {
    case 256:
      return [...scaled(8), ...EXTRA_2048].sort((a, b) => a[0] - b[0]);
    case 128:
      return scaled(4);
    case 64:
      return scaled(2);
    case 32:
      return scaled(1);
    default:
      throw new PipelineError(
        "E_CONFIG",
        `resolution binning needs a transformer sample_size of 32, 64, 128 or 256, got ${sampleSize} (turn binning off)`,
      );
  }
}

/** The bin closest in aspect ratio to height/width (the first of equals, in ascending ratio order). */
export function classifyHeightWidthBin(
  height: number,
  width: number,
  bins: readonly AspectRatioBin[],
): { height: number; width: number } {
  const ar = height / width;
  let best = bins[0]!;
  for (const b of bins) if (Math.abs(b[0] - ar) < Math.abs(best[0] - ar)) best = b;
  return { height: best[1], width: best[2] };
}

/**
 * resize_and_crop_tensor: scale [B, C, H, W] by max(newH/H, newW/W) (bilinear, align_corners=False, no antialias:
 * torch.nn.functional.interpolate), then center-crop to [B, C, newH, newW]. float32 output.
 */
export function resizeAndCrop(
  image: Float32Array,
  batch: number,
  channels: number,
  height: number,
  width: number,
  newHeight: number,
  newWidth: number,
): Float32Array {
  if (height === newHeight && width === newWidth) return image;
  const ratio = Math.max(newHeight / height, newWidth / width);
  const rw = Math.trunc(width * ratio);
  const rh = Math.trunc(height * ratio);
  const x0 = Math.floor((rw - newWidth) / 2);
  const y0 = Math.floor((rh - newHeight) / 2);
  if (rw < newWidth || rh < newHeight || x0 < 0 || y0 < 0)
    throw new PipelineError("E_CONFIG", `cannot crop ${rh}×${rw} to ${newHeight}×${newWidth}`);
  // torch's source index: scale·(dst + 0.5) − 0.5 clamped at 0, scale = in/out (float32), neighbour i0 and
  // min(i0 + 1, in − 1), weights λ and 1 − λ.
  const axis = (inSize: number, outSize: number, start: number, n: number) => {
    const scale = Math.fround(inSize / outSize);
    const i0 = new Int32Array(n);
    const i1 = new Int32Array(n);
    const l1 = new Float32Array(n);
    for (let k = 0; k < n; k++) {
      const src = Math.max(Math.fround(Math.fround(scale * (start + k + 0.5)) - 0.5), 0);
      const lo = Math.min(Math.floor(src), inSize - 1);
      i0[k] = lo;
      i1[k] = lo < inSize - 1 ? lo + 1 : lo;
      l1[k] = Math.fround(src - lo);
    }
    return { i0, i1, l1 };
  };
  const ys = axis(height, rh, y0, newHeight);
  const xs = axis(width, rw, x0, newWidth);
  const out = new Float32Array(batch * channels * newHeight * newWidth);
  for (let p = 0; p < batch * channels; p++) {
    const src = image.subarray(p * height * width, (p + 1) * height * width);
    for (let y = 0; y < newHeight; y++) {
      const a = ys.i0[y]! * width;
      const b = ys.i1[y]! * width;
      const wy1 = ys.l1[y]!;
      const wy0 = 1 - wy1;
      for (let x = 0; x < newWidth; x++) {
        const c0 = xs.i0[x]!;
        const c1 = xs.i1[x]!;
        const wx1 = xs.l1[x]!;
        const wx0 = 1 - wx1;
        out[(p * newHeight + y) * newWidth + x] =
          wy0 * (wx0 * src[a + c0]! + wx1 * src[a + c1]!) + wy1 * (wx0 * src[b + c0]! + wx1 * src[b + c1]!);
      }
    }
  }
  return out;
}
