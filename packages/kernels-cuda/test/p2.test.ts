// The int4p2 FP8 path: the load-time weight operand (CPU, float64 references) and, on a GPU of compute capability
// 8.9+, the activation kernel against @svdquant/int4's int4p2 quantizer and the cuBLASLt GEMM against float64.

import { describe, expect, it } from "vitest";
import {
  CudaKernelError,
  cudaAvailability,
  DeviceBuffer,
  gemmP2,
  p2WeightOperand,
  quantizeActP2,
  synchronize,
} from "../src/index.ts";
import { dequantize, e4m3BitsToF32Signed, quantize, specFor } from "./p2-helpers.ts";

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const bf16 = (v: number): number => {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer);
  u[0] = (u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) & 0xffff0000;
  return f[0]!;
};
const bf16Bits = (a: Float32Array): Uint16Array =>
  new Uint16Array(Uint32Array.from(new Uint32Array(a.buffer), (u) => u >>> 16));
/** bf16-representable values (so the device sees exactly what the reference sees) with outlier channels. */
function matrix(seed: number, rows: number, cols: number, scale: number, outliers = false): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: rows * cols }, (_, i) =>
    bf16(scale * (r() - 0.5) * (outliers && (i % cols) % 61 === 7 ? 24 : 1)),
  );
}

describe("p2WeightOperand (CPU)", () => {
  const [N, K, R] = [48, 256, 32];
  const w = matrix(1, N, K, 0.1, true);
  const up = matrix(2, N, R, 0.2);
  const res = quantize(w, N, K, specFor("int4p2"));
  const op = p2WeightOperand(res, up, R);

  it("the first K columns times S_w are the dequantized residual, exactly", () => {
    const dq = dequantize(res);
    expect(op.Kx).toBe(K + 3 * R);
    for (let n = 0; n < N; n++)
      for (let k = 0; k < K; k++)
        expect(Math.fround(e4m3BitsToF32Signed(op.b8[n * op.Kx + k]!) * op.sw[n]!)).toBe(dq[n * K + k]);
  });

  it("the low-rank columns hold hi, lo, hi of lowRankUp / S_w · 2^c, to about 2^-8", () => {
    let worst = 0;
    for (let r = 0; r < R; r++) {
      let mx = 0;
      for (let n = 0; n < N; n++) {
        const base = n * op.Kx + K;
        const hi = e4m3BitsToF32Signed(op.b8[base + r]!);
        const lo = e4m3BitsToF32Signed(op.b8[base + R + r]!);
        expect(op.b8[base + 2 * R + r]).toBe(op.b8[base + r]);
        const b = (hi + lo) * op.sw[n]! * 2 ** -op.lrShift[r]!;
        const t = up[n * R + r]!;
        worst = Math.max(
          worst,
          Math.abs(b - t) / Math.max(...Array.from({ length: N }, (_, i) => Math.abs(up[i * R + r]!))),
        );
        mx = Math.max(mx, Math.abs(hi));
      }
      expect(mx).toBeGreaterThan(28); // the shift puts the largest |b| in (32, 64] (hi rounds by at most 2^-4)
      expect(mx).toBeLessThanOrEqual(64);
    }
    expect(worst).toBeLessThan(2 ** -8);
    expect(worst).toBeGreaterThan(0); // bf16 values need the lo part: the check can fail
  });

  it("bad input: another format, a wrong lowRankUp size, a rank the kernel lacks", () => {
    const int4 = quantize(w, N, K, specFor("int4"));
    expect(() => p2WeightOperand(int4, up, R)).toThrowError(/int4p2 residual, got int4/);
    expect(() => p2WeightOperand(res, up.subarray(1), R)).toThrowError(CudaKernelError);
    expect(() => p2WeightOperand(res, up, 16)).toThrowError(/must be 0 or 32/);
  });
});

const av = cudaAvailability();
const cc = av.info?.computeCapability ?? 0;
const gpu = av.available && cc >= 89;
const skip = gpu ? "" : av.available ? ` (skipped: compute capability ${cc} < 8.9)` : ` (skipped: ${av.reason})`;

describe(`int4p2 FP8 path on the GPU${skip}`, () => {
  for (const [M, K, N, rows] of [
    [100, 1024, 384, 4],
    [100, 1024, 384, 16],
    [256, 3072, 256, 0],
  ] as const) {
    it.skipIf(!gpu)(`M=${M} K=${K} N=${N} rows/block=${rows || "auto"}: codes vs int4, GEMM vs float64${skip}`, () => {
      const x = matrix(10 + M, M, K, 4, true);
      const w = matrix(11 + K, N, K, 0.05, false);
      const res = quantize(w, N, K, specFor("int4p2"));
      const op = p2WeightOperand(res);
      const xd = DeviceBuffer.from(bf16Bits(x));
      const act = quantizeActP2({ M, K, R: 0, x: xd, rowsPerBlock: rows });
      const out = gemmP2({ act, N, b8: DeviceBuffer.from(op.b8), sw: DeviceBuffer.from(op.sw) });
      synchronize();
      // the activation operand and scale equal @svdquant/int4's "pow2" quantizer (x without λ: v = x)
      const ref = quantize(x, M, K, specFor("int4p2", { p2RowScale: "pow2" }));
      const a8 = act.a8.download();
      const sx = act.sx.downloadF32();
      const dq = dequantize(ref);
      let bad = 0;
      for (let i = 0; i < M * K; i++) if (Math.fround(e4m3BitsToF32Signed(a8[i]!) * sx[(i / K) | 0]!) !== dq[i]) bad++;
      // the kernel compares the two exponent candidates' squared errors in f32, the reference in float64: a group
      // may differ on a near-tie, nothing more
      expect(bad).toBeLessThanOrEqual((M * K) / 1000);
      // GEMM against float64 on the same operands
      const y = new Float32Array(new Uint32Array(Array.from(out.downloadU16(), (b) => b << 16)).buffer);
      const dw = dequantize(res);
      let num = 0;
      let den = 0;
      for (let m = 0; m < M; m += 7)
        for (let n = 0; n < N; n++) {
          let s = 0;
          for (let k = 0; k < K; k++) s += dq[m * K + k]! * dw[n * K + k]!;
          num += (y[m * N + n]! - s) ** 2;
          den += s * s;
        }
      expect(Math.sqrt(num / den)).toBeLessThan(4e-3); // bf16 output rounding
      for (const b of [xd, act.a8, act.sx, out]) b.free();
    });
  }
});
