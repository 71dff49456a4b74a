export { type EfficiencyConfig, efficiencyConfigSchema, loadEfficiencyConfig } from "./config.js";
export { type LatencyRow, measureLatency } from "./latency.js";
export { type EfficiencyResult, formatEfficiency, runEfficiency } from "./run.js";
export { type SizeRow, sizeRow } from "./sizes.js";
