// Issue 18 through the command line (findings 8, 9, 10, 11): option bounds, outputs checked before the run and
// written atomically, control characters escaped in everything printed, typed one-line errors.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { writePng } from "@svdquant/metrics";
import { Tensor, writeSafetensors } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { baseExperimentConfig } from "./fuzz/generators.js";
import { cli } from "./helpers.ts";

const run = (args: string[]) => cli(...args);
const ESC = "\u001b";
const root = mkdtempSync(join(tmpdir(), "svdq-cli-h-"));
const oneLine = (s: string) => expect(s.split("\n")).toHaveLength(2);

async function pairFolders(name: string): Promise<{ ref: string; test: string }> {
  const ref = join(root, name, "ref");
  const test = join(root, name, "test");
  mkdirSync(ref, { recursive: true });
  mkdirSync(test, { recursive: true });
  const data = Uint8Array.from({ length: 8 * 8 * 3 }, (_, i) => (i * 37) & 255);
  await writePng(join(ref, "a.png"), { width: 8, height: 8, data });
  await writePng(join(test, "a.png"), { width: 8, height: 8, data: data.map((v) => 255 - v) });
  return { ref, test };
}

describe("eval options and output (findings 8, 9)", () => {
  it("--threads beyond the available parallelism (2000) is one error line, nothing started", async () => {
    const { ref, test } = await pairFolders("threads");
    const r = await run(["eval", "--ref", ref, "--test", test, "--threads", "2000", "--no-progress"]);
    expect(r.code).toBe(1);
    oneLine(r.err);
    expect(r.err).toMatch(new RegExp(`--threads.*expected an integer in \\[1, ${availableParallelism()}\\]`));
    const b = await run(["eval", "--ref", ref, "--test", test, "--batch", "100000", "--no-progress"]);
    expect(b.code).toBe(1);
    expect(b.err).toMatch(/--batch.*\[1, 1024\]/);
  });

  it("--out is checked before the run: a bad path fails first, naming it", async () => {
    const { ref, test } = await pairFolders("out");
    writeFileSync(join(ref, "b.png"), "not an image"); // the run itself would fail on this
    writeFileSync(join(test, "b.png"), "not an image");
    const bad = join(root, "no-such-folder", "r.json");
    const r = await run(["eval", "--ref", ref, "--test", test, "--out", bad, "--no-progress", "--threads", "1"]);
    expect(r.code).toBe(1);
    oneLine(r.err);
    expect(r.err).toContain(bad);
    expect(r.err).not.toMatch(/b\.png/);
  });

  it("--out does not follow a symlink planted at the old predictable temp name", async () => {
    const { ref, test } = await pairFolders("planted");
    const victim = join(root, "victim.txt");
    writeFileSync(victim, "precious");
    const out = join(root, "planted", "r.json");
    symlinkSync(victim, `${out}.tmp-${process.pid}`);
    const r = await run(["eval", "--ref", ref, "--test", test, "--out", out, "--no-progress", "--threads", "1"]);
    expect(r.code, r.err).toBe(0);
    expect(readFileSync(victim, "utf8")).toBe("precious");
    expect(JSON.parse(readFileSync(out, "utf8")).count).toBe(1);
  });
});

describe("escaping (finding 10)", () => {
  it("inspect escapes control characters in metadata, names and paths, text and JSON", async () => {
    const p = join(root, `evil${ESC}[2J.safetensors`);
    await writeSafetensors(
      p,
      { [`w${ESC}]0;pwn\u0007`]: Tensor.fromFloats("F32", [1], [1]) },
      { [`k${ESC}[31m`]: `v\u202e${ESC}[2J` },
    );
    for (const args of [
      ["inspect", p],
      ["inspect", p, "--json"],
    ]) {
      const r = await run(args);
      expect(r.code).toBe(0);
      expect(r.out).not.toContain(ESC);
      expect(r.out).not.toContain("\u202e");
      expect(r.out).not.toContain("\u0007");
    }
    expect((await run(["inspect", p])).out).toContain("k\\x1b[31m: v\\u202e\\x1b[2J");
    const json = JSON.parse((await run(["inspect", p, "--json"])).out);
    expect(json.metadata).toEqual({ [`k${ESC}[31m`]: `v\u202e${ESC}[2J` }); // same value, printed safely
  });

  it("error messages naming a hostile tensor or file are escaped and stay on one line", async () => {
    const name = `x${ESC}[2J\ry`;
    const header = Buffer.from(JSON.stringify({ [name]: { dtype: "F99", shape: [1], data_offsets: [0, 4] } }));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    const p = join(root, "bad.safetensors");
    writeFileSync(p, Buffer.concat([len, header, Buffer.alloc(4)]));
    const r = await run(["inspect", p]);
    expect(r.code).toBe(1);
    oneLine(r.err);
    expect(r.err).not.toContain(ESC);
    expect(r.err).not.toContain("\r");
    expect(r.err).toContain('tensor "x\\x1b[2J\\ry": unsupported dtype "F99"');
    const u = await run(["inspect", `--${ESC}[2J`]);
    expect(u.code).toBe(1);
    expect(u.err).not.toContain(ESC);
  });
});

describe("experiment configs (findings 5, 7, 11)", () => {
  const base = baseExperimentConfig();
  const exp = (name: string, cfg: unknown): string => {
    const d = join(root, name);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, "config.json"), typeof cfg === "string" ? cfg : JSON.stringify(cfg));
    return d;
  };

  it.each([
    ["huge layer", { ...base, generated: [{ name: "g", seed: 1, n: 1e9, k: 64 }] }, /n and k must be integers/],
    [
      "outlierChannels > k (hung)",
      { ...base, generated: [{ name: "g", seed: 1, k: 64, outlierChannels: 65 }] },
      /outlierChannels/,
    ],
    ["tokens 2^40", { ...base, generated: [{ name: "g", seed: 1, tokens: 2 ** 40 }] }, /tokens must be/],
    [
      "rank sweep of 1e6 ranks",
      { ...base, rankSweep: { method: "fp", layer: "g", ranks: Array(1000).fill(1) } },
      /rankSweep/,
    ],
    [
      "unknown runner named like a prototype member",
      { ...base, runner: "constructor" },
      /unknown runner "constructor"/,
    ],
    ["not JSON", "{", /cannot parse experiment config/],
    ["nested 1M deep", `${"[".repeat(1_000_000)}${"]".repeat(1_000_000)}`, /JSON nests deeper than 16 levels/],
  ])("%s: one typed error line, quickly", async (label, cfg, re) => {
    const dir = exp(label.replace(/\W+/g, "-"), cfg);
    const t0 = Date.now();
    const r = await run(["experiment", "run", dir, "--quiet", "--no-figures"]);
    expect(r.code).toBe(1);
    oneLine(r.err);
    expect(r.err).toMatch(re);
    expect(r.err).toContain("config.json");
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it("a FIFO as the experiment config fails at once", async () => {
    const d = join(root, "fifo-exp");
    mkdirSync(d);
    execFileSync("mkfifo", [join(d, "config.json")]);
    const r = await run(["experiment", "run", d]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/config\.json: is a FIFO/);
  }, 5000);

  it("results.json and table.md are written atomically and do not follow planted symlinks", async () => {
    const d = exp("atomic", base);
    const out = join(d, "out");
    mkdirSync(out);
    const victim = join(root, "victim2.txt");
    writeFileSync(victim, "precious");
    symlinkSync(victim, join(out, `results.json.tmp-${process.pid}`));
    symlinkSync(victim, join(out, `table.md.tmp-${process.pid}`));
    const r = await run(["experiment", "run", d, "--quiet", "--no-figures"]);
    expect(r.code, r.err).toBe(0);
    expect(readFileSync(victim, "utf8")).toBe("precious");
    expect(JSON.parse(readFileSync(join(out, "results.json"), "utf8")).layers).toHaveLength(1);
    expect(readFileSync(join(out, "table.md"), "utf8")).toContain("# Layer ablation");
  });
});
