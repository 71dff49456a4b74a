/**
 * The TypeScript text → image path against diffusers' FluxPipeline on the built-in toy model
 * (models/toy-flux/samples/reference.safetensors, sampled on the CPU in float32 by tools/train-toy/train.py):
 * token ids, CLIP pooled and T5 embeddings, the 20-step trajectory from the same initial latents, the decoded image.
 */
import { join } from "node:path";
import { unpackFluxLatents } from "@svdquant/models";
import { SafetensorsFile } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { FluxPipeline, sampleFlux } from "../src/index.ts";
import { relFrob } from "./helpers.ts";

const TOY = join(import.meta.dirname, "../../../models/toy-flux");

describe("toy-flux: our FluxPipeline steps vs diffusers", async () => {
  const f = await SafetensorsFile.open(join(TOY, "samples/reference.safetensors"));
  const ref = Object.fromEntries(await Promise.all(f.names().map(async (n) => [n, await f.read(n)] as const)));
  const meta = f.metadata;
  await f.close();
  const prompts = JSON.parse(meta.prompts!) as string[];
  const L = Number(meta.max_sequence_length);
  const pipe = await FluxPipeline.load(TOY);
  const transformer = await pipe.transformer();

  it("tokenizes and encodes like transformers (ids exact, embeddings within 1e-5)", () => {
    const c = pipe.prompts.clipTokenizer.encode(prompts, pipe.prompts.clipTokenizer.modelMaxLength ?? 77);
    expect(Array.from(c.ids)).toEqual(Array.from(ref.clip_input_ids!.data as Int32Array));
    const t = pipe.prompts.t5Tokenizer.encode(prompts, L);
    expect(Array.from(t.ids)).toEqual(Array.from(ref.t5_input_ids!.data as Int32Array));
    const cond = pipe.encode(prompts, L);
    expect(relFrob(cond.promptEmbeds, ref.prompt_embeds!.toFloat32())).toBeLessThan(1e-5);
    expect(relFrob(cond.pooled, ref.pooled_prompt_embeds!.toFloat32())).toBeLessThan(1e-5);
  });

  it.each([0, 3])("sample %i: the trajectory and the decoded image match diffusers", async (i) => {
    const cond = pipe.encode(prompts, L);
    const [, tokens, ch] = ref.initial_latents!.shape as [number, number, number];
    const c = ch / 4;
    const side = Math.sqrt(tokens) * 2;
    const init = unpackFluxLatents(
      ref.initial_latents!.toFloat32().subarray(i * tokens * ch, (i + 1) * tokens * ch),
      1,
      c,
      side,
      side,
    );
    const s = await sampleFlux(
      pipe,
      transformer,
      cond,
      {
        steps: Number(meta.num_inference_steps),
        guidance: 3.5,
        height: Number(meta.height),
        width: Number(meta.width),
        maxSequenceLength: L,
      },
      { row: i, seed: 0, latents: init },
    );
    const finalRef = unpackFluxLatents(
      ref.final_latents!.toFloat32().subarray(i * tokens * ch, (i + 1) * tokens * ch),
      1,
      c,
      side,
      side,
    );
    const e = relFrob(s.latents, finalRef);
    expect(e).toBeLessThan(1e-4);
    const img = ref.decoded!.toFloat32().subarray(i * 3 * 64 * 64, (i + 1) * 3 * 64 * 64);
    // our RGB8 vs diffusers' decoded [-1, 1] image mapped the same way: within one 8-bit step almost everywhere
    let off = 0;
    for (let p = 0; p < 64 * 64; p++)
      for (let ci = 0; ci < 3; ci++) {
        const want = Math.round(Math.min(1, Math.max(0, img[ci * 4096 + p]! / 2 + 0.5)) * 255);
        if (Math.abs(s.rgb[p * 3 + ci]! - want) > 1) off++;
      }
    expect(off).toBeLessThan(10);
    console.log(
      `toy sample ${i}: final latents rel. error ${e.toExponential(2)}, ${off} channel values off by > 1/255`,
    );
  });
});
