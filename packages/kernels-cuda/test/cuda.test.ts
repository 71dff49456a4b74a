import { describe, expect, it } from "vitest";
import { cudaAvailability } from "../src/index.ts";
import { checkCrossCpu, crossCases } from "./cpu-cross.ts";
import {
  checkCublas,
  checkCublasInt8,
  checkGemm,
  checkGemmNext,
  checkQuantize,
  gemmCases,
  gemmNextCases,
  gemmWgCases,
  quantCases,
} from "./gpu-cases.ts";

const av = cudaAvailability();
const skip = av.available ? "" : ` (skipped: ${av.reason})`;

describe(`CUDA kernels on the GPU${skip}`, () => {
  for (const c of quantCases()) {
    it.skipIf(!av.available)(
      `quantize ${c.dtype} ${c.format} M=${c.M} K=${c.K} R=${c.R} unsigned=${c.unsigned}${skip}`,
      () => {
        expect(checkQuantize(c)).toMatch(/^quantize/);
      },
    );
  }
  for (const c of [...gemmCases(), ...gemmWgCases()]) {
    it.skipIf(!av.available)(
      `gemm ${c.format}${c.wg ? " wg" : ""} ${c.dtype} M=${c.M} N=${c.N} K=${c.K} R=${c.R} bm=${c.blockM ?? "auto"}${skip}`,
      () => {
        expect(checkGemm(c)).toMatch(/^gemm/);
      },
    );
  }
  for (const c of gemmNextCases()) {
    it.skipIf(!av.available)(
      `gemm + next-layer quantize ${c.format} ${c.dtype} M=${c.M} N=${c.N} K=${c.K} bm=${c.blockM} -> ${c.nextFormat} R'=${c.nextR} unsigned=${c.nextUnsigned}${skip}`,
      () => {
        expect(checkGemmNext(c)).toMatch(/^gemm\+next/);
      },
    );
  }
  for (const c of crossCases()) {
    it.skipIf(!av.available)(
      `CUDA vs CPU kernels ${c.format}${c.wg ? " wg" : ""} ${c.dtype} M=${c.M} N=${c.N} K=${c.K} R=${c.R}${skip}`,
      () => {
        expect(checkCrossCpu(c)).toMatch(/^cross/);
      },
    );
  }
  it.skipIf(!av.available)(`cuBLAS BF16 peer GEMM vs float64${skip}`, () => {
    expect(checkCublas("bf16", 77, 256, 320, 1)).toMatch(/^cublas/);
  });
  it.skipIf(!av.available)(`cuBLAS INT8 peer GEMM vs exact integers${skip}`, () => {
    expect(checkCublasInt8(77, 256, 320, 4)).toMatch(/^cublas int8/);
  });
});
