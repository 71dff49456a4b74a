/**
 * `svdquant quantize` end to end on flux-tiny: the output loads and `inspect` describes it; an interrupted run
 * (SIGKILL mid-way) resumed with the same command writes the same bytes as an uninterrupted one; a changed config
 * is refused instead of mixed.
 */
import { spawn } from "node:child_process";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cli, ROOT, tempFolder } from "./helpers.ts";

const MODEL = join(ROOT, "fixtures/models/flux-tiny-a");
const RUNNER = join(import.meta.dirname, "run-cli.ts");

// reduced search (4 smoothing candidates, 1 refinement step) to keep CI fast
const CONFIG = {
  grid: "quick",
  refinement: { maxIterations: 1 },
  calibration: { samples: 1, steps: 2 },
};

const tmp = tempFolder("svdq-quantize-", CONFIG);

/** Start the CLI in a child process; resolves with its exit code/signal and stderr. */
function child(args: string[], onStart?: (kill: () => void) => void) {
  const p = spawn(process.execPath, ["--import", "tsx", "--conditions=@svdquant/source", RUNNER, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  p.stderr.on("data", (d) => (err += d));
  onStart?.(() => p.kill("SIGKILL"));
  return new Promise<{ code: number | null; signal: string | null; err: string }>((res) =>
    p.on("close", (code, signal) => res({ code, signal, err })),
  );
}

describe("svdquant quantize", () => {
  it("quantizes, reports, and inspect describes the 4-bit layers", async () => {
    const out = join(tmp.path, "plain.safetensors");
    const r = await cli("quantize", MODEL, "--config", tmp.config, "--out", out, "--json", "--no-progress");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.out);
    expect(summary).toMatchObject({ out, layers: 35 });
    const report = JSON.parse(await readFile(`${out}.report.json`, "utf8"));
    expect(report.layers[0]).toMatchObject({ layer: "transformer_blocks.0.qkv_proj", kind: "w4a4", rank: 32 });
    const ins = await cli("inspect", out);
    expect(ins.code).toBe(0);
    expect(ins.out).toMatch(/quantized flux: 35 4-bit layers/);
    expect(ins.out).toMatch(/w4a4-int4\s+28 layers/);
    expect(ins.out).toMatch(/w4a16-int4\s+7 layers/);
  });

  it("a run killed mid-way and started again with the same command writes the same bytes", async () => {
    const ref = join(tmp.path, "ref.safetensors");
    expect((await cli("quantize", MODEL, "--config", tmp.config, "--out", ref, "--no-progress")).code).toBe(0);
    const out = join(tmp.path, "resumed.safetensors");
    const args = ["quantize", MODEL, "--config", tmp.config, "--out", out, "--resume", "--no-progress"];
    const parts = `${out}.parts`;
    const killed = await child(args, (kill) => {
      const poll = setInterval(async () => {
        const files = await readdir(parts).catch(() => [] as string[]);
        if (files.some((f) => f.startsWith("block-single_transformer_blocks.0"))) {
          clearInterval(poll);
          kill();
        }
      }, 10);
    });
    expect(killed.signal).toBe("SIGKILL");
    const left = (await readdir(parts)).filter((f) => f.startsWith("block-"));
    expect(left.length).toBeGreaterThanOrEqual(3);
    expect(left.length).toBeLessThan(5); // killed before the last block
    // a changed config is refused, the state stays
    const other = join(tmp.path, "other.json");
    await writeFile(other, JSON.stringify({ ...CONFIG, rank: 16 }));
    const refused = await cli("quantize", MODEL, "--config", other, "--out", out, "--resume", "--no-progress");
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/state belongs to another model or config/);
    // without --resume the leftover state is not silently overwritten
    const noResume = await cli("quantize", MODEL, "--config", tmp.config, "--out", out, "--no-progress");
    expect(noResume.code).toBe(1);
    expect(noResume.err).toMatch(/pass --resume/);
    // the same command again finishes from the state
    const again = await child(args);
    expect(again.err).toBe("");
    expect(again.code).toBe(0);
    expect(Buffer.compare(await readFile(out), await readFile(ref))).toBe(0);
    expect(await readdir(tmp.path)).not.toContain("resumed.safetensors.parts");
  });

  it("--format int4p2 writes the opt-in Hopper format; inspect names it; a bad format is one line", async () => {
    const out = join(tmp.path, "p2.safetensors");
    const args = ["quantize", MODEL, "--config", tmp.config, "--format", "int4p2", "--out", out, "--json"];
    const r = await cli(...args, "--no-progress");
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ out, layers: 32 }); // single blocks: proj_out is one layer
    const ins = await cli("inspect", out);
    expect(ins.code).toBe(0);
    expect(ins.out).toMatch(/w4a4-int4p2\s+25 layers/);
    expect(ins.out).toMatch(/w4a16-int4\s+7 layers/);
    const bad = await cli("quantize", MODEL, "--format", "int3", "--no-progress");
    expect(bad.code).toBe(1);
    expect(bad.err.trim().split("\n")).toHaveLength(1);
    expect(bad.err).toMatch(/--format.*int3/);
  });

  it("bad input gets one line naming the file", async () => {
    const bad = join(tmp.path, "bad.json");
    await writeFile(bad, JSON.stringify({ rank: -1 }));
    const r = await cli("quantize", MODEL, "--config", bad, "--no-progress");
    expect(r.code).toBe(1);
    expect(r.err.trim().split("\n")).toHaveLength(1);
    expect(r.err).toMatch(/bad\.json: rank/);
    const missing = await cli("quantize", join(tmp.path, "nope"), "--no-progress");
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/nope/);
  });
});
