import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { rankConfigSchema, runRank } from "../src/index.ts";

const ROOT = resolve(import.meta.dirname, "../../..");
const committed = JSON.parse(readFileSync(resolve(import.meta.dirname, "../config.json"), "utf8"));

describe("model-level rank sweep", () => {
  it("the committed config sweeps rank 0…128 of SVDQuant INT4", () => {
    const c = rankConfigSchema.parse(committed);
    expect(c.ranks).toEqual([0, 4, 8, 16, 32, 64, 128]);
    expect(c.method).toBe("svdquant-int4");
  });

  it("reduced: a larger branch stores more bytes and keeps the images closer to 16-bit", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "rank-"));
    writeFileSync(
      join(tmp, "config.json"),
      JSON.stringify({
        ...committed,
        generation: { ...committed.generation, count: 2, calibrationCount: 2, steps: 2 },
        method: "svd-only", // the cheapest branch method: SVDQuant's λ search per rank is the full run's cost
        ranks: [4, 64],
      }),
    );
    const { result, markdown, outDir } = await runRank(tmp, { root: ROOT });
    expect(result.rows.map((r) => r.id)).toEqual(["16-bit", "rank 4", "rank 64"]);
    const [, r4, r64] = result.rows;
    expect(r4!.rank).toBe(4);
    expect(r64!.rank).toBe(64);
    expect(r64!.bytes).toBeGreaterThan(r4!.bytes);
    expect(r64!.psnr!).toBeGreaterThan(r4!.psnr!);
    expect(markdown).toMatch(/\| rank 64 \| [0-9.]+ \|/);
    for (const f of ["results.json", "table.md", "rank.png", "grid.png"])
      expect(existsSync(join(outDir, f))).toBe(true);
  });
});
