export {
  loadTable1Config,
  type Preset,
  presetSchema,
  selectPreset,
  type Table1Config,
  table1ConfigSchema,
} from "./config.js";
export { featureStatsOf, MISSING, meanLpips } from "./neural.js";
export { formatTable1, runTable1, type Table1Result, type Table1Row } from "./run.js";
