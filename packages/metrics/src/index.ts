export { MetricsError, type MetricsErrorCode } from "./errors.js";
export {
  type EvalOptions,
  type EvalResult,
  evaluateFolders,
  formatMarkdown,
  listImages,
  MAX_BATCH,
  type PerImage,
  pairImages,
} from "./evaluate.js";
export {
  FeatureAccumulator,
  type FeatureStats,
  type FrechetLinalg,
  type FrechetResult,
  featureStats,
  frechetDistance,
  getFrechetLinalg,
  setFrechetLinalg,
  type TraceSqrtMethod,
  TS_FRECHET_LINALG,
  traceSqrtProduct,
} from "./frechet.js";
export { checkImage, checkSameSize, type Rgb8Image, type RgbImage, toPlanar } from "./image.js";
export {
  checkJpeg,
  checkPng,
  type ImageHeader,
  MAX_IMAGE_FILE_BYTES,
  MAX_IMAGE_PIXELS,
  MAX_IMAGE_SIDE,
} from "./image-header.js";
export { decodeImage, IMAGE_EXTENSIONS, readImage, writePng } from "./image-io.js";
export {
  choleskyLower,
  congruenceLower,
  gramLower,
  mulRowsT,
  sandwichRows,
  symmetricEigenvalues,
  tridiagonalQL,
} from "./linalg.js";
export { type FrechetLinalgChoice, kernelsFrechetLinalg, useKernelsFrechet } from "./native-frechet.js";
export {
  CLIP_IMAGE_SPEC,
  CLIP_MEAN,
  CLIP_SIZE,
  CLIP_STD,
  ClipImageEncoder,
  clipInput,
  clipScore,
  FID_SIZE,
  FID_SPEC,
  FidFeatureExtractor,
  fidInput,
  IMAGE_REWARD_SPEC,
  ImageReward,
  LPIPS_SPEC,
  Lpips,
  lpipsInput,
  type PromptTokens,
} from "./neural.js";
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
export { type IoSpec, type ModelSpec, OnnxModel } from "./onnx-model.js";
export { psnr } from "./psnr.js";
export { resizePlaneF, resizeRgb8, resizeShortSideCenterCrop } from "./resize.js";
export { gaussianWindow, type SsimOptions, ssim } from "./ssim.js";
export { readShapesDataset, type ShapesDataset } from "./toy-dataset.js";
export {
  type ToyWeights,
  toyClipModel,
  toyFidModel,
  toyImageRewardModel,
  toyLpipsModel,
  toyWeights,
} from "./toy-models.js";
export {
  checkShapeCaption,
  detectShape,
  parseShapeCaption,
  parseShapesSpec,
  type ShapeAttribute,
  type ShapeCaptionCheck,
  type ShapeDetection,
  type ShapesSpec,
} from "./toy-shapes.js";
