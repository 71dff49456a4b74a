import { join } from "node:path";
import { ModelError } from "../errors.js";
import { ClipTextEncoder } from "./clip.js";
import { T5Encoder, type TextEncoderLoadOptions } from "./t5.js";
import { FLUX_CLIP_MAX_LENGTH, FLUX_T5_MAX_LENGTH, PIXART_T5_MAX_LENGTH, TextTokenizer } from "./tokenizer.js";

/** FluxPipeline.encode_prompt's outputs for B prompts. */
export interface FluxPromptEmbeds {
  readonly batch: number;
  readonly txtTokens: number;
  /** [B, L, joint_attention_dim]: T5 last_hidden_state (no mask given to T5, as FluxPipeline). */
  readonly promptEmbeds: Float32Array;
  /** [B, pooled_projection_dim]: CLIP pooler_output. */
  readonly pooledPromptEmbeds: Float32Array;
  /** [L, 3] zeros (FluxPipeline's text_ids). */
  readonly txtIds: Float32Array;
}

/**
 * FLUX's text side from a diffusers FluxPipeline folder: `tokenizer/` + `text_encoder/` (CLIP, 77 tokens,
 * pooled output) and `tokenizer_2/` + `text_encoder_2/` (T5, max_sequence_length tokens, default 512).
 */
export class FluxPromptEncoder {
  constructor(
    readonly clipTokenizer: TextTokenizer,
    readonly clip: ClipTextEncoder,
    readonly t5Tokenizer: TextTokenizer,
    readonly t5: T5Encoder,
  ) {}

  static async fromPipelineFolder(dir: string, opts: TextEncoderLoadOptions = {}): Promise<FluxPromptEncoder> {
    return new FluxPromptEncoder(
      await TextTokenizer.fromFolder(join(dir, "tokenizer")),
      await ClipTextEncoder.fromFolder(join(dir, "text_encoder"), { ...opts, namePrefix: "text_encoder." }),
      await TextTokenizer.fromFolder(join(dir, "tokenizer_2")),
      await T5Encoder.fromFolder(join(dir, "text_encoder_2"), { ...opts, namePrefix: "text_encoder_2." }),
    );
  }

  encode(prompts: readonly string[], maxSequenceLength = FLUX_T5_MAX_LENGTH): FluxPromptEmbeds {
    if (maxSequenceLength > FLUX_T5_MAX_LENGTH)
      throw new ModelError(
        "E_INPUT",
        `max_sequence_length ${maxSequenceLength} exceeds ${FLUX_T5_MAX_LENGTH} (FluxPipeline's limit)`,
        "FluxPromptEncoder.encode",
      );
    const c = this.clipTokenizer.encode(prompts, this.clipTokenizer.modelMaxLength ?? FLUX_CLIP_MAX_LENGTH);
    const pooled = this.clip.forward({ batch: c.batch, length: c.length, ids: c.ids }).pooled;
    const t = this.t5Tokenizer.encode(prompts, maxSequenceLength);
    const embeds = this.t5.forward({ batch: t.batch, length: t.length, ids: t.ids });
    return {
      batch: prompts.length,
      txtTokens: maxSequenceLength,
      promptEmbeds: embeds,
      pooledPromptEmbeds: pooled,
      txtIds: new Float32Array(maxSequenceLength * 3),
    };
  }
}

/** PixArtSigmaPipeline.encode_prompt's outputs for B prompts (and their negative prompts for CFG). */
export interface PixArtPromptEmbeds {
  readonly batch: number;
  readonly txtTokens: number;
  /** [B, L, caption_channels] and the tokenizer's mask [B, L]. */
  readonly promptEmbeds: Float32Array;
  readonly promptAttentionMask: Uint8Array;
  readonly negativePromptEmbeds: Float32Array | undefined;
  readonly negativePromptAttentionMask: Uint8Array | undefined;
}

/**
 * PixArt-Σ's text side from a diffusers PixArtSigmaPipeline folder: `tokenizer/` + `text_encoder/` (T5 with the
 * padding mask, 300 tokens). Captions are used as given (the pipeline's optional `clean_caption` needs
 * ftfy/bs4 and is not reproduced).
 */
export class PixArtPromptEncoder {
  constructor(
    readonly tokenizer: TextTokenizer,
    readonly t5: T5Encoder,
  ) {}

  static async fromPipelineFolder(dir: string, opts: TextEncoderLoadOptions = {}): Promise<PixArtPromptEncoder> {
    return new PixArtPromptEncoder(
      await TextTokenizer.fromFolder(join(dir, "tokenizer")),
      await T5Encoder.fromFolder(join(dir, "text_encoder"), { ...opts, namePrefix: "text_encoder." }),
    );
  }

  /** With `negativePrompt` (PixArt's default is "") the negative embeddings for CFG are computed too. */
  encode(
    prompts: readonly string[],
    negativePrompt?: string,
    maxSequenceLength = PIXART_T5_MAX_LENGTH,
  ): PixArtPromptEmbeds {
    const run = (texts: readonly string[]) => {
      const t = this.tokenizer.encode(texts, maxSequenceLength);
      return { embeds: this.t5.forward({ batch: t.batch, length: t.length, ids: t.ids, mask: t.mask }), mask: t.mask };
    };
    const pos = run(prompts);
    const neg = negativePrompt === undefined ? undefined : run(prompts.map(() => negativePrompt));
    return {
      batch: prompts.length,
      txtTokens: maxSequenceLength,
      promptEmbeds: pos.embeds,
      promptAttentionMask: pos.mask,
      negativePromptEmbeds: neg?.embeds,
      negativePromptAttentionMask: neg?.mask,
    };
  }
}
