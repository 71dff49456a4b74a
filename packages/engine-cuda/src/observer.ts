// The calibration observer of the GPU engine: the observer contract of @svdquant/models (CalibrationRecorder:
// per-channel absmax over every token + a bounded seeded reservoir, `LinearStats`), recorded on the device during
// the engine's steps. The reservoir's decisions depend only on token counts, so the host draws them with the
// recorder's own sampler (ReservoirSampler, in the order FluxTransformer.forward reports its linear inputs:
// fluxLinearInputs) and uploads the slot/row lists before each step; the step gathers those rows on the device.
//
// Device memory per recorded layer input (K channels, capacity C; flux.h eng_observe):
// | tensor            | shape          | dtype |
// |-------------------|----------------|-------|
// | obs.<i>.absmax    | [K]            | f32 bits (u32) |
// | obs.<i>.reservoir | [C, K]         | f32   |
// | obs.plan          | [n, 1 + 2C]    | i32   |
import { type FluxConfig, fluxLinearInputs, type LinearStats, ReservoirSampler } from "@svdquant/models";
import { EngineError } from "./errors.js";
import type { NativeEngine } from "./native.js";

export interface EngineCalibrationOptions {
  /** Reservoir capacity in tokens per layer (default 256, as CalibrationRecorder). */
  readonly reservoirSize?: number;
  /** Seed of the reservoir sampler (default 0, as CalibrationRecorder). */
  readonly seed?: number;
  /**
   * Layer names (the CPU models' names: `transformer_blocks.3.attn.to_q`, …) whose inputs are recorded; default:
   * every linear of the model. Equivalent to CalibrationRecorder's `filter`.
   */
  readonly layers?: Iterable<string>;
}

/** The engine linear that reads the input of a CPU layer (q/k/v are one stacked `attn.qkv` / `attn.add_qkv`). */
export function engineLayerOf(name: string): string {
  const m = /^(.*\.attn\.)(to_q|to_k|to_v|add_q_proj|add_k_proj|add_v_proj)$/.exec(name);
  if (m === null) return name;
  return m[1]! + (m[2]!.startsWith("add_") ? "add_qkv" : "qkv");
}

/** Statistics on the device, the host's reservoir bookkeeping, and the read-back into `LinearStats`. */
export class EngineCalibration {
  readonly reservoirSize: number;
  /** Recorded layer names, in slot order (the forward's call order). */
  readonly names: readonly string[];
  private readonly K: readonly number[];
  private readonly slotOf = new Map<string, number>();
  private readonly seen: number[];
  private readonly sampler: ReservoirSampler;
  private readonly plan: Int32Array;
  private invalid: string | undefined;

  constructor(
    private readonly native: NativeEngine,
    private readonly config: FluxConfig,
    opts: EngineCalibrationOptions = {},
  ) {
    const cap = opts.reservoirSize ?? 256; // CalibrationRecorder's default
    if (!Number.isSafeInteger(cap) || cap < 1)
      throw new EngineError("E_INPUT", `reservoirSize must be a positive integer, got ${cap}`, "EngineCalibration");
    this.reservoirSize = cap;
    this.sampler = new ReservoirSampler(cap, opts.seed ?? 0);
    const all = fluxLinearInputs(config, 1, 1, 1);
    const want = opts.layers === undefined ? undefined : new Set(opts.layers);
    if (want !== undefined) {
      const known = new Set(all.map((c) => c.name));
      for (const n of want)
        if (!known.has(n))
          throw new EngineError("E_INPUT", "not a linear layer of this FLUX model", `calibration layer ${n}`);
    }
    const names: string[] = [];
    const K: number[] = [];
    for (const c of all)
      if (want === undefined || want.has(c.name)) {
        this.slotOf.set(c.name, names.length);
        names.push(c.name);
        K.push(c.k);
      }
    if (names.length === 0) throw new EngineError("E_INPUT", "no layers to record", "EngineCalibration");
    this.names = names;
    this.K = K;
    this.seen = names.map(() => 0);
    this.plan = new Int32Array(names.length * (1 + 2 * cap));
    native.observe(names.map(engineLayerOf), K as number[], cap);
  }

  /** Device bytes of the statistics (absmax, reservoirs, plan), from their sizes on the device. */
  get deviceBytes(): number {
    const per = this.K.reduce((a, k) => a + k * 4 * (1 + this.reservoirSize), 0);
    return per + this.plan.byteLength;
  }

  /** Draw the reservoir decisions of one step of (B, St, Si) and upload them (before the step runs). */
  beforeStep(B: number, St: number, Si: number): void {
    if (this.invalid) throw new EngineError("E_INPUT", this.invalid, "EngineCalibration");
    const cap = this.reservoirSize;
    const row = 1 + 2 * cap;
    this.plan.fill(0);
    for (const c of fluxLinearInputs(this.config, B, St, Si)) {
      const i = this.slotOf.get(c.name);
      if (i === undefined) continue;
      const p = this.sampler.plan(this.seen[i]!, c.m);
      this.plan[i * row] = p.length / 2;
      this.plan.set(p, i * row + 1);
      this.seen[i]! += c.m;
    }
    this.native.upload("obs.plan", this.plan);
  }

  /** Steps ran without a plan (timing): the statistics no longer match the host's counts. */
  invalidate(why: string): void {
    this.invalid = why;
  }

  /** Downloads the statistics: one `LinearStats` per recorded layer, laid out as CalibrationRecorder's. */
  stats(): Map<string, LinearStats> {
    if (this.invalid) throw new EngineError("E_INPUT", this.invalid, "EngineCalibration");
    const out = new Map<string, LinearStats>();
    const cap = this.reservoirSize;
    for (const [i, name] of this.names.entries()) {
      const K = this.K[i]!;
      const seen = this.seen[i]!;
      if (seen === 0) throw new EngineError("E_INPUT", "no statistics recorded for this layer", `calibration ${name}`);
      const absmax = new Float32Array(this.native.download(`obs.${i}.absmax`));
      for (let k = 0; k < K; k++)
        if (!Number.isFinite(absmax[k]!))
          throw new EngineError(
            "E_INPUT",
            `channel ${k} saw a non-finite value (${absmax[k]}); calibration inputs must be finite`,
            `calibration ${name}`,
          );
      const rows = Math.min(seen, cap);
      const reservoir = new Float32Array(cap * K);
      reservoir.set(new Float32Array(this.native.download(`obs.${i}.reservoir`, rows * K * 4)));
      out.set(name, { name, inFeatures: K, tokensSeen: seen, absmax, reservoir, rows });
    }
    return out;
  }

  /** Tokens seen so far per recorded layer. */
  tokensSeen(name: string): number {
    const i = this.slotOf.get(name);
    if (i === undefined) throw new EngineError("E_INPUT", "not recorded", `calibration ${name}`);
    return this.seen[i]!;
  }
}
