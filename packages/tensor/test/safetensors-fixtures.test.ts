import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openCheckpoint, SafetensorsFile, type Tensor, writeSafetensors } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";

const FIX = join(import.meta.dirname, "../../../fixtures");

describe("reference-written safetensors files", () => {
  it.each([
    "nunchaku-pack/case-a.safetensors",
    "metrics/case-a.safetensors",
    "models/flux-tiny-a/io.safetensors",
    "models/pixart-tiny-a/io.safetensors",
  ])("%s re-writes byte-identically", async (rel) => {
    const path = join(FIX, rel);
    const f = await SafetensorsFile.open(path);
    const tensors = new Map<string, Tensor>();
    for (const n of f.names()) tensors.set(n, await f.read(n));
    await f.close();
    const out = join(await mkdtemp(join(tmpdir(), "st-")), "re.safetensors");
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
});
