import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { efficiencyConfigSchema, runEfficiency, sizeRow } from "../src/index.ts";

const ROOT = resolve(import.meta.dirname, "../../..");
const DIR = resolve(import.meta.dirname, "..");
const committed = JSON.parse(readFileSync(join(DIR, "config.json"), "utf8"));
const GiB = 2 ** 30;

describe("model sizes", () => {
  it("FLUX.1-dev: 11.9 B parameters, BF16 22.17 GiB; INT4 under a third of it, NF4 in between (SVDQuant §5.2: 3.6x smaller)", async () => {
    const s = await sizeRow("FLUX.1-dev", join(ROOT, "fixtures/manifests/flux.1-dev.json"), 32);
    expect(s.parameters).toBe(11_901_408_320);
    expect(s.bf16Bytes).toBe(2 * s.parameters);
    expect(s.bf16Bytes / GiB).toBeCloseTo(22.17, 2);
    expect(s.bf16Bytes / s.svdquantInt4Bytes).toBeGreaterThan(3.4);
    expect(s.nf4Bytes).toBeGreaterThan(s.svdquantInt4Bytes * 0.9);
    expect(s.nf4Bytes).toBeLessThan(s.bf16Bytes / 3);
    // NVFP4: g16 E4M3 scales (1 byte / 16) vs INT4's g64 BF16 scales (2 bytes / 64): a little larger
    expect(s.svdquantNvfp4Bytes).toBeGreaterThan(s.svdquantInt4Bytes);
    expect(s.svdquantNvfp4Bytes).toBeLessThan(s.svdquantInt4Bytes * 1.1);
  });

  it("a manifest that is missing or malformed is one clear line", async () => {
    await expect(sizeRow("x", join(ROOT, "nope.json"), 32)).rejects.toThrow(/nope.json: cannot read the manifest/);
    const tmp = mkdtempSync(join(tmpdir(), "eff-"));
    writeFileSync(join(tmp, "m.json"), JSON.stringify({ config: {} }));
    await expect(sizeRow("x", join(tmp, "m.json"), 32)).rejects.toThrow(/needs "class" and "config"/);
  });
});

describe("the cited GPU numbers", () => {
  it("occur verbatim in docs/benchmarks.md's engine-cuda section, with the date", () => {
    const c = efficiencyConfigSchema.parse(committed);
    const doc = readFileSync(join(ROOT, "docs/benchmarks.md"), "utf8");
    const start = doc.indexOf("## @svdquant/engine-cuda: one FLUX.1-dev transformer step on the GPU");
    expect(start).toBeGreaterThan(0);
    const next = doc.indexOf("\n## ", start + 10);
    const section = doc.slice(start, next > 0 ? next : undefined);
    expect(section).toContain(c.gpu!.date);
    for (const r of c.gpu!.rows) {
      expect(section).toContain(r.weightsGiB);
      for (const n of r.stepMs.match(/[0-9]+(\.[0-9]+)?/g)!) expect(section).toContain(n);
      for (const n of r.peakMemory.match(/[0-9]+\.[0-9]+/g)!) expect(section).toContain(n);
    }
  });
});

describe("efficiency run (reduced)", () => {
  it("times 16-bit and W4A4 steps alternately on the toy model and writes the report", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "eff-run-"));
    writeFileSync(
      join(tmp, "config.json"),
      JSON.stringify({
        ...committed,
        sizes: committed.sizes.slice(0, 1),
        latency: { ...committed.latency, sizes: [64], rounds: 2, warmup: 0 },
      }),
    );
    const { result, markdown, outDir } = await runEfficiency(tmp, { root: ROOT });
    expect(result.latency).toHaveLength(1);
    const l = result.latency[0]!;
    expect([l.imageTokens, l.textTokens]).toEqual([64, 32]); // the toy VAE is 4x: 64² → 16² latents → 8² tokens of 2×2 patches
    expect(l.denseSamples).toHaveLength(2);
    expect(l.w4a4Samples).toHaveLength(2);
    for (const v of [...l.denseSamples, ...l.w4a4Samples]) expect(v).toBeGreaterThan(0);
    expect(l.denseNativeSamples).toHaveLength(2);
    expect(l.ratio).toBeCloseTo(l.w4a4Ms / l.denseNativeMs, 12);
    expect(markdown).toMatch(/kernels (native [a-z0-9]+|TypeScript) path/);
    expect(markdown).toContain("cited, not measured");
    for (const f of ["results.json", "table.md", "sizes.png"]) expect(existsSync(join(outDir, f))).toBe(true);
  });
});
