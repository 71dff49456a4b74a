import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** The native code paths, worst to best (kernels/cpu/common.h `Isa`). */
export const NATIVE_ISAS = ["scalar", "avx2", "avx512", "amx"] as const;
export type NativeIsa = (typeof NATIVE_ISAS)[number];

/** The surface of build/Release/svdquant_kernels.node (kernels/cpu/binding.cc). */
export interface NativeBinding {
  actQuant(a: object): number;
  gemmW4A4(a: object): void;
  gemmF32(a: object): void;
  gemmW4A16(a: object): void;
  gemmW8A8(a: object): void;
  /** Returns the first row holding a NaN/Inf, or -1. */
  actQuantInt8(a: object): number;
  attentionF32(a: object): void;
  gelu(a: object): void;
  peak(a: { kind: number; iters: number }): number;
  choleskyF64(a: { a: Float64Array; n: number; tol: number }): number;
  congruenceF64(a: { l: Float64Array; s: Float64Array; n: number; m: Float64Array }): void;
  pivotedCholeskyF64(a: { a: Float64Array; n: number; tol: number; perm: Int32Array }): number;
  symEigvalsF64(a: { a: Float64Array; n: number; w: Float64Array }): void;
  setThreads(n: number): number;
  getThreads(): number;
  setIsa(mode: number): void;
  getIsa(): NativeIsa;
  hasAvx2(): boolean;
  supportedIsas(): NativeIsa[];
  abiVersion: number;
}

// SVDQ_KERNELS_ADDON overrides the addon path (tests use it to exercise the fallback).
const ADDON = process.env.SVDQ_KERNELS_ADDON
  ? new URL(`file://${process.env.SVDQ_KERNELS_ADDON}`)
  : new URL("../build/Release/svdquant_kernels.node", import.meta.url);
const STATUS = new URL("../build/native-build.json", import.meta.url);

let loaded: { binding: NativeBinding | null; reason: string } | undefined;

function buildDetail(): string {
  try {
    if (existsSync(STATUS)) return ` (build: ${JSON.parse(readFileSync(STATUS, "utf8")).detail})`;
  } catch {}
  return "";
}

/**
 * Loads the native addon once. When it is missing or fails to load (or SVDQ_KERNELS_NATIVE=0), the package
 * uses its TypeScript reference kernels and says so with ONE process warning.
 */
export function native(): NativeBinding | null {
  if (loaded) return loaded.binding;
  let reason = "";
  let binding: NativeBinding | null = null;
  if (process.env.SVDQ_KERNELS_NATIVE === "0") {
    reason = "disabled by SVDQ_KERNELS_NATIVE=0";
  } else if (!existsSync(ADDON)) {
    reason = `native addon not built: ${fileURLToPath(ADDON)} is missing${buildDetail()}; run \`pnpm --filter @svdquant/kernels build:native\``;
  } else {
    try {
      binding = createRequire(import.meta.url)(fileURLToPath(ADDON)) as NativeBinding;
      if (binding.abiVersion !== 2) throw new Error(`addon ABI ${binding.abiVersion}, expected 2; rebuild it`);
      // SVDQ_KERNELS_ISA forces a path (scalar|avx2|avx512|amx; "auto" or unset: the best the CPU has). A path
      // this CPU cannot run is an error here, so a forced CI leg never silently tests another path.
      const isa = process.env.SVDQ_KERNELS_ISA;
      if (isa && isa !== "auto") {
        const mode = (NATIVE_ISAS as readonly string[]).indexOf(isa) + 1;
        if (mode === 0) throw new Error(`SVDQ_KERNELS_ISA=${isa} is not one of auto, ${NATIVE_ISAS.join(", ")}`);
        binding.setIsa(mode);
      }
      const th = Number(process.env.SVDQ_KERNELS_THREADS);
      if (Number.isInteger(th) && th > 0) binding.setThreads(th);
    } catch (e) {
      binding = null;
      reason = `native addon failed to load: ${(e as Error).message}`;
    }
  }
  loaded = { binding, reason };
  if (!binding && process.env.SVDQ_KERNELS_NATIVE !== "0")
    process.emitWarning(`@svdquant/kernels: ${reason}. Falling back to the (slow) TypeScript reference kernels.`, {
      code: "SVDQ_KERNELS_FALLBACK",
    });
  return binding;
}

/** Why the native addon is not in use ("" when it is). */
export function nativeUnavailableReason(): string {
  native();
  return loaded!.reason;
}
