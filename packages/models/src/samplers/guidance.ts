import { ModelError } from "../errors.js";
import { f32 } from "./numeric.js";

/**
 * Classifier-free guidance as the diffusers pipelines write it: uncond + scale·(cond − uncond), each operation
 * rounded to float32 (PixArt-Σ: scale 4.5; FLUX's true CFG has the same form). Returns a fresh array.
 */
export function classifierFreeGuidance(uncond: Float32Array, cond: Float32Array, scale: number): Float32Array {
  if (uncond.length !== cond.length)
    throw new ModelError(
      "E_SHAPE",
      `unconditional output has ${uncond.length} values, conditional ${cond.length}`,
      "classifierFreeGuidance",
    );
  if (!Number.isFinite(scale))
    throw new ModelError("E_INPUT", `guidance scale must be finite, got ${scale}`, "classifierFreeGuidance");
  const g = f32(scale);
  const out = new Float32Array(uncond.length);
  for (let i = 0; i < out.length; i++) out[i] = uncond[i]! + f32(g * f32(cond[i]! - uncond[i]!));
  return out;
}

/**
 * The first `channels` of a [B, 2·channels, H, W] prediction: PixArt's learned-sigma output keeps its ε half
 * (`noise_pred.chunk(2, dim=1)[0]`). Returns [B, channels, H, W].
 */
export function epsilonHalf(x: Float32Array, batch: number, channels: number, hw: number): Float32Array {
  if (x.length !== batch * 2 * channels * hw)
    throw new ModelError(
      "E_SHAPE",
      `prediction has ${x.length} values, expected [${batch}, ${2 * channels}, H·W=${hw}]`,
      "epsilonHalf",
    );
  const out = new Float32Array(batch * channels * hw);
  for (let b = 0; b < batch; b++)
    out.set(x.subarray(b * 2 * channels * hw, (b * 2 + 1) * channels * hw), b * channels * hw);
  return out;
}
