import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "../src/index.ts";

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (s: string) => void out.push(s), err: (s: string) => void err.push(s) }, out, err };
}

describe("svdquant experiment run", () => {
  it("runs an ablation-layer folder and prints its Markdown table", async () => {
    const dir = mkdtempSync(join(tmpdir(), "svdq-cli-exp-"));
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({
        runner: "ablation-layer",
        seed: 0,
        methods: ["w4a4-naive", "svdquant-int4"],
        generated: [{ name: "tiny", seed: 2, n: 32, k: 64, tokens: 32 }],
        fixtures: [],
        fixtureTokens: 8,
        rank: 8,
        rankSweep: { method: "svdquant-int4", layer: "tiny", ranks: [0, 8] },
        figureLayer: "tiny",
        out: "out",
      }),
    );
    const c = capture();
    const code = await main(["experiment", "run", dir, "--no-figures", "--root", resolve(__dirname, "../../..")], c.io);
    expect(c.err.join("")).toContain("tiny svdquant-int4: rel. error");
    expect(code).toBe(0);
    const text = c.out.join("");
    expect(text).toMatch(/\| SVDQuant INT4 \(no refinement\) \| ✓ \| 0\.\d{4} \|/);
    expect(text).toContain("## Rank sweep: svdquant-int4 on tiny");
    expect(existsSync(join(dir, "out", "results.json"))).toBe(true);
    expect(existsSync(join(dir, "out", "fig4-histograms.png"))).toBe(false);
  });

  it("fails with one line naming the config when the runner is unknown", async () => {
    const dir = mkdtempSync(join(tmpdir(), "svdq-cli-exp-"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ runner: "nope" }));
    const c = capture();
    expect(await main(["experiment", "run", dir], c.io)).toBe(1);
    expect(c.err.join("")).toMatch(
      /config\.json: unknown runner "nope"; known: ablation, ablation-layer, efficiency, rank, table1/,
    );
  });
});

describe("svdquant experiment: discovery", () => {
  it("lists the experiments of the workspace", async () => {
    const c = capture();
    expect(await main(["experiment", "list"], c.io)).toBe(0);
    const lines = c.out.join("").split("\n").filter(Boolean);
    // experiments/common is a helper package without a runner: not listed
    expect(lines.map((l) => l.split("\t")[0])).toEqual(["ablation", "ablation-layer", "efficiency", "rank", "table1"]);
    expect(lines[1]).toMatch(
      /^ablation-layer\t.*experiments\/ablation-layer\t\(runner ablation-layer, @svdquant\/experiment-ablation-layer\)$/,
    );
    expect(lines[4]).toMatch(/^table1\t.*experiments\/table1\t\(runner table1, @svdquant\/experiment-table1\)$/);
  });

  it("fails with one line when a name matches no experiment folder", async () => {
    const c = capture();
    expect(await main(["experiment", "run", "no-such-experiment"], c.io)).toBe(1);
    expect(c.err.join("")).toMatch(
      /^svdquant: experiment "no-such-experiment": not a folder, and no experiment of that name .*\(found: ablation, ablation-layer, efficiency, rank, table1\)\n$/,
    );
  });

  it("says experiments come from a checkout when none is above the folder or the working directory", async () => {
    const dir = mkdtempSync(join(tmpdir(), "svdq-cli-exp-"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ runner: "ablation-layer" }));
    const cwd = process.cwd();
    process.chdir(tmpdir());
    try {
      const c = capture();
      expect(await main(["experiment", "run", dir], c.io)).toBe(1);
      expect(c.err.join("")).toMatch(
        /unknown runner "ablation-layer"; no experiments\/ folder .* run it from a checkout of svdquant-ts/,
      );
    } finally {
      process.chdir(cwd);
    }
  });
});
