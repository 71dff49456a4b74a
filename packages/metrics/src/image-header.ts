import { inflateSync } from "node:zlib";
import { MetricsError } from "./errors.js";

/*
 * Image dimensions are read from the file's own header (PNG IHDR, JPEG SOFn) and capped BEFORE any decoder runs:
 * a 100-byte PNG can claim 2^31 pixels (zlib then aborts the process) and a PNG of a few MB can inflate to GBs.
 * PNG image data is also inflated here once, bounded by the size the header implies, and must be exactly that
 * size: a truncated or short IDAT stream is rejected instead of decoding to a silently black image.
 */

/**
 * Largest image accepted: 2^25 pixels (e.g. 8192 x 4096), 32x the 1024² outputs of the evaluated models; the
 * worst-case decode (16-bit RGBA PNG) then holds < 0.6 GB.
 */
export const MAX_IMAGE_PIXELS = 1 << 25;
/** Largest side accepted (the JPEG format's own limit, 16-bit SOF fields). */
export const MAX_IMAGE_SIDE = 65535;
/** Largest image file read. */
export const MAX_IMAGE_FILE_BYTES = 512 * 1024 * 1024;

export interface ImageHeader {
  format: "png" | "jpeg";
  width: number;
  height: number;
}

function bad(file: string, message: string): MetricsError {
  return new MetricsError("E_DECODE", message, { file });
}

export function checkDimensions(width: number, height: number, file: string): void {
  if (width < 1 || height < 1) throw bad(file, `image header declares ${width}x${height} pixels`);
  if (width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE || width * height > MAX_IMAGE_PIXELS)
    throw new MetricsError(
      "E_IMAGE_TOO_LARGE",
      `image header declares ${width}x${height} pixels, more than the ${MAX_IMAGE_PIXELS}-pixel (${MAX_IMAGE_SIDE} per side) limit`,
      { file },
    );
}

// PNG (ISO/IEC 15948, W3C PNG 2nd ed. §5.3, §11.2.2): signature, then chunks LENGTH(4) TYPE(4) DATA CRC(4).
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
// Samples per pixel by colour type (§11.2.2 table 11.1): 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA.
const PNG_CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
// Allowed bit depths per colour type (table 11.1).
const PNG_DEPTHS: Record<number, number[]> = {
  0: [1, 2, 4, 8, 16],
  2: [8, 16],
  3: [1, 2, 4, 8],
  4: [8, 16],
  6: [8, 16],
};
// Adam7 passes (§8.2): x0, y0, dx, dy.
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
];

export function isPng(buf: Uint8Array): boolean {
  return buf.length >= 8 && PNG_SIGNATURE.every((b, i) => buf[i] === b);
}

export function isJpeg(buf: Uint8Array): boolean {
  return buf.length >= 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff;
}

/** Bytes of filtered scanlines (with their filter bytes) a PNG of this header must inflate to. */
function pngRawBytes(w: number, h: number, bitsPerPixel: number, interlaced: boolean): number {
  const rowBytes = (width: number): number => (width === 0 ? 0 : 1 + Math.ceil((width * bitsPerPixel) / 8));
  if (!interlaced) return h * rowBytes(w);
  let total = 0;
  for (const [x0, y0, dx, dy] of ADAM7) {
    const pw = Math.ceil((w - x0) / dx);
    const ph = Math.ceil((h - y0) / dy);
    if (pw > 0 && ph > 0) total += ph * rowBytes(pw);
  }
  return total;
}

/**
 * Walk a PNG's chunks: signature, IHDR first with valid fields and capped dimensions, every chunk inside the file,
 * IDAT data inflating to exactly the scanline bytes IHDR implies, IEND present. Throws MetricsError otherwise.
 */
export function checkPng(buf: Uint8Array, file: string): ImageHeader {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const type = (at: number): string => String.fromCharCode(buf[at]!, buf[at + 1]!, buf[at + 2]!, buf[at + 3]!);
  if (buf.length < 8 + 8 + 13 + 4 || type(12) !== "IHDR" || view.getUint32(8) !== 13)
    throw bad(file, "PNG does not start with a 13-byte IHDR chunk");
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  const depth = buf[24]!;
  const colorType = buf[25]!;
  const interlace = buf[28]!;
  if (PNG_CHANNELS[colorType] === undefined || !PNG_DEPTHS[colorType]!.includes(depth))
    throw bad(file, `PNG colour type ${colorType} with bit depth ${depth} is not valid`);
  if (buf[26] !== 0 || buf[27] !== 0 || interlace > 1)
    throw bad(file, `PNG compression/filter/interlace methods ${buf[26]}/${buf[27]}/${interlace} are not valid`);
  checkDimensions(width, height, file);
  const idat: Uint8Array[] = [];
  let pos = 8;
  let ended = false;
  while (pos < buf.length) {
    if (pos + 12 > buf.length) throw bad(file, `PNG is truncated inside a chunk header at byte ${pos}`);
    const len = view.getUint32(pos);
    const t = type(pos + 4);
    if (pos + 12 + len > buf.length)
      throw bad(file, `PNG is truncated: chunk ${JSON.stringify(t)} at byte ${pos} runs past the end of the file`);
    if (t === "IDAT") idat.push(buf.subarray(pos + 8, pos + 8 + len));
    pos += 12 + len;
    if (t === "IEND") {
      ended = true;
      break;
    }
  }
  if (!ended) throw bad(file, "PNG is truncated: no IEND chunk");
  if (idat.length === 0) throw bad(file, "PNG has no image data (IDAT)");
  const expected = pngRawBytes(width, height, PNG_CHANNELS[colorType]! * depth, interlace === 1);
  let raw: Buffer;
  try {
    // One byte more than expected: a longer stream is caught without inflating all of it.
    raw = inflateSync(Buffer.concat(idat), { maxOutputLength: expected + 1 });
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === "ERR_BUFFER_TOO_LARGE")
      throw bad(file, `PNG image data inflates to more than the ${expected} bytes its header implies`);
    throw new MetricsError("E_DECODE", `PNG image data is corrupt or truncated (${(cause as Error).message})`, {
      file,
      cause,
    });
  }
  if (raw.length !== expected)
    throw bad(
      file,
      `PNG image data inflates to ${raw.length} bytes, its ${width}x${height} header implies ${expected}`,
    );
  return { format: "png", width, height };
}

/**
 * Find a JPEG's frame header (SOF0–SOF15 but DHT/JPG/DAC, ITU-T T.81 §B.2.2) walking the marker segments before
 * the first scan, and cap its dimensions. Throws MetricsError when there is none.
 */
export function checkJpeg(buf: Uint8Array, file: string): ImageHeader {
  let pos = 2;
  while (pos + 4 <= buf.length) {
    if (buf[pos] !== 0xff) throw bad(file, `JPEG marker expected at byte ${pos}`);
    const marker = buf[pos + 1]!;
    if (marker === 0xff) {
      pos++; // fill byte (§B.1.1.2)
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      pos += 2; // standalone markers
      continue;
    }
    const len = (buf[pos + 2]! << 8) | buf[pos + 3]!;
    if (len < 2 || pos + 2 + len > buf.length) throw bad(file, `JPEG is truncated: segment at byte ${pos}`);
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) {
      if (len < 8) throw bad(file, "JPEG frame header is too short");
      const height = (buf[pos + 5]! << 8) | buf[pos + 6]!;
      const width = (buf[pos + 7]! << 8) | buf[pos + 8]!;
      // height 0 means "defined by a later DNL marker" (§B.2.5), which the decoder does not support.
      checkDimensions(width, height, file);
      return { format: "jpeg", width, height };
    }
    if (marker === 0xda || marker === 0xd9) break; // a scan or the end before any frame header
    pos += 2 + len;
  }
  throw bad(file, "JPEG has no frame header (SOF) before its first scan");
}
