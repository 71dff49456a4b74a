export { barChart, type Curve, lineChart, type Metric } from "./charts.js";
export { parseConfig, readConfig } from "./config.js";
export { ExperimentError, type ExperimentErrorCode } from "./errors.js";
export {
  type ImageScore,
  type MethodResult,
  type MethodSpec,
  ModelRunner,
  PACKED_METHODS,
  PSNR_CAP_DB,
  type RunSettings,
} from "./model-run.js";
export { fmt, machineLine, methodGrid, prepareOutDir, serializable, writeOutputs } from "./output.js";
export {
  type PromptSource,
  promptSourceSchema,
  readPrompts,
  readToyDataset,
  seededSubset,
  splitPrompts,
} from "./prompts.js";
export {
  type ExperimentRunOptions,
  experimentFolders,
  type GenerationConfig,
  generationSchema,
  resolveGeneration,
  runMethodRows,
} from "./run-config.js";
