/**
 * Calibration on the GPU engine (@svdquant/engine-cuda) in its 16-bit mode: the same sources and statistics as
 * recordCalibration on the CPU (calibrate.ts), with every forward on the device and the layer-input statistics
 * (per-channel absmax, the seeded reservoir) recorded there by the engine's observer — which replays
 * CalibrationRecorder's reservoir decisions, so the statistics are the CPU recorder's up to the bf16 forward.
 * FLUX only (the engine runs FLUX.1). `calibrateModel` is the whole command (`svdquant calibrate`): model (a
 * checkpoint folder, or random full-size weights drawn on the device) → statistics file (writeCalibration's format,
 * which `svdquant quantize --calibration` reads).
 */

import { join } from "node:path";
import { type EngineMemory, FLUX_CONFIGS, FluxEngine } from "@svdquant/engine-cuda";
import { FlowMatchEulerScheduler, type FluxConfig, type ModelConfig, parseModelConfig } from "@svdquant/models";
import { checkOutputPath, openModelFolder } from "@svdquant/tensor";
import {
  calibrationInputs,
  calibrationPrompts,
  type InputStats,
  recordCalibration,
  writeCalibration,
} from "./calibrate.js";
import { type CalibrationConfig, type QuantizeConfig, recipeOf } from "./config.js";
import { PipelineError } from "./errors.js";
import { denoiseFlux, FLUX_DEFAULTS, FluxPipeline } from "./generate.js";
import { calibrationTargets } from "./quantize-model.js";

export interface EngineCalibrationHooks {
  /** After each forward (transformer step): forwards done so far and that step's wall milliseconds. */
  readonly onForward?: (done: number, ms: number) => void;
  /** The pipeline folder for prompt calibration when the source names none. */
  readonly pipelineDir?: string;
  /** After the last step, before the download: the engine's memory and the statistics' share of it (measured). */
  readonly onMemory?: (m: EngineStatsMemory) => void;
}

/** Device memory of the statistics, measured around the observer's setup, and the engine's after the run. */
export interface EngineStatsMemory {
  /** Bytes the observer allocated on the device (engine accounting: absmax, reservoirs, plan). */
  readonly statsAllocated: number;
  /** Drop of cudaMemGetInfo's free bytes when the observer was set up. */
  readonly statsDeviceFreeDrop: number;
  readonly engine: EngineMemory;
}

/**
 * Record calibration statistics of `record` (layer names of the CPU models) with `engine` (16-bit mode) on the
 * inputs `cal` names. The engine keeps its weights; the observer is removed (its device memory freed) at the end.
 */
export async function recordCalibrationOnEngine(
  engine: FluxEngine,
  cal: CalibrationConfig,
  record: ReadonlySet<string>,
  hooks: EngineCalibrationHooks = {},
): Promise<Map<string, InputStats>> {
  const config = engine.config;
  const m0 = engine.memory();
  const obs = engine.observe({ reservoirSize: cal.reservoir, seed: cal.seed, layers: record });
  const m1 = engine.memory();
  try {
    let done = 0;
    let t0 = performance.now();
    const tick = () => {
      const t = performance.now();
      hooks.onForward?.(++done, t - t0);
      t0 = t;
    };
    if (cal.source !== "synthetic" && "prompts" in cal.source) {
      // the reference protocol: the 16-bit model's own sampler trajectories (FlowMatch Euler on the host, each
      // step's transformer on the device), every step recorded; no image is decoded
      const dir = cal.source.pipeline ?? hooks.pipelineDir ?? ".";
      const prompts = await calibrationPrompts(cal.source, cal.samples);
      const pipe = await FluxPipeline.load(dir);
      const cond = pipe.encode(prompts, cal.textTokens);
      const px = cal.imageSide * 2 * pipe.vae.scaleFactor; // image tokens per side → pixels (2×2 patches)
      const guidance = cal.source.guidance ?? FLUX_DEFAULTS.guidance;
      for (let row = 0; row < prompts.length; row++) {
        const scheduler = await FlowMatchEulerScheduler.fromFolder(pipe.schedulerDir);
        await denoiseFlux(
          engine,
          scheduler,
          pipe.vae.scaleFactor,
          cond,
          { steps: cal.steps, guidance, height: px, width: px, maxSequenceLength: cal.textTokens },
          { row, seed: cal.seed + row, onStep: tick },
        );
      }
    } else
      for await (const inp of calibrationInputs(config, cal)) {
        if (inp.kind !== "flux") throw new PipelineError("E_CALIBRATION", "the GPU engine runs FLUX only");
        await engine.forward(inp.inputs);
        tick();
      }
    const m2 = engine.memory();
    hooks.onMemory?.({
      statsAllocated: m1.weights - m0.weights,
      statsDeviceFreeDrop: m0.deviceFree - m1.deviceFree,
      engine: m2,
    });
    const out = new Map<string, InputStats>();
    for (const [name, s] of obs.stats())
      out.set(name, {
        absmax: s.absmax,
        tokens: s.reservoir.subarray(0, s.rows * s.inFeatures),
        rows: s.rows,
        tokensSeen: s.tokensSeen,
      });
    return out;
  } finally {
    if (!engine.freed) engine.unobserve();
  }
}

export interface CalibrateModelOptions {
  /** A diffusers transformer folder (config.json + safetensors); or `random`. */
  readonly modelDir?: string;
  /** No checkpoint: a full-size model of this name with deterministic random weights drawn on the device. */
  readonly random?: keyof typeof FLUX_CONFIGS;
  readonly device: "cpu" | "cuda";
  readonly config: QuantizeConfig;
  /** Output statistics file (.safetensors; writeCalibration). */
  readonly out: string;
  readonly onForward?: (done: number, total: number, ms: number) => void;
}

export interface CalibrateModelResult {
  readonly out: string;
  readonly layers: number;
  readonly forwards: number;
  /** Wall milliseconds of every forward (the device path; the CPU path reports none). */
  readonly stepMs: readonly number[];
  /** Device memory (cuda): the engine's after the steps, the statistics' share (measured). */
  readonly memory?: EngineStatsMemory;
  /** Host bytes of the downloaded statistics (absmax + kept tokens, f32). */
  readonly statsHostBytes: number;
  readonly seconds: number;
}

/** The `svdquant calibrate` flow: a model, the config's calibration, the recipe's targets → one statistics file. */
export async function calibrateModel(opts: CalibrateModelOptions): Promise<CalibrateModelResult> {
  const t0 = performance.now();
  await checkOutputPath(opts.out); // a bad output path fails before the forwards, not after them
  const cal = opts.config.calibration;
  const total = cal.source !== "synthetic" && "file" in cal.source ? 0 : cal.samples * cal.steps;
  const stepMs: number[] = [];
  const onForward = (done: number, ms: number) => {
    stepMs.push(ms);
    opts.onForward?.(done, total, ms);
  };
  let stats: Map<string, InputStats>;
  let memory: EngineStatsMemory | undefined;
  const onMemory = (m: EngineStatsMemory) => {
    memory = m;
  };
  let meta: Record<string, string>;
  if (opts.random !== undefined) {
    if (opts.modelDir !== undefined)
      throw new PipelineError("E_CONFIG", "give a model folder or random weights, not both");
    if (opts.device !== "cuda")
      throw new PipelineError("E_CONFIG", "random full-size weights are drawn on the GPU: use the cuda device");
    const c = FLUX_CONFIGS[opts.random];
    if (c === undefined) throw new PipelineError("E_CONFIG", `unknown random model ${opts.random}`);
    const config: FluxConfig = c;
    const engine = FluxEngine.random(config, { mode: "bf16" });
    try {
      const targets = calibrationTargets(config, recipeOf(opts.config));
      stats = await recordCalibrationOnEngine(engine, cal, targets, { onForward, onMemory });
    } finally {
      engine.free();
    }
    meta = { model: `random ${opts.random} (device-drawn weights)` };
  } else {
    if (opts.modelDir === undefined) throw new PipelineError("E_CONFIG", "no model folder given");
    const folder = await openModelFolder(opts.modelDir);
    try {
      if (folder.config === undefined)
        throw new PipelineError("E_MODEL", "no config.json in the model folder", opts.modelDir);
      let config: ModelConfig;
      try {
        config = parseModelConfig(folder.config, join(opts.modelDir, "config.json"));
      } catch (e) {
        throw new PipelineError("E_MODEL", (e as Error).message, opts.modelDir, { cause: e });
      }
      const targets = calibrationTargets(config, recipeOf(opts.config));
      if (opts.device === "cuda") {
        if (config.kind !== "flux")
          throw new PipelineError(
            "E_MODEL",
            "the GPU engine runs FLUX.1 only; calibrate PixArt-Σ on the cpu device",
            opts.modelDir,
          );
        const engine = await FluxEngine.load(config, folder.weights);
        try {
          stats = await recordCalibrationOnEngine(engine, cal, targets, {
            onForward,
            onMemory,
            pipelineDir: join(opts.modelDir, ".."),
          });
        } finally {
          engine.free();
        }
      } else {
        let tp = performance.now();
        stats = await recordCalibration(
          config,
          folder.weights,
          cal,
          targets,
          (d) => {
            const t = performance.now();
            onForward(d, t - tp);
            tp = t;
          },
          join(opts.modelDir, ".."),
        );
      }
    } finally {
      await folder.weights.close();
    }
    meta = { model: opts.modelDir };
  }
  let hostBytes = 0;
  for (const s of stats.values()) hostBytes += s.absmax.byteLength + s.tokens.byteLength;
  await writeCalibration(opts.out, stats, {
    ...meta,
    device: opts.device,
    calibration: JSON.stringify(cal),
  });
  return {
    out: opts.out,
    layers: stats.size,
    forwards: stepMs.length,
    stepMs,
    ...(memory ? { memory } : {}),
    statsHostBytes: hostBytes,
    seconds: (performance.now() - t0) / 1000,
  };
}
