import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { loadImage } from "@napi-rs/canvas";
import { calibrationFromTokens, evaluateLayer, getMethod, type LayerMetrics } from "@svdquant/quantizer";
import { describe, expect, it } from "vitest";
import { DEFAULT_GENERATED, generateLayer, runAblation } from "../src/index.ts";

const W4A4 = [
  "w4a4-naive",
  "w4a4-smoothquant",
  "svd-only",
  "smoothing-only",
  "lorc",
  "smoothing-lorc",
  "svdquant-int4",
  "svdquant-int4-refined",
  "svdquant-nvfp4",
  "svdquant-nvfp4-refined",
];
const OTHERS = ["fp", "w8a8-smoothquant", "w4a16-nf4"];

// Small generated layers (the paper's outlier structure) keep this under ~30 s on 2 cores.
const LAYERS = [1, 2].map((seed) =>
  generateLayer({ ...DEFAULT_GENERATED, name: `gen-${seed}`, seed, n: 128, k: 256, tokens: 128 }),
);

describe("the paper's ordering on generated layers (SVDQuant §4, Table 3 / Fig. 6)", () => {
  const results = LAYERS.map((g) => {
    const cal = calibrationFromTokens(g.calib, g.m, g.layer.k);
    const out: Record<string, LayerMetrics> = {};
    for (const name of [...OTHERS, ...W4A4]) {
      const q = getMethod(name).quantize(g.layer, cal, { rank: 32, refinement: 20 });
      out[name] = evaluateLayer(g.layer, q, g.evalX, g.m);
    }
    return { g, cal, out };
  });

  it.each(results.map((r) => [r.g.layer.name, r] as const))("%s: naive W4A4 worst, SVDQuant best", (_n, r) => {
    const err = (m: string): number => r.out[m].relError;
    for (const m of W4A4) if (m !== "w4a4-naive") expect(err("w4a4-naive")).toBeGreaterThan(err(m));
    const bestSvdq = Math.min(...W4A4.filter((m) => m.startsWith("svdquant")).map(err));
    for (const m of W4A4.filter((m) => !m.startsWith("svdquant"))) expect(bestSvdq).toBeLessThan(err(m));
    for (const v of ["svdquant-int4", "svdquant-int4-refined"]) {
      expect(err(v)).toBeLessThan(err("lorc"));
      expect(err(v)).toBeLessThan(err("smoothing-only"));
      expect(err(v)).toBeLessThan(err("svd-only"));
    }
  });

  it("the error bound ‖XW − Q(X)Q(W)‖ ≤ ‖X‖‖W−Q(W)‖ + ‖X−Q(X)‖(‖W‖+‖W−Q(W)‖) holds for every method and layer", () => {
    for (const r of results)
      for (const [name, m] of Object.entries(r.out)) {
        expect(m.bound, `${r.g.layer.name} ${name}`).toBeGreaterThan(0);
        expect(m.absError, `${r.g.layer.name} ${name}`).toBeLessThanOrEqual(m.bound * (1 + 1e-9));
      }
  });

  it("SVDQuant's error is non-increasing in rank", () => {
    const r = results[0];
    let prev = Number.POSITIVE_INFINITY;
    for (const rank of [0, 8, 16, 32, 64]) {
      const q = getMethod("svdquant-int4").quantize(r.g.layer, r.cal, { rank });
      const e = evaluateLayer(r.g.layer, q, r.g.evalX, r.g.m).relError;
      expect(e, `rank ${rank}`).toBeLessThanOrEqual(prev);
      prev = e;
    }
  });
});

describe("runAblation", () => {
  it("writes the Markdown table, JSON and PNG figures of a config", async () => {
    const dir = mkdtempSync(join(tmpdir(), "svdq-ablation-"));
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({
        runner: "ablation-layer",
        seed: 0,
        methods: ["fp", "w4a4-naive", "svdquant-int4"],
        generated: [{ name: "tiny", seed: 3, n: 64, k: 128, tokens: 64 }],
        fixtures: [
          {
            model: "fixtures/models/flux-tiny-a",
            layers: ["transformer_blocks.0.ff.net.2.weight"],
            postGelu: ["transformer_blocks.0.ff.net.2.weight"],
            rank: 8,
          },
        ],
        fixtureTokens: 64,
        sharedInputs: [
          {
            name: "qk",
            model: "fixtures/models/flux-tiny-a",
            layers: ["transformer_blocks.0.attn.to_q.weight", "transformer_blocks.0.attn.to_k.weight"],
            rank: 8,
          },
        ],
        rank: 16,
        rankSweep: { method: "svdquant-int4", layer: "tiny", ranks: [0, 16] },
        figureLayer: "tiny",
        out: "out",
      }),
    );
    const { result, markdown, outDir } = await runAblation(dir, { root: resolve(__dirname, "../../..") });
    expect(markdown).toMatch(/\| method \| W4A4 \| rel\. output error \| SQNR \(dB\) \| weight bits\/param \|/);
    expect(markdown).toContain("flux-tiny-a:transformer_blocks.0.ff.net.2.weight");
    expect(result.layers.length).toBe(2);
    expect(result.rankSweep.points.map((p) => p.rank)).toEqual([0, 16]);
    expect(result.sharedInputs[0].rows.map((r) => r.layer)).toEqual([
      "transformer_blocks.0.attn.to_q.weight",
      "transformer_blocks.0.attn.to_k.weight",
    ]);
    for (const r of result.sharedInputs[0].rows) expect(r.shared).toBeLessThan(0.2);
    expect(markdown).toContain("## Shared input: qk");
    const json = JSON.parse(readFileSync(join(outDir, "results.json"), "utf8"));
    expect(json.layers[0].rows[0].method).toBe("fp");
    expect(readFileSync(join(outDir, "table.md"), "utf8")).toBe(markdown);
    for (const f of ["fig5-singular-values.png", "fig4-histograms.png"]) {
      const p = join(outDir, f);
      expect(existsSync(p)).toBe(true);
      const img = await loadImage(readFileSync(p));
      expect(img.width).toBeGreaterThan(500);
    }
  });

  it("rejects a config with an unknown method", async () => {
    const dir = mkdtempSync(join(tmpdir(), "svdq-ablation-"));
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({
        runner: "ablation-layer",
        seed: 0,
        methods: ["gptq"],
        generated: [],
        fixtures: [],
        fixtureTokens: 8,
        rank: 8,
        rankSweep: { method: "svdquant-int4", layer: "x", ranks: [] },
        figureLayer: "x",
        out: "out",
      }),
    );
    await expect(runAblation(dir)).rejects.toThrow(/unknown method "gptq"/);
  });
});
