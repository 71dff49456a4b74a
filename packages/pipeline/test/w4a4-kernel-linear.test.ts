/**
 * W4A4KernelLinear is prepared once at load: its output equals the per-call path (quantizeActivations with λ and
 * L_down, then the W4A4 GEMM) bit for bit, and it no longer reads λ or L_down from the record after construction
 * (λ was folded into L_down once).
 */
import { activationSpecFor, type QuantizedLinear, quantize } from "@svdquant/int4";
import { gemmW4A4, packW4A4, quantizeActivations } from "@svdquant/kernels";
import { SeededRng } from "@svdquant/lowrank";
import { describe, expect, it } from "vitest";
import { W4A4KernelLinear } from "../src/index.ts";

function record(seed: number, n: number, k: number, rank: number, unsigned: boolean): QuantizedLinear {
  const rng = new SeededRng(seed);
  const r = Float64Array.from({ length: n * k }, () => rng.normal() * 0.05);
  return {
    name: "blk.fc",
    residual: quantize(r, n, k, { format: "int4", groupSize: 64 }),
    rank,
    lowRankDown: Float32Array.from({ length: rank * k }, () => rng.normal() * 0.1),
    lowRankUp: Float32Array.from({ length: n * rank }, () => rng.normal() * 0.1),
    bias: Float32Array.from({ length: n }, () => rng.normal() * 0.1),
    smooth: Float32Array.from({ length: k }, () => 0.5 + rng.uniform() * 2),
    act: activationSpecFor("int4", unsigned),
  };
}

/** GELU, tanh approximation (as diffusers' `approximate="tanh"`), float64. */
const geluTanh = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

describe("W4A4KernelLinear", () => {
  it.each([
    ["int4", false],
    ["uint4 + GELU shift", true],
  ])("%s: equals the per-call path and folds λ into L_down once, at load", (_name, unsigned) => {
    const [n, k, rank, m] = [48, 128, 8, 5];
    const rec = record(unsigned ? 2 : 1, n, k, rank, unsigned);
    const rng = new SeededRng(9);
    const x = Float32Array.from({ length: m * k }, () => (unsigned ? Math.abs(rng.normal()) : rng.normal()));
    const layer = new W4A4KernelLinear("blk.fc", rec, 8, 40, k);
    const y = layer.forward(x, m);
    const packed = packW4A4(
      { codes: rec.residual.codes.slice(8 * k, 40 * k), scales: rec.residual.scales.slice(8 * 2, 40 * 2) },
      32,
      k,
      { lowRankUp: rec.lowRankUp.slice(8 * rank, 40 * rank), rank, bias: rec.bias!.slice(8, 40) },
    );
    const act = quantizeActivations(x, m, k, {
      smooth: rec.smooth,
      lowRankDown: rec.lowRankDown,
      rank,
      format: unsigned ? "uint4" : "int4",
      shift: rec.act.shift,
    });
    expect(y).toEqual(gemmW4A4(act, packed).y);
    // the record's λ and L_down are no longer read: editing them changes nothing
    rec.smooth!.fill(3);
    rec.lowRankDown.fill(0);
    expect(layer.forward(x, m)).toEqual(y);
  });

  it("fuses GELU(tanh) into the GEMM epilogue: forwardGelu equals GELU after forward within float32 rounding", () => {
    const [n, k, rank, m] = [40, 192, 16, 7];
    const rec = record(5, n, k, rank, false);
    const rng = new SeededRng(11);
    const x = Float32Array.from({ length: m * k }, () => rng.normal());
    const layer = new W4A4KernelLinear("blk.fc", rec, 0, n, k);
    const plain = layer.forward(x, m);
    const fused = layer.forwardGelu(x, m);
    const shared = layer.forwardPreparedGelu(layer.prepareInput(x, m), m);
    expect(shared).toEqual(fused);
    let worst = 0;
    for (let i = 0; i < plain.length; i++) worst = Math.max(worst, Math.abs(fused[i]! - geluTanh(plain[i]!)));
    expect(worst).toBeLessThan(1e-5);
    expect(fused.some((v, i) => v !== plain[i])).toBe(true);
  });
});
