/**
 * The converters take @svdquant/int4's checkpoint layout as it is: quantize → pack → GEMM equals
 * X · dequantize(quantize(W))ᵀ (float64), for INT4 (W4A4 and W4A16), NF4 (W4A16) and INT8 (W8A8) weights.
 */
import { dequantize, quantize } from "@svdquant/int4";
import { describe, expect, it } from "vitest";
import {
  gemmW4A4,
  gemmW4A16,
  gemmW8A8,
  KernelsError,
  packW4A4,
  packW4A16,
  packW8A8,
  quantizeActivations,
  quantizeActivationsInt8,
  reference,
} from "../src/index.ts";
import { maxAbs, rng, worst } from "./helpers.ts";

describe("converters from the @svdquant/int4 checkpoint layout", () => {
  const r = rng(4242);
  const [M, K, N] = [5, 256, 27];
  const W = r.f32(N * K, 0.05);
  const x = r.f32(M * K);

  it("W4A4: int4 residual (BF16 scales, group 64)", () => {
    const q = quantize(W, N, K, { format: "int4", groupSize: 64 });
    const act = quantizeActivations(x, M, K);
    const { y } = gemmW4A4(act, packW4A4(q, N, K));
    const deq = dequantize(q);
    // activations dequantized exactly as the kernel quantized them; weights as @svdquant/int4 dequantizes them
    const xq = Float64Array.from(act.codes, (c, i) => c * act.scales[Math.floor(i / 64)]);
    const want = reference.refGemmF32(xq, M, K, deq, N);
    expect(worst(y, want, 1e-5 * maxAbs(want), 1e-5)).toBeLessThanOrEqual(1);
  });

  it.each([
    ["int4", 64],
    ["nf4", 64],
    ["nf4", 128],
  ] as const)("W4A16: %s, group %i", (format, groupSize) => {
    const q = quantize(W, N, K, { format, groupSize });
    const y = gemmW4A16(x, M, packW4A16(q, N, K, { format, groupSize }));
    const want = reference.refGemmF32(x, M, K, dequantize(q), N);
    expect(worst(y, want, 1e-5 * maxAbs(want), 1e-5)).toBeLessThanOrEqual(1);
  });

  it("W8A8: int8 per-row weights (F32 scales)", () => {
    const q = quantize(W, N, K, { format: "int8", groupSize: 0, scaleDtype: "F32" });
    const act = quantizeActivationsInt8(x, M, K);
    const y = gemmW8A8(act, packW8A8(q, N, K));
    const xq = Float64Array.from(act.codes, (c, i) => c * act.scales[Math.floor(i / K)]);
    const want = reference.refGemmF32(xq, M, K, dequantize(q), N);
    expect(worst(y, want, 1e-5 * maxAbs(want), 1e-5)).toBeLessThanOrEqual(1);
  });

  it("refuses a tensor quantized in another format or group size", () => {
    const q = quantize(W, N, K, { format: "nf4", groupSize: 64 });
    expect(() => packW4A4(q, N, K)).toThrow(KernelsError);
    expect(() => packW4A4(q, N, K)).toThrow(/format nf4 cannot be packed here \(expected int4\)/);
    expect(() => packW4A16(q, N, K, { format: "nf4", groupSize: 128 })).toThrow(/group size 64, expected 128/);
    expect(() => packW4A16(q, N + 1, K, { format: "nf4", groupSize: 64 })).toThrow(/27 rows, expected N = 28/);
  });
});
