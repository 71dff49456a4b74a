import { readInputFile, TensorError, writeFileAtomic } from "@svdquant/tensor";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { MetricsError } from "./errors.js";
import type { Rgb8Image } from "./image.js";
import { checkJpeg, checkPng, isJpeg, isPng, MAX_IMAGE_FILE_BYTES, MAX_IMAGE_PIXELS } from "./image-header.js";

/** File extensions the evaluation reads. */
export const IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg"] as const;

function rgbaToRgb(rgba: Uint8Array | Buffer, width: number, height: number): Uint8Array {
  const out = new Uint8Array(width * height * 3);
  for (let p = 0, q = 0; p < width * height; p++, q += 4) {
    out[p * 3] = rgba[q];
    out[p * 3 + 1] = rgba[q + 1];
    out[p * 3 + 2] = rgba[q + 2];
  }
  return out;
}

/** A TensorError from the shared file helpers, as this package's error (same file, same detail). */
function fromTensorError(err: unknown, file: string): unknown {
  if (!(err instanceof TensorError)) return err;
  const code = err.code === "E_NOT_FILE" ? "E_NOT_FILE" : err.code === "E_TOO_LARGE" ? "E_IMAGE_TOO_LARGE" : "E_IO";
  return new MetricsError(code, err.detail, { file: err.file ?? file, cause: err });
}

/**
 * Decode a PNG (any bit depth/color type; 16-bit scaled to 8) or baseline/progressive JPEG into 8-bit RGB. An alpha
 * channel is dropped without compositing, as Pillow's `convert("RGB")` does. The format is taken from the file's
 * magic bytes, not its extension. Only regular files are read (a FIFO fails at once), at most
 * MAX_IMAGE_FILE_BYTES; see `decodeImage` for the checks on the content.
 */
export async function readImage(path: string): Promise<Rgb8Image> {
  let buf: Buffer;
  try {
    buf = await readInputFile(path, MAX_IMAGE_FILE_BYTES);
  } catch (err) {
    throw fromTensorError(err, path);
  }
  return decodeImage(buf, path);
}

/**
 * Decode PNG/JPEG bytes. The dimensions are read from IHDR/SOF and capped (MAX_IMAGE_PIXELS, E_IMAGE_TOO_LARGE)
 * before decoding; truncated or short image data is E_DECODE, never a partly black image.
 */
export function decodeImage(buf: Uint8Array, name: string): Rgb8Image {
  const png = isPng(buf);
  if (!png && !isJpeg(buf)) throw new MetricsError("E_DECODE", "not a PNG or JPEG file", { file: name });
  const header = png ? checkPng(buf, name) : checkJpeg(buf, name);
  let width: number;
  let height: number;
  let rgba: Uint8Array;
  try {
    if (png) {
      const p = PNG.sync.read(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
      ({ width, height } = p);
      rgba = p.data;
    } else {
      const j = jpeg.decode(buf, {
        useTArray: true,
        formatAsRGBA: true,
        maxResolutionInMP: MAX_IMAGE_PIXELS / 1e6, // the same cap, in case a later SOF disagrees
        maxMemoryUsageInMB: 1024,
      });
      ({ width, height } = j);
      rgba = j.data;
    }
  } catch (cause) {
    throw new MetricsError("E_DECODE", `cannot decode image: ${(cause as Error).message}`, { file: name, cause });
  }
  if (width !== header.width || height !== header.height || rgba.length !== width * height * 4)
    throw new MetricsError(
      "E_DECODE",
      `decoded ${width}x${height} (${rgba.length} bytes) but the header declares ${header.width}x${header.height}`,
      { file: name },
    );
  return { width, height, data: rgbaToRgb(rgba, width, height), name };
}

/** Write an 8-bit RGB image as PNG, atomically (`writeFileAtomic` of @svdquant/tensor). */
export async function writePng(path: string, img: Rgb8Image): Promise<void> {
  const png = new PNG({ width: img.width, height: img.height, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  png.data = Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength);
  const bytes = PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
  try {
    await writeFileAtomic(path, bytes);
  } catch (err) {
    throw fromTensorError(err, path);
  }
}
