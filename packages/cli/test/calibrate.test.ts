import { join } from "node:path";
import { engineAvailability } from "@svdquant/engine-cuda";
import { readCalibration, writeCalibration } from "@svdquant/pipeline";
import { SafetensorsFile } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { cli, ROOT, tempFolder } from "./helpers.ts";

const MODEL = join(ROOT, "fixtures/models/flux-tiny-a");
const CONFIG = {
  grid: [
    { alpha: 0, beta: 0 },
    { alpha: 0.5, beta: 0.5 },
  ],
  refinement: { maxIterations: 1 },
  calibration: { samples: 1, steps: 2, reservoir: 32 },
};

const tmp = tempFolder("svdq-calibrate-", CONFIG);

describe("svdquant calibrate", () => {
  it("writes the statistics file that quantize --calibration reads (same output as recording in quantize)", async () => {
    const stats = join(tmp.path, "stats.safetensors");
    const r = await cli(
      "calibrate",
      MODEL,
      "--out",
      stats,
      "--config",
      tmp.config,
      "--steps",
      "3",
      "--json",
      "--no-progress",
    );
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.out);
    expect(summary).toMatchObject({ out: stats, device: "cpu", forwards: 3 });
    const { stats: s, metadata } = await readCalibration(stats);
    expect(s.size).toBe(summary.layers);
    expect(JSON.parse(metadata.calibration!)).toMatchObject({ samples: 1, steps: 3, reservoir: 32 });
    for (const v of s.values()) {
      expect(v.rows).toBe(Math.min(32, v.tokensSeen)); // text inputs see 8 tokens a forward
      expect(v.tokens.length).toBe(v.rows * v.absmax.length);
    }
    // the same calibration (steps 2, as the config) through both routes gives the same checkpoint
    await cli("calibrate", MODEL, "--out", stats, "--config", tmp.config, "--no-progress");
    const a = join(tmp.path, "a.safetensors");
    const b = join(tmp.path, "b.safetensors");
    const q1 = await cli(
      "quantize",
      MODEL,
      "--config",
      tmp.config,
      "--out",
      a,
      "--calibration",
      stats,
      "--no-progress",
    );
    expect(q1.err).toBe("");
    expect(q1.code).toBe(0);
    expect((await cli("quantize", MODEL, "--config", tmp.config, "--out", b, "--no-progress")).code).toBe(0);
    const [fa, fb] = [await SafetensorsFile.open(a), await SafetensorsFile.open(b)];
    try {
      expect(fa.names().sort()).toEqual(fb.names().sort());
      // the fingerprint names the statistics file in one and not the other; everything else is equal
      const meta = (m: Readonly<Record<string, string>>) => ({
        ...m,
        svdquant_ts: { ...JSON.parse(m.svdquant_ts!), fingerprint: undefined },
      });
      expect(meta(fa.metadata)).toEqual(meta(fb.metadata));
      for (const n of fa.names()) expect((await fa.read(n)).data, n).toEqual((await fb.read(n)).data);
    } finally {
      await fa.close();
      await fb.close();
    }
  }, 120_000);

  it("refuses a statistics file without a quantized layer's input, naming it", async () => {
    const stats = join(tmp.path, "stats.safetensors");
    const { stats: s } = await readCalibration(stats);
    const partial = new Map([...s].filter(([n]) => n !== "transformer_blocks.1.ff.net.2"));
    const bad = join(tmp.path, "partial.safetensors");
    await writeCalibration(bad, partial, {});
    const r = await cli(
      "quantize",
      MODEL,
      "--config",
      tmp.config,
      "--out",
      join(tmp.path, "c.safetensors"),
      "--calibration",
      bad,
      "--no-progress",
    );
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/partial\.safetensors.*transformer_blocks\.1\.ff\.net\.2/);
    expect(r.err.trim().split("\n")).toHaveLength(1);
  });

  it("checks its options: one line, exit 1", async () => {
    const out = join(tmp.path, "x.safetensors");
    for (const [argv, msg] of [
      [[MODEL, "--out", out, "--device", "gpu"], /expected one of cpu, cuda/],
      [["--out", out], /model folder or --random/],
      [[MODEL, "--out", out, "--random", "flux-dev", "--device", "cuda"], /model folder or --random/],
      [["--out", out, "--random", "flux-dev"], /--device cuda/],
      [["--out", out, "--random", "flux-pro", "--device", "cuda"], /expected one of flux-dev, flux-schnell/],
      [[MODEL, "--out", out, "--steps", "0"], /expected an integer from 1/],
      [[MODEL], /--out/],
      [[MODEL, "--out", join(tmp.path, "no-such-dir", "x.safetensors")], /no-such-dir/],
    ] as const) {
      const r = await cli("calibrate", ...argv);
      expect(r.code, argv.join(" ")).toBe(1);
      expect(r.err, argv.join(" ")).toMatch(msg);
      expect(r.err.trim().split("\n"), argv.join(" ")).toHaveLength(1);
    }
  });

  it.skipIf(engineAvailability().available)(
    `--device cuda without a usable GPU fails with one line (${engineAvailability().reason})`,
    async () => {
      const r = await cli(
        "calibrate",
        MODEL,
        "--out",
        join(tmp.path, "g.safetensors"),
        "--device",
        "cuda",
        "--no-progress",
      );
      expect(r.code).toBe(1);
      expect(r.err.trim().split("\n")).toHaveLength(1);
      expect(r.err).toMatch(/engine addon|CUDA|cuda/);
    },
  );
});
