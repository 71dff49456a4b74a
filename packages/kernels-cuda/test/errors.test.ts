import { describe, expect, it } from "vitest";
import {
  CudaKernelError,
  cudaAvailability,
  type DeviceBuffer,
  gemmW4A4,
  gemmW4A4Next,
  quantizeAct,
} from "../src/index.ts";

// Shapes are validated in TypeScript before anything reaches the addon, so these run without a GPU.
const fake = {} as DeviceBuffer;

describe("shape validation before launch", () => {
  it("quantizeAct rejects K not a multiple of 64 and unsupported ranks, naming the shape", () => {
    expect(() => quantizeAct({ dtype: "bf16", M: 4, K: 100, R: 0, x: fake })).toThrow(/x \[4, 100\]/);
    expect(() => quantizeAct({ dtype: "bf16", M: 4, K: 128, R: 24, x: fake })).toThrow(/R=24/);
    try {
      quantizeAct({ dtype: "bf16", M: -1, K: 64, R: 0, x: fake });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(CudaKernelError);
      expect((e as CudaKernelError).code).toBe("E_SHAPE");
    }
  });
  it("gemmW4A4 rejects N not a multiple of 128", () => {
    const act = {
      M: 4,
      K: 64,
      R: 0,
      codes: fake,
      ascales: fake,
      loraAct: undefined,
      actUnsigned: false,
      format: "s8" as const,
    };
    expect(() => gemmW4A4({ dtype: "bf16", act, N: 100, qweight: fake, wscales: fake })).toThrow(/N=100/);
  });
  it("gemmW4A4Next rejects an unsupported next rank or format and f8 codes without repacked weights", () => {
    const act = {
      M: 4,
      K: 64,
      R: 0,
      codes: fake,
      ascales: fake,
      loraAct: undefined,
      actUnsigned: false,
      format: "s8" as const,
    };
    const base = { dtype: "bf16" as const, act, N: 128, qweight: fake, wscales: fake };
    expect(() => gemmW4A4Next({ ...base, next: { R: 24 } })).toThrow(/next\.R=24/);
    expect(() => gemmW4A4Next({ ...base, next: { R: -16 } })).toThrow(/next\.R=-16/);
    expect(() => gemmW4A4Next({ ...base, next: { R: 0, format: "x8" as "f8" } })).toThrow(/next\.format x8/);
    const f8 = { ...base, act: { ...act, format: "f8" as const } };
    expect(() => gemmW4A4Next({ ...f8, next: { R: 0 } })).toThrow(/repackWeightWg/);
    expect(() => gemmW4A4({ ...f8 })).toThrow(/repackWeightWg/);
    expect(() => gemmW4A4Next({ ...base, N: 96, next: { R: 0 } })).toThrow(/N=96/);
    try {
      gemmW4A4Next({ ...base, next: { R: 24 } });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(CudaKernelError);
      expect((e as CudaKernelError).code).toBe("E_SHAPE");
    }
  });
  it("reports why kernels cannot run here, or that they can", () => {
    const av = cudaAvailability();
    expect(typeof av.reason).toBe("string");
    expect(av.reason.length).toBeGreaterThan(0);
  });
});
