/**
 * PNG encoding of generated images with their settings as tEXt chunks (PNG spec §11.3.4.3: keyword, NUL,
 * Latin-1 text), written after IHDR so viewers and `exiftool` show them.
 */
import { crc32 } from "node:zlib";
import { PNG } from "pngjs";
import { PipelineError } from "./errors.js";

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

/** RGB8 [H, W, 3] → PNG bytes with `text` as tEXt chunks (keys 1–79 Latin-1 characters). */
export function encodePng(
  rgb: Uint8Array,
  width: number,
  height: number,
  text: Readonly<Record<string, string>> = {},
): Buffer {
  if (rgb.length !== width * height * 3)
    throw new PipelineError("E_CONFIG", `image has ${rgb.length} bytes, expected ${height}×${width}×3`);
  const png = new PNG({ width, height, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  png.data = Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength);
  const bytes = PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
  const texts = Object.entries(text).map(([k, v]) => {
    if (!/^[\x20-\x7e]{1,79}$/.test(k))
      throw new PipelineError("E_CONFIG", `PNG text key "${k}" is not 1–79 printable characters`);
    return chunk(
      "tEXt",
      Buffer.concat([
        Buffer.from(k, "latin1"),
        Buffer.from([0]),
        Buffer.from(v.replace(/[^\x20-\x7e\n]/g, "?"), "latin1"),
      ]),
    );
  });
  const ihdrEnd = 8 + 8 + 13 + 4; // signature, IHDR length/type, 13 data bytes, CRC
  return Buffer.concat([bytes.subarray(0, ihdrEnd), ...texts, bytes.subarray(ihdrEnd)]);
}

/** The tEXt chunks of a PNG (for tests and tools). */
export function readPngText(png: Uint8Array): Record<string, string> {
  const b = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  const out: Record<string, string> = {};
  let o = 8;
  while (o + 12 <= b.length) {
    const len = b.readUInt32BE(o);
    const type = b.toString("latin1", o + 4, o + 8);
    if (type === "tEXt") {
      const data = b.subarray(o + 8, o + 8 + len);
      const z = data.indexOf(0);
      out[data.toString("latin1", 0, z)] = data.toString("latin1", z + 1);
    }
    if (type === "IEND") break;
    o += 12 + len;
  }
  return out;
}
