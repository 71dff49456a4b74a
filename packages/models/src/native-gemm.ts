import { type GemmBackend, getGemmBackend, setGemmBackend } from "./gemm.js";

export interface GemmChoice {
  /** The process-wide GEMM backend now in use. */
  readonly backend: GemmBackend;
  /** Empty when the native GEMM was taken; otherwise why the TypeScript GEMM stays. */
  readonly reason: string;
}

/**
 * Make @svdquant/kernels' native f32 GEMM (AVX2+FMA or portable C++, multi-threaded) the process default when
 * that optional peer package is installed and its addon loads; otherwise keep the current backend (the
 * TypeScript GEMM unless changed) and say why. Call once at start-up; `setGemmBackend` undoes it.
 */
export async function useKernelsGemm(): Promise<GemmChoice> {
  let kernels: typeof import("@svdquant/kernels");
  try {
    kernels = await import("@svdquant/kernels");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code !== "ERR_MODULE_NOT_FOUND" || !String(err.message).includes("@svdquant/kernels")) throw e;
    return { backend: getGemmBackend(), reason: "@svdquant/kernels is not installed" };
  }
  const info = kernels.backendInfo();
  if (!info.native)
    return { backend: getGemmBackend(), reason: `@svdquant/kernels has no native addon: ${info.reason}` };
  const backend = kernels.f32GemmBackend();
  setGemmBackend(backend);
  return { backend, reason: "" };
}
