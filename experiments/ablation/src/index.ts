export { type AblationConfig, ablationConfigSchema, FIG10_ORDER, loadAblationConfig } from "./config.js";
export { checkOrder, type OrderCheck } from "./order.js";
export { type AblationResult, formatAblation, runAblation } from "./run.js";
