/**
 * `svdquant generate` on the tiny PixArt-Σ pipeline (fixtures/pipeline/pixart): model_index.json picks the pipeline,
 * PNGs come out, and bad input is one line on stderr with exit code 1.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { readPngText } from "@svdquant/pipeline";
import { describe, expect, it } from "vitest";
import { cli, ROOT, tempFolder } from "./helpers.ts";

const PIXART = join(ROOT, "fixtures/pipeline/pixart");

const tmp = tempFolder("svdq-generate-");

describe("svdquant generate (PixArt-Σ)", () => {
  it("generates PNGs with the PixArt settings", async () => {
    const out = join(tmp.path, "a");
    const r = await cli(
      "generate",
      PIXART,
      "--prompt",
      "a small red circle",
      "--steps",
      "2",
      "--size",
      "48x32",
      "--no-binning",
      "--negative-prompt",
      "blurry",
      "--seed",
      "3",
      "--out",
      out,
    );
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const files = r.out.trim().split("\n");
    expect(files).toHaveLength(1);
    const bytes = await readFile(files[0]!);
    // IHDR: width and height are the big-endian words at bytes 16 and 20
    expect([bytes.readUInt32BE(16), bytes.readUInt32BE(20)]).toEqual([48, 32]);
    expect(readPngText(bytes)).toMatchObject({
      pipeline: "PixArtSigmaPipeline",
      negative_prompt: "blurry",
      seed: "3",
      guidance: "4.5",
      resolution_binning: "false",
    });
  });

  it("bad input: one line, exit 1", async () => {
    const cases: [string[], RegExp][] = [
      [["--size", "44x32"], /width must be a positive multiple of 8/],
      [["--quantized", join(tmp.path, "missing.safetensors")], /missing\.safetensors/],
    ];
    for (const [extra, msg] of cases) {
      const r = await cli(
        "generate",
        PIXART,
        "--prompt",
        "a ring",
        "--steps",
        "1",
        "--out",
        join(tmp.path, "b"),
        ...extra,
      );
      expect(r.code).toBe(1);
      expect(r.err).toMatch(msg);
      expect(r.err.trim().split("\n")).toHaveLength(1);
    }
    const r = await cli("generate", join(tmp.path, "nowhere"), "--prompt", "a ring", "--out", join(tmp.path, "c"));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/model_index\.json/);
    expect(r.err.trim().split("\n")).toHaveLength(1);
  });
});
