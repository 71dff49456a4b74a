import { ModelError } from "./errors.js";

/**
 * The reservoir decisions of calibration (Vitter's algorithm R, seeded): which slot of a `capacity`-row reservoir
 * the token numbered `seen` (0-based, per layer) goes to. The first `capacity` tokens fill slots in order; token
 * `seen` ≥ capacity draws j = ⌊u·(seen + 1)⌋ from the PRNG and replaces slot j when j < capacity. The decisions
 * depend only on token counts, never on values, so a device can be told them before a step (@svdquant/engine-cuda).
 * One sampler is shared by every layer a recorder sees (draws interleave in the order layers are observed).
 * PRNG: mulberry32, uniform in [0, 1).
 */
export class ReservoirSampler {
  readonly capacity: number;
  private state: number;

  constructor(capacity: number, seed = 0) {
    if (!Number.isSafeInteger(capacity) || capacity < 0)
      throw new ModelError(
        "E_INPUT",
        `reservoir capacity must be a non-negative integer, got ${capacity}`,
        "ReservoirSampler",
      );
    this.capacity = capacity;
    this.state = seed >>> 0;
  }

  private random(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** The slot of token number `seen` (tokens of this layer before it), or -1 when it is not kept. */
  slot(seen: number): number {
    if (this.capacity === 0) return -1;
    if (seen < this.capacity) return seen;
    const j = Math.floor(this.random() * (seen + 1));
    return j < this.capacity ? j : -1;
  }

  /**
   * The decisions for a batch of m tokens numbered seen..seen+m-1: [slot, row] pairs (row in 0..m-1), one per
   * slot — when two rows of the batch land in one slot, the later one (which overwrites it) — in row order.
   * Makes exactly the draws that m calls of {@link slot} make.
   */
  plan(seen: number, m: number): Int32Array {
    const last = new Map<number, number>();
    for (let r = 0; r < m; r++) {
      const s = this.slot(seen + r);
      if (s >= 0) {
        last.delete(s); // re-insert: Map keeps insertion order, so pairs end up ordered by their row
        last.set(s, r);
      }
    }
    const out = new Int32Array(last.size * 2);
    let i = 0;
    for (const [s, r] of last) {
      out[i++] = s;
      out[i++] = r;
    }
    return out;
  }
}
