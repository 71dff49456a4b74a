import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { engineAvailability } from "../src/index.js";
import {
  checkAttention,
  checkGemvW4A16,
  checkObserverTiny,
  checkP2Linear,
  checkP2Storage,
  checkTinyBf16,
  checkW4A4Layers,
  checkW4A4Small,
  OBSERVER_CASES,
} from "./gpu-checks.js";

const av = engineAvailability();
const skip = av.available ? "" : ` (skipped: ${av.reason})`;
const tiny = join(import.meta.dirname, "../../../fixtures/models/flux-tiny-a-bf16");

describe(`engine on the GPU${skip}`, () => {
  for (const [B, H, S, Dh] of [
    [1, 2, 300, 128],
    [2, 3, 129, 72],
    [2, 4, 45, 16],
  ] as const)
    it.skipIf(!av.available)(`attention B=${B} H=${H} S=${S} Dh=${Dh} vs float64${skip}`, () => {
      const r = checkAttention(B, H, S, Dh);
      expect(r.relL2).toBeLessThanOrEqual(r.tol);
    });
  for (const [M, K, N] of [
    [2, 3072, 384],
    [1, 3072, 1537],
    [8, 1088, 130],
    [3, 1152, 70],
  ] as const)
    it.skipIf(!av.available)(`W4A16 GEMV M=${M} K=${K} N=${N} (every kernel that applies) vs float64${skip}`, () => {
      // variant 3 (the streaming kernel) needs K % 128 == 0; the automatic choice falls back to 1 / 2 elsewhere
      for (const v of K % 128 === 0 ? ([0, 1, 2, 3] as const) : ([0, 1, 2] as const)) {
        const r = checkGemvW4A16(M, K, N, 2, v);
        expect(r.relL2, r.name).toBeLessThanOrEqual(r.tol);
      }
    });
  // int4p2 needs sm_89+ and cuBLASLt
  const p2 = av.available && (av.info?.computeCapability ?? 0) >= 89 && av.info?.cublasLt === "ok";
  const p2skip = p2 ? "" : skip || " (skipped: int4p2 needs sm_89+ and libcublasLt.so.13)";
  it.skipIf(!p2)(
    `int4p2 engine linear (e4m3 and 4-bit-stored weights; bias, bias + GELU epilogue) vs float64${p2skip}`,
    () => {
      for (const r of [
        checkP2Linear(64, 1024, 256, false),
        checkP2Linear(33, 3072, 136, true),
        checkP2Linear(33, 3072, 136, true, "int4"),
        checkP2Linear(64, 1024, 256, false, "int4", true),
        checkP2Storage(17, 1024, 200, false),
      ])
        expect(r.relL2, r.name).toBeLessThanOrEqual(r.tol);
    },
  );
  it.skipIf(!av.available)(`flux-tiny 16-bit mode vs the CPU forward, batch 2, odd tokens${skip}`, async () => {
    const r = await checkTinyBf16(tiny, 2, 9, 35);
    expect(r.relL2).toBeLessThanOrEqual(r.tol);
  });
  it.skipIf(!av.available)(
    `single W4A4 / W4A16 engine linears vs reference layers on the same input${skip}`,
    async () => {
      for (const r of await checkW4A4Layers()) expect(r.relL2, r.name).toBeLessThanOrEqual(r.tol);
    },
  );
  it.skipIf(!av.available)(
    `flux-small W4A4 mode vs CPU reference layers, within the quantization noise floor${skip}`,
    async () => {
      const r = await checkW4A4Small(2, 7, 37);
      expect(r.relL2).toBeLessThanOrEqual(r.tol);
    },
  );
  for (const c of OBSERVER_CASES)
    it.skipIf(!av.available)(`calibration observer vs CalibrationRecorder: ${c.label}${skip}`, async () => {
      const r = await checkObserverTiny(tiny, c);
      expect(r.countsEqual, r.name).toBe(true);
      expect(r.absmaxRelMax, r.name).toBeLessThanOrEqual(r.tol);
      expect(r.reservoirRelL2, r.name).toBeLessThanOrEqual(r.tol);
    });
});
