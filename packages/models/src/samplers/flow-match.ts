import { ModelError } from "../errors.js";
import { ConfigReader, readConfigFile } from "../json-config.js";
import { f32, linspace } from "./numeric.js";

/** FlowMatchEulerDiscreteScheduler config (diffusers `scheduler_config.json`), the fields FLUX uses. */
export interface FlowMatchConfig {
  readonly numTrainTimesteps: number;
  readonly shift: number;
  readonly useDynamicShifting: boolean;
  readonly baseShift: number;
  readonly maxShift: number;
  readonly baseImageSeqLen: number;
  readonly maxImageSeqLen: number;
  readonly timeShiftType: "exponential" | "linear";
}

export const FLOW_MATCH_CLASS = "FlowMatchEulerDiscreteScheduler";

/** FLUX.1-dev's scheduler_config.json (dynamic shifting between 0.5 and 1.15). */
export const FLUX_DEV_SCHEDULER: FlowMatchConfig = Object.freeze({
  numTrainTimesteps: 1000,
  shift: 3.0,
  useDynamicShifting: true,
  baseShift: 0.5,
  maxShift: 1.15,
  baseImageSeqLen: 256,
  maxImageSeqLen: 4096,
  timeShiftType: "exponential",
});

/** FLUX.1-schnell's scheduler_config.json (no shift). */
export const FLUX_SCHNELL_SCHEDULER: FlowMatchConfig = Object.freeze({
  ...FLUX_DEV_SCHEDULER,
  shift: 1.0,
  useDynamicShifting: false,
});

/** Parse a FlowMatchEulerDiscreteScheduler config; options this sampler lacks are E_UNSUPPORTED. */
export function parseFlowMatchConfig(raw: Record<string, unknown>, where = "scheduler_config.json"): FlowMatchConfig {
  const r = new ConfigReader(raw, where);
  if (raw._class_name !== undefined && raw._class_name !== FLOW_MATCH_CLASS)
    throw new ModelError(
      "E_CONFIG",
      `_class_name is "${String(raw._class_name)}", expected "${FLOW_MATCH_CLASS}"`,
      where,
    );
  for (const k of [
    "invert_sigmas",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "stochastic_sampling",
  ])
    r.unsupported(k, false);
  r.unsupported("shift_terminal", null);
  return {
    numTrainTimesteps: r.posInt("num_train_timesteps", 1000),
    shift: r.num("shift", 1.0),
    useDynamicShifting: r.bool("use_dynamic_shifting", false),
    baseShift: r.num("base_shift", 0.5),
    maxShift: r.num("max_shift", 1.15),
    baseImageSeqLen: r.posInt("base_image_seq_len", 256),
    maxImageSeqLen: r.posInt("max_image_seq_len", 4096),
    timeShiftType: r.str("time_shift_type", "exponential", ["exponential", "linear"] as const),
  };
}

/**
 * FluxPipeline's `calculate_shift`: μ linear in the image token count, base_shift at base_image_seq_len and
 * max_shift at max_image_seq_len (Python floats: float64 here too).
 */
export function calculateShift(imageSeqLen: number, c: FlowMatchConfig): number {
  const m = (c.maxShift - c.baseShift) / (c.maxImageSeqLen - c.baseImageSeqLen);
  const b = c.baseShift - m * c.baseImageSeqLen;
  return imageSeqLen * m + b;
}

/** FluxPipeline's default sigmas: numpy.linspace(1.0, 1/steps, steps) (float64). */
export function fluxSigmas(steps: number): Float64Array {
  return linspace(1.0, 1 / steps, steps);
}

export interface FlowMatchTimestepOptions {
  /** Custom sigmas (FluxPipeline passes `fluxSigmas(steps)`); cast to float32 as diffusers does. */
  readonly sigmas?: ArrayLike<number>;
  /** Resolution-dependent shift μ; required when the config has use_dynamic_shifting. */
  readonly mu?: number;
}

/**
 * FlowMatchEulerDiscreteScheduler: deterministic Euler steps x ← x + (σₙ₊₁ − σₙ)·v on the flow-matching ODE.
 *
 * dtype semantics (diffusers 0.40): custom sigmas are cast to float32 and shifted in float32 numpy arithmetic
 * (Python scalars are cast to float32 first, NEP 50); the default path (no sigmas) shifts float64 timesteps;
 * the stored sigmas and timesteps are float32, and `step` computes dt·v and x + dt·v each rounded to float32.
 * Every rounding is reproduced with Math.fround, so schedules match bit for bit and steps within one ulp.
 */
export class FlowMatchEulerScheduler {
  readonly config: FlowMatchConfig;
  /** float32 values of the schedule: `timesteps` [n] (σ·1000), `sigmas` [n + 1] ending in 0. */
  timesteps = new Float32Array(0);
  sigmas = new Float32Array(0);
  private index = 0;
  private readonly sigmaMax: number;
  private readonly sigmaMin: number;

  constructor(config: FlowMatchConfig = FLUX_DEV_SCHEDULER) {
    this.config = config;
    // __init__: sigmas = linspace(1, N, N)[::-1] / N in float32, statically shifted unless dynamic.
    const n = config.numTrainTimesteps;
    const first = this.staticShift(f32(n / n), f32);
    const last = this.staticShift(f32(1 / n), f32);
    this.sigmaMax = first;
    this.sigmaMin = last;
  }

  /** Read `scheduler_config.json` of a diffusers scheduler folder. */
  static async fromFolder(dir: string): Promise<FlowMatchEulerScheduler> {
    const path = `${dir}/scheduler_config.json`;
    return new FlowMatchEulerScheduler(parseFlowMatchConfig(await readConfigFile(path), path));
  }

  private staticShift(s: number, r: (x: number) => number): number {
    if (this.config.useDynamicShifting) return s;
    const sh = this.config.shift;
    return r(r(r(sh) * s) / r(1 + r(r(sh - 1) * s)));
  }

  private timeShift(mu: number, t: number, r: (x: number) => number): number {
    // sigma exponent 1.0 (FlowMatchEulerDiscreteScheduler.set_timesteps passes 1.0)
    const x = r(r(1 / t) - 1);
    if (this.config.timeShiftType === "exponential") {
      const e = r(Math.exp(mu));
      return r(e / r(e + x));
    }
    const m = r(mu);
    return r(m / r(m + x));
  }

  /** `set_timesteps(num_inference_steps, sigmas=…, mu=…)`. */
  setTimesteps(steps: number, opts: FlowMatchTimestepOptions = {}): void {
    if (!Number.isSafeInteger(steps) || steps < 1)
      throw new ModelError("E_INPUT", `steps must be a positive integer, got ${steps}`, "FlowMatchEulerScheduler");
    const c = this.config;
    if (c.useDynamicShifting && (opts.mu === undefined || !Number.isFinite(opts.mu)))
      throw new ModelError(
        "E_INPUT",
        "mu must be a finite number when use_dynamic_shifting is set (see calculateShift)",
        "FlowMatchEulerScheduler",
      );
    let base: ArrayLike<number>;
    let r: (x: number) => number;
    if (opts.sigmas !== undefined) {
      if (opts.sigmas.length !== steps)
        throw new ModelError(
          "E_INPUT",
          `${opts.sigmas.length} sigmas given for ${steps} steps`,
          "FlowMatchEulerScheduler",
        );
      base = Float32Array.from(opts.sigmas);
      r = f32;
    } else {
      const n = c.numTrainTimesteps;
      const ts = linspace(this.sigmaMax * n, this.sigmaMin * n, steps);
      base = ts.map((t) => t / n);
      r = (x) => x;
    }
    const sig = new Float32Array(steps + 1);
    for (let i = 0; i < steps; i++) {
      const s = base[i]!;
      if (!(s > 0 && s <= 1))
        throw new ModelError("E_INPUT", `sigma ${i} is ${s}, expected in (0, 1]`, "FlowMatchEulerScheduler");
      sig[i] = c.useDynamicShifting ? this.timeShift(opts.mu!, s, r) : this.staticShift(s, r);
    }
    sig[steps] = 0;
    this.sigmas = sig;
    this.timesteps = new Float32Array(steps);
    for (let i = 0; i < steps; i++) this.timesteps[i] = f32(sig[i]! * c.numTrainTimesteps);
    this.index = 0;
  }

  /** Steps taken since `setTimesteps`. */
  get stepIndex(): number {
    return this.index;
  }

  /** One Euler step with the model's velocity `v` at the current timestep; returns the next sample (fresh array). */
  step(v: Float32Array, sample: Float32Array): Float32Array {
    const i = this.index;
    if (i >= this.timesteps.length)
      throw new ModelError(
        "E_INPUT",
        `all ${this.timesteps.length} steps are taken (call setTimesteps again)`,
        "FlowMatchEulerScheduler.step",
      );
    checkSameLength(v, sample, "FlowMatchEulerScheduler.step");
    checkFinite(v, `FlowMatchEulerScheduler.step ${i}: model output`);
    const dt = f32(this.sigmas[i + 1]! - this.sigmas[i]!);
    const out = new Float32Array(sample.length);
    for (let j = 0; j < out.length; j++) out[j] = sample[j]! + f32(dt * v[j]!);
    this.index = i + 1;
    return out;
  }
}

export function checkSameLength(a: Float32Array, b: Float32Array, where: string): void {
  if (a.length !== b.length)
    throw new ModelError("E_SHAPE", `model output has ${a.length} values, the sample ${b.length}`, where);
}

export function checkFinite(x: ArrayLike<number>, where: string): void {
  for (let i = 0; i < x.length; i++)
    if (!Number.isFinite(x[i]!)) throw new ModelError("E_INPUT", `element ${i} is ${x[i]} (not finite)`, where);
}
