import { ModelError } from "../errors.js";
import { ConfigReader, readConfigFile } from "../json-config.js";
import { checkFinite, checkSameLength } from "./flow-match.js";
import { arange, f32, linspace, roundHalfEven, torchLinspaceF32 } from "./numeric.js";

/** DPMSolverMultistepScheduler config, the deterministic DPM-Solver++ subset (PixArt-Σ uses the defaults). */
export interface DpmSolverConfig {
  readonly numTrainTimesteps: number;
  readonly betaStart: number;
  readonly betaEnd: number;
  readonly betaSchedule: "linear" | "scaled_linear";
  /** 1 or 2 (multistep order). */
  readonly solverOrder: number;
  readonly predictionType: "epsilon" | "v_prediction" | "sample";
  readonly solverType: "midpoint" | "heun";
  readonly lowerOrderFinal: boolean;
  readonly eulerAtFinal: boolean;
  readonly finalSigmasType: "zero" | "sigma_min";
  readonly lambdaMinClipped: number;
  readonly timestepSpacing: "linspace" | "leading" | "trailing";
  readonly stepsOffset: number;
}

export const DPM_SOLVER_CLASS = "DPMSolverMultistepScheduler";

/** `DPMSolverMultistepScheduler()` defaults: what diffusers' PixArt-Σ conversion script saves. */
export const PIXART_SIGMA_SCHEDULER: DpmSolverConfig = Object.freeze({
  numTrainTimesteps: 1000,
  betaStart: 0.0001,
  betaEnd: 0.02,
  betaSchedule: "linear",
  solverOrder: 2,
  predictionType: "epsilon",
  solverType: "midpoint",
  lowerOrderFinal: true,
  eulerAtFinal: false,
  finalSigmasType: "zero",
  lambdaMinClipped: -Infinity,
  timestepSpacing: "linspace",
  stepsOffset: 0,
});

/** Parse a DPMSolverMultistepScheduler config; options outside the deterministic DPM-Solver++ are E_UNSUPPORTED. */
export function parseDpmSolverConfig(raw: Record<string, unknown>, where = "scheduler_config.json"): DpmSolverConfig {
  const r = new ConfigReader(raw, where);
  if (raw._class_name !== undefined && raw._class_name !== DPM_SOLVER_CLASS)
    throw new ModelError(
      "E_CONFIG",
      `_class_name is "${String(raw._class_name)}", expected "${DPM_SOLVER_CLASS}"`,
      where,
    );
  r.unsupported("algorithm_type", "dpmsolver++");
  r.unsupported("trained_betas", null);
  r.unsupported("variance_type", null);
  for (const k of [
    "thresholding",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "use_lu_lambdas",
    "use_flow_sigmas",
    "rescale_betas_zero_snr",
    "use_dynamic_shifting",
  ])
    r.unsupported(k, false);
  const solverOrder = r.posInt("solver_order", 2);
  if (solverOrder > 2)
    throw new ModelError("E_UNSUPPORTED", `"solver_order" = ${solverOrder} is not supported (1 or 2)`, where);
  const d = PIXART_SIGMA_SCHEDULER;
  return {
    numTrainTimesteps: r.posInt("num_train_timesteps", d.numTrainTimesteps),
    betaStart: r.num("beta_start", d.betaStart),
    betaEnd: r.num("beta_end", d.betaEnd),
    betaSchedule: r.str("beta_schedule", "linear", ["linear", "scaled_linear"] as const),
    solverOrder,
    predictionType: r.str("prediction_type", "epsilon", ["epsilon", "v_prediction", "sample"] as const),
    solverType: r.str("solver_type", "midpoint", ["midpoint", "heun"] as const),
    lowerOrderFinal: r.bool("lower_order_final", true),
    eulerAtFinal: r.bool("euler_at_final", false),
    finalSigmasType: r.str("final_sigmas_type", "zero", ["zero", "sigma_min"] as const),
    lambdaMinClipped: r.num("lambda_min_clipped", -Infinity),
    timestepSpacing: r.str("timestep_spacing", "linspace", ["linspace", "leading", "trailing"] as const),
    stepsOffset: r.nonNegInt("steps_offset", 0),
  };
}

/** α_t = 1/√(σ² + 1), σ_t = σ·α_t, λ = log α_t − log σ_t, each rounded to float32 as the torch scalars are. */
function alphaSigma(sigma: number): { a: number; s: number; lambda: number } {
  const a = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  const s = f32(sigma * a);
  return { a, s, lambda: f32(f32(Math.log(a)) - f32(Math.log(s))) };
}

/**
 * DPMSolverMultistepScheduler with algorithm_type "dpmsolver++" (data prediction), orders 1 and 2
 * (midpoint or heun), deterministic. PixArt-Σ: 20 steps, DPM-Solver++(2M), CFG 4.5 (see `classifierFreeGuidance`).
 *
 * dtype semantics (diffusers 0.40): betas are torch.linspace float32, ᾱ = cumprod(1 − β) accumulated in float64
 * and stored as float32 (ATen's CPU cumprod), the σ table ((1 − ᾱ)/ᾱ)^½ float32; timesteps come from float64
 * numpy with round-half-even; every scalar coefficient (α, σ, λ, h, r₀, e^{−h} − 1) is a 0-d float32 tensor and
 * every tensor operation rounds to float32 — all reproduced here with Math.fround.
 */
export class DpmSolverMultistepScheduler {
  readonly config: DpmSolverConfig;
  /** ᾱ_t, float32 [num_train_timesteps]. */
  readonly alphasCumprod: Float32Array;
  /** Integer timesteps [n] (descending) and float32 σ [n + 1] after `setTimesteps`. */
  timesteps = new Int32Array(0);
  sigmas = new Float32Array(0);
  private readonly sigmaTable: Float32Array;
  private index = 0;
  private lowerOrderNums = 0;
  /** Data predictions x̂₀ of the last `solverOrder` steps, newest last. */
  private outputs: (Float32Array | undefined)[] = [];

  constructor(config: DpmSolverConfig = PIXART_SIGMA_SCHEDULER) {
    this.config = config;
    const n = config.numTrainTimesteps;
    const betas =
      config.betaSchedule === "linear"
        ? torchLinspaceF32(config.betaStart, config.betaEnd, n)
        : torchLinspaceF32(config.betaStart ** 0.5, config.betaEnd ** 0.5, n).map((b) => f32(b * b));
    this.alphasCumprod = new Float32Array(n);
    let acc = 1; // float64 accumulator, float32 outputs (ATen cumprod on the CPU)
    for (let i = 0; i < n; i++) {
      acc *= f32(1 - betas[i]!);
      this.alphasCumprod[i] = acc;
    }
    this.sigmaTable = this.alphasCumprod.map((ac) => f32(Math.sqrt(f32(f32(1 - ac) / ac))));
  }

  static async fromFolder(dir: string): Promise<DpmSolverMultistepScheduler> {
    const path = `${dir}/scheduler_config.json`;
    return new DpmSolverMultistepScheduler(parseDpmSolverConfig(await readConfigFile(path), path));
  }

  /** `set_timesteps(num_inference_steps)`. */
  setTimesteps(steps: number): void {
    if (!Number.isSafeInteger(steps) || steps < 1)
      throw new ModelError("E_INPUT", `steps must be a positive integer, got ${steps}`, "DpmSolverMultistepScheduler");
    const c = this.config;
    const n = c.numTrainTimesteps;
    // searchsorted(flip(λ_t), lambda_min_clipped): how many of the ascending λ lie below the clip.
    let clipped = 0;
    if (c.lambdaMinClipped > -Infinity)
      for (let i = n - 1; i >= 0; i--) {
        const ac = this.alphasCumprod[i]!;
        const lam = f32(f32(Math.log(f32(Math.sqrt(ac)))) - f32(Math.log(f32(Math.sqrt(f32(1 - ac))))));
        if (lam < c.lambdaMinClipped) clipped++;
        else break;
      }
    const last = n - clipped;
    let ts: number[];
    if (c.timestepSpacing === "linspace")
      ts = Array.from(linspace(0, last - 1, steps + 1), roundHalfEven)
        .reverse()
        .slice(0, -1);
    else if (c.timestepSpacing === "leading") {
      const ratio = Math.floor(last / (steps + 1));
      ts = Array.from({ length: steps + 1 }, (_, i) => i * ratio)
        .reverse()
        .slice(0, -1)
        .map((t) => t + c.stepsOffset);
    } else ts = Array.from(arange(last, 0, -(n / steps)), (t) => roundHalfEven(t) - 1);
    for (const t of ts)
      if (t < 0 || t >= n)
        throw new ModelError(
          "E_INPUT",
          `${steps} steps give timestep ${t} outside [0, ${n})`,
          "DpmSolverMultistepScheduler",
        );
    this.timesteps = Int32Array.from(ts);
    this.sigmas = new Float32Array(ts.length + 1);
    ts.forEach((t, i) => {
      this.sigmas[i] = this.sigmaTable[t]!;
    });
    this.sigmas[ts.length] = c.finalSigmasType === "zero" ? 0 : this.sigmaTable[0]!;
    this.index = 0;
    this.lowerOrderNums = 0;
    this.outputs = new Array(c.solverOrder).fill(undefined);
  }

  get stepIndex(): number {
    return this.index;
  }

  /** x̂₀ from the model output at the current σ (convert_model_output), float32 per operation. */
  private dataPrediction(m: Float32Array, x: Float32Array): Float32Array {
    const { a, s } = alphaSigma(this.sigmas[this.index]!);
    const out = new Float32Array(m.length);
    switch (this.config.predictionType) {
      case "epsilon":
        for (let j = 0; j < out.length; j++) out[j] = f32(f32(x[j]! - f32(s * m[j]!)) / a);
        break;
      case "v_prediction":
        for (let j = 0; j < out.length; j++) out[j] = f32(a * x[j]!) - f32(s * m[j]!);
        break;
      case "sample":
        out.set(m);
        break;
    }
    return out;
  }

  /** One solver step with the (guided) model output at the current timestep; returns the next sample. */
  step(modelOutput: Float32Array, sample: Float32Array): Float32Array {
    const c = this.config;
    const n = this.timesteps.length;
    const i = this.index;
    if (i >= n)
      throw new ModelError(
        "E_INPUT",
        `all ${n} steps are taken (call setTimesteps again)`,
        "DpmSolverMultistepScheduler.step",
      );
    checkSameLength(modelOutput, sample, "DpmSolverMultistepScheduler.step");
    checkFinite(modelOutput, `DpmSolverMultistepScheduler.step ${i}: model output`);
    const lowerFinal = i === n - 1 && (c.eulerAtFinal || (c.lowerOrderFinal && n < 15) || c.finalSigmasType === "zero");
    // (diffusers' "lower_order_second" rule only demotes third-order steps; order 2 is the highest here)
    const x0 = this.dataPrediction(modelOutput, sample);
    this.outputs.shift();
    this.outputs.push(x0);
    const t = alphaSigma(this.sigmas[i + 1]!);
    const s0 = alphaSigma(this.sigmas[i]!);
    const h = f32(t.lambda - s0.lambda);
    const c1 = f32(t.s / s0.s);
    const em1 = f32(f32(Math.exp(f32(-h))) - 1);
    const c2 = f32(t.a * em1); // α_t (e^{−h} − 1)
    const out = new Float32Array(sample.length);
    if (c.solverOrder === 1 || this.lowerOrderNums < 1 || lowerFinal) {
      for (let j = 0; j < out.length; j++) out[j] = f32(c1 * sample[j]!) - f32(c2 * x0[j]!);
    } else {
      const m1 = this.outputs[this.outputs.length - 2]!;
      const s1 = alphaSigma(this.sigmas[i - 1]!);
      const h0 = f32(s0.lambda - s1.lambda);
      const invR0 = f32(1 / f32(h0 / h));
      const cD1 = c.solverType === "midpoint" ? f32(0.5 * c2) : f32(-f32(t.a * f32(f32(em1 / h) + 1))); // heun: −α_t((e^{−h}−1)/h + 1)
      for (let j = 0; j < out.length; j++) {
        const d1 = f32(invR0 * f32(x0[j]! - m1[j]!));
        out[j] = f32(f32(c1 * sample[j]!) - f32(c2 * x0[j]!)) - f32(cD1 * d1);
      }
    }
    if (this.lowerOrderNums < c.solverOrder) this.lowerOrderNums++;
    this.index = i + 1;
    return out;
  }
}
