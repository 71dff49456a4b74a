/** The one reader of a toy-shapes model's dataset.json: the committed toy model, and one clear line on bad files. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readShapesDataset } from "../src/index.ts";

const TOY = join(import.meta.dirname, "../../../models/toy-flux");

describe("readShapesDataset", () => {
  it("reads the built-in model's spec and its 432 non-empty captions (433 with the empty one the training drops to)", async () => {
    const d = await readShapesDataset(TOY);
    expect(d.captions).toHaveLength(432);
    expect([...d.spec.colors.keys()]).toContain("magenta");
    expect(d.spec.shapes).toContain("triangle");
  });

  it("names the file on bad input", async () => {
    const dir = mkdtempSync(join(tmpdir(), "svdq-dataset-"));
    await expect(readShapesDataset(dir)).rejects.toThrow(/dataset\.json/);
    writeFileSync(join(dir, "dataset.json"), JSON.stringify({ spec: {}, captions: [1] }));
    await expect(readShapesDataset(dir)).rejects.toThrow(/dataset\.json: "captions" must be a list of strings/);
  });
});
