import { ModelError } from "./errors.js";
import type { LinearLayer } from "./linear.js";
import { ReservoirSampler } from "./reservoir.js";
import type { LinearObserver } from "./runtime.js";

/**
 * Input statistics of one linear layer, for the smoothing search (SVDQuant §4.2: λ from per-channel
 * activation absmax) and for calibrating the low-rank branch on real tokens.
 *
 * | field     | shape      | dtype | meaning                                           |
 * | --------- | ---------- | ----- | ------------------------------------------------- |
 * | absmax    | [K]        | f32   | max |x[:, k]| over every token seen              |
 * | reservoir | [R, K]     | f32   | uniform sample of the tokens seen (rows 0..rows-1) |
 */
export interface LinearStats {
  readonly name: string;
  readonly inFeatures: number;
  tokensSeen: number;
  readonly absmax: Float32Array;
  readonly reservoir: Float32Array;
  /** Rows of `reservoir` filled: min(tokensSeen, capacity). */
  rows: number;
}

export interface CalibrationOptions {
  /** Reservoir capacity in tokens per layer (default 256); 0 = absmax only. */
  readonly reservoirSize?: number;
  /** PRNG seed of the reservoir sampler (default 0). */
  readonly seed?: number;
  /** Which layers to record (default: all). */
  readonly filter?: (name: string) => boolean;
}

/**
 * A `LinearObserver` that records each linear layer's input per-channel absmax and a bounded, uniformly
 * sampled reservoir of input tokens (Vitter's algorithm R, seeded: {@link ReservoirSampler}, one for all layers). Pass it as `observer` to `forward`, or stream
 * any named input with `add`. The one calibration-statistics implementation of the project (the pipeline and the
 * quantizer's `calibrationFromStats` read its `LinearStats`). Non-finite inputs are rejected with their position.
 */
export class CalibrationRecorder implements LinearObserver {
  readonly reservoirSize: number;
  private readonly filter: ((name: string) => boolean) | undefined;
  private readonly stats = new Map<string, LinearStats>();
  private readonly sampler: ReservoirSampler;

  constructor(opts: CalibrationOptions = {}) {
    const r = opts.reservoirSize ?? 256;
    if (!Number.isSafeInteger(r) || r < 0)
      throw new ModelError("E_INPUT", `reservoirSize must be a non-negative integer, got ${r}`, "CalibrationRecorder");
    this.reservoirSize = r;
    this.filter = opts.filter;
    this.sampler = new ReservoirSampler(r, opts.seed ?? 0);
  }

  onLinearInput(layer: LinearLayer, x: Float32Array, m: number): void {
    if (this.filter !== undefined && !this.filter(layer.name)) return;
    this.add(layer.name, x, m, layer.inFeatures);
  }

  /** Stream a batch X [m, k] (row-major) of the input named `name` (not filtered). */
  add(name: string, x: Float32Array, m: number, k: number): void {
    let s = this.stats.get(name);
    if (s !== undefined && s.inFeatures !== k)
      throw new ModelError(
        "E_SHAPE",
        `input has ${k} channels, earlier batches ${s.inFeatures}`,
        `calibration ${name}`,
      );
    if (!Number.isSafeInteger(m) || m < 0 || !Number.isSafeInteger(k) || k <= 0 || x.length !== m * k)
      throw new ModelError("E_SHAPE", `input of ${x.length} elements is not [${m}, ${k}]`, `calibration ${name}`);
    // the whole batch is checked first, so a rejected batch leaves the statistics as they were
    for (let i = 0; i < x.length; i++)
      if (!(Math.abs(x[i]!) <= Number.MAX_VALUE))
        throw new ModelError(
          "E_INPUT",
          `token ${(s?.tokensSeen ?? 0) + Math.floor(i / k)} (batch row ${Math.floor(i / k)}), channel ${i % k} is ${x[i]}; calibration inputs must be finite`,
          `calibration ${name}`,
        );
    if (s === undefined) {
      s = {
        name,
        inFeatures: k,
        tokensSeen: 0,
        absmax: new Float32Array(k),
        reservoir: new Float32Array(this.reservoirSize * k),
        rows: 0,
      };
      this.stats.set(name, s);
    }
    const am = s.absmax;
    for (let t = 0; t < m; t++) {
      const o = t * k;
      for (let i = 0; i < k; i++) {
        const a = Math.abs(x[o + i]!);
        if (a > am[i]!) am[i] = a;
      }
      const slot = this.sampler.slot(s.tokensSeen++);
      if (slot >= 0) s.reservoir.set(x.subarray(o, o + k), slot * k);
    }
    s.rows = Math.min(s.tokensSeen, this.reservoirSize);
  }

  names(): string[] {
    return [...this.stats.keys()];
  }

  get(name: string): LinearStats {
    const s = this.stats.get(name);
    if (s === undefined)
      throw new ModelError("E_INPUT", "no statistics recorded for this layer", `calibration ${name}`);
    return s;
  }

  /** The reservoir's filled rows [rows, K]. */
  samples(name: string): Float32Array {
    const s = this.get(name);
    return s.reservoir.subarray(0, s.rows * s.inFeatures);
  }

  clear(): void {
    this.stats.clear();
  }
}
