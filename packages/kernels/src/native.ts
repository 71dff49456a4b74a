import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";

/** The native code paths, worst to best (kernels/cpu/common.h `Isa`). */
export const NATIVE_ISAS = ["scalar", "avx2", "avx512", "amx"] as const;
export type NativeIsa = (typeof NATIVE_ISAS)[number];

/** The surface of build/Release/svdquant_kernels.node (kernels/cpu/binding.cc). */
export interface NativeBinding {
  actQuant(a: object): number;
  transposeLowRankDown?(a: object): void;
  gemmW4A4(a: object): void;
  gemmF32(a: object): void;
  gemmW4A16(a: object): void;
  gemmW8A8(a: object): void;
  /** Returns the first row holding a NaN/Inf, or -1. */
  actQuantInt8(a: object): number;
  attentionF32(a: object): void;
  gelu(a: object): void;
  /** Instruction peaks (kernels/cpu/peak.cc): kind 0 f32 FMA ymm, 1 vpmaddubsw ymm, 2 f32 FMA zmm, 3 vpdpbusd zmm,
   * 4 AMX tdpbssd, 5 AMX tdpbf16ps, 6 vdpbf16ps zmm (f32 FLOP/s; int8 or bf16 multiply-adds per second). */
  peak(a: { kind: number; iters: number }): number;
  choleskyF64(a: { a: Float64Array; n: number; tol: number }): number;
  congruenceF64(a: { l: Float64Array; s: Float64Array; n: number; m: Float64Array }): void;
  pivotedCholeskyF64(a: { a: Float64Array; n: number; tol: number; perm: Int32Array }): number;
  symEigvalsF64(a: { a: Float64Array; n: number; w: Float64Array }): void;
  /** Operator 7 (residual_quant.cc); absent from addons built before it (the TypeScript pass runs then). */
  quantizeResidual?(a: object): void;
  /** Operator 8 (cholqr_f64.cc); returns 0 or the reason it declined. Absent from older addons. */
  cholQrRowsF64?(a: {
    p: Float64Array;
    t: Float64Array;
    l: number;
    d: number;
    passes: number;
    minPivot: number;
    maxDev: number;
  }): number;
  /** The split-bf16 f32 GEMM (gemm_f32_amx.cc, gemm_f32_split_napi.cc); absent from older addons. */
  packF32Split?(a: { w: Float32Array; N: number; K: number; splits: number; out: Uint16Array }): void;
  gemmF32Split?(a: object): void;
  f32SplitInfo?(): { amxBf16: boolean; amx: boolean };
  /** The normalizations of norm_f32.cc; absent from older addons. */
  layerNormModulateF32?(a: object): void;
  rmsNormRopeHeadsF32?(a: object): void;
  /** The int4p2 layer (binding_p2.cc, p2-layer.ts); absent from addons built before it. */
  p2PackWeight?(a: object): number;
  /** bf16(L_down) as AMX B tiles (the "bf16" branch); absent from addons built before it. */
  p2PackDownBf16?(a: object): void;
  p2Quantize?(a: object): number;
  p2Forward?(a: object): number;
  p2QuantizeOperand?(a: object): number;
  p2Gemm?(a: object): void;
  p2GemmPath?(): string;
  /** The int4p2 layer's AMX-INT8 path (binding_p2_int8.cc); absent from older addons. */
  p2i8PackWeight?(a: object): { handle: unknown; bytes: number; shadowColumns: number };
  p2i8Forward?(a: object): number;
  p2i8QuantizeOperand?(a: object): { status: number; handle?: unknown };
  p2i8Gemm?(a: object): void;
  p2i8Available?(): boolean;
  /** The int4p2 layer's AVX2 integer path (binding_p2_avx2.cc); absent from older addons. */
  p2a2PackWeight?(a: object): Uint8Array;
  p2a2Forward?(a: object): number;
  p2a2QuantizeOperand?(a: object): { status: number; op?: Uint8Array };
  p2a2Gemm?(a: object): void;
  p2a2Available?(): boolean;
  /** bf16 peaks: kind 0 AMX tdpbf16ps, 1 vdpbf16ps zmm (multiply-adds per second). */
  peakBf16?(a: { kind: number; iters: number }): number;
  setThreads(n: number): number;
  getThreads(): number;
  setIsa(mode: number): void;
  getIsa(): NativeIsa;
  hasAvx2(): boolean;
  supportedIsas(): NativeIsa[];
  abiVersion: number;
}

const PKG = fileURLToPath(new URL("..", import.meta.url));
const STATUS = new URL("../build/native-build.json", import.meta.url);

/**
 * The addon file: SVDQ_KERNELS_ADDON when set (tests use it to exercise the fallback), else what node-gyp-build
 * finds in the package: build/Release (compiled here) or prebuilds/<platform>-<arch>/ (shipped in the package).
 */
function addonPath(): { path?: string; missing?: string } {
  const env = process.env.SVDQ_KERNELS_ADDON;
  if (env) return existsSync(env) ? { path: env } : { missing: `${env} (SVDQ_KERNELS_ADDON) is missing` };
  const require = createRequire(import.meta.url);
  try {
    return { path: (require("node-gyp-build") as { path(dir: string): string }).path(PKG) };
  } catch (e) {
    const target =
      /No native build was found for (.*)/.exec((e as Error).message)?.[1] ?? `${process.platform}-${process.arch}`;
    return { missing: `no prebuilt binary in ${PKG}prebuilds matches ${target}, and none was compiled at install` };
  }
}

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
  const found = process.env.SVDQ_KERNELS_NATIVE === "0" ? {} : addonPath();
  if (process.env.SVDQ_KERNELS_NATIVE === "0") {
    reason = "disabled by SVDQ_KERNELS_NATIVE=0";
  } else if (!found.path) {
    reason = `native addon unavailable: ${found.missing}${buildDetail()}; to compile it (python3, make and a C++17 compiler), allow its install script (npm install-scripts approve, pnpm approve-builds) and run \`npm rebuild @svdquant/kernels\` or \`pnpm rebuild @svdquant/kernels\``;
  } else {
    try {
      binding = createRequire(import.meta.url)(found.path) as NativeBinding;
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
      if (Number.isInteger(th) && th > 0) binding.setThreads(Math.min(th, availableParallelism())); // as setThreads
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
