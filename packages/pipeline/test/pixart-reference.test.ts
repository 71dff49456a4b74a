/**
 * Our PixArt-Σ pipeline against diffusers' PixArtSigmaPipeline on the tiny random pipeline fixtures/pipeline/pixart
 * (fixtures/pipeline/pixart-reference.safetensors, made by tools/make-pixart-reference.py on the CPU in float32 and
 * float64): token ids and masks, T5 embeddings, every step's latents from the same initial latents (CFG 4.5, no CFG,
 * resolution binning), and the decoded pixels.
 */
import { join } from "node:path";
import { SafetensorsFile, type Tensor } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { PIXART_DEFAULTS, PixArtPipeline, pixartPreprocess, pixartSampleSize, samplePixArt } from "../src/index.ts";
import { FIXTURES, relFrob } from "./helpers.ts";

const DIR = join(FIXTURES, "pipeline/pixart");

interface Case {
  prompt: string;
  seed: number;
  steps: number;
  guidance: number;
  height: number;
  width: number;
  binning: boolean;
  binned_height: number;
  binned_width: number;
}

describe("PixArt-Σ: our pipeline vs diffusers' PixArtSigmaPipeline", async () => {
  const f = await SafetensorsFile.open(join(FIXTURES, "pipeline/pixart-reference.safetensors"));
  const ref: Record<string, Tensor> = Object.fromEntries(
    await Promise.all(f.names().map(async (n) => [n, await f.read(n)] as const)),
  );
  const cases = JSON.parse(f.metadata.cases!) as Case[];
  await f.close();
  const pipe = await PixArtPipeline.load(DIR);
  const transformer = await pipe.transformer();
  const ints = (t: Tensor) => Array.from(t.toFloat32(), Math.round);

  it("lower-cases and strips prompts, tokenizes and encodes like transformers (ids, masks exact; embeddings 1e-5)", () => {
    expect(pixartPreprocess("  A Huge BLUE star!\u3000\n")).toBe("a huge blue star!");
    cases.forEach((c, i) => {
      const t = pipe.prompts.tokenizer.encode([pixartPreprocess(c.prompt)], 300);
      expect(Array.from(t.ids)).toEqual(ints(ref[`case${i}.input_ids`]!));
      expect(Array.from(t.mask)).toEqual(ints(ref[`case${i}.mask`]!));
      const cond = pipe.encode([c.prompt], c.guidance > 1 ? "" : undefined, 300);
      expect(Array.from(cond.promptMask)).toEqual(ints(ref[`case${i}.mask`]!));
      expect(relFrob(cond.promptEmbeds, ref[`case${i}.prompt_embeds`]!.toFloat32())).toBeLessThan(1e-5);
      if (c.guidance > 1) {
        expect(Array.from(cond.negativeMask!)).toEqual(ints(ref[`case${i}.neg_mask`]!));
        expect(relFrob(cond.negativeEmbeds!, ref["case0.negative_embeds"]!.toFloat32())).toBeLessThan(1e-5);
      }
    });
  });

  it("bins the requested size as PixArtImageProcessor.classify_height_width_bin", () => {
    for (const c of cases)
      expect(pixartSampleSize(transformer, { height: c.height, width: c.width, resolutionBinning: c.binning })).toEqual(
        {
          height: c.binned_height,
          width: c.binned_width,
        },
      );
  });

  it.each([0, 1, 2, 3])("case %i: every step's latents within 1e-5 and the pixels within 1/255", async (i) => {
    const c = cases[i]!;
    const cond = pipe.encode([c.prompt], c.guidance > 1 ? PIXART_DEFAULTS.negativePrompt : undefined, 300);
    const steps = ref[`case${i}.latents`]!;
    const n = steps.shape[0]!;
    const per = steps.toFloat32().length / n;
    const want32 = steps.toFloat32();
    const want64 = ref[`case${i}.latents.f64`]!.toFloat32();
    const errs: number[] = [];
    const s = await samplePixArt(
      pipe,
      transformer,
      cond,
      {
        steps: c.steps,
        guidance: c.guidance,
        height: c.height,
        width: c.width,
        maxSequenceLength: 300,
        resolutionBinning: c.binning,
      },
      {
        row: 0,
        seed: c.seed,
        latents: ref[`case${i}.latents0`]!.toFloat32(),
        onLatents: (k, x) => errs.push(relFrob(x, want32.subarray(k * per, (k + 1) * per))),
      },
    );
    expect(errs).toHaveLength(n);
    for (const e of errs) expect(e).toBeLessThan(1e-5);
    const e64 = relFrob(s.latents, want64.subarray((n - 1) * per));
    expect(e64).toBeLessThan(1e-5);
    const px = ref[`case${i}.pixels`]!;
    expect([s.height, s.width]).toEqual([px.shape[1], px.shape[2]]);
    const want = px.data as Uint8Array;
    let worst = 0;
    for (let p = 0; p < want.length; p++) worst = Math.max(worst, Math.abs(s.rgb[p]! - want[p]!));
    expect(worst).toBeLessThanOrEqual(1);
    console.log(
      `pixart case ${i}: latents rel. error per step ≤ ${Math.max(...errs).toExponential(2)} (vs float64 ${e64.toExponential(2)}), pixels max |Δ| ${worst}/255`,
    );
  });
});
