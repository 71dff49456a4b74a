export { type AttentionShape, attentionF32 } from "./attention.js";
export { type CholQrOptions, cholQrRowsF64 } from "./cholqr.js";
export { KernelsError, type KernelsErrorCode } from "./errors.js";
export {
  type F32GemmBackend,
  type F32GemmBackendOptions,
  f32GemmBackend,
  type PreparedF32Gemm,
} from "./gemm-backend.js";
export {
  type ForwardOptions,
  type PreparedW4A4Layer,
  prepareW4A4Layer,
  type W4A4LayerSpec,
} from "./layer.js";
export {
  NF4_TABLE,
  type PackedF32,
  type PackedW4A4,
  type PackedW4A16,
  type PackedW8A8,
  packF32,
  packW4A4,
  packW4A16,
  packW8A8,
  type QuantizedTensor,
  unpackF32,
  unpackW4A4,
  unpackW4A16,
  unpackW8A8,
  W4A4_GROUP,
  type W4A16Format,
} from "./layout.js";
export {
  type CholeskyF64Result,
  choleskyF64,
  congruenceF64,
  type PivotedCholeskyF64Result,
  pivotedCholeskyF64,
  symmetricEigenvaluesF64,
} from "./linalg.js";
export { NATIVE_ISAS, type NativeIsa, nativeUnavailableReason } from "./native.js";
export { layerNormModulateF32, rmsNormRopeHeadsF32 } from "./norm.js";
export {
  type ActFormat,
  type ActQuantOptions,
  type BackendInfo,
  backendInfo,
  type GemmW4A4Options,
  type GemmW8A8Options,
  gemmF32,
  gemmW4A4,
  gemmW4A16,
  gemmW8A8,
  type Int8Activations,
  type IsaChoice,
  type QuantizedActivations,
  quantizeActivations,
  quantizeActivationsInt8,
  setIsa,
  setThreads,
} from "./ops.js";
export {
  MAX_SHADOW_COLUMNS,
  P2_BRANCH_PRECISIONS,
  type P2Activations,
  type P2BranchPrecision,
  type P2ForwardOptions,
  type P2GemmPath,
  type P2LayerSpec,
  type P2Operand,
  type PreparedP2Layer,
  p2BranchPrecision,
  p2GemmPath,
  prepareP2Layer,
} from "./p2-layer.js";
export * as reference from "./reference.js";
export {
  emptyPackedF32,
  emptyPackedW4A4,
  quantizeResidual,
  type ResidualQuantInput,
  type ResidualQuantOutputs,
  type ResidualQuantResult,
  type ResidualScaleDtype,
} from "./residual.js";
export {
  type F32Splits,
  f32SplitElems,
  f32SplitInfo,
  gemmF32Split,
  type PackedF32Split,
  packF32Split,
  splitBf16,
  unpackF32Split,
} from "./split.js";
