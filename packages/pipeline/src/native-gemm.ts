/**
 * The models' dense layers (16-bit transformer layers, text encoders, the VAE's convolutions) run through the
 * models' process-wide GEMM backend, which starts as the TypeScript GEMM. Every pipeline entry point (pipeline
 * loads, calibration, checkpoint loads, the demo) switches it to @svdquant/kernels' native f32 GEMM when that addon
 * loads — unless the caller already chose a backend (`setGemmBackend` to anything but the models' `TS_GEMM`).
 */
import { type GemmChoice, getGemmBackend, TS_GEMM, useKernelsGemm } from "@svdquant/models";

let choice: Promise<GemmChoice> | undefined;

/** The GEMM backend the pipeline runs dense layers on, switched to the native one once per process where possible. */
export function nativeGemm(): Promise<GemmChoice> {
  const now = getGemmBackend();
  if (now !== TS_GEMM) return Promise.resolve({ backend: now, reason: "" });
  choice ??= useKernelsGemm();
  return choice;
}
