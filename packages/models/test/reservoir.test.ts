/**
 * ReservoirSampler: the recorder's reservoir decisions as a plan a device can replay (slot/row pairs before the
 * batch is seen), and fluxLinearInputs: the order and sizes in which FluxTransformer.forward reports linear inputs.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  CalibrationRecorder,
  type FluxInputs,
  FluxTransformer,
  fluxLinearInputs,
  type LinearLayer,
  ReservoirSampler,
} from "../src/index.js";
import { FIXTURES, randn } from "./helpers.js";

describe("ReservoirSampler", () => {
  it("plans, per batch, exactly the rows CalibrationRecorder keeps (several layers sharing one PRNG)", () => {
    for (const [cap, seed] of [
      [4, 0],
      [16, 7],
      [1, 3],
    ] as const) {
      const rec = new CalibrationRecorder({ reservoirSize: cap, seed });
      const sampler = new ReservoirSampler(cap, seed);
      const names = ["a", "b", "c"];
      const seen = new Map<string, number>();
      const replay = new Map<string, Float64Array>(); // slot → global token id, replayed from the plans
      let id = 1;
      for (let batch = 0; batch < 30; batch++) {
        const name = names[(batch * 7) % 3]!;
        const m = 1 + ((batch * 5) % 9);
        const k = 2;
        // token values encode a unique id, so a kept row names its token
        const x = new Float32Array(m * k);
        for (let r = 0; r < m; r++) x.fill(id + r, r * k, (r + 1) * k);
        rec.add(name, x, m, k);
        const s0 = seen.get(name) ?? 0;
        const plan = sampler.plan(s0, m);
        const slots = new Set<number>();
        for (let i = 0; i < plan.length; i += 2) {
          expect(slots.has(plan[i]!)).toBe(false); // distinct slots: no write conflicts on the device
          slots.add(plan[i]!);
          expect(plan[i + 1]!).toBeGreaterThanOrEqual(0);
          expect(plan[i + 1]!).toBeLessThan(m);
        }
        const res = replay.get(name) ?? new Float64Array(cap);
        for (let i = 0; i < plan.length; i += 2) res[plan[i]!] = id + plan[i + 1]!;
        replay.set(name, res);
        seen.set(name, s0 + m);
        id += m;
      }
      for (const name of names) {
        const st = rec.get(name);
        expect(st.tokensSeen).toBe(seen.get(name));
        const kept = Array.from({ length: st.rows }, (_, r) => st.reservoir[r * 2]!);
        expect(kept).toEqual(Array.from(replay.get(name)!.subarray(0, st.rows)));
      }
    }
  });

  it("keeps every token while the reservoir fills, none with capacity 0, and rejects a bad capacity", () => {
    const s = new ReservoirSampler(5, 1);
    expect(Array.from(s.plan(0, 3))).toEqual([0, 0, 1, 1, 2, 2]);
    expect(Array.from(new ReservoirSampler(0).plan(0, 10))).toEqual([]);
    expect(() => new ReservoirSampler(-1)).toThrow(/capacity/);
  });
});

describe("fluxLinearInputs", () => {
  it("lists the linear inputs in the order and sizes FluxTransformer.forward reports them (flux-tiny-a, B=2)", async () => {
    const model = await FluxTransformer.fromFolder(join(FIXTURES, "models/flux-tiny-a"));
    const c = model.config;
    const [B, St, Si] = [2, 5, 9];
    const imgIds = new Float32Array(Si * 3);
    for (let i = 0; i < Si; i++) {
      imgIds[i * 3 + 1] = Math.floor(i / 3);
      imgIds[i * 3 + 2] = i % 3;
    }
    const inp: FluxInputs = {
      batch: B,
      imgTokens: Si,
      txtTokens: St,
      hiddenStates: randn(B * Si * c.inChannels, 1),
      encoderHiddenStates: randn(B * St * c.jointAttentionDim, 2),
      pooledProjections: randn(B * c.pooledProjectionDim, 3),
      timestep: [0.3, 0.8],
      imgIds,
      txtIds: new Float32Array(St * 3),
    };
    const calls: { name: string; m: number; k: number }[] = [];
    await model.forward(inp, {
      observer: {
        onLinearInput(l: LinearLayer, x: Float32Array, m: number) {
          expect(x.length).toBe(m * l.inFeatures);
          calls.push({ name: l.name, m, k: l.inFeatures });
        },
      },
    });
    expect(fluxLinearInputs(c, B, St, Si)).toEqual(calls);
  });
});
