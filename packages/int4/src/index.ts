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
