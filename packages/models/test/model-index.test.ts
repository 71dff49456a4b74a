import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { componentDir, ModelError, parsePythonJson, readModelIndex } from "../src/index.js";

describe("readModelIndex / componentDir (diffusers pipeline folders)", () => {
  it("lists the components of a FluxPipeline folder, skipping [null, null] and options", async () => {
    const dir = await mkdtemp(join(tmpdir(), "svdq-index-"));
    await writeFile(
      join(dir, "model_index.json"),
      JSON.stringify({
        _class_name: "FluxPipeline",
        _diffusers_version: "0.30.0",
        scheduler: ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        text_encoder: ["transformers", "CLIPTextModel"],
        tokenizer: ["transformers", "CLIPTokenizer"],
        image_encoder: [null, null],
        force_zeros_for_empty_prompt: true,
      }),
    );
    await mkdir(join(dir, "scheduler"));
    const idx = await readModelIndex(dir);
    expect(idx.className).toBe("FluxPipeline");
    expect([...idx.components.keys()]).toEqual(["scheduler", "text_encoder", "tokenizer"]);
    expect(idx.components.get("text_encoder")!.className).toBe("CLIPTextModel");
    expect(await componentDir(idx, "scheduler")).toBe(join(dir, "scheduler"));
    await expect(componentDir(idx, "text_encoder")).rejects.toThrow(/text_encoder: component folder is missing/);
    await expect(componentDir(idx, "vae")).rejects.toThrow(/FluxPipeline has no component "vae"/);
    await expect(readModelIndex(join(dir, "scheduler"))).rejects.toThrow(/model_index\.json: cannot read: ENOENT/);
  });

  it("parsePythonJson accepts Python's non-finite tokens outside strings only", () => {
    const o = parsePythonJson(
      String.raw`{"a": -Infinity, "b": [NaN, Infinity], "s": "-Infinity", "q": "x\" NaN"}`,
      "x.json",
    );
    expect(o.q).toBe('x" NaN');
    expect(o.a).toBe(-Infinity);
    expect(Number.isNaN((o.b as number[])[0])).toBe(true);
    expect((o.b as number[])[1]).toBe(Infinity);
    expect(o.s).toBe("-Infinity");
    expect(() => parsePythonJson("[1]", "x.json")).toThrow(ModelError);
    expect(() => parsePythonJson("{", "x.json")).toThrow(/x\.json: not valid JSON/);
  });
});
