export { LowRankError, type LowRankErrorCode } from "./errors.js";
export { defaultGemm, type Gemm, setDefaultGemm, transpose, tsGemm } from "./gemm.js";
export { orthonormalizeRows } from "./orth.js";
export { SeededRng } from "./rng.js";
export {
  chooseMethod,
  type LinearOperator,
  type RandomizedSvdOptions,
  randomizedSvdOf,
  reconstruct,
  type SvdMethod,
  type TruncatedSvd,
  type TruncatedSvdOptions,
  truncatedSvd,
} from "./svd.js";
