/**
 * Text → image with a diffusers FLUX pipeline folder, on the CPU: the steps of diffusers' FluxPipeline.
 *
 *   prompts ─► CLIP tokenizer + text_encoder (pooled) ┐
 *           └► T5 tokenizer_2 + text_encoder_2 ─────────┼─► transformer (16-bit, or a packed SVDQuant checkpoint)
 *   seeded latents [B, C, H, W] ─► pack 2×2 ───────────┘        × steps of FlowMatchEuler (resolution shift μ)
 *   ─► unpack ─► /scaling + shift ─► VAE decoder ─► RGB8
 *
 * The initial latents come from our seeded generator (torch's RNG is not reproduced): the same seed gives the same
 * bytes, across runs and backends; a caller can pass its own latents (e.g. recorded by a reference run).
 */
import { SeededRng } from "@svdquant/lowrank";
import {
  calculateShift,
  componentDir,
  FlowMatchEulerScheduler,
  type FluxConfig,
  type FluxInputs,
  FluxPromptEncoder,
  FluxTransformer,
  fluxImageIds,
  fluxLatentShape,
  fluxSigmas,
  imageToRgb8,
  type LinearObserver,
  loadPromptEmbeddings,
  packFluxLatents,
  readModelIndex,
  unpackFluxLatents,
  VaeDecoder,
} from "@svdquant/models";
import { loadQuantizedModel } from "./checkpoint.js";
import { PipelineError } from "./errors.js";
import type { LayerBackend } from "./layers.js";
import { nativeGemm } from "./native-gemm.js";

export interface FluxGenerateSettings {
  /** Sampler steps (FLUX.1-dev 50, schnell 4). */
  readonly steps: number;
  /** Guidance scale for models with a guidance embedding (FLUX.1-dev: 3.5); ignored by the others. */
  readonly guidance: number;
  readonly height: number;
  readonly width: number;
  /** T5 tokens (FluxPipeline's max_sequence_length: 512). */
  readonly maxSequenceLength: number;
}

export interface TextConditioning {
  readonly batch: number;
  /** T5 embeddings [B, L, joint_attention_dim]. */
  readonly promptEmbeds: Float32Array;
  readonly length: number;
  /** CLIP pooled [B, pooled_projection_dim]. */
  readonly pooled: Float32Array;
}

/** The loaded components of a FLUX pipeline folder; the transformer can be swapped (16-bit / quantized). */
export class FluxPipeline {
  private constructor(
    readonly dir: string,
    /** Tokenizers + CLIP/T5 encoders (@svdquant/models' FluxPromptEncoder: FluxPipeline.encode_prompt). */
    readonly prompts: FluxPromptEncoder,
    readonly vae: VaeDecoder,
    readonly schedulerDir: string,
    readonly transformerDir: string,
  ) {}

  static async load(dir: string): Promise<FluxPipeline> {
    await nativeGemm();
    const index = await readModelIndex(dir);
    const need = async (n: string) => componentDir(index, n);
    for (const n of ["tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2"]) await need(n); // one clear line if absent
    return new FluxPipeline(
      dir,
      await FluxPromptEncoder.fromPipelineFolder(dir),
      await VaeDecoder.fromFolder(await need("vae")),
      await need("scheduler"),
      await need("transformer"),
    );
  }

  /** The 16-bit transformer of the folder, or a packed SVDQuant checkpoint of it. */
  async transformer(quantized?: string, backend: LayerBackend = "kernels"): Promise<FluxTransformer> {
    if (quantized === undefined) {
      const dense = await FluxTransformer.fromFolder(this.transformerDir);
      dense.prepare(); // pack every weight once for the GEMM backend (native: panels + GELU epilogue)
      return dense;
    }
    const m = await loadQuantizedModel(quantized, { backend });
    if (!(m instanceof FluxTransformer))
      throw new PipelineError("E_MODEL", "the quantized checkpoint is not a FLUX transformer", quantized);
    return m;
  }

  /** CLIP pooled + T5 embeddings of the prompts (no attention masks, as FluxPipeline calls both encoders). */
  encode(prompts: readonly string[], maxSequenceLength: number): TextConditioning {
    if (prompts.length === 0) throw new PipelineError("E_CONFIG", "no prompts given");
    for (const [i, p] of prompts.entries())
      if (typeof p !== "string" || p.trim() === "") throw new PipelineError("E_CONFIG", `prompt ${i} is empty`);
    const e = this.prompts.encode(prompts, maxSequenceLength);
    return { batch: e.batch, promptEmbeds: e.promptEmbeds, length: e.txtTokens, pooled: e.pooledPromptEmbeds };
  }
}

/** Text conditioning from a safetensors file of precomputed embeddings (prompt_embeds, pooled_prompt_embeds). */
export async function conditioningFromFile(path: string): Promise<TextConditioning> {
  const e = await loadPromptEmbeddings(path);
  if (e.pooledPromptEmbeds === undefined)
    throw new PipelineError("E_CONFIG", "FLUX needs pooled_prompt_embeds as well as prompt_embeds", path);
  const [b, l] = e.promptEmbeds.shape as [number, number, number];
  return { batch: b, promptEmbeds: e.promptEmbeds.data, length: l, pooled: e.pooledPromptEmbeds.data };
}

/** Seeded initial latents [1, C, H, W] (standard normal). */
export function initialLatents(seed: number, channels: number, h: number, w: number): Float32Array {
  const rng = new SeededRng(seed);
  const out = new Float32Array(channels * h * w);
  for (let i = 0; i < out.length; i++) out[i] = rng.normal();
  return out;
}

export interface SampleOptions {
  /** One prompt's conditioning row (index into `cond`). */
  readonly row: number;
  readonly seed: number;
  /** Initial latents [1, C, H, W] instead of the seeded ones. */
  readonly latents?: Float32Array;
  readonly observer?: LinearObserver;
  readonly onStep?: (done: number, total: number) => void;
}

/** One image: RGB8 [H, W, 3], and the final latents [1, C, H, W]. */
export interface SampledImage {
  readonly rgb: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly latents: Float32Array;
}

/**
 * What the FLUX sampler calls each step: the CPU FluxTransformer, or a GPU engine's transformer
 * (@svdquant/engine-cuda FluxEngine: the sampler runs on the host, each step's forward on the device).
 */
export interface FluxDenoiser {
  readonly config: FluxConfig;
  forward(inputs: FluxInputs, opts?: { readonly observer?: LinearObserver }): Promise<Float32Array>;
}

/**
 * FluxPipeline's denoising loop for one prompt, without decoding: FlowMatch Euler over `s.steps` (resolution
 * shift μ when the scheduler has it), returning the final latents [1, C, H/scale, W/scale].
 */
export async function denoiseFlux(
  transformer: FluxDenoiser,
  scheduler: FlowMatchEulerScheduler,
  vaeScaleFactor: number,
  cond: TextConditioning,
  s: FluxGenerateSettings,
  o: SampleOptions,
): Promise<Float32Array> {
  const tc: FluxConfig = transformer.config;
  const channels = tc.inChannels / 4; // 2×2 patches packed into in_channels
  const { h, w, imageSeqLen } = fluxLatentShape(s.height, s.width, vaeScaleFactor);
  const lat0 = o.latents ?? initialLatents(o.seed, channels, h, w);
  if (lat0.length !== channels * h * w)
    throw new PipelineError(
      "E_CONFIG",
      `initial latents hold ${lat0.length} values, expected [1, ${channels}, ${h}, ${w}]`,
    );
  const c = scheduler.config;
  scheduler.setTimesteps(s.steps, {
    sigmas: fluxSigmas(s.steps),
    ...(c.useDynamicShifting ? { mu: calculateShift(imageSeqLen, c) } : {}),
  });
  const L = cond.length;
  const dj = tc.jointAttentionDim;
  const enc = cond.promptEmbeds.subarray(o.row * L * dj, (o.row + 1) * L * dj);
  const pooled = cond.pooled.subarray(o.row * tc.pooledProjectionDim, (o.row + 1) * tc.pooledProjectionDim);
  let x = packFluxLatents(lat0, 1, channels, h, w);
  const imgIds = fluxImageIds(h / 2, w / 2);
  const txtIds = new Float32Array(L * 3);
  for (let i = 0; i < s.steps; i++) {
    const t = scheduler.timesteps[i]!;
    const inputs: FluxInputs = {
      batch: 1,
      imgTokens: imageSeqLen,
      txtTokens: L,
      hiddenStates: x,
      encoderHiddenStates: enc,
      pooledProjections: pooled,
      timestep: [Math.fround(t / 1000)],
      ...(tc.guidanceEmbeds ? { guidance: [s.guidance] } : {}),
      imgIds,
      txtIds,
    };
    const v = await transformer.forward(inputs, o.observer ? { observer: o.observer } : {});
    x = scheduler.step(v, x);
    o.onStep?.(i + 1, s.steps);
  }
  return unpackFluxLatents(x, 1, channels, h, w);
}

/** Run FluxPipeline's sampling loop for one prompt with `transformer`, then decode with the pipeline's VAE. */
export async function sampleFlux(
  pipe: FluxPipeline,
  transformer: FluxDenoiser,
  cond: TextConditioning,
  s: FluxGenerateSettings,
  o: SampleOptions,
): Promise<SampledImage> {
  const scheduler = await FlowMatchEulerScheduler.fromFolder(pipe.schedulerDir);
  const scale = pipe.vae.scaleFactor;
  const latents = await denoiseFlux(transformer, scheduler, scale, cond, s, o);
  const { h, w } = fluxLatentShape(s.height, s.width, scale);
  const img = pipe.vae.decode(pipe.vae.unscale(latents), 1, h, w);
  const H = h * scale;
  const W = w * scale;
  return { rgb: imageToRgb8(img, 1, 3, H, W), width: W, height: H, latents };
}

/** FluxPipeline.__call__'s defaults (diffusers 0.40). */
export const FLUX_DEFAULTS: FluxGenerateSettings = {
  steps: 28,
  guidance: 3.5,
  height: 1024,
  width: 1024,
  maxSequenceLength: 512,
};
