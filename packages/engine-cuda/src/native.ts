import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** One profiled op kind of a step: total milliseconds and number of launches. */
export interface OpTime {
  op: string;
  ms: number;
  count: number;
}

/** The native engine (packages/engine-cuda/native/addon.cpp over kernels/cuda/engine/flux.h, pixart.h). */
export interface NativeEngine {
  readonly freed: boolean;
  alloc(name: string, bytes: number): void;
  upload(name: string, data: ArrayBufferView, byteOffset?: number): void;
  download(name: string, bytes?: number): ArrayBuffer;
  fillRandom(
    name: string,
    kind: "bf16" | "f32" | "e4m3" | "bytes",
    seed: number,
    center?: number,
    scale?: number,
    byteOffset?: number,
    count?: number,
  ): void;
  has(name: string): boolean;
  freeTensor(name: string): void;
  setInt(name: string, value: number): void;
  prepareFlux(config: Record<string, number>, batch: number, txtTokens: number, imgTokens: number): void;
  preparePixArt(config: Record<string, number>, batch: number, txtTokens: number, imgTokens: number): void;
  step(profile?: boolean): void;
  stepGraph(): void;
  synchronize(): void;
  profile(): OpTime[];
  bytes(): { weights: number; workspace: number; peak: number; deviceFree: number; deviceTotal: number };
  timeSteps(iterations: number, graph?: boolean): number;
  attention(q: string, k: string, v: string, out: string, B: number, H: number, S: number, Dh: number): void;
  gemvW4A16(
    x: string,
    codes: string,
    scales: string,
    zeros: string,
    bias: string,
    out: string,
    M: number,
    K: number,
    N: number,
    /**
     * 0 automatic (3 where it applies, else by M), 1 CUDA cores, 2 tensor cores, 3 the streaming kernel (K % 128 == 0;
     * engine_ops.h eng_gemv_w4a16_variant).
     */
    variant?: 0 | 1 | 2 | 3,
  ): void;
  /**
   * One layer of the prepared model: out [M, N] = act(layer(x [M, K])) on named bf16 tensors (tests); act 0 none,
   * 1 GELU-tanh, 2 SiLU.
   */
  linear(layer: string, N: number, K: number, x: string, out: string, M: number, act?: 0 | 1 | 2): void;
  /** The calibration observer's slots (flux.h eng_observe): slot i records engine linear layers[i] (K[i] inputs). */
  observe(layers: string[], K: number[], capacity: number): void;
  free(): void;
}

export interface NativeDeviceInfo {
  available: boolean;
  reason?: string;
  name?: string;
  computeCapability?: number;
  cublas?: string;
  /** "ok" when libcublasLt loads (the int4p2 FP8 GEMM), else why not. */
  cublasLt?: string;
  globalBytes?: number;
}

export interface NativeAddon {
  Engine: new () => NativeEngine;
  deviceInfo(): NativeDeviceInfo;
  /** Whether the int4p2 FP8 kernels take in-features K (kernels/cuda/p2_fp8.h svdq_p2_supported_k); no device needed. */
  p2SupportedK?(K: number): boolean;
}

let cached: { addon?: NativeAddon; reason?: string } | undefined;

/** Path of the built addon: build/svdq_engine.node in the package root (or $SVDQ_ENGINE_ADDON). */
export function addonPath(): string {
  const env = process.env.SVDQ_ENGINE_ADDON;
  if (env) return env;
  return join(dirname(fileURLToPath(import.meta.url)), "..", "build", "svdq_engine.node");
}

/** Loads the addon once; returns it or the reason it is unavailable. */
export function loadAddon(): { addon?: NativeAddon; reason?: string } {
  if (cached) return cached;
  const path = addonPath();
  if (!existsSync(path)) {
    cached = { reason: `engine addon not built (${path} missing; the build needs nvcc)` };
    return cached;
  }
  try {
    cached = { addon: createRequire(import.meta.url)(path) as NativeAddon };
  } catch (e) {
    cached = { reason: `engine addon failed to load: ${(e as Error).message}` };
  }
  return cached;
}

/** Whether the engine can run here: the addon loads and a CUDA device answers. */
export function engineAvailability(): { available: boolean; reason: string; info?: NativeDeviceInfo } {
  const { addon, reason } = loadAddon();
  if (!addon) return { available: false, reason: reason ?? "addon unavailable" };
  const info = addon.deviceInfo();
  if (!info.available) return { available: false, reason: info.reason ?? "no CUDA device", info };
  return { available: true, reason: `${info.name} (sm_${info.computeCapability})`, info };
}
