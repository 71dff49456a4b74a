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
export {
  type GemmBackend,
  gemmNaive,
  gemmTs,
  getGemmBackend,
  type PreparedGemm,
  setGemmBackend,
  TS_GEMM,
} from "./gemm.js";
export { checkInput, DenseLinear, type DenseWeight, forwardShared, type LinearLayer } from "./linear.js";
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
export type { ForwardOptions, LinearObserver } from "./runtime.js";
export { BlockArena, checkSpecs, loadWeightSet, unexpectedTensors, WeightSet } from "./weights.js";
