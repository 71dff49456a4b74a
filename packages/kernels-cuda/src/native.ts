import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** A device allocation owned by a JS object: free() releases it now; the GC releases it otherwise. */
export interface NativeDeviceBuffer {
  readonly byteLength: number;
  readonly freed: boolean;
  upload(data: ArrayBufferView, byteOffset?: number): void;
  download(bytes?: number): ArrayBuffer;
  fill(byte: number): void;
  free(): void;
}

export interface NativeDeviceInfo {
  available: boolean;
  reason?: string;
  name?: string;
  computeCapability?: number;
  multiprocessors?: number;
  l2Bytes?: number;
  globalBytes?: number;
  cublas?: string;
  /** "ok" when libcublasLt could be loaded (the int4p2 FP8 GEMM), else why not. */
  cublasLt?: string;
  /** Activation-code format of the fast GEMM path on this device: "s8" on sm_90+, "s4" below. */
  defaultFormat?: "s8" | "s4";
}

/** The raw addon (packages/kernels-cuda/native/addon.cpp); use the typed wrappers in ops.ts instead. */
export interface NativeAddon {
  DeviceBuffer: new (byteLength: number) => NativeDeviceBuffer;
  quantizeAct(args: Record<string, unknown>): void;
  gemmW4A4(args: Record<string, unknown>): void;
  gemmCublas(args: Record<string, unknown>): void;
  gemmCublasInt8(args: Record<string, unknown>): void;
  repackWeightWg(args: Record<string, unknown>): void;
  quantizeActP2(args: Record<string, unknown>): void;
  quantizeRowsP2(args: Record<string, unknown>): void;
  gemmP2(args: Record<string, unknown>): void;
  deviceInfo(): NativeDeviceInfo;
  synchronize(): void;
  timeMs(fn: () => void, iterations: number): number;
  timeGraphMs(fn: () => void, iterations: number): number;
  padM(m: number): number;
}

let cached: { addon?: NativeAddon; reason?: string } | undefined;

const PKG = join(dirname(fileURLToPath(import.meta.url)), ".."); // src/ and dist/ are one level below the package

/**
 * Path of the addon: SVDQ_CUDA_ADDON when set; else build/svdq_cuda.node (compiled here, in the repository or at
 * install); else the prebuilt binary node-gyp-build finds in prebuilds/<platform>-<arch>/; else where the build
 * would put it (missing).
 */
export function addonPath(): string {
  const env = process.env.SVDQ_CUDA_ADDON;
  if (env) return env;
  const built = join(PKG, "build", "svdq_cuda.node");
  if (existsSync(built)) return built;
  try {
    return (createRequire(import.meta.url)("node-gyp-build") as { path(dir: string): string }).path(PKG);
  } catch {
    return built;
  }
}

function buildDetail(): string {
  try {
    const status = join(PKG, "build", "native-build.json");
    if (existsSync(status)) return `; build: ${JSON.parse(readFileSync(status, "utf8")).detail}`;
  } catch {}
  return "";
}

/** Loads the addon once; returns it or the reason it is unavailable. */
export function loadAddon(): { addon?: NativeAddon; reason?: string } {
  if (cached) return cached;
  const path = addonPath();
  if (!existsSync(path)) {
    cached = {
      reason: `CUDA addon not available: no prebuilt binary for ${process.platform}-${process.arch} in ${join(PKG, "prebuilds")} and ${path} is missing (building it needs nvcc${buildDetail()})`,
    };
    return cached;
  }
  try {
    const require = createRequire(import.meta.url);
    cached = { addon: require(path) as NativeAddon };
  } catch (e) {
    cached = { reason: `CUDA addon failed to load: ${(e as Error).message}` };
  }
  return cached;
}

/** Whether kernels can run here: the addon loads and a CUDA device answers. */
export function cudaAvailability(): { available: boolean; reason: string; info?: NativeDeviceInfo } {
  const { addon, reason } = loadAddon();
  if (!addon) return { available: false, reason: reason ?? "addon unavailable" };
  const info = addon.deviceInfo();
  if (!info.available) return { available: false, reason: info.reason ?? "no CUDA device", info };
  return { available: true, reason: `${info.name} (sm_${info.computeCapability})`, info };
}
