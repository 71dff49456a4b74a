/**
 * Text → image with a diffusers PixArt-Σ pipeline folder, on the CPU: the steps of diffusers' PixArtSigmaPipeline.
 *
 *   prompt ─► lower().strip() ─► T5 tokenizer (300 tokens, mask) ─► text_encoder(ids, mask) ┐ negative prompt ""
 *   seeded latents [1, C, h, w] (h, w = binned size / VAE factor) ────────────────────────────┤ the same way
 *   × steps of DPM-Solver++(2M): transformer on the batch [uncond, text] (CFG), ε half of the learned-σ output,
 *   uncond + g·(text − uncond) ─► latents / scaling_factor ─► VAE decoder ─► resize + crop back (binning) ─► RGB8
 *
 * `clean_caption` (the pipeline's ftfy/BeautifulSoup caption cleaner) is not reproduced: prompts are lower-cased and
 * stripped, as the pipeline does with clean_caption=False (or when ftfy/bs4 are absent).
 */
import {
  classifierFreeGuidance,
  componentDir,
  DpmSolverMultistepScheduler,
  epsilonHalf,
  imageToRgb8,
  type LinearObserver,
  loadPromptEmbeddings,
  PixArtPromptEncoder,
  PixArtTransformer,
  readModelIndex,
  VaeDecoder,
} from "@svdquant/models";
import { aspectRatioBins, classifyHeightWidthBin, resizeAndCrop } from "./binning.js";
import { loadQuantizedModel } from "./checkpoint.js";
import { PipelineError } from "./errors.js";
import { initialLatents, type SampledImage } from "./generate.js";
import type { LayerBackend } from "./layers.js";
import { nativeGemm } from "./native-gemm.js";

export interface PixArtGenerateSettings {
  /** DPM-Solver++ steps (PixArt-Σ: 20). */
  readonly steps: number;
  /** Classifier-free guidance scale; > 1 runs both branches (PixArt-Σ: 4.5). */
  readonly guidance: number;
  /** Requested image size in pixels (multiples of 8). */
  readonly height: number;
  readonly width: number;
  /** T5 tokens (PixArtSigmaPipeline's max_sequence_length: 300). */
  readonly maxSequenceLength: number;
  /** Generate at the closest aspect-ratio bin of the transformer's sample_size, resize back (diffusers' default). */
  readonly resolutionBinning: boolean;
}

/** PixArtSigmaPipeline.__call__'s defaults (diffusers 0.40); the default size is sample_size × VAE factor. */
export const PIXART_DEFAULTS = {
  steps: 20,
  guidance: 4.5,
  maxSequenceLength: 300,
  resolutionBinning: true,
  negativePrompt: "",
} as const;

/** T5 conditioning of B prompts: embeddings [B, L, D] and masks [B, L]; the negative ones for CFG. */
export interface PixArtConditioning {
  readonly batch: number;
  readonly length: number;
  readonly width: number;
  readonly promptEmbeds: Float32Array;
  readonly promptMask: Float32Array;
  readonly negativeEmbeds: Float32Array | undefined;
  readonly negativeMask: Float32Array | undefined;
}

// Python's str.strip() whitespace (str.isspace): ASCII whitespace, \x1c–\x1f, NEL, NBSP and the Unicode spaces.
const PY_SPACE = "\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PY_STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "gu");

/** `_text_preprocessing(text, clean_caption=False)`: `text.lower().strip()`. */
export function pixartPreprocess(text: string): string {
  return text.toLowerCase().replace(PY_STRIP, "");
}

/** The loaded components of a PixArt-Σ pipeline folder; the transformer can be swapped (16-bit / quantized). */
export class PixArtPipeline {
  private constructor(
    readonly dir: string,
    readonly prompts: PixArtPromptEncoder,
    readonly vae: VaeDecoder,
    readonly schedulerDir: string,
    readonly transformerDir: string,
  ) {}

  static async load(dir: string): Promise<PixArtPipeline> {
    await nativeGemm();
    const index = await readModelIndex(dir);
    const need = (n: string) => componentDir(index, n); // one clear line if absent
    await need("tokenizer");
    await need("text_encoder");
    return new PixArtPipeline(
      dir,
      await PixArtPromptEncoder.fromPipelineFolder(dir),
      await VaeDecoder.fromFolder(await need("vae")),
      await need("scheduler"),
      await need("transformer"),
    );
  }

  /** The 16-bit transformer of the folder, or a packed SVDQuant checkpoint of it. */
  async transformer(quantized?: string, backend: LayerBackend = "kernels"): Promise<PixArtTransformer> {
    if (quantized === undefined) {
      const dense = await PixArtTransformer.fromFolder(this.transformerDir);
      dense.prepare(); // pack every weight once for the GEMM backend
      return dense;
    }
    const m = await loadQuantizedModel(quantized, { backend });
    if (!(m instanceof PixArtTransformer))
      throw new PipelineError("E_MODEL", "the quantized checkpoint is not a PixArt transformer", quantized);
    return m;
  }

  /** encode_prompt: T5 embeddings with the padding mask; with `negativePrompt` also the CFG branch's. */
  encode(
    prompts: readonly string[],
    negativePrompt: string | undefined,
    maxSequenceLength: number,
  ): PixArtConditioning {
    if (prompts.length === 0) throw new PipelineError("E_CONFIG", "no prompts given");
    for (const [i, p] of prompts.entries())
      if (typeof p !== "string" || p.trim() === "") throw new PipelineError("E_CONFIG", `prompt ${i} is empty`);
    const e = this.prompts.encode(
      prompts.map(pixartPreprocess),
      negativePrompt === undefined ? undefined : pixartPreprocess(negativePrompt),
      maxSequenceLength,
    );
    return {
      batch: e.batch,
      length: e.txtTokens,
      width: e.promptEmbeds.length / (e.batch * e.txtTokens),
      promptEmbeds: e.promptEmbeds,
      promptMask: Float32Array.from(e.promptAttentionMask),
      negativeEmbeds: e.negativePromptEmbeds,
      negativeMask: e.negativePromptAttentionMask && Float32Array.from(e.negativePromptAttentionMask),
    };
  }

  /**
   * Conditioning from a safetensors file (prompt_embeds + prompt_attention_mask, optionally the negative ones).
   * Without negative embeddings, CFG encodes `negativePrompt` at the file's length, as encode_prompt does.
   */
  async conditioningFromFile(path: string, negativePrompt: string | undefined): Promise<PixArtConditioning> {
    const e = await loadPromptEmbeddings(path);
    const [b, l, d] = e.promptEmbeds.shape as [number, number, number];
    if (e.promptAttentionMask === undefined)
      throw new PipelineError("E_CONFIG", "PixArt needs prompt_attention_mask with prompt_embeds", path);
    if ((e.negativePromptEmbeds === undefined) !== (e.negativePromptAttentionMask === undefined))
      throw new PipelineError(
        "E_CONFIG",
        "negative_prompt_embeds and negative_prompt_attention_mask go together",
        path,
      );
    let negativeEmbeds = e.negativePromptEmbeds?.data;
    let negativeMask = e.negativePromptAttentionMask?.data;
    if (negativeEmbeds === undefined && negativePrompt !== undefined) {
      const n = this.prompts.encode(Array(b).fill(pixartPreprocess(negativePrompt)), undefined, l);
      negativeEmbeds = n.promptEmbeds;
      negativeMask = Float32Array.from(n.promptAttentionMask);
    }
    return {
      batch: b,
      length: l,
      width: d,
      promptEmbeds: e.promptEmbeds.data,
      promptMask: e.promptAttentionMask.data,
      negativeEmbeds,
      negativeMask,
    };
  }
}

export interface PixArtSampleOptions {
  /** One prompt's conditioning row (index into `cond`). */
  readonly row: number;
  readonly seed: number;
  /** Initial latents [1, C, h, w] (at the binned size) instead of the seeded ones. */
  readonly latents?: Float32Array;
  readonly observer?: LinearObserver;
  readonly onStep?: (done: number, total: number) => void;
  /** The latents [1, C, h, w] after each scheduler step. */
  readonly onLatents?: (step: number, latents: Float32Array) => void;
}

/** The size the latents are sampled at: the requested one, or its aspect-ratio bin. */
export function pixartSampleSize(
  transformer: PixArtTransformer,
  s: Pick<PixArtGenerateSettings, "height" | "width" | "resolutionBinning">,
): { height: number; width: number } {
  for (const [k, v] of [
    ["height", s.height],
    ["width", s.width],
  ] as const)
    if (!Number.isSafeInteger(v) || v < 8 || v % 8 !== 0)
      throw new PipelineError("E_CONFIG", `${k} must be a positive multiple of 8 (PixArtSigmaPipeline), got ${v}`);
  if (!s.resolutionBinning) return { height: s.height, width: s.width };
  return classifyHeightWidthBin(s.height, s.width, aspectRatioBins(transformer.config.sampleSize));
}

/** Run PixArtSigmaPipeline's sampling loop for one prompt with `transformer`. */
export async function samplePixArt(
  pipe: PixArtPipeline,
  transformer: PixArtTransformer,
  cond: PixArtConditioning,
  s: PixArtGenerateSettings,
  o: PixArtSampleOptions,
): Promise<SampledImage> {
  const tc = transformer.config;
  const f = pipe.vae.scaleFactor;
  const C = tc.inChannels;
  if (pipe.vae.config.latentChannels !== C)
    throw new PipelineError(
      "E_CONFIG",
      `the VAE has ${pipe.vae.config.latentChannels} latent channels, the transformer ${C} input channels`,
      pipe.dir,
    );
  const textWidth = tc.captionChannels ?? tc.crossAttentionDim;
  if (cond.width !== textWidth)
    throw new PipelineError("E_CONFIG", `text embeddings are ${cond.width} wide, the transformer reads ${textWidth}`);
  const { height: H, width: W } = pixartSampleSize(transformer, s);
  const h = Math.floor(H / f);
  const w = Math.floor(W / f);
  if (h % tc.patchSize !== 0 || w % tc.patchSize !== 0)
    throw new PipelineError(
      "E_CONFIG",
      `${H}×${W} gives latents ${h}×${w}, not multiples of the patch size ${tc.patchSize} (use multiples of ${f * tc.patchSize} pixels)`,
    );
  if (!Number.isSafeInteger(o.row) || o.row < 0 || o.row >= cond.batch)
    throw new PipelineError("E_CONFIG", `conditioning row ${o.row} outside [0, ${cond.batch})`);
  const cfg = s.guidance > 1; // do_classifier_free_guidance = guidance_scale > 1.0
  if (cfg && (cond.negativeEmbeds === undefined || cond.negativeMask === undefined))
    throw new PipelineError("E_CONFIG", `guidance ${s.guidance} > 1 needs the negative prompt's embeddings`);
  const lat0 = o.latents ?? initialLatents(o.seed, C, h, w);
  if (lat0.length !== C * h * w)
    throw new PipelineError("E_CONFIG", `initial latents hold ${lat0.length} values, expected [1, ${C}, ${h}, ${w}]`);
  const scheduler = await DpmSolverMultistepScheduler.fromFolder(pipe.schedulerDir);
  scheduler.setTimesteps(s.steps); // init_noise_sigma is 1 for DPM-Solver: the latents are used as they are
  const L = cond.length;
  const D = cond.width;
  const row = (a: Float32Array, n: number) => a.subarray(o.row * n, (o.row + 1) * n);
  // the batch the pipeline builds: cat([negative, prompt]) for CFG
  const enc = cfg
    ? concat(row(cond.negativeEmbeds!, L * D), row(cond.promptEmbeds, L * D))
    : row(cond.promptEmbeds, L * D);
  const mask = cfg ? concat(row(cond.negativeMask!, L), row(cond.promptMask, L)) : row(cond.promptMask, L);
  const B = cfg ? 2 : 1;
  const split = tc.outChannels / 2 === C; // learned σ: keep the ε half
  let x = lat0;
  for (let i = 0; i < s.steps; i++) {
    const t = scheduler.timesteps[i]!;
    const out = await transformer.forward(
      {
        batch: B,
        height: h,
        width: w,
        textTokens: L,
        hiddenStates: cfg ? concat(x, x) : x,
        encoderHiddenStates: enc,
        encoderAttentionMask: mask,
        timestep: Array(B).fill(t),
      },
      o.observer ? { observer: o.observer } : {},
    );
    const per = tc.outChannels * h * w;
    let noise = cfg ? classifierFreeGuidance(out.subarray(0, per), out.subarray(per, 2 * per), s.guidance) : out;
    if (split) noise = epsilonHalf(noise, 1, C, h * w);
    x = scheduler.step(noise, x);
    o.onLatents?.(i, x);
    o.onStep?.(i + 1, s.steps);
  }
  const oc = pipe.vae.config.outChannels;
  const decoded = pipe.vae.decode(pipe.vae.unscale(x), 1, h, w);
  // binning resizes the decoded image back to the requested size; without it the image is the latents × f
  const outH = s.resolutionBinning ? s.height : h * f;
  const outW = s.resolutionBinning ? s.width : w * f;
  const img = resizeAndCrop(decoded, 1, oc, h * f, w * f, outH, outW);
  return { rgb: imageToRgb8(img, 1, oc, outH, outW), width: outW, height: outH, latents: x };
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
