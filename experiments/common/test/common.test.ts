import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { loadImage } from "@napi-rs/canvas";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  barChart,
  lineChart,
  readConfig,
  readPrompts,
  readToyDataset,
  resolveGeneration,
  seededSubset,
  splitPrompts,
} from "../src/index.ts";

const ROOT = resolve(import.meta.dirname, "../../..");
const TOY = join(ROOT, "models/toy-flux");

describe("prompts", () => {
  it("a seeded subset is a deterministic draw without repeats, different for another seed", () => {
    const all = Array.from({ length: 100 }, (_, i) => `p${i}`);
    const a = seededSubset(all, 10, 7);
    expect(seededSubset(all, 10, 7)).toEqual(a);
    expect(new Set(a).size).toBe(10);
    for (const p of a) expect(all).toContain(p);
    expect(seededSubset(all, 10, 8)).not.toEqual(a);
    expect(seededSubset(all, 1000, 1)).toHaveLength(100);
  });

  it("evaluation and calibration prompts never overlap; too few prompts is one clear line", () => {
    const all = Array.from({ length: 30 }, (_, i) => `p${i}`);
    const { evaluation, calibration } = splitPrompts([...all, "p1", "p2"], 12, 8, 3);
    expect(evaluation).toHaveLength(12);
    expect(calibration).toHaveLength(8);
    for (const c of calibration) expect(evaluation).not.toContain(c);
    expect(() => splitPrompts(all, 25, 8, 0)).toThrow(/25 evaluation \+ 8 calibration prompts asked for, but only 30/);
  });

  it("the toy model's captions: non-empty, every one names a colour or a shape the detector reads", async () => {
    const { spec, captions } = await readToyDataset(TOY);
    expect(captions.length).toBeGreaterThan(400);
    expect(captions).not.toContain("");
    expect(spec.imageSize).toBe(64);
    expect(await readPrompts({ toyCaptions: true }, TOY)).toEqual(captions);
  });

  it("a prompt file: one prompt a line, blank lines skipped; a missing or empty file is one line", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "prompts-"));
    writeFileSync(join(tmp, "p.txt"), "a cat\r\n\n  a dog  \n");
    expect(await readPrompts({ file: join(tmp, "p.txt") }, TOY)).toEqual(["a cat", "a dog"]);
    writeFileSync(join(tmp, "e.txt"), "\n\n");
    await expect(readPrompts({ file: join(tmp, "e.txt") }, TOY)).rejects.toThrow(/holds no prompts/);
    await expect(readPrompts({ file: join(tmp, "nope.txt") }, TOY)).rejects.toThrow(/nope.txt: cannot read/);
  });

  it("resolveGeneration loads the toy detector and splits the captions", async () => {
    const s = await resolveGeneration(
      {
        pipeline: "models/toy-flux",
        prompts: { toyCaptions: true },
        count: 5,
        calibrationCount: 3,
        seed: 2,
        steps: 2,
        guidance: 3.5,
        size: 64,
        maxSequenceLength: 32,
        quantize: {},
        threads: 1,
      },
      ROOT,
    );
    expect(s.prompts).toHaveLength(5);
    expect(s.calibrationPrompts).toHaveLength(3);
    expect(s.shapes?.imageSize).toBe(64);
  });
});

describe("configs", () => {
  const schema = z.object({ runner: z.literal("x"), n: z.number().int().min(1) }).strict();
  it("a bad field, bad JSON or a missing file is one line naming it", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "cfg-"));
    writeFileSync(join(tmp, "config.json"), JSON.stringify({ runner: "x", n: 0 }));
    await expect(readConfig(tmp, schema)).rejects.toThrow(/config.json: n: Too small/);
    writeFileSync(join(tmp, "config.json"), "{ nope");
    await expect(readConfig(tmp, schema)).rejects.toThrow(/cannot parse experiment config/);
    await expect(readConfig(join(tmp, "absent"), schema)).rejects.toThrow(/cannot read the experiment config/);
    writeFileSync(join(tmp, "config.json"), JSON.stringify({ runner: "x", n: 3 }));
    expect(await readConfig(tmp, schema)).toEqual({ runner: "x", n: 3 });
  });
});

describe("charts", () => {
  it("bar and line charts are PNGs whose size follows their content", async () => {
    const bars = barChart(
      "t",
      ["a", "b", "c"],
      [
        { label: "m1", values: [1, -2, null] },
        { label: "m2", values: [0.5, 0.25, 0.125] },
      ],
    );
    const img = await loadImage(bars);
    const one = await loadImage(barChart("t", ["a", "b", "c"], [{ label: "m1", values: [1, 2, 3] }]));
    expect(img.width).toBeGreaterThan(one.width); // one panel more
    expect(img.height).toBe(one.height);
    const line = await loadImage(
      lineChart("r", "rank", [0, 8, 32], [{ label: "PSNR", curves: [{ label: "x", y: [20, 25, Number.NaN] }] }]),
    );
    expect(line.width).toBeGreaterThan(100);
    expect(line.height).toBeGreaterThan(100);
  });
});
