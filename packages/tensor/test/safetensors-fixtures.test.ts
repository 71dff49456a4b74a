import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { openCheckpoint, SafetensorsFile, type Tensor, writeSafetensors } from "@svdquant/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tempDir } from "./helpers.js";

const FIX = join(import.meta.dirname, "../../../fixtures");

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await tempDir("svdq-fixtures-")));
afterAll(() => cleanup());

describe("reference-written safetensors files", () => {
  it.each([
    "nunchaku-pack/case-a.safetensors",
    "metrics/case-a.safetensors",
    "models/flux-tiny-a/io.safetensors",
    "models/pixart-tiny-a/io.safetensors",
    "models/flux-tiny-a/diffusion_pytorch_model.safetensors",
    "models/flux-tiny-a-bf16/diffusion_pytorch_model.safetensors",
    "models/pixart-tiny-a/diffusion_pytorch_model.safetensors",
  ])("%s re-writes byte-identically", async (rel) => {
    const path = join(FIX, rel);
    const f = await SafetensorsFile.open(path);
    const tensors = new Map<string, Tensor>();
    for (const n of f.names()) tensors.set(n, await f.read(n));
    await f.close();
    const out = join(dir, `${rel.replaceAll("/", "_")}`);
    await writeSafetensors(out, tensors, f.metadata);
    expect(Buffer.compare(await readFile(path), await readFile(out))).toBe(0);
  });

  it("reads a diffusers folder with names, dtypes and shapes", async () => {
    const src = await openCheckpoint(join(FIX, "models/flux-tiny-a"));
    expect(src.names()).toHaveLength(122);
    expect(src.info("proj_out.weight")).toMatchObject({ dtype: "F32", shape: [16, 64] });
    const w = await src.read("context_embedder.weight");
    expect(w.shape).toEqual([64, 48]);
    expect(Number.isFinite(w.toFloat32()[0])).toBe(true);
    await src.close();
  });

  it("bf16 weights of flux-tiny-a-bf16 are the bf16 rounding of flux-tiny-a's float32 weights", async () => {
    const f32 = await openCheckpoint(join(FIX, "models/flux-tiny-a"));
    const bf16 = await openCheckpoint(join(FIX, "models/flux-tiny-a-bf16"));
    expect(bf16.names()).toEqual(f32.names());
    let checked = 0;
    for (const name of f32.names()) {
      const a = await f32.read(name);
      const b = await bf16.read(name);
      expect(a.dtype).toBe("F32");
      expect(b.dtype).toBe("BF16");
      expect(b.shape).toEqual(a.shape);
      const want = a.to("BF16").data;
      for (let i = 0; i < want.length; i++) {
        if (want[i] !== b.data[i]) expect(b.data[i], `${name}[${i}]`).toBe(want[i]);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(100_000);
    await f32.close();
    await bf16.close();
  });

  it("fixture contents match their documentation (README.upstream.md)", async () => {
    const flux = await SafetensorsFile.open(join(FIX, "models/flux-tiny-a/io.safetensors"));
    expect(flux.names()).toEqual([
      "encoder_hidden_states",
      "expected_float32",
      "expected_float64",
      "hidden_states",
      "img_ids",
      "pooled_projections",
      "timestep",
      "txt_ids",
    ]);
    expect(flux.info("hidden_states")).toMatchObject({ dtype: "F32", shape: [1, 16, 16] });
    // img_ids: (0, row, col) on a 4x4 grid; txt_ids: zeros; timestep in [0, 1]
    const ids = (await flux.read("img_ids")).toFloat64();
    for (let i = 0; i < 16; i++) expect([ids[3 * i], ids[3 * i + 1], ids[3 * i + 2]]).toEqual([0, i >> 2, i & 3]);
    expect([...(await flux.read("txt_ids")).toFloat64()]).toEqual(new Array(24).fill(0));
    const ts = (await flux.read("timestep")).toFloat64()[0]!;
    expect(ts).toBeGreaterThanOrEqual(0);
    expect(ts).toBeLessThanOrEqual(1);
    await flux.close();

    const pixart = await SafetensorsFile.open(join(FIX, "models/pixart-tiny-a/io.safetensors"));
    expect([...(await pixart.read("timestep")).toFloat64()]).toEqual([500]);
    expect([...(await pixart.read("encoder_attention_mask")).toFloat64()]).toEqual([1, 1, 1, 1, 0, 0]);
    expect(pixart.info("hidden_states")).toMatchObject({ dtype: "F32", shape: [1, 4, 8, 8] });
    await pixart.close();

    const pack = await SafetensorsFile.open(join(FIX, "nunchaku-pack/case-a.safetensors"));
    expect(pack.info("int4_weight")).toMatchObject({ dtype: "I32", shape: [256, 256] });
    expect(pack.info("packed_qweight")).toMatchObject({ dtype: "I8", shape: [256, 128] });
    expect(pack.info("scales")).toMatchObject({ dtype: "BF16", shape: [256, 4] });
    const q = (await pack.read("int4_weight")).data as Int32Array;
    expect(Math.min(...q)).toBe(-8);
    expect(Math.max(...q)).toBe(7);
    expect(pack.metadata.note).toContain("nunchaku");
    await pack.close();

    const metrics = await SafetensorsFile.open(join(FIX, "metrics/case-a.safetensors"));
    expect(metrics.info("features_a")).toMatchObject({ dtype: "F64", shape: [200, 32] });
    const img = (await metrics.read("image_ref")).toFloat32();
    expect(img.length).toBe(4 * 3 * 64 * 48);
    expect(Math.min(...img)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...img)).toBeLessThanOrEqual(1);
    const psnr = (await metrics.read("psnr_per_image")).toFloat64();
    for (const p of psnr) expect(p).toBeGreaterThan(5);
    await metrics.close();
  });
});
