// The int4p2 checkpoint path on the GPU (p2-checkpoint-checks.ts): packed file → convert → engine linear vs float64.
import { describe, expect, it } from "vitest";
import { EngineError, engineAvailability } from "../src/index.js";
import { checkP2CheckpointLinear, checkP2Model } from "./p2-checkpoint-checks.js";

const av = engineAvailability();
const p2 = av.available && (av.info?.computeCapability ?? 0) >= 89 && av.info?.cublasLt === "ok";
const skip = p2
  ? ""
  : av.available
    ? " (skipped: int4p2 needs sm_89+ and libcublasLt.so.13)"
    : ` (skipped: ${av.reason})`;

describe(`int4p2 checkpoint layers on the GPU${skip}`, () => {
  it.skipIf(!p2)(`packed file → convert → engine linear vs float64 (bias, bias + GELU)${skip}`, async () => {
    for (const [M, K, N, gelu] of [
      [64, 1024, 256, false],
      [33, 3072, 136, true],
    ] as const) {
      const r = await checkP2CheckpointLinear(M, K, N, gelu);
      expect(r.relL2, r.name).toBeLessThanOrEqual(r.tol);
      expect(r.sameAsOperand, r.name).toBe(true);
      expect(r.tensors).toContain("p2_codes");
    }
  });
  it.skipIf(!p2)(
    `a FLUX step from int4p2 checkpoint layers vs the CPU reference and the FP8-operand model${skip}`,
    async () => {
      const r = await checkP2Model(1, 7, 33);
      expect(r.sameAsOperand, r.name).toBe(true);
      expect(r.relL2, r.name).toBeLessThanOrEqual(r.tol);
    },
  );
  it.skipIf(!p2)(`a K the int4p2 kernels lack is refused with one line naming the layer${skip}`, async () => {
    const e = await checkP2CheckpointLinear(8, 2048, 64, false).catch((x) => x);
    expect(e).toBeInstanceOf(EngineError);
    expect((e as Error).message).toMatch(/^p\.lin: int4p2 layer with K = 2048/);
  });
});
