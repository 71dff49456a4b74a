export {
  type ClipTextConfig,
  ClipTextEncoder,
  type ClipTextOutput,
  clipPoolIndex,
  clipTextParams,
  parseClipTextConfig,
} from "./clip.js";
export { loadPromptEmbeddings, type PromptEmbeddings, type ShapedF32 } from "./embeddings.js";
export {
  type FluxPromptEmbeds,
  FluxPromptEncoder,
  type PixArtPromptEmbeds,
  PixArtPromptEncoder,
} from "./prompt-encoders.js";
export {
  parseT5Config,
  type T5Config,
  T5Encoder,
  type TextEncoderInput,
  type TextEncoderLoadOptions,
  t5Params,
  t5RelativeBucket,
} from "./t5.js";
export { erf } from "./text-ops.js";
export {
  FLUX_CLIP_MAX_LENGTH,
  FLUX_T5_MAX_LENGTH,
  PIXART_T5_MAX_LENGTH,
  TextTokenizer,
  type TokenizedBatch,
} from "./tokenizer.js";
