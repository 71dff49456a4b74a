import { type FrechetLinalg, getFrechetLinalg, setFrechetLinalg } from "./frechet.js";

export interface FrechetLinalgChoice {
  /** The process-wide linear algebra of the Fréchet distance now in use. */
  readonly linalg: FrechetLinalg;
  /** Empty when the native one was taken; otherwise why the TypeScript one stays. */
  readonly reason: string;
}

let loading: Promise<{ linalg: FrechetLinalg | null; reason: string }> | undefined;

/**
 * @svdquant/kernels' native float64 Cholesky, Lᵀ·S·L and symmetric eigenvalues (blocked, AVX2+FMA or portable
 * C++, multi-threaded) as a FrechetLinalg, when that optional peer package is installed and its addon loads;
 * otherwise null and the reason. Loaded once per process.
 */
export function kernelsFrechetLinalg(): Promise<{ linalg: FrechetLinalg | null; reason: string }> {
  loading ??= (async () => {
    let kernels: typeof import("@svdquant/kernels");
    try {
      kernels = await import("@svdquant/kernels");
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code !== "ERR_MODULE_NOT_FOUND" || !String(err.message).includes("@svdquant/kernels")) throw e;
      return { linalg: null, reason: "@svdquant/kernels is not installed" };
    }
    const info = kernels.backendInfo();
    if (!info.native) return { linalg: null, reason: `@svdquant/kernels has no native addon: ${info.reason}` };
    const linalg: FrechetLinalg = {
      name: "native",
      cholesky(a, n) {
        const r = kernels.choleskyF64(a, n, { name: "covariance" }); // same 1e-12·max(diag) pivot rule as linalg.ts
        return r.ok ? r.l : null;
      },
      congruence: (l, s, n) => kernels.congruenceF64(l, s, n),
      eigenvalues: (a, n) => kernels.symmetricEigenvaluesF64(a, n, { overwrite: true }),
      pivotedCholesky: (a, n) => kernels.pivotedCholeskyF64(a, n, { name: "covariance" }),
    };
    return { linalg, reason: "" };
  })();
  return loading;
}

/**
 * Make @svdquant/kernels' native float64 linear algebra the process default of frechetDistance when that
 * optional peer package is installed and its addon loads; otherwise keep the current one (TypeScript unless
 * changed) and say why. `setFrechetLinalg(TS_FRECHET_LINALG)` undoes it. evaluateFolders uses the native one for
 * FID whenever it loads, without this call.
 */
export async function useKernelsFrechet(): Promise<FrechetLinalgChoice> {
  const k = await kernelsFrechetLinalg();
  if (!k.linalg) return { linalg: getFrechetLinalg(), reason: k.reason };
  setFrechetLinalg(k.linalg);
  return { linalg: k.linalg, reason: "" };
}
