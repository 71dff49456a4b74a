import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tensor, type TensorEntry, writeSafetensors } from "@svdquant/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fluxDoubleBlockParams, fluxParams, parseFluxConfig } from "../src/index.js";
import { rng } from "./helpers.js";

// 6 double blocks of dim 384 (36·d² weights each = 21 MB in f32) + 2 single blocks: ~140 MB of weights.
const RAW = {
  _class_name: "FluxTransformer2DModel",
  attention_head_dim: 64,
  axes_dims_rope: [8, 28, 28],
  in_channels: 16,
  joint_attention_dim: 32,
  num_attention_heads: 6,
  num_layers: 6,
  num_single_layers: 2,
  pooled_projection_dim: 16,
};
const MB = 1 << 20;

let dir = "";
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "svdq-stream-"));
  const config = parseFluxConfig(RAW);
  // Entries produce their data on demand, so generating the checkpoint never holds it all either.
  const entries: TensorEntry[] = fluxParams(config).map((p, idx) => ({
    name: p.name,
    dtype: "F32",
    shape: p.shape,
    data: () => {
      const r = rng(1000 + idx);
      const n = p.shape.reduce((a, b) => a * b, 1);
      const scale = p.shape.length === 2 ? 1 / Math.sqrt(p.shape[1]!) : 0.1;
      const v = new Float32Array(n);
      for (let i = 0; i < n; i++) v[i] = (r.uniform() * 2 - 1) * scale + (p.shape.length === 1 ? 1 : 0);
      return new Tensor("F32", p.shape, v);
    },
  }));
  await writeSafetensors(join(dir, "diffusion_pytorch_model.safetensors"), entries);
  await writeFile(join(dir, "config.json"), JSON.stringify(RAW));
});
afterAll(async () => {
  if (dir && !process.env.SVDQ_KEEP_TMP) await rm(dir, { recursive: true, force: true });
});

function runChild(mode: "stream" | "resident"): {
  peak: number;
  samples: number[];
  blocks: string[];
  checksum: number;
} {
  const r = spawnSync(
    process.execPath,
    [
      "--expose-gc",
      "--conditions=@svdquant/source",
      "--import",
      "tsx",
      join(import.meta.dirname, "stream-child.ts"),
      dir,
      mode,
    ],
    { encoding: "utf8", cwd: join(import.meta.dirname, "..") },
  );
  if (r.status !== 0) throw new Error(`child ${mode} failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe("block streaming", () => {
  it("walks the model block by block with peak RSS growth of about two blocks; same output as resident", () => {
    const config = parseFluxConfig(RAW);
    const blockBytes = fluxDoubleBlockParams(config).reduce((s, p) => s + 4 * p.shape.reduce((a, b) => a * b, 1), 0);
    const total = fluxParams(config).reduce((s, p) => s + 4 * p.shape.reduce((a, b) => a * b, 1), 0);
    const stream = runChild("stream");
    const resident = runChild("resident");
    console.log(
      `block ${(blockBytes / MB).toFixed(1)} MB, model ${(total / MB).toFixed(1)} MB; peak RSS growth: streaming ${(stream.peak / MB).toFixed(1)} MB, resident ${(resident.peak / MB).toFixed(1)} MB`,
    );
    expect(stream.blocks).toEqual([
      ...Array.from({ length: 6 }, (_, i) => `transformer_blocks.${i}.`),
      "single_transformer_blocks.0.",
      "single_transformer_blocks.1.",
    ]);
    expect(stream.checksum).toBe(resident.checksum);
    // Streaming: one arena block plus transient buffers; bounded by two blocks plus a little runtime slack.
    expect(stream.peak).toBeLessThan(2 * blockBytes + 8 * MB);
    // The resident model really holds everything, so the bound above is meaningful.
    expect(resident.peak).toBeGreaterThan(0.9 * total);
  });
});

describe("streaming gives the resident model's output", () => {
  it("PixArt fixture, streaming vs resident, identical", async () => {
    const { PixArtTransformer } = await import("../src/index.js");
    const { FIXTURES, pixartTinyInputs, readIo } = await import("./helpers.js");
    const io = await readIo("pixart-tiny-a");
    const inp = pixartTinyInputs(io);
    const dirP = join(FIXTURES, "models/pixart-tiny-a");
    const streamed = await PixArtTransformer.fromFolder(dirP, { streaming: true });
    const seen: string[] = [];
    const a = await streamed.forward(inp, { onBlockStart: (p) => seen.push(p) });
    await streamed.close();
    const b = await (await PixArtTransformer.fromFolder(dirP)).forward(inp);
    expect(seen).toEqual(["transformer_blocks.0.", "transformer_blocks.1."]);
    expect(Array.from(a)).toEqual(Array.from(b));
  });
});

describe("prepare() on a streaming model", () => {
  it("packs each block as it is read: FLUX fixture on the native GEMM, streaming + prepare = resident + prepare", async () => {
    const { FluxTransformer, getGemmBackend, setGemmBackend, useKernelsGemm } = await import("../src/index.js");
    const { FIXTURES, fluxTinyInputs, readIo } = await import("./helpers.js");
    const before = getGemmBackend();
    const choice = await useKernelsGemm();
    expect(choice.reason).toBe(""); // pnpm build compiles the addon
    try {
      const io = await readIo("flux-tiny-a");
      const inp = fluxTinyInputs(io);
      const dir = join(FIXTURES, "models/flux-tiny-a");
      const streamed = await FluxTransformer.fromFolder(dir, { streaming: true });
      // only the head is resident: its 8 layers are packed now, the blocks' on every read
      expect(streamed.prepare()).toBe(streamed.headLayers().length);
      const a = await streamed.forward(inp);
      await streamed.close();
      const resident = await FluxTransformer.fromFolder(dir);
      expect(resident.prepare()).toBe(resident.linearNames().length);
      const b = await resident.forward(inp);
      expect(Array.from(a)).toEqual(Array.from(b));
    } finally {
      setGemmBackend(before);
    }
  });
});
