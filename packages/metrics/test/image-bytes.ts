// Builders of raw PNG/JPEG bytes for the hardening tests: chunks with valid CRCs, so that only the part under test
// (a dimension, a truncated stream) is wrong.
import { crc32, deflateSync } from "node:zlib";

export function pngChunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0);
  return Buffer.concat([head, data, crc]);
}

export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function ihdr(width: number, height: number, depth = 8, colorType = 2, interlace = 0): Buffer {
  const d = Buffer.alloc(13);
  d.writeUInt32BE(width >>> 0, 0);
  d.writeUInt32BE(height >>> 0, 4);
  d[8] = depth;
  d[9] = colorType;
  d[12] = interlace;
  return pngChunk("IHDR", d);
}

/** A PNG from an IHDR and the given (already filtered) scanline bytes, deflated. */
export function pngFromRaw(width: number, height: number, raw: Uint8Array, colorType = 2): Buffer {
  return Buffer.concat([
    PNG_SIGNATURE,
    ihdr(width, height, 8, colorType),
    pngChunk("IDAT", deflateSync(raw)),
    pngChunk("IEND", new Uint8Array(0)),
  ]);
}

/** A minimal JPEG prefix: SOI, then a baseline SOF0 declaring width x height, then EOI (no scan). */
export function jpegWithSof(width: number, height: number): Buffer {
  const sof = Buffer.from([0xff, 0xc0, 0, 11, 8, height >> 8, height & 255, width >> 8, width & 255, 1, 1, 0x11, 0]);
  return Buffer.concat([Buffer.from([0xff, 0xd8]), sof, Buffer.from([0xff, 0xd9])]);
}
