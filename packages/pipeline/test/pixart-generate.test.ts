/**
 * PixArt-Σ generation and prompt calibration on the tiny pipeline fixtures/pipeline/pixart: PNGs with their settings,
 * the same seed → the same bytes, a packed SVDQuant transformer (`quantized`), clear errors, and calibration on the
 * 16-bit model's own DPM-Solver trajectories recording both classifier-free-guidance branches.
 */
import { cp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseModelConfig } from "@svdquant/models";
import { openModelFolder, Tensor, writeSafetensors } from "@svdquant/tensor";
import { PNG } from "pngjs";
import { describe, expect, it } from "vitest";
import {
  generateImages,
  type InputStats,
  PixArtPipeline,
  parseQuantizeConfig,
  pipelineKind,
  quantizeModel,
  readPngText,
  recordCalibration,
  samplePixArt,
} from "../src/index.ts";
import { FIXTURES, relFrob, tempDir } from "./helpers.ts";

const DIR = join(FIXTURES, "pipeline/pixart");
const TOY = join(FIXTURES, "../models/toy-flux");
const SMALL = { steps: 3, height: 32, width: 48, resolutionBinning: false } as const;

describe("PixArt-Σ generateImages", async () => {
  const out = await tempDir();

  it("picks the pipeline from model_index.json", async () => {
    expect(await pipelineKind(DIR)).toBe("pixart");
    expect(await pipelineKind(TOY)).toBe("flux");
  });

  it("writes PNGs with the settings; the same seed gives the same bytes, another seed other bytes", async () => {
    const prompts = ["a small red circle on the left", "a huge blue star"];
    const a = await generateImages({ pipelineDir: DIR, prompts, seed: 5, outDir: join(out, "a"), ...SMALL });
    const b = await generateImages({ pipelineDir: DIR, prompts, seed: 5, outDir: join(out, "b"), ...SMALL });
    const c = await generateImages({ pipelineDir: DIR, prompts, seed: 6, outDir: join(out, "c"), ...SMALL });
    expect(a).toHaveLength(2);
    const bytes = (files: string[]) => Promise.all(files.map((f) => readFile(f)));
    const [ba, bb, bc] = await Promise.all([bytes(a), bytes(b), bytes(c)]);
    expect(ba[0]!.equals(bb[0]!)).toBe(true);
    expect(ba[1]!.equals(bb[1]!)).toBe(true);
    expect(ba[0]!.equals(bc[0]!)).toBe(false);
    expect(ba[0]!.equals(ba[1]!)).toBe(false);
    const png = PNG.sync.read(ba[0]!);
    expect([png.width, png.height]).toEqual([48, 32]);
    expect(readPngText(ba[0]!)).toMatchObject({
      prompt: prompts[0],
      seed: "5",
      pipeline: "PixArtSigmaPipeline",
      steps: "3",
      guidance: "4.5",
      negative_prompt: "",
      max_sequence_length: "300",
      resolution_binning: "false",
      size: "48x32",
    });
  });

  it("bins the default size (sample_size × VAE factor) and resizes back to it", async () => {
    const [f] = await generateImages({ pipelineDir: DIR, prompts: ["a ring"], steps: 1, outDir: join(out, "d") });
    const png = PNG.sync.read(await readFile(f!));
    expect([png.width, png.height]).toEqual([128, 128]); // sample_size 32 × VAE factor 4
    expect(readPngText(await readFile(f!)).resolution_binning).toBe("true");
  });

  it("embeddings from a file equal the prompt's; the negative prompt is encoded when the file has none", async () => {
    const pipe = await PixArtPipeline.load(DIR);
    const cond = pipe.encode(["a tiny green ring"], "", 300);
    const file = join(out, "emb.safetensors");
    await writeSafetensors(file, {
      prompt_embeds: new Tensor("F32", [1, 300, 32], cond.promptEmbeds),
      prompt_attention_mask: new Tensor("F32", [1, 300], cond.promptMask),
    });
    const fromFile = await pipe.conditioningFromFile(file, "");
    expect(Array.from(fromFile.negativeMask!)).toEqual(Array.from(cond.negativeMask!));
    expect(relFrob(fromFile.negativeEmbeds!, cond.negativeEmbeds!)).toBe(0);
    const [x] = await generateImages({ pipelineDir: DIR, embeddings: file, outDir: join(out, "e"), ...SMALL });
    const [y] = await generateImages({
      pipelineDir: DIR,
      prompts: ["a tiny green ring"],
      outDir: join(out, "f"),
      ...SMALL,
    });
    expect(PNG.sync.read(await readFile(x!)).data.equals(PNG.sync.read(await readFile(y!)).data)).toBe(true);
    // without the mask the file is refused
    const bad = join(out, "bad.safetensors");
    await writeSafetensors(bad, { prompt_embeds: new Tensor("F32", [1, 300, 32], cond.promptEmbeds) });
    await expect(
      generateImages({ pipelineDir: DIR, embeddings: bad, outDir: join(out, "g"), ...SMALL }),
    ).rejects.toThrow(/prompt_attention_mask/);
  });

  it("bad input is one clear error", async () => {
    const go = (o: object) =>
      generateImages({ pipelineDir: DIR, prompts: ["a ring"], outDir: join(out, "x"), ...SMALL, ...o });
    await expect(go({ height: 36 })).rejects.toThrow(/height must be a positive multiple of 8/);
    await expect(go({ prompts: ["  "] })).rejects.toThrow(/prompt 0 is empty/);
    await expect(go({ resolutionBinning: true, height: 64, width: 64, steps: 0 })).rejects.toThrow(/steps/);
    // an unknown pipeline class
    const other = join(out, "other");
    await cp(DIR, other, { recursive: true });
    const mi = JSON.parse(await readFile(join(other, "model_index.json"), "utf8"));
    await writeFile(join(other, "model_index.json"), JSON.stringify({ ...mi, _class_name: "StableDiffusionPipeline" }));
    await expect(go({ pipelineDir: other })).rejects.toThrow(
      /names StableDiffusionPipeline; supported: FluxPipeline, PixArtSigmaPipeline/,
    );
    // a folder without its transformer
    await writeFile(join(other, "model_index.json"), JSON.stringify({ ...mi, transformer: undefined }));
    await expect(go({ pipelineDir: other })).rejects.toThrow(/has no component "transformer"/);
    // PixArt options on a FLUX folder
    await expect(
      generateImages({ pipelineDir: TOY, prompts: ["a"], outDir: join(out, "y"), negativePrompt: "blurry" }),
    ).rejects.toThrow(/PixArt-Σ options/);
  });
});

describe("PixArt-Σ with a packed SVDQuant transformer", async () => {
  const dir = await tempDir();
  const ckpt = join(dir, "pixart.svdq.safetensors");
  await quantizeModel({
    modelDir: join(DIR, "transformer"),
    out: ckpt,
    config: parseQuantizeConfig({
      grid: [
        { alpha: 0.5, beta: 0.5 },
        { alpha: 0.8, beta: 0.2 },
      ],
      refinement: { maxIterations: 1 },
      rank: 8,
      calibration: { source: { prompts: ["a red circle", "a blue star"] }, samples: 2, steps: 2, textTokens: 300 },
    }),
  });

  it("generates from the quantized checkpoint, close to the 16-bit model's latents", async () => {
    const pipe = await PixArtPipeline.load(DIR);
    const cond = pipe.encode(["a small red circle on the left"], "", 300);
    const s = { ...SMALL, guidance: 4.5, maxSequenceLength: 300 };
    const ref = await samplePixArt(pipe, await pipe.transformer(), cond, s, { row: 0, seed: 1 });
    const q = await samplePixArt(pipe, await pipe.transformer(ckpt), cond, s, { row: 0, seed: 1 });
    const e = relFrob(q.latents, ref.latents);
    expect(e).toBeGreaterThan(0); // 4-bit layers are really in use
    expect(e).toBeLessThan(0.5);
    console.log(`pixart fixture W4A4 (rank 8): final latents rel. error vs 16-bit ${e.toExponential(2)}`);
    const files = await generateImages({
      pipelineDir: DIR,
      quantized: ckpt,
      prompts: ["a ring"],
      outDir: join(dir, "png"),
      ...SMALL,
    });
    expect(readPngText(await readFile(files[0]!)).quantized).toBe(ckpt);
  });

  it("a PixArt checkpoint given to a FLUX pipeline is refused in one line", async () => {
    await expect(
      generateImages({ pipelineDir: TOY, quantized: ckpt, prompts: ["a"], outDir: join(dir, "z"), steps: 1 }),
    ).rejects.toThrow(/not a FLUX transformer/);
  });
});

describe("PixArt-Σ prompt calibration", async () => {
  const folder = await openModelFolder(join(DIR, "transformer"));
  const config = parseModelConfig(folder.config!, "transformer/config.json");
  const record = new Set([
    "transformer_blocks.0.attn1.to_q",
    "transformer_blocks.0.attn2.to_k",
    "transformer_blocks.1.ff.net.2",
  ]);
  const run = async (guidance: number): Promise<{ stats: Map<string, InputStats>; forwards: number }> => {
    const cal = parseQuantizeConfig({
      calibration: {
        source: { prompts: ["a small red circle", "a huge blue star at the top"], pipeline: DIR, guidance },
        samples: 2,
        steps: 3,
        imageSide: 6,
        textTokens: 300,
        reservoir: 64,
      },
    }).calibration;
    let forwards = 0;
    const stats = await recordCalibration(config, folder.weights, cal, record, (d) => void (forwards = d));
    return { stats, forwards };
  };

  it("records every step of the sampler, both CFG branches in each forward", async () => {
    const cfg = await run(4.5);
    const plain = await run(1);
    expect(cfg.forwards).toBe(2 * 3); // samples × steps
    expect(plain.forwards).toBe(2 * 3);
    const S = 6 * 6; // image tokens
    expect(cfg.stats.get("transformer_blocks.0.attn1.to_q")!.tokensSeen).toBe(2 * 3 * 2 * S);
    expect(plain.stats.get("transformer_blocks.0.attn1.to_q")!.tokensSeen).toBe(2 * 3 * S);
    expect(cfg.stats.get("transformer_blocks.0.attn2.to_k")!.tokensSeen).toBe(2 * 3 * 2 * 300);
    // the text branch of step 1 is the same in both runs, so CFG's absmax covers it; the unconditional branch
    // (the empty prompt's embeddings) adds channels where it is larger
    const a = cfg.stats.get("transformer_blocks.0.attn2.to_k")!.absmax;
    const b = plain.stats.get("transformer_blocks.0.attn2.to_k")!.absmax;
    let larger = 0;
    for (let i = 0; i < a.length; i++) {
      expect(a[i]!).toBeGreaterThanOrEqual(b[i]!);
      if (a[i]! > b[i]!) larger++;
    }
    expect(larger).toBeGreaterThan(0);
    for (const s of cfg.stats.values()) expect(s.rows).toBe(64);
  });
});
