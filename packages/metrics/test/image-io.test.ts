import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { describe, expect, it } from "vitest";
import { readImage, writePng } from "../src/index.js";
import { rng } from "./helpers.js";

const dir = mkdtempSync(join(tmpdir(), "svdq-io-"));

describe("image I/O", () => {
  it("writes an RGB PNG and reads back the same bytes", async () => {
    const r = rng(1);
    const data = Uint8Array.from({ length: 7 * 5 * 3 }, () => Math.floor(256 * r()));
    const p = join(dir, "a.png");
    await writePng(p, { width: 7, height: 5, data });
    const img = await readImage(p);
    expect([img.width, img.height]).toEqual([7, 5]);
    expect(Array.from(img.data)).toEqual(Array.from(data));
  });

  it("reads RGBA PNGs dropping alpha (Pillow convert('RGB')) and 16-bit PNGs scaled to 8 bits", async () => {
    const rgba = new PNG({ width: 2, height: 1 });
    rgba.data = Buffer.from([10, 20, 30, 0, 200, 100, 50, 128]);
    writeFileSync(join(dir, "rgba.png"), PNG.sync.write(rgba));
    expect(Array.from((await readImage(join(dir, "rgba.png"))).data)).toEqual([10, 20, 30, 200, 100, 50]);
    const deep = new PNG({ width: 1, height: 1, bitDepth: 16, colorType: 2, inputColorType: 2, inputHasAlpha: false });
    // pngjs packs 16-bit input given as 16-bit values
    (deep as unknown as { data: Uint16Array }).data = Uint16Array.from([65535, 0, 32896]);
    writeFileSync(
      join(dir, "deep.png"),
      PNG.sync.write(deep, { bitDepth: 16, colorType: 2, inputColorType: 2, inputHasAlpha: false }),
    );
    expect(readFileSync(join(dir, "deep.png"))[24]).toBe(16); // IHDR bit depth
    const d = await readImage(join(dir, "deep.png"));
    expect(Array.from(d.data)).toEqual([255, 0, 128]);
  });

  it("reads JPEGs by their magic bytes, whatever the extension", async () => {
    const w = 16;
    const h = 8;
    const rgba = new Uint8Array(w * h * 4);
    for (let p = 0; p < w * h; p++) rgba.set([200, 60, 30, 255], p * 4);
    const enc = jpeg.encode({ data: rgba, width: w, height: h }, 100);
    writeFileSync(join(dir, "b.png"), enc.data); // misnamed on purpose
    const img = await readImage(join(dir, "b.png"));
    expect([img.width, img.height]).toEqual([w, h]);
    for (let p = 0; p < w * h; p++) {
      expect(Math.abs(img.data[p * 3] - 200)).toBeLessThanOrEqual(3);
      expect(Math.abs(img.data[p * 3 + 1] - 60)).toBeLessThanOrEqual(3);
      expect(Math.abs(img.data[p * 3 + 2] - 30)).toBeLessThanOrEqual(3);
    }
  });

  it("errors name the file: missing, not an image, truncated PNG", async () => {
    await expect(readImage(join(dir, "none.png"))).rejects.toMatchObject({ code: "E_IO" });
    writeFileSync(join(dir, "text.png"), "hello");
    await expect(readImage(join(dir, "text.png"))).rejects.toThrow(/text\.png: not a PNG or JPEG file/);
    const good = PNG.sync.write(Object.assign(new PNG({ width: 4, height: 4 }), { data: Buffer.alloc(64, 7) }));
    writeFileSync(join(dir, "cut.png"), good.subarray(0, good.length - 20));
    await expect(readImage(join(dir, "cut.png"))).rejects.toMatchObject({ code: "E_DECODE" });
  });
});
