import { readFile, rename, rm, writeFile } from "node:fs/promises";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { MetricsError } from "./errors.js";
import type { Rgb8Image } from "./image.js";

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

/**
 * Decode a PNG (any bit depth/color type; 16-bit scaled to 8) or baseline/progressive JPEG into 8-bit RGB. An alpha
 * channel is dropped without compositing, as Pillow's `convert("RGB")` does. The format is taken from the file's
 * magic bytes, not its extension.
 */
export async function readImage(path: string): Promise<Rgb8Image> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (cause) {
    throw new MetricsError("E_IO", `cannot read image: ${(cause as Error).message}`, { file: path, cause });
  }
  return decodeImage(buf, path);
}

export function decodeImage(buf: Uint8Array, name: string): Rgb8Image {
  try {
    if (buf.length >= 8 && buf[0] === 0x89 && buf[1] === 0x50 && buf[2] === 0x4e && buf[3] === 0x47) {
      const png = PNG.sync.read(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
      return { width: png.width, height: png.height, data: rgbaToRgb(png.data, png.width, png.height), name };
    }
    if (buf.length >= 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff) {
      const j = jpeg.decode(buf, { useTArray: true, formatAsRGBA: true });
      return { width: j.width, height: j.height, data: rgbaToRgb(j.data, j.width, j.height), name };
    }
  } catch (cause) {
    throw new MetricsError("E_DECODE", `cannot decode image: ${(cause as Error).message}`, { file: name, cause });
  }
  throw new MetricsError("E_DECODE", "not a PNG or JPEG file", { file: name });
}

/** Write an 8-bit RGB image as PNG, through a temp file renamed into place. */
export async function writePng(path: string, img: Rgb8Image): Promise<void> {
  const png = new PNG({ width: img.width, height: img.height, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  png.data = Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength);
  const bytes = PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  } catch (cause) {
    await rm(tmp, { force: true });
    throw new MetricsError("E_IO", `cannot write PNG: ${(cause as Error).message}`, { file: path, cause });
  }
}
