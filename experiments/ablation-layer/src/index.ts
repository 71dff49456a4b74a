export { type AblationConfig, ExperimentError, type FixtureSource, loadConfig } from "./config.js";
export { histogramChart, type Series, singularValueChart } from "./figures.js";
export {
  DEFAULT_GENERATED,
  type GeneratedLayer,
  type GeneratedLayerSpec,
  gelu,
  generateLayer,
  outlierTokens,
} from "./generate.js";
export {
  type AblationResult,
  type CaseInput,
  formatMarkdown,
  type LayerResult,
  loadCases,
  type MethodRow,
  runAblation,
  type SharedInputResult,
} from "./run.js";
