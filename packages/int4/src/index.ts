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
  dequantize,
  dequantizeInt4,
  fakeQuantize,
  fakeQuantizeInto,
  quantize,
  quantizeInt4,
  quantizeInto,
} from "./quantize.js";
export { e4m3BitsOfValue, e8m0Bits, floorLog2F32, mxSharedExponent, roundE4m3, roundScale } from "./scales.js";
export { E2M1_MAX, E2M1_VALUES, e2m1Code, NF4_PIVOTS, NF4_VALUES, nf4Code } from "./tables.js";
