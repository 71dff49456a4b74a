import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import jpeg from "jpeg-js";
import { describe, expect, it } from "vitest";
import { evaluateFolders, formatMarkdown, pairImages, psnr, readImage, toPlanar, writePng } from "../src/index.js";
import { rng } from "./helpers.js";
import { randomRgb8 } from "./reference.js";

describe("evaluateFolders", () => {
  it("pairs PNG with JPEG by name, leaves identical pairs out of the PSNR mean, reports progress", async () => {
    const root = mkdtempSync(join(tmpdir(), "svdq-evalf-"));
    const ref = join(root, "ref");
    const test = join(root, "test");
    mkdirSync(ref);
    mkdirSync(test);
    const r = rng(3);
    const a = randomRgb8(r, 24, 16);
    const b = randomRgb8(r, 24, 16);
    await writePng(join(ref, "0.png"), a);
    await writePng(join(test, "0.png"), a); // identical
    await writePng(join(ref, "1.png"), b);
    const rgba = new Uint8Array(24 * 16 * 4);
    for (let p = 0; p < 24 * 16; p++) rgba.set([...a.data.subarray(p * 3, p * 3 + 3), 255], p * 4);
    writeFileSync(join(test, "1.jpg"), jpeg.encode({ data: rgba, width: 24, height: 16 }, 90).data);
    writeFileSync(join(test, "notes.txt"), "ignored");
    const seen: number[] = [];
    const res = await evaluateFolders({ refDir: ref, testDir: test, batchSize: 1, onProgress: (d) => seen.push(d) });
    expect(seen).toEqual([1, 2]);
    expect(res.count).toBe(2);
    expect(res.identicalPairs).toBe(1);
    const want = psnr(toPlanar(b), toPlanar(await readImage(join(test, "1.jpg"))));
    expect(res.psnr).toBeCloseTo(want, 10);
    expect(res.perImage[0].psnr).toBe(Number.POSITIVE_INFINITY);
    expect(res.perImage[0].ssim).toBeCloseTo(1, 12);
    expect(res.fid).toBeNull();
    const md = formatMarkdown(res);
    expect(md).toContain(`| test (2) | — | — | — | ${want.toFixed(2)} |`);
    expect(md).toContain("1 pair(s) are identical");
  });

  it("errors: two files with one name, a folder that does not exist", async () => {
    const root = mkdtempSync(join(tmpdir(), "svdq-evalf-"));
    const r = rng(4);
    await writePng(join(root, "x.png"), randomRgb8(r, 4, 4));
    await writePng(join(root, "x.PNG.png"), randomRgb8(r, 4, 4));
    await writePng(join(root, "y.png"), randomRgb8(r, 4, 4));
    writeFileSync(join(root, "y.jpeg"), "whatever");
    await expect(pairImages(root, root)).rejects.toThrow(/two images named "y" \(.*y\.jpeg, y\.png\)/);
    await expect(pairImages(join(root, "nope"), root)).rejects.toMatchObject({ code: "E_IO" });
  });
});

describe("evaluateFolders with worker threads", () => {
  it("gives the same per-image PSNR/SSIM with several workers as in-thread, and worker errors name the file", async () => {
    const root = mkdtempSync(join(tmpdir(), "svdq-evalw-"));
    const ref = join(root, "ref");
    const test = join(root, "test");
    mkdirSync(ref);
    mkdirSync(test);
    const r = rng(8);
    for (let i = 0; i < 7; i++) {
      await writePng(join(ref, `${i}.png`), randomRgb8(r, 20 + i, 18));
      await writePng(join(test, `${i}.png`), randomRgb8(r, 20 + i, 18));
    }
    const one = await evaluateFolders({ refDir: ref, testDir: test, batchSize: 4 });
    const workers = Math.min(3, availableParallelism()); // threads are capped at the available parallelism
    const three = await evaluateFolders({ refDir: ref, testDir: test, batchSize: 4, threads: workers });
    expect(three.perImage).toEqual(one.perImage);
    expect(three.ssim).toBe(one.ssim);
    writeFileSync(join(test, "3.png"), "broken");
    await expect(evaluateFolders({ refDir: ref, testDir: test, threads: workers })).rejects.toThrow(
      /3\.png: not a PNG or JPEG file/,
    );
    await expect(evaluateFolders({ refDir: ref, testDir: test, threads: 0 })).rejects.toThrow(
      /threads must be an integer in \[1, /,
    );
    await expect(
      evaluateFolders({ refDir: ref, testDir: test, threads: availableParallelism() + 1 }),
    ).rejects.toMatchObject({ code: "E_ARGUMENT" });
  });
});
