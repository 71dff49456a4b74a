/**
 * The observer's host side without a GPU: EngineCalibration's reservoir plans and read-back against
 * CalibrationRecorder, with a stand-in for the device that applies each plan as eng_observe_gather /
 * eng_observe_absmax do (flux.h) to the layer inputs of the CPU forward.
 */
import { join } from "node:path";
import { CalibrationRecorder, type FluxInputs, FluxTransformer, type LinearLayer } from "@svdquant/models";
import { describe, expect, it } from "vitest";
import { EngineCalibration, EngineError, engineLayerOf } from "../src/index.js";
import type { NativeEngine } from "../src/native.js";
import { rng } from "./helpers.js";

/** The observer tensors of a NativeEngine, on the host; `feed` is what the step does with one slot's input. */
class FakeDevice {
  slots: { layer: string; K: number; absmax: Float32Array; res: Float32Array }[] = [];
  cap = 0;
  plan = new Int32Array(0);
  observe(layers: string[], K: number[], capacity: number): void {
    this.cap = capacity;
    this.slots = layers.map((layer, i) => ({
      layer,
      K: K[i]!,
      absmax: new Float32Array(K[i]!),
      res: new Float32Array(capacity * K[i]!),
    }));
    this.plan = new Int32Array(layers.length * (1 + 2 * capacity));
  }
  upload(name: string, data: ArrayBufferView): void {
    expect(name).toBe("obs.plan");
    expect(data.byteLength).toBe(this.plan.byteLength);
    this.plan = new Int32Array(new Int32Array(data.buffer, data.byteOffset, data.byteLength / 4));
  }
  download(name: string, bytes?: number): ArrayBuffer {
    const m = /^obs\.(\d+)\.(absmax|reservoir)$/.exec(name)!;
    const s = this.slots[Number(m[1])]!;
    const a = m[2] === "absmax" ? s.absmax : s.res;
    return new Float32Array(a.subarray(0, (bytes ?? a.byteLength) / 4)).buffer;
  }
  feed(slot: number, x: Float32Array, M: number): void {
    const s = this.slots[slot]!;
    const K = s.K;
    for (let i = 0; i < M * K; i++) s.absmax[i % K] = Math.max(s.absmax[i % K]!, Math.abs(x[i]!));
    const row = 1 + 2 * this.cap;
    const count = this.plan[slot * row]!;
    for (let i = 0; i < count; i++) {
      const slotIdx = this.plan[slot * row + 1 + 2 * i]!;
      const r = this.plan[slot * row + 2 + 2 * i]!;
      expect(r).toBeLessThan(M);
      s.res.set(x.subarray(r * K, (r + 1) * K), slotIdx * K);
    }
  }
}

function inputs(c: FluxTransformer["config"], B: number, St: number, Si: number, seed: number): FluxInputs {
  const r = rng(seed);
  const u = (n: number) => Float32Array.from({ length: n }, () => 2 * r() - 1);
  const imgIds = new Float32Array(Si * 3);
  for (let i = 0; i < Si; i++) imgIds[i * 3 + 2] = i;
  return {
    batch: B,
    imgTokens: Si,
    txtTokens: St,
    hiddenStates: u(B * Si * c.inChannels),
    encoderHiddenStates: u(B * St * c.jointAttentionDim),
    pooledProjections: u(B * c.pooledProjectionDim),
    timestep: Array.from({ length: B }, (_, i) => 0.2 + 0.3 * i),
    imgIds,
    txtIds: new Float32Array(St * 3),
  };
}

const tiny = join(import.meta.dirname, "../../../fixtures/models/flux-tiny-a-bf16");

describe("EngineCalibration (host side, a stand-in device)", () => {
  it("plans exactly CalibrationRecorder's reservoir and returns its LinearStats (every layer; a subset)", async () => {
    const model = await FluxTransformer.fromFolder(tiny);
    for (const layers of [
      undefined,
      ["transformer_blocks.1.attn.to_q", "single_transformer_blocks.0.proj_mlp", "proj_out", "x_embedder"],
    ]) {
      const dev = new FakeDevice();
      const cal = new EngineCalibration(dev as unknown as NativeEngine, model.config, {
        reservoirSize: 12,
        seed: 9,
        ...(layers ? { layers } : {}),
      });
      const want = layers ? new Set(layers) : undefined;
      const rec = new CalibrationRecorder({
        reservoirSize: 12,
        seed: 9,
        ...(want ? { filter: (n: string) => want.has(n) } : {}),
      });
      const slotOf = new Map(cal.names.map((n, i) => [n, i]));
      for (const [i, [B, St, Si]] of [
        [2, 5, 9],
        [1, 8, 16],
        [2, 3, 7],
      ].entries()) {
        cal.beforeStep(B!, St!, Si!);
        await model.forward(inputs(model.config, B!, St!, Si!, i + 1), {
          observer: {
            onLinearInput(l: LinearLayer, x: Float32Array, m: number) {
              rec.onLinearInput(l, x, m);
              const s = slotOf.get(l.name);
              if (s !== undefined) {
                expect(dev.slots[s]!.layer).toBe(engineLayerOf(l.name));
                dev.feed(s, x, m);
              }
            },
          },
        });
      }
      const got = cal.stats();
      expect([...got.keys()].sort()).toEqual(rec.names().sort());
      for (const name of rec.names()) {
        const a = rec.get(name);
        const g = got.get(name)!;
        expect([g.tokensSeen, g.rows, g.inFeatures]).toEqual([a.tokensSeen, a.rows, a.inFeatures]);
        expect(g.absmax).toEqual(a.absmax);
        expect(g.reservoir.subarray(0, g.rows * g.inFeatures)).toEqual(a.reservoir.subarray(0, a.rows * a.inFeatures));
      }
    }
  });

  it("maps q/k/v onto the stacked engine linears and refuses unknown layers and bad sizes", async () => {
    expect(engineLayerOf("transformer_blocks.3.attn.to_k")).toBe("transformer_blocks.3.attn.qkv");
    expect(engineLayerOf("transformer_blocks.3.attn.add_v_proj")).toBe("transformer_blocks.3.attn.add_qkv");
    expect(engineLayerOf("single_transformer_blocks.0.attn.to_q")).toBe("single_transformer_blocks.0.attn.qkv");
    expect(engineLayerOf("transformer_blocks.3.attn.to_out.0")).toBe("transformer_blocks.3.attn.to_out.0");
    const model = await FluxTransformer.fromFolder(tiny);
    const dev = new FakeDevice() as unknown as NativeEngine;
    expect(() => new EngineCalibration(dev, model.config, { layers: ["transformer_blocks.9.attn.to_q"] })).toThrow(
      EngineError,
    );
    expect(() => new EngineCalibration(dev, model.config, { reservoirSize: 0 })).toThrow(/reservoirSize/);
    const cal = new EngineCalibration(dev, model.config, { layers: ["proj_out"] });
    expect(() => cal.stats()).toThrow(/no statistics/);
    cal.invalidate("timed");
    expect(() => cal.beforeStep(1, 1, 1)).toThrow(/timed/);
  });
});
