// The int4p2 FP8 path: the load-time weight operand (CPU, float64 references), shape errors before launch (CPU) and,
// on a GPU of compute capability 8.9+, the activation kernel against @svdquant/int4's int4p2 quantizer (and its own
// reference kernel, byte for byte), the low-rank columns and the cuBLAS low-rank down against float64, and the
// cuBLASLt GEMM (output stride, bias, GELU) against float64.

import { describe, expect, it } from "vitest";
import {
  CudaKernelError,
  cudaAvailability,
  DeviceBuffer,
  gemmP2,
  type P2Act,
  p2WeightOperand,
  quantizeActP2,
  quantizeRowsP2,
  synchronize,
} from "../src/index.ts";
import { ceilLog2, dequantize, e4m3BitsToF32Signed, e4m3Signed, quantize, specFor } from "./p2-helpers.ts";

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

describe("int4p2 shape validation before launch (CPU)", () => {
  const fake = {} as DeviceBuffer;
  const code = (f: () => unknown): string => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(CudaKernelError);
      return `${(e as CudaKernelError).code}: ${(e as Error).message}`;
    }
    return "no error";
  };
  it("quantizeRowsP2 / quantizeActP2 reject an unsupported K, M = 0, a lone loraAct or lrShift, a bad rank", () => {
    expect(code(() => quantizeRowsP2({ M: 4, K: 1000, x: fake }))).toMatch(/E_SHAPE: tensor "x": .*x \[4, 1000\]/);
    expect(code(() => quantizeRowsP2({ M: 0, K: 1152, x: fake }))).toMatch(/E_SHAPE: .*x \[0, 1152\]/);
    expect(code(() => quantizeRowsP2({ M: 4, K: 1152, x: fake, loraAct: fake }))).toMatch(
      /tensor "lrShift".*go together/,
    );
    expect(code(() => quantizeRowsP2({ M: 4, K: 1152, x: fake, lrShift: fake }))).toMatch(/tensor "loraAct"/);
    expect(code(() => quantizeActP2({ M: 4, K: 4608, R: 16 as 32, x: fake }))).toMatch(/E_SHAPE: .*R=16/);
    expect(code(() => quantizeActP2({ M: 4, K: 4608, R: 0, x: fake, lrShift: fake }))).toMatch(/tensor "lrShift"/);
  });
  it("gemmP2 rejects N not a multiple of 8, ldo < N or not a multiple of 8, Kx not a multiple of 16", () => {
    const act: P2Act = { M: 4, K: 1152, Kx: 1248, R: 32, a8: fake, sx: fake, loraAct: undefined };
    const base = { act, N: 64, b8: fake, sw: fake };
    expect(code(() => gemmP2({ ...base, N: 60 }))).toMatch(/E_SHAPE: gemmP2: N=60/);
    expect(code(() => gemmP2({ ...base, ldo: 48 }))).toMatch(/tensor "out": gemmP2: ldo=48 must be >= N=64/);
    expect(code(() => gemmP2({ ...base, ldo: 68 }))).toMatch(/ldo=68/);
    expect(code(() => gemmP2({ ...base, act: { ...act, Kx: 1160 } }))).toMatch(/tensor "a8": gemmP2: Kx=1160/);
  });
});

const av = cudaAvailability();
const cc = av.info?.computeCapability ?? 0;
const gpu = av.available && cc >= 89;
const skip = gpu ? "" : av.available ? ` (skipped: compute capability ${cc} < 8.9)` : ` (skipped: ${av.reason})`;

/** f32 x/λ as the kernel computes it: x·(1/λ), each step rounded to float32 (f64 steps then fround are exact here). */
const smoothed = (x: Float32Array, lam: Float32Array, K: number): Float32Array =>
  Float32Array.from(x, (v, i) => Math.fround(v * Math.fround(1 / lam[i % K]!)));
const bf16ToF32 = (u: Uint16Array): Float32Array => new Float32Array(Uint32Array.from(u, (b) => b << 16).buffer);
const relL2 = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
};

describe(`int4p2 FP8 path on the GPU${skip}`, () => {
  for (const [M, K] of [
    [100, 1024],
    [67, 1152],
    [256, 3072],
    [40, 4608],
  ] as const) {
    it.skipIf(!gpu)(`quantizeRowsP2 M=${M} K=${K}: codes of x/λ vs int4 "pow2", fast == reference bytes${skip}`, () => {
      const x = matrix(10 + M, M, K, 4, true);
      for (let k = 0; k < K; k++) x[3 * K + k] = 0; // a zero row: S_x = 1, all bytes 0
      const lam = Float32Array.from(matrix(20 + K, 1, K, 1.6), (v) => bf16(0.3 + Math.abs(v)));
      const xd = DeviceBuffer.from(bf16Bits(x));
      const ld = DeviceBuffer.from(bf16Bits(lam));
      const act = quantizeRowsP2({ M, K, x: xd, smooth: ld });
      const ref = quantizeRowsP2({ M, K, x: xd, smooth: ld, reference: true });
      synchronize();
      const a8 = act.a8.download();
      const sx = act.sx.downloadF32();
      expect(act.Kx).toBe(K);
      expect(a8).toEqual(ref.a8.download());
      expect(sx).toEqual(ref.sx.downloadF32());
      const q = quantize(smoothed(x, lam, K), M, K, specFor("int4p2", { p2RowScale: "pow2" }));
      const dq = dequantize(q);
      let bad = 0;
      for (let i = 0; i < M * K; i++) if (Math.fround(e4m3BitsToF32Signed(a8[i]!) * sx[(i / K) | 0]!) !== dq[i]) bad++;
      // the kernel compares the two exponent candidates' squared errors in f32, the reference in float64: a group
      // may differ on a near-tie, nothing more
      expect(bad).toBeLessThanOrEqual((M * K) / 1000);
      expect(sx[3]).toBe(1);
      expect(a8.subarray(3 * K, 4 * K).every((b) => b === 0)).toBe(true);
      for (const b of [xd, ld, act.a8, act.sx, ref.a8, ref.sx]) b.free();
    });
  }

  it.skipIf(!gpu)(
    `quantizeRowsP2 with the low-rank columns: E, hi/lo bytes vs float64, fast == reference${skip}`,
    () => {
      const [M, K, R] = [48, 1152, 32];
      const x = matrix(31, M, K, 2, true);
      const la = matrix(32, M, R, 8);
      for (let r = 0; r < R; r++) la[5 * R + r] = Math.fround(la[5 * R + r]! * 2 ** 12); // rows whose E the branch raises
      for (let r = 0; r < R; r++) la[9 * R + r] = Math.fround(la[9 * R + r]! * 2 ** 20);
      const shift = Int32Array.from({ length: R }, (_, r) => -2 + (r % 5));
      const xd = DeviceBuffer.from(bf16Bits(x));
      const lad = DeviceBuffer.from(la);
      const sd = DeviceBuffer.from(shift);
      const act = quantizeRowsP2({ M, K, x: xd, loraAct: lad, lrShift: sd });
      const ref = quantizeRowsP2({ M, K, x: xd, loraAct: lad, lrShift: sd, reference: true });
      synchronize();
      const a8 = act.a8.download();
      const sx = act.sx.downloadF32();
      expect(act.Kx).toBe(K + 3 * R);
      expect(a8).toEqual(ref.a8.download());
      expect(sx).toEqual(ref.sx.downloadF32());
      const q = quantize(x, M, K, specFor("int4p2", { p2RowScale: "pow2" }));
      const S = q.rowScales!;
      let raised = 0;
      for (let m = 0; m < M; m++) {
        // E = max(k_max − 5, ⌈log2(max_r |la·2^-c_r| / 256)⌉): the low-rank values stay within ±256
        let lrmax = 0;
        for (let r = 0; r < R; r++) lrmax = Math.max(lrmax, Math.abs(la[m * R + r]! * 2 ** -shift[r]!));
        const E = Math.max(Math.log2(S[m]!), ceilLog2(Math.fround(lrmax / 256)));
        expect(sx[m]).toBe(2 ** E);
        if (E > Math.log2(S[m]!)) raised++;
        for (let r = 0; r < R; r++) {
          const a = la[m * R + r]! * 2 ** (-shift[r]! - E);
          const hi = e4m3Signed(a);
          const lo = e4m3Signed(Math.fround(a - e4m3BitsToF32Signed(hi)));
          const row = a8.subarray(m * (K + 3 * R) + K);
          expect([row[r], row[R + r], row[2 * R + r]]).toEqual([hi, hi, lo]);
        }
      }
      expect(raised).toBeGreaterThanOrEqual(2);
      for (const b of [xd, lad, sd, act.a8, act.sx, ref.a8, ref.sx]) b.free();
    },
  );

  it.skipIf(!gpu)(
    `quantizeActP2 R=32: cuBLAS low-rank down vs float64, the operand equals quantizeRowsP2's${skip}`,
    () => {
      const [M, K, R] = [64, 3072, 32] as const;
      const x = matrix(41, M, K, 3, true);
      const down = matrix(42, R, K, 2 / Math.sqrt(K));
      const lam = Float32Array.from(matrix(43, 1, K, 1.6), (v) => bf16(0.3 + Math.abs(v)));
      const shift = Int32Array.from({ length: R }, (_, r) => -1 + (r % 3));
      const [xd, dd, ld, sd] = [bf16Bits(x), bf16Bits(down), bf16Bits(lam), shift].map((a) => DeviceBuffer.from(a));
      const act = quantizeActP2({ M, K, R, x: xd!, smooth: ld!, loraDown: dd!, lrShift: sd! });
      const rows = quantizeRowsP2({ M, K, x: xd!, smooth: ld!, loraAct: act.loraAct!, lrShift: sd! });
      synchronize();
      const la = act.loraAct!.downloadF32();
      const la64 = new Float64Array(M * R);
      for (let m = 0; m < M; m++)
        for (let r = 0; r < R; r++) {
          let s = 0;
          for (let k = 0; k < K; k++) s += x[m * K + k]! * down[r * K + k]!;
          la64[m * R + r] = s;
        }
      expect(relL2(la, la64)).toBeLessThan(2e-5); // f32 accumulation of exact bf16 products
      expect(act.a8.download()).toEqual(rows.a8.download());
      expect(act.sx.downloadF32()).toEqual(rows.sx.downloadF32());
      for (const b of [xd, dd, ld, sd, act.a8, act.sx, act.loraAct, rows.a8, rows.sx]) b!.free();
    },
  );

  for (const [M, K, N, ldo, bias, gelu] of [
    [100, 1024, 384, 384, false, false],
    [256, 3072, 256, 256, false, false],
    [64, 1152, 128, 136, true, false],
    [64, 4608, 256, 264, true, true],
  ] as const) {
    it.skipIf(!gpu)(
      `gemmP2 M=${M} K=${K} N=${N} ldo=${ldo}${bias ? " +bias" : ""}${gelu ? " GELU" : ""} vs float64${skip}`,
      () => {
        const x = matrix(10 + M, M, K, 4, true);
        const w = matrix(11 + K, N, K, 0.05, false);
        const bv = matrix(12 + N, 1, N, 2);
        const res = quantize(w, N, K, specFor("int4p2"));
        const op = p2WeightOperand(res);
        const xd = DeviceBuffer.from(bf16Bits(x));
        const act = quantizeActP2({ M, K, R: 0, x: xd });
        const out = new DeviceBuffer(M * ldo * 2);
        out.fill(0x7f); // columns N..ldo must keep this
        const bd = bias ? DeviceBuffer.from(bf16Bits(bv)) : undefined;
        const [b8, sw] = [DeviceBuffer.from(op.b8), DeviceBuffer.from(op.sw)];
        gemmP2({ act, N, b8, sw, out, ldo, ...(bd ? { bias: bd } : {}), gelu });
        synchronize();
        const a8 = act.a8.download();
        const sx = act.sx.downloadF32();
        const raw = out.downloadU16();
        const y = bf16ToF32(raw);
        const dw = dequantize(res);
        const got: number[] = [];
        const want: number[] = [];
        for (let m = 0; m < M; m += 7)
          for (let n = 0; n < N; n++) {
            let s = 0;
            for (let k = 0; k < K; k++) s += e4m3BitsToF32Signed(a8[m * K + k]!) * sx[m]! * dw[n * K + k]!;
            if (bias) s += bv[n]!;
            if (gelu) s = 0.5 * s * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (s + 0.044715 * s ** 3)));
            got.push(y[m * ldo + n]!);
            want.push(s);
          }
        expect(relL2(got, want)).toBeLessThan(4e-3); // bf16 output rounding
        for (let m = 0; m < M; m++) for (let n = N; n < ldo; n++) expect(raw[m * ldo + n]).toBe(0x7f7f);
        for (const b of [xd, act.a8, act.sx, out, b8, sw, bd]) b?.free();
      },
    );
  }
});
