import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DenseLinear, FluxTransformer } from "../src/index.js";
import { FIXTURES, fluxTinyInputs, readIo, relErr } from "./helpers.js";

describe("bf16 checkpoint", () => {
  it("loads with bf16 dense layers and matches the f32 model at bf16 precision", async () => {
    const io = await readIo("flux-tiny-a");
    const f32 = await FluxTransformer.fromFolder(join(FIXTURES, "models/flux-tiny-a"));
    const bf16 = await FluxTransformer.fromFolder(join(FIXTURES, "models/flux-tiny-a-bf16"));
    expect(bf16.headLayers().every((l) => l.kind === "dense-bf16")).toBe(true);
    expect(f32.headLayers().every((l) => l.kind === "dense-f32")).toBe(true);
    const inputs = fluxTinyInputs(io);
    const a = await f32.forward(inputs);
    const b = await bf16.forward(inputs);
    const err = relErr(b, a);
    console.log("bf16 weights vs f32 weights, rel err:", err);
    // bf16 has 8 significant bits (2^-8 = 3.9e-3 relative per weight); through 5 blocks the output moves ~2e-3.
    expect(err).toBeGreaterThan(1e-4); // the weights really are rounded
    expect(err).toBeLessThan(1e-2);
  });

  it("bf16 dense layer equals the f32 layer on the decoded weights, across the 64-row decode chunks", () => {
    const k = 37;
    const n = 150; // > 2 chunks of 64 rows, with a ragged tail
    const m = 5;
    const bits = new Uint16Array(n * k);
    for (let i = 0; i < bits.length; i++) bits[i] = 0x3f80 + ((i * 2654435761) % 0x7f) - 0x40 + ((i & 1) << 15);
    const bias = new Float32Array(n).map((_, i) => i / 10 - 3);
    const x = new Float32Array(m * k).map((_, i) => Math.sin(i));
    const l16 = new DenseLinear("t", { dtype: "bf16", data: bits }, bias, k, n);
    const l32 = new DenseLinear("t", { dtype: "f32", data: l16.weightF32() }, bias, k, n);
    const y16 = l16.forward(x, m);
    const y32 = l32.forward(x, m);
    expect(Array.from(y16)).toEqual(Array.from(y32));
    // and against float64 directly
    const w = l16.weightF32();
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = bias[j]!;
        for (let p = 0; p < k; p++) s += x[i * k + p]! * w[j * k + p]!;
        expect(Math.abs(y16[i * n + j]! - s)).toBeLessThan(1e-5 * (1 + Math.abs(s)));
      }
  });
});
