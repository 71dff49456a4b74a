import type { EngineItem } from "./convert.js";
import { EngineError } from "./errors.js";
import { loadAddon, type NativeEngine } from "./native.js";

/** Runs a call into the addon, turning its plain errors into typed EngineErrors (CUDA failures vs checkpoint faults). */
export function wrap<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof EngineError) throw e;
    const msg = (e as Error).message;
    const code = /^(cuda|cublas|dlopen|eng_|svdq_)/i.test(msg)
      ? "E_CUDA"
      : /missing|tensor|holds/.test(msg)
        ? "E_CHECKPOINT"
        : "E_CUDA";
    throw new EngineError(code, msg, undefined, e);
  }
}

/** A new native engine on the current device: the addon loaded and a usable CUDA device, else a typed error. */
export function openNativeEngine(): NativeEngine {
  const { addon, reason } = loadAddon();
  if (!addon) throw new EngineError("E_NO_ADDON", reason ?? "engine addon unavailable");
  const info = addon.deviceInfo();
  if (!info.available) throw new EngineError("E_NO_DEVICE", info.reason ?? "no CUDA device");
  return wrap(() => new addon.Engine());
}

/** Uploads converted checkpoint items (named device tensors and per-layer ints) to `native`, one at a time. */
export async function uploadItems(native: NativeEngine, items: AsyncIterable<EngineItem>): Promise<void> {
  for await (const item of items) {
    if (item.kind === "int") native.setInt(item.name, item.value);
    else
      wrap(() => {
        native.alloc(item.name, item.data.byteLength);
        native.upload(item.name, item.data);
      });
  }
}
