/**
 * The pipeline with the GPU engine (skipped without a CUDA device and the built addon): the host sampler with the
 * engine's transformer, and calibration on the engine vs the CPU recorder.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { engineAvailability } from "@svdquant/engine-cuda";
import { describe, expect, it } from "vitest";
import { checkPipelineCalibrationTiny, checkSamplerTiny } from "./engine-checks.js";
import { modelDir } from "./helpers.js";

const av = engineAvailability();
const skip = av.available ? "" : ` (skipped: ${av.reason})`;
const tiny = modelDir("flux-tiny-a-bf16");

describe(`pipeline with the GPU engine${skip}`, () => {
  it.skipIf(!av.available)(`FLUX sampler with the engine's transformer vs the CPU transformer${skip}`, async () => {
    const r = await checkSamplerTiny(tiny);
    expect(r.relL2, r.name).toBeLessThanOrEqual(r.tol);
  });
  it.skipIf(!av.available)(`calibration on the engine vs the CPU recorder, file round trip${skip}`, async () => {
    const dir = await mkdtemp(join(tmpdir(), "svdq-cal-"));
    try {
      const r = await checkPipelineCalibrationTiny(tiny, join(dir, "stats.safetensors"));
      expect(r.ok, r.detail).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
