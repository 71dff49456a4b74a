// Issue 18 (findings 5, 6, 11): model configs and weights from files are checked before they can exhaust memory or
// poison a forward with NaN.
import { cp, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SafetensorsFile, Tensor, writeSafetensors } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { FluxTransformer, PixArtTransformer, parseFluxConfig, parsePixArtConfig } from "../src/index.js";
import { FIXTURES as FIXTURE_ROOT, fluxTinyInputs, readIo } from "./helpers.js";

const FIXTURES = join(FIXTURE_ROOT, "models");

/** A copy of a fixture model folder with config overrides and/or one tensor replaced. */
async function variant(
  model: string,
  opts: { config?: Record<string, unknown>; poison?: { name: string; index: number; value: number } },
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "svdq-models-h-"));
  const src = join(FIXTURES, model);
  const cfg = JSON.parse(await readFile(join(src, "config.json"), "utf8"));
  await writeFile(join(dir, "config.json"), JSON.stringify({ ...cfg, ...opts.config }));
  if (opts.poison === undefined) {
    await cp(join(src, "diffusion_pytorch_model.safetensors"), join(dir, "diffusion_pytorch_model.safetensors"));
    return dir;
  }
  const f = await SafetensorsFile.open(join(src, "diffusion_pytorch_model.safetensors"));
  const tensors = new Map<string, Tensor>();
  for (const n of f.names()) tensors.set(n, await f.read(n));
  await f.close();
  const t = tensors.get(opts.poison.name)!;
  const vals = t.toFloat32();
  vals[opts.poison.index] = opts.poison.value;
  tensors.set(opts.poison.name, Tensor.fromFloats(t.dtype, t.shape, vals));
  await writeSafetensors(join(dir, "diffusion_pytorch_model.safetensors"), tensors);
  return dir;
}

describe("config keys named like Object.prototype members (finding 11)", () => {
  it.each(["constructor", "toString", "hasOwnProperty", "__proto__"])("%s is an unknown key", (key) => {
    const raw = JSON.parse(`{"_class_name":"FluxTransformer2DModel","${key}":1}`);
    expect(() => parseFluxConfig(raw)).toThrow(
      expect.objectContaining({ code: "E_CONFIG", message: expect.stringContaining(`unknown key "${key}"`) }),
    );
    const rawP = JSON.parse(`{"_class_name":"PixArtTransformer2DModel","${key}":1}`);
    expect(() => parsePixArtConfig(rawP)).toThrow(expect.objectContaining({ code: "E_CONFIG" }));
  });
});

describe("config against the checkpoint, before allocation (finding 5)", () => {
  it("num_layers: 1e7 fails at once naming the key and the checkpoint's count, in bounded memory", async () => {
    const dir = await variant("flux-tiny-a", { config: { num_layers: 1e7 } });
    const before = process.memoryUsage().rss;
    const t0 = Date.now();
    await expect(FluxTransformer.fromFolder(dir)).rejects.toMatchObject({
      code: "E_CONFIG",
      message: expect.stringMatching(/num_layers = 10000000, but the checkpoint holds 2 blocks/),
    });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(process.memoryUsage().rss - before).toBeLessThan(128 * 2 ** 20);
    const single = await variant("flux-tiny-a", { config: { num_single_layers: 4 } });
    await expect(FluxTransformer.fromFolder(single)).rejects.toMatchObject({
      code: "E_CONFIG",
      message: expect.stringMatching(/num_single_layers = 4, but the checkpoint holds 3 blocks/),
    });
    const pix = await variant("pixart-tiny-a", { config: { num_layers: 1e7 } });
    await expect(PixArtTransformer.fromFolder(pix, { streaming: true })).rejects.toMatchObject({ code: "E_CONFIG" });
  });
});

describe("finite weights (finding 6)", () => {
  it.each([
    ["NaN", Number.NaN],
    ["+Inf", Number.POSITIVE_INFINITY],
    ["-Inf", Number.NEGATIVE_INFINITY],
  ])("a %s weight in a head tensor or a block fails the load, resident and streaming", async (_label, value) => {
    const head = await variant("flux-tiny-a", { poison: { name: "proj_out.weight", index: 17, value } });
    await expect(FluxTransformer.fromFolder(head)).rejects.toMatchObject({
      code: "E_WEIGHTS",
      message: expect.stringMatching(/proj_out\.weight: holds a non-finite value .* at flat index 17/),
    });
    const name = "single_transformer_blocks.2.proj_mlp.weight";
    const block = await variant("flux-tiny-a", { poison: { name, index: 5, value } });
    await expect(FluxTransformer.fromFolder(block)).rejects.toMatchObject({ code: "E_WEIGHTS" });
    // streaming loads blocks at forward time: the check runs then, on the arena's bytes
    const streamed = await FluxTransformer.fromFolder(block, { streaming: true });
    await expect(streamed.forward(fluxTinyInputs(await readIo("flux-tiny-a")))).rejects.toMatchObject({
      code: "E_WEIGHTS",
      message: expect.stringContaining(name),
    });
    await streamed.close();
  });
});
