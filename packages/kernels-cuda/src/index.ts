/** The GELU shift of unsigned activation codes (nunchaku's epilogue constant; GELU(x) >= -0.1700 for all x). */
export { GELU_SHIFT } from "@svdquant/int4";
export { CudaKernelError, type CudaKernelErrorCode } from "./errors.js";
export { decodeE4M3, unpackActCodes } from "./layout.js";
export { addonPath, cudaAvailability, loadAddon, type NativeAddon, type NativeDeviceInfo } from "./native.js";
export {
  type CodeFormat,
  codeBytes,
  DeviceBuffer,
  type Dtype16,
  defaultCodeFormat,
  type GemmW4A4Args,
  gemmCublas,
  gemmCublasInt8,
  gemmP2,
  gemmW4A4,
  gemmW4A4Next,
  type NextQuantArgs,
  P2_SUPPORTED_K,
  type P2Act,
  padM,
  type QuantizeActArgs,
  type QuantizedAct,
  quantizeAct,
  quantizeActP2,
  quantizeRowsP2,
  repackWeightWg,
  synchronize,
  timeGraphMs,
  timeMs,
  type WgWeights,
} from "./ops.js";
export { type P2WeightOperand, p2WeightOperand } from "./p2-weights.js";
