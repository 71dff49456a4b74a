export { calibrateStaticScale, quantizeActivations, quantizeStatic } from "./activation.js";
export { QuantError, type QuantErrorCode } from "./errors.js";
export {
  checkSpec,
  FORMAT_INFO,
  type FormatInfo,
  QUANT_FORMATS,
  type QuantFormat,
  type Quantized,
  type QuantSpec,
  type ScaleDType,
  scaleDtypeOf,
  specFor,
} from "./formats.js";
export { type PackedW4A4Weight, quantizePackW4A4 } from "./fused.js";
export {
  type HalfDType,
  packW4A4Layer,
  packW4A16Layer,
  unpackW4A4Layer,
  unpackW4A16Layer,
} from "./layer.js";
export { packNibbles, unpackNibbles } from "./nibbles.js";
export {
  loraTileIndex,
  packLoraDown,
  packLoraUp,
  packW4A4MicroScales,
  packW4A4Scales,
  packW4A4Vector,
  packW4A4Weight,
  unpackLoraDown,
  unpackLoraUp,
  unpackW4A4MicroScales,
  unpackW4A4Scales,
  unpackW4A4Vector,
  unpackW4A4Weight,
  W4A4_LORA_TILE,
  W4A4_MEM_K,
  W4A4_PAD_K,
  W4A4_WARP_N,
  w4a4MicroScaleIndex,
  w4a4ScaleIndex,
} from "./nunchaku-w4a4.js";
export {
  ceilLog2,
  P2_EXP_MAX,
  P2_EXP_MIN,
  type P2Parts,
  type P2RowScale,
  p2LowRankColumns,
  p2OperandE4m3,
  p2Parts,
  quantizeRowP2,
} from "./p2.js";
export { P2_LAYER_TENSORS, type P2HalfDType, packP2Layer, unpackP2Layer } from "./p2-layer.js";
export {
  dequantize,
  dequantizeInt4,
  fakeQuantize,
  fakeQuantizeInto,
  nvfp4GlobalScale,
  quantize,
  quantizeInt4,
  quantizeInto,
} from "./quantize.js";
export {
  type ActivationSpec,
  activationSpecFor,
  DEFAULT_RANK,
  GELU_SHIFT,
  INT4_GROUP_SIZE,
  inFeaturesOf,
  NVFP4_GROUP_SIZE,
  outFeaturesOf,
  type QuantizedLinear,
} from "./record.js";
export { e4m3BitsOfValue, e8m0Bits, floorLog2F32, mxSharedExponent, roundE4m3, roundScale } from "./scales.js";
export { E2M1_MAX, E2M1_VALUES, e2m1Code, NF4_PIVOTS, NF4_VALUES, nf4Code } from "./tables.js";
export {
  dequantizeW4A16,
  packW4A16Groups,
  packW4A16Weight,
  quantizeW4A16,
  unpackW4A16Groups,
  unpackW4A16Weight,
  type W4A16Quantized,
  w4a16GroupRows,
} from "./w4a16.js";
