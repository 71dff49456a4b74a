import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { decodeImage, MAX_IMAGE_PIXELS, readImage, writePng } from "../src/index.js";
import { rng } from "./helpers.js";
import { ihdr, jpegWithSof, PNG_SIGNATURE, pngChunk, pngFromRaw } from "./image-bytes.js";

const dir = mkdtempSync(join(tmpdir(), "svdq-imgh-"));

describe("image decoding limits (issue 18, findings 2, 3, 7)", () => {
  it("a ~100-byte PNG claiming 2^31 pixels is E_IMAGE_TOO_LARGE, not a zlib abort", () => {
    const png = Buffer.concat([
      PNG_SIGNATURE,
      ihdr(65536, 32768),
      pngChunk("IDAT", deflateSync(Buffer.alloc(64))),
      pngChunk("IEND", new Uint8Array(0)),
    ]);
    expect(png.length).toBeLessThan(200);
    expect(() => decodeImage(png, "huge.png")).toThrow(
      expect.objectContaining({
        code: "E_IMAGE_TOO_LARGE",
        message: expect.stringMatching(/^huge\.png: .*65536x32768/),
      }),
    );
  });

  it("a PNG bomb (20000² zeros, a few hundred KB) is refused from its header, in bounded memory", () => {
    const w = 20000;
    const rows = 64; // only the first rows are compressed: the header is what must stop it
    const raw = Buffer.alloc(rows * (1 + 3 * w));
    const png = Buffer.concat([
      PNG_SIGNATURE,
      ihdr(w, w),
      pngChunk("IDAT", deflateSync(raw)),
      pngChunk("IEND", new Uint8Array(0)),
    ]);
    const before = process.memoryUsage().rss;
    expect(() => decodeImage(png, "bomb.png")).toThrow(expect.objectContaining({ code: "E_IMAGE_TOO_LARGE" }));
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  });

  it("PNG image data shorter than its header implies is E_DECODE, never a partly black image", () => {
    const w = 64;
    const h = 64;
    const raw = new Uint8Array(h * (1 + 3 * w)); // filter 0, black rows
    const r = rng(3);
    for (let y = 0; y < h; y++) for (let x = 0; x < 3 * w; x++) raw[y * (1 + 3 * w) + 1 + x] = Math.floor(256 * r());
    expect(decodeImage(pngFromRaw(w, h, raw), "ok.png").width).toBe(w); // the full stream decodes
    const short = pngFromRaw(w, h, raw.subarray(0, (h / 2) * (1 + 3 * w))); // a complete stream of half the rows
    expect(() => decodeImage(short, "short.png")).toThrow(
      expect.objectContaining({ code: "E_DECODE", message: expect.stringMatching(/short\.png: .*inflates to/) }),
    );
    const full = pngFromRaw(w, h, raw);
    const idatEnd = full.length - 12; // IEND is the last 12 bytes
    const cut = Buffer.concat([full.subarray(0, idatEnd - 40)]); // the file cut inside IDAT
    expect(() => decodeImage(cut, "cut.png")).toThrow(expect.objectContaining({ code: "E_DECODE" }));
  });

  it("a JPEG whose SOF declares more than the pixel cap is refused before decoding", () => {
    expect(65535 * 65535).toBeGreaterThan(MAX_IMAGE_PIXELS);
    expect(() => decodeImage(jpegWithSof(65535, 65535), "big.jpg")).toThrow(
      expect.objectContaining({ code: "E_IMAGE_TOO_LARGE" }),
    );
    expect(() => decodeImage(jpegWithSof(16, 0), "dnl.jpg")).toThrow(expect.objectContaining({ code: "E_DECODE" }));
  });

  it("a FIFO given as an image fails at once with E_NOT_FILE instead of hanging", async () => {
    const fifo = join(dir, "pipe.png");
    execFileSync("mkfifo", [fifo]);
    const t0 = Date.now();
    await expect(readImage(fifo)).rejects.toMatchObject({ code: "E_NOT_FILE", message: expect.stringMatching(/FIFO/) });
    expect(Date.now() - t0).toBeLessThan(2000);
  }, 5000);
});

describe("writePng (issue 18, finding 9)", () => {
  it("does not follow a symlink planted at a predictable temporary name", async () => {
    const victim = join(dir, "victim.txt");
    writeFileSync(victim, "precious");
    const out = join(dir, "out.png");
    // the names the old writer used: `${path}.tmp-${pid}`
    symlinkSync(victim, `${out}.tmp-${process.pid}`);
    await writePng(out, { width: 2, height: 1, data: Uint8Array.from([1, 2, 3, 4, 5, 6]) });
    expect(readFileSync(victim, "utf8")).toBe("precious");
    expect(Array.from((await readImage(out)).data)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("names the file when the folder does not exist", async () => {
    const bad = join(dir, "no-such-dir", "x.png");
    await expect(writePng(bad, { width: 1, height: 1, data: Uint8Array.from([1, 2, 3]) })).rejects.toMatchObject({
      code: "E_IO",
      message: expect.stringContaining(bad),
    });
  });
});
