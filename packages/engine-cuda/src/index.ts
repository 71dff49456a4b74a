export { FLUX_CONFIGS } from "./configs.js";
export {
  type ConvertOptions,
  defaultUnsignedLayer,
  type EngineItem,
  type EngineLinear,
  engineLinearItems,
  fluxEngineItems,
  fluxEngineLinears,
  fluxEngineNorms,
  pixartEngineItems,
  pixartEngineLinears,
  pixartEngineTables,
  pixartUnsignedLayer,
  stackP2,
  stackW4A4,
  type WeightSource,
  w4a16EngineLayout,
} from "./convert.js";
export { EngineError, type EngineErrorCode } from "./errors.js";
export { type EngineMemory, FluxEngine, type RandomFluxOptions } from "./flux.js";
export {
  addonPath,
  engineAvailability,
  loadAddon,
  type NativeDeviceInfo,
  type NativeEngine,
  type OpTime,
} from "./native.js";
export { EngineCalibration, type EngineCalibrationOptions, engineLayerOf } from "./observer.js";
export { PixArtEngine, type RandomPixArtOptions } from "./pixart.js";
export { foldPatches, textLengths, unfoldPatches } from "./pixart-layout.js";
export { fnv1a32, hash32, type RandomRule, randomLinear, randomRule, randomValue } from "./random.js";
