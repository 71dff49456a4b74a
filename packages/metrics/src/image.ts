import { MetricsError } from "./errors.js";

/**
 * An RGB image as planar float data in [0, 1] (the layout torchmetrics and the ONNX graphs take).
 *
 * | field  | shape / type                         |
 * | ------ | ------------------------------------ |
 * | data   | Float32Array [3, height, width], CHW |
 */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Float32Array;
  /** Where the image came from, for error messages. */
  readonly name?: string;
}

/** An 8-bit RGB image as decoded from PNG/JPEG: Uint8Array [height, width, 3], HWC. */
export interface Rgb8Image {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
  readonly name?: string;
}

function describe(img: { width: number; height: number; name?: string }): string {
  return `${img.name ?? "image"} (${img.width}x${img.height})`;
}

/** Check that an RgbImage's buffer fits its size. */
export function checkImage(img: RgbImage): void {
  if (!Number.isInteger(img.width) || !Number.isInteger(img.height) || img.width <= 0 || img.height <= 0) {
    throw new MetricsError("E_SHAPE", `invalid image size ${img.width}x${img.height}`, { file: img.name });
  }
  if (img.data.length !== 3 * img.width * img.height) {
    throw new MetricsError(
      "E_SHAPE",
      `data of length ${img.data.length} does not fit [3, ${img.height}, ${img.width}]`,
      { file: img.name },
    );
  }
}

/** Throw E_SIZE_MISMATCH unless both images have the same width and height. */
export function checkSameSize(a: { width: number; height: number; name?: string }, b: typeof a): void {
  if (a.width !== b.width || a.height !== b.height) {
    throw new MetricsError("E_SIZE_MISMATCH", `images differ in size: ${describe(a)} vs ${describe(b)}`, {
      file: b.name ?? a.name,
    });
  }
}

/** HWC uint8 → CHW float in [0, 1] (x / 255, as torchvision's ToTensor). */
export function toPlanar(img: Rgb8Image): RgbImage {
  const { width, height, data } = img;
  const hw = width * height;
  if (data.length !== 3 * hw) {
    throw new MetricsError("E_SHAPE", `data of length ${data.length} does not fit [${height}, ${width}, 3]`, {
      file: img.name,
    });
  }
  const out = new Float32Array(3 * hw);
  for (let p = 0, q = 0; p < hw; p++, q += 3) {
    out[p] = data[q] / 255;
    out[hw + p] = data[q + 1] / 255;
    out[2 * hw + p] = data[q + 2] / 255;
  }
  return img.name === undefined ? { width, height, data: out } : { width, height, data: out, name: img.name };
}
