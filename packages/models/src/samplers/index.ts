export {
  DPM_SOLVER_CLASS,
  type DpmSolverConfig,
  DpmSolverMultistepScheduler,
  PIXART_SIGMA_SCHEDULER,
  parseDpmSolverConfig,
} from "./dpm-solver.js";
export {
  calculateShift,
  FLOW_MATCH_CLASS,
  FLUX_DEV_SCHEDULER,
  FLUX_SCHNELL_SCHEDULER,
  type FlowMatchConfig,
  FlowMatchEulerScheduler,
  type FlowMatchTimestepOptions,
  fluxSigmas,
  parseFlowMatchConfig,
} from "./flow-match.js";
export {
  type FluxLatentShape,
  fluxImageIds,
  fluxLatentShape,
  fluxTimestepInput,
  packFluxLatents,
  unpackFluxLatents,
} from "./flux-latents.js";
export { classifierFreeGuidance, epsilonHalf } from "./guidance.js";
