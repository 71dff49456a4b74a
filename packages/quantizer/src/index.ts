export { type BuildOptions, buildLinear, smoothWeight } from "./build.js";
export { QuantizerError, type QuantizerErrorCode } from "./errors.js";
export type { PackedF32Handle, QuantizerKernels } from "./kernel-path.js";
export {
  type ActivationFormat,
  branchBitsPerParam,
  branchSmoothed,
  checkLayer,
  evaluateLayer,
  forwardQuantized,
  forwardReference,
  type LayerMetrics,
  type LinearLayer,
  pathInput,
  type QuantizedLinear,
  quantBitsPerParam,
} from "./linear.js";
export {
  getMethod,
  METHOD_NAMES,
  METHODS,
  type Method,
  type MethodOptions,
  quantizeWith,
} from "./methods.js";
export {
  buildOptions,
  type Calibration,
  calibrationFromStats,
  calibrationFromTokens,
  GELU_SHIFT,
  quantizeLayer,
  quantizeSharedLayers,
  type RecordedInputStats,
  roundLambda,
  type SvdQuantConfig,
  type SvdQuantResult,
} from "./svdquant.js";
