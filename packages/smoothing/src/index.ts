export { SmoothingError, type SmoothingErrorCode } from "./errors.js";
export { jointAbsMax, type LambdaGuards, smoothingFactors, weightAbsMax } from "./lambda.js";
export {
  type SmoothingCandidate,
  type SmoothingSearchResult,
  searchSmoothing,
  smoothActivations,
  smoothWeights,
  svdquantGrid,
} from "./search.js";
