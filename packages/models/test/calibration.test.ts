/**
 * CalibrationRecorder as a plain statistics stream (`add`): absmax over every token, a bounded reservoir of real
 * tokens sampled uniformly (Algorithm R) and deterministically per seed, and bad batches rejected whole.
 */
import { describe, expect, it } from "vitest";
import { CalibrationRecorder, ModelError } from "../src/index.js";

function normals(seed: number, n: number): Float32Array {
  let s = seed >>> 0;
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()));
}

describe("CalibrationRecorder.add", () => {
  it("tracks per-channel absmax over every streamed token and keeps a bounded reservoir of real tokens", () => {
    const k = 12;
    const rec = new CalibrationRecorder({ reservoirSize: 16, seed: 2 });
    const all: Float32Array[] = [];
    for (let b = 0; b < 20; b++) {
      const tokens = 1 + (b % 7);
      const x = normals(b + 1, tokens * k).map((v, i) => v * (i % k === 3 ? 50 : 1));
      rec.add("x", x, tokens, k);
      for (let t = 0; t < tokens; t++) all.push(x.slice(t * k, (t + 1) * k));
    }
    const s = rec.get("x");
    expect(s.tokensSeen).toBe(all.length);
    const want = new Float32Array(k);
    for (const row of all) for (let j = 0; j < k; j++) want[j] = Math.max(want[j]!, Math.abs(row[j]!));
    expect(Array.from(s.absmax)).toEqual(Array.from(want));
    expect(s.rows).toBe(16);
    const keys = new Set(all.map((r) => r.join(",")));
    const kept = rec.samples("x");
    for (let t = 0; t < 16; t++) expect(keys.has(Array.from(kept.slice(t * k, (t + 1) * k)).join(","))).toBe(true);
  });

  it("samples tokens uniformly and deterministically per seed", () => {
    const counts = new Float64Array(100);
    for (let seed = 0; seed < 200; seed++) {
      const rec = new CalibrationRecorder({ reservoirSize: 10, seed });
      for (let t = 0; t < 100; t++) rec.add("x", Float32Array.of(t + 1), 1, 1);
      for (const v of rec.samples("x")) counts[v - 1]!++;
    }
    // each token is kept with probability 10/100: first and last halves alike
    const first = counts.slice(0, 50).reduce((a, b) => a + b, 0);
    const last = counts.slice(50).reduce((a, b) => a + b, 0);
    expect(Math.abs(first - last) / (first + last)).toBeLessThan(0.1);
    const a = new CalibrationRecorder({ reservoirSize: 2, seed: 9 });
    const b = new CalibrationRecorder({ reservoirSize: 2, seed: 9 });
    const x = normals(1, 30);
    a.add("x", x, 10, 3);
    b.add("x", x, 10, 3);
    expect(a.samples("x")).toEqual(b.samples("x"));
  });

  it("rejects a batch of the wrong shape or holding a NaN/Inf whole, naming the input and position", () => {
    const rec = new CalibrationRecorder({ reservoirSize: 4 });
    rec.add("blocks.0.attn.to_q", normals(3, 8), 2, 4);
    const before = rec.get("blocks.0.attn.to_q").absmax.slice();
    const keptBefore = rec.samples("blocks.0.attn.to_q").slice();
    expect(() => rec.add("blocks.0.attn.to_q", new Float32Array(7), 2, 4)).toThrow(/to_q.*\[2, 4\]/);
    expect(() => rec.add("blocks.0.attn.to_q", new Float32Array(6), 2, 3)).toThrow(/3 channels, earlier batches 4/);
    const bad = new Float32Array(8).fill(1);
    bad[6] = Number.NaN;
    expect(() => rec.add("blocks.0.attn.to_q", bad, 2, 4)).toThrow(ModelError);
    expect(() => rec.add("blocks.0.attn.to_q", bad, 2, 4)).toThrow(/token 3 \(batch row 1\), channel 2 is NaN/);
    const s = rec.get("blocks.0.attn.to_q");
    expect(s.tokensSeen).toBe(2);
    expect(s.absmax).toEqual(before); // the rejected batch left no trace
    expect(rec.samples("blocks.0.attn.to_q")).toEqual(keptBefore);
  });
});
