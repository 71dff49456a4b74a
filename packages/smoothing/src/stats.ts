import { SeededRng } from "@svdquant/lowrank";
import { SmoothingError } from "./errors.js";

export interface ActivationStatsOptions {
  /** Tokens kept for error evaluation (default 256). Memory is reservoirSize·K float64, whatever is streamed. */
  reservoirSize?: number;
  /** Seed of the reservoir's sampling (default 0). */
  seed?: number;
  /** Name of the activation (the layer input), for error messages. */
  name?: string;
}

/**
 * Streaming calibration statistics of one layer input X [M tokens, K channels]:
 * per-channel max|X_j| over every token seen, and a uniform sample of whole tokens (reservoir sampling,
 * Vitter's Algorithm R) of bounded size for evaluating output errors.
 *
 * | state     | shape             | dtype   |
 * | --------- | ----------------- | ------- |
 * | absmax    | [K]               | float64 |
 * | reservoir | [min(T, seen), K] | float64 |
 */
export class ActivationStats {
  readonly channels: number;
  readonly capacity: number;
  readonly name: string | undefined;
  private readonly max: Float64Array;
  private readonly kept: Float64Array;
  private count = 0;
  private readonly rng: SeededRng;

  constructor(channels: number, opts: ActivationStatsOptions = {}) {
    if (!Number.isSafeInteger(channels) || channels <= 0)
      throw new SmoothingError("E_SHAPE", `channel count ${channels} must be a positive integer`, opts.name);
    const cap = opts.reservoirSize ?? 256;
    if (!Number.isSafeInteger(cap) || cap <= 0)
      throw new SmoothingError("E_ARGUMENT", `reservoirSize ${cap} must be a positive integer`, opts.name);
    this.channels = channels;
    this.capacity = cap;
    this.name = opts.name;
    this.max = new Float64Array(channels);
    this.kept = new Float64Array(cap * channels);
    this.rng = new SeededRng(opts.seed ?? 0);
  }

  /** Stream a batch X [tokens, K] (row-major). Non-finite values are rejected with their position. */
  add(x: Float32Array | Float64Array, tokens: number): void {
    const k = this.channels;
    if (!Number.isSafeInteger(tokens) || tokens < 0 || x.length !== tokens * k)
      throw new SmoothingError(
        "E_SHAPE",
        `batch of ${x.length} values does not fit [${tokens}, ${k}] (tokens x channels)`,
        this.name,
      );
    for (let t = 0; t < tokens; t++) {
      const row = t * k;
      for (let j = 0; j < k; j++) {
        const v = x[row + j];
        if (!Number.isFinite(v))
          throw new SmoothingError(
            "E_NONFINITE",
            `token ${this.count} (batch row ${t}), channel ${j} is ${v}; calibration inputs must be finite`,
            this.name,
          );
        const a = Math.abs(v);
        if (a > this.max[j]) this.max[j] = a;
      }
      // Algorithm R: the first `capacity` tokens fill the reservoir, then token i replaces a random slot w.p. cap/(i+1).
      let slot = -1;
      if (this.count < this.capacity) slot = this.count;
      else {
        const r = this.rng.int(this.count + 1);
        if (r < this.capacity) slot = r;
      }
      if (slot >= 0) for (let j = 0; j < k; j++) this.kept[slot * k + j] = x[row + j];
      this.count++;
    }
  }

  /** Tokens streamed so far. */
  get tokensSeen(): number {
    return this.count;
  }

  /** max|X_j| per input channel over all tokens seen (a copy). */
  absmax(): Float64Array {
    return this.max.slice();
  }

  /** The kept tokens, X_s [T, K] row-major (a copy), T = min(capacity, tokensSeen). */
  reservoir(): { data: Float64Array; tokens: number } {
    const t = Math.min(this.capacity, this.count);
    if (t === 0) throw new SmoothingError("E_EMPTY", "no calibration tokens were streamed", this.name);
    return { data: this.kept.slice(0, t * this.channels), tokens: t };
  }
}
