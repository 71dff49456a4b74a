import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ablationConfigSchema, checkOrder, FIG10_ORDER, runAblation } from "../src/index.ts";

const ROOT = resolve(import.meta.dirname, "../../..");
const committed = JSON.parse(readFileSync(resolve(import.meta.dirname, "../config.json"), "utf8"));

describe("the order check", () => {
  it("holds only when every neighbour improves; τ counts all pairs", () => {
    expect(checkOrder(["a", "b", "c"], [1, 2, 3])).toEqual({ holds: true, violations: [], kendallTau: 1 });
    const r = checkOrder(["a", "b", "c", "d"], [1, 3, 2, 4]);
    expect(r.holds).toBe(false);
    expect(r.violations).toEqual([{ a: "b", b: "c", va: 3, vb: 2 }]);
    expect(r.kendallTau).toBeCloseTo(4 / 6, 12); // 5 concordant, 1 discordant of 6 pairs
    expect(checkOrder(["a", "b"], [2, 2]).holds).toBe(false); // a tie is no improvement
    expect(checkOrder(["a", "b", "c"], [3, 2, 1]).kendallTau).toBe(-1);
  });

  it("the committed config lists the paper's Fig. 10 order", () => {
    expect(ablationConfigSchema.parse(committed).methods).toEqual(FIG10_ORDER);
  });
});

describe("model-level ablation on the toy model (reduced)", () => {
  // CI setting: 2 prompts × 2 steps and the two cheapest arms (SVDQuant's 39-candidate λ search per layer is what
  // makes the full run slow; table1's test runs the SVDQuant path through the packed checkpoint).
  it("naive W4A4 vs SVD only: scored against the 16-bit images, order verdict, outputs", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "ablation-"));
    writeFileSync(
      join(tmp, "config.json"),
      JSON.stringify({
        ...committed,
        generation: { ...committed.generation, count: 2, calibrationCount: 2, steps: 2 },
        methods: ["w4a4-naive", "svd-only"],
      }),
    );
    const { result, markdown, outDir } = await runAblation(tmp, { root: ROOT });
    expect(result.rows.map((r) => r.id)).toEqual(["16-bit", "w4a4-naive", "svd-only"]);
    const [ref, naive, svd] = result.rows;
    expect(ref!.psnr).toBeNull();
    expect(naive!.psnr!).toBeGreaterThan(15);
    expect(svd!.psnr!).toBeLessThan(100);
    expect(svd!.bytes).toBeGreaterThan(naive!.bytes); // the rank-32 16-bit branch
    expect(naive!.bytes).toBeLessThan(ref!.bytes / 2);
    // the verdict follows the numbers (at 2 steps the images have barely formed: no claim about which side wins)
    const holds = svd!.psnr! > naive!.psnr!;
    expect(result.order.psnr.holds).toBe(holds);
    expect(markdown).toContain(holds ? "PSNR: the order holds" : "PSNR: the order does **not** hold");
    if (!holds)
      expect(markdown).toContain(`w4a4-naive (${naive!.psnr!.toFixed(4)}) → svd-only (${svd!.psnr!.toFixed(4)})`);
    for (const r of result.rows) {
      expect(r.perImage).toHaveLength(2);
      expect(r.captionAccuracy).toBe(r.perImage.filter((p) => p.captionOk).length / 2);
    }
    for (const f of ["results.json", "table.md", "ablation.png", "grid.png"])
      expect(existsSync(join(outDir, f))).toBe(true);
  });

  it("an unknown method is one line naming it", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "ablation-"));
    writeFileSync(
      join(tmp, "config.json"),
      JSON.stringify({
        ...committed,
        generation: { ...committed.generation, count: 1, calibrationCount: 1, steps: 1 },
        methods: ["w4a4-naive", "svd-oops"],
      }),
    );
    await expect(runAblation(tmp, { root: ROOT })).rejects.toThrow(/unknown method "svd-oops"/);
  });
});
