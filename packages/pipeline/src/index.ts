export {
  type AspectRatioBin,
  aspectRatioBins,
  classifyHeightWidthBin,
  resizeAndCrop,
} from "./binning.js";
export {
  type InputStats,
  type ModelInputs,
  readCalibration,
  recordCalibration,
  syntheticInputs,
  writeCalibration,
} from "./calibrate.js";
export {
  type CalibrateModelOptions,
  type CalibrateModelResult,
  calibrateModel,
  type EngineCalibrationHooks,
  type EngineStatsMemory,
  recordCalibrationOnEngine,
} from "./calibrate-device.js";
export {
  checkpointFormat,
  DEFAULT_P2_BRANCH,
  type LoadQuantizedOptions,
  loadQuantizedModel,
  type QuantizedCheckpoint,
  type QuantizedModel,
  quantizedLayerProvider,
  readQuantizedCheckpoint,
  type W4A16Record,
  w4a16ModelRecord,
} from "./checkpoint.js";
export {
  type CalibrationConfig,
  type LayerTreatment,
  PIPELINE_RECIPE,
  parseQuantizeConfig,
  QUICK_GRID,
  type QuantizeConfig,
  quantizeConfigSchema,
  recipeOf,
  resolveConfigPaths,
  smoothingGrid,
  treatmentOfLayer,
} from "./config.js";
export { type DemoOptions, type DemoResult, type DemoRow, imageGrid, runDemo } from "./demo.js";
export {
  describeQuantizedCheckpoint,
  type QuantizedCheckpointSummary,
  type QuantizedLayerSummary,
} from "./describe.js";
export { type EngineCheckpointSource, openEngineSource } from "./engine-source.js";
export { PipelineError, type PipelineErrorCode } from "./errors.js";
export {
  conditioningFromFile,
  denoiseFlux,
  FLUX_DEFAULTS,
  type FluxDenoiser,
  type FluxGenerateSettings,
  FluxPipeline,
  initialLatents,
  type SampledImage,
  type SampleOptions,
  sampleFlux,
  type TextConditioning,
} from "./generate.js";
export {
  type GenerateOptions,
  generateImages,
  PIPELINE_KINDS,
  type PipelineKind,
  pipelineKind,
} from "./generate-images.js";
export {
  PIXART_DEFAULTS,
  type PixArtConditioning,
  type PixArtGenerateSettings,
  PixArtPipeline,
  type PixArtSampleOptions,
  pixartPreprocess,
  pixartSampleSize,
  samplePixArt,
} from "./generate-pixart.js";
export {
  type LayerBackend,
  P2KernelLinear,
  SplitKLinear,
  W4A4KernelLinear,
  W4A4ReferenceLinear,
  W4A16KernelLinear,
  W4A16ReferenceLinear,
} from "./layers.js";
export { type BlockLayout, fluxLayout, layoutOf, type ModelLayout, pixartLayout, type UnitSpec } from "./layout.js";
export { loadWithMethod, MethodLinear, type MethodModel, quantizedLayers } from "./methods.js";
export { nativeGemm } from "./native-gemm.js";
export { encodePng, readPngText } from "./png.js";
export {
  calibrationTargets,
  FORMAT_VERSION,
  type QuantizeEvent,
  type QuantizeModelOptions,
  type QuantizeModelResult,
  quantizationConfigMetadata,
  quantizeModel,
} from "./quantize-model.js";
export { type LayerReport, permuteAdaNormRows } from "./quantize-units.js";
export { type ModelSizes, modelSizes } from "./sizes.js";
export { maxThreads, QuantizePool } from "./workers.js";
