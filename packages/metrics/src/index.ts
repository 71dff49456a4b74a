export { MetricsError, type MetricsErrorCode } from "./errors.js";
export {
  FeatureAccumulator,
  type FeatureStats,
  type FrechetResult,
  featureStats,
  frechetDistance,
  type TraceSqrtMethod,
  traceSqrtProduct,
} from "./frechet.js";
export { checkImage, checkSameSize, type Rgb8Image, type RgbImage, toPlanar } from "./image.js";
export { choleskyLower, congruenceLower, sandwichRows, symmetricEigenvalues, tridiagonalQL } from "./linalg.js";
export { psnr } from "./psnr.js";
export { gaussianWindow, type SsimOptions, ssim } from "./ssim.js";
export {
  encodeOnnxModel,
  ONNX_FLOAT,
  ONNX_INT64,
  type OnnxAttribute,
  type OnnxDim,
  type OnnxGraph,
  type OnnxInitializer,
  type OnnxNode,
  type OnnxValueInfo,
} from "./onnx-builder.js";
export { resizePlaneF, resizeRgb8, resizeShortSideCenterCrop } from "./resize.js";
