/**
 * `svdquant generate` on the tiny PixArt-Σ pipeline (fixtures/pipeline/pixart): model_index.json picks the pipeline,
 * PNGs come out, and bad input is one line on stderr with exit code 1.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readPngText } from "@svdquant/pipeline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../src/index.ts";

const PIXART = join(import.meta.dirname, "../../../fixtures/pipeline/pixart");

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "svdq-generate-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) });
  return { code, out, err };
}

describe("svdquant generate (PixArt-Σ)", () => {
  it("generates PNGs with the PixArt settings", async () => {
    const out = join(dir, "a");
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
      [["--quantized", join(dir, "missing.safetensors")], /missing\.safetensors/],
    ];
    for (const [extra, msg] of cases) {
      const r = await cli("generate", PIXART, "--prompt", "a ring", "--steps", "1", "--out", join(dir, "b"), ...extra);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(msg);
      expect(r.err.trim().split("\n")).toHaveLength(1);
    }
    const r = await cli("generate", join(dir, "nowhere"), "--prompt", "a ring", "--out", join(dir, "c"));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/model_index\.json/);
    expect(r.err.trim().split("\n")).toHaveLength(1);
  });
});
