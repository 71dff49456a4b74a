export {
  type AtomicData,
  type AtomicWriter,
  checkOutputPath,
  writeFileAtomic,
  writeFilesAtomic,
} from "./atomic-write.js";
export { type ModelFolder, openCheckpoint, openModelFolder, ShardedCheckpoint } from "./checkpoint.js";
export {
  DTYPE_INFO,
  DTYPES,
  type DType,
  decodeToFloat32,
  decodeToFloat64,
  type EncodeOptions,
  encodeFloats,
  isDType,
  itemsize,
  type Storage,
  type StorageOf,
} from "./dtype.js";
export { TensorError, type TensorErrorCode } from "./errors.js";
export { firstNonFinite, firstNonFiniteIn } from "./finite.js";
export {
  bf16BitsToF32,
  bitsToF32,
  E4M3_MAX,
  E5M2_MAX,
  e4m3BitsToF32,
  e5m2BitsToF32,
  type Fp8Overflow,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToBits,
  f32ToE4m3Bits,
  f32ToE5m2Bits,
  f32ToF16Bits,
} from "./float-bits.js";
export {
  MAX_HEADER_ARRAY_LENGTH,
  MAX_HEADER_DEPTH,
  MAX_HEADER_ENTRIES,
  MAX_HEADER_OBJECT_KEYS,
} from "./header-scanner.js";
export {
  checkInputFile,
  checkJsonNesting,
  MAX_JSON_DEPTH,
  MAX_JSON_FILE_BYTES,
  openInputFile,
  READ_CHUNK_BYTES,
  readInputFile,
} from "./input-file.js";
export { memorySource } from "./memory-source.js";
export {
  SafetensorsFile,
  type TensorEntry,
  type TensorSource,
  type TensorsToWrite,
  writeSafetensors,
} from "./safetensors.js";
export {
  MAX_HEADER_BYTES,
  type ParsedHeader,
  parseHeader,
  serializeHeader,
  type TensorInfo,
} from "./safetensors-header.js";
export { checkShape, matmulF64, numelOf, type Shape, Tensor } from "./tensor.js";
export { escapeForTerminal, jsonForTerminal } from "./terminal.js";
