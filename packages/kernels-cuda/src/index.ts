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
  gemmW4A4,
  gemmW4A4Next,
  type NextQuantArgs,
  padM,
  type QuantizeActArgs,
  type QuantizedAct,
  quantizeAct,
  repackWeightWg,
  synchronize,
  timeGraphMs,
  timeMs,
  type WgWeights,
} from "./ops.js";
