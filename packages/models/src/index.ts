export { type CalibrationOptions, CalibrationRecorder, type LinearStats } from "./calibration.js";
export {
  FLUX_CLASS,
  type FluxConfig,
  type ModelConfig,
  PIXART_CLASS,
  type PixArtConfig,
  PRESET_CONFIGS,
  type PresetName,
  parseFluxConfig,
  parseModelConfig,
  parsePixArtConfig,
  presetConfig,
} from "./config.js";
export { ModelError, type ModelErrorCode } from "./errors.js";
export { type FakeQuantizeFn, FakeQuantLinear, type QuantSpec } from "./fakequant.js";
export { type FluxInputs, FluxTransformer, linearNamesOf, type ModelLoadOptions } from "./flux.js";
export { fluxLinearInputs, type LinearInputCall } from "./flux-observer.js";
export {
  type GemmBackend,
  gemmNaive,
  gemmTs,
  getGemmBackend,
  type PreparedGemm,
  setGemmBackend,
  TS_GEMM,
} from "./gemm.js";
export { ConfigReader, parsePythonJson, readConfigFile } from "./json-config.js";
export {
  checkInput,
  DenseLinear,
  type DenseWeight,
  forwardShared,
  type LinearLayer,
  linearGelu,
  prepareLayers,
} from "./linear.js";
export { componentDir, type PipelineComponent, type PipelineIndex, readModelIndex } from "./model-index.js";
export { type GemmChoice, useKernelsGemm } from "./native-gemm.js";
export {
  type AttentionOptions,
  attention,
  fluxRope,
  sincos2d,
  timestepEmbedding,
} from "./ops.js";
export {
  fluxDoubleBlockParams,
  fluxParams,
  fluxSingleBlockParams,
  modelParams,
  type ParamSpec,
  pixartBlockParams,
  pixartParams,
} from "./params.js";
export { type PixArtInputs, PixArtTransformer } from "./pixart.js";
export {
  DENSE_RECIPE,
  inputGroupOf,
  type LinearBuildContext,
  type LinearBuilder,
  LinearFactory,
  type LinearFactoryOptions,
  type LinearProvider,
  matchesPattern,
  mergeRecipe,
  planRecipe,
  type Recipe,
  type RecipeRule,
  registerLinearKind,
  registerPackedW4A4,
  registerPackedW4A16,
  SVDQUANT_PACKED_RECIPE,
  SVDQUANT_RECIPE,
  type Treatment,
  treatmentOf,
  validateRecipe,
  W4A4_PACKED,
  W4A16_PACKED,
} from "./recipe.js";
export { ReservoirSampler } from "./reservoir.js";
export type { ForwardOptions, LinearObserver } from "./runtime.js";
export {
  calculateShift,
  classifierFreeGuidance,
  DPM_SOLVER_CLASS,
  type DpmSolverConfig,
  DpmSolverMultistepScheduler,
  epsilonHalf,
  FLOW_MATCH_CLASS,
  FLUX_DEV_SCHEDULER,
  FLUX_SCHNELL_SCHEDULER,
  type FlowMatchConfig,
  FlowMatchEulerScheduler,
  type FlowMatchTimestepOptions,
  type FluxLatentShape,
  fluxImageIds,
  fluxLatentShape,
  fluxSigmas,
  fluxTimestepInput,
  PIXART_SIGMA_SCHEDULER,
  packFluxLatents,
  parseDpmSolverConfig,
  parseFlowMatchConfig,
  unpackFluxLatents,
} from "./samplers/index.js";
export {
  type ClipTextConfig,
  ClipTextEncoder,
  type ClipTextOutput,
  clipPoolIndex,
  clipTextParams,
  erf,
  FLUX_CLIP_MAX_LENGTH,
  FLUX_T5_MAX_LENGTH,
  type FluxPromptEmbeds,
  FluxPromptEncoder,
  loadPromptEmbeddings,
  PIXART_T5_MAX_LENGTH,
  type PixArtPromptEmbeds,
  PixArtPromptEncoder,
  type PromptEmbeddings,
  parseClipTextConfig,
  parseT5Config,
  type ShapedF32,
  type T5Config,
  T5Encoder,
  type TextEncoderInput,
  type TextEncoderLoadOptions,
  TextTokenizer,
  type TokenizedBatch,
  t5Params,
  t5RelativeBucket,
} from "./text/index.js";
export {
  Conv2d,
  conv2dDirect,
  groupNorm,
  imageToRgb8,
  parseVaeConfig,
  VAE_CLASS,
  type VaeConfig,
  VaeDecoder,
  type VaeLoadOptions,
  vaeDecoderParams,
} from "./vae/index.js";
export { BlockArena, checkBlockCounts, checkSpecs, loadWeightSet, unexpectedTensors, WeightSet } from "./weights.js";
