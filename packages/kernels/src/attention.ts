/**
 * Operator 7: multi-head scaled-dot-product attention, softmax(Q·Kᵀ/√Dh + bias)·V per batch and head, with an
 * online softmax over key blocks (the scores never exist beyond a 16 × 64 block; kernels/cpu/attention_f32.cc).
 *
 * | tensor | shape          | dtype | notes                                         |
 * | ------ | -------------- | ----- | --------------------------------------------- |
 * | q      | [B, Sq, H·Dh]  | f32   | heads interleaved along the last axis         |
 * | k, v   | [B, Skv, H·Dh] | f32   |                                               |
 * | bias   | [B, Skv]       | f32   | optional additive key bias (e.g. a text mask) |
 * | out    | [B, Sq, H·Dh]  | f32   | a new array, or `out` when given              |
 */
import { KernelsError } from "./errors.js";
import { native } from "./native.js";
import { refAttention } from "./reference.js";
import { dim, tensor } from "./validate.js";

export interface AttentionShape {
  /** Batch B, query tokens Sq, key/value tokens Skv, heads H, head dimension Dh. */
  B: number;
  Sq: number;
  Skv: number;
  heads: number;
  headDim: number;
  bias?: Float32Array;
  out?: Float32Array;
}

export function attentionF32(q: Float32Array, k: Float32Array, v: Float32Array, s: AttentionShape): Float32Array {
  const B = dim("B", s.B, true);
  const Sq = dim("Sq", s.Sq, true);
  const Skv = dim("Skv", s.Skv);
  const H = dim("heads", s.heads);
  const Dh = dim("headDim", s.headDim);
  const d = H * Dh;
  tensor("q", q, Float32Array, [B, Sq, d]);
  tensor("k", k, Float32Array, [B, Skv, d]);
  tensor("v", v, Float32Array, [B, Skv, d]);
  if (s.bias) tensor("bias", s.bias, Float32Array, [B, Skv]);
  const out = s.out ?? new Float32Array(B * Sq * d);
  if (s.out) tensor("out", s.out, Float32Array, [B, Sq, d]);
  const nb = native();
  if (nb) {
    try {
      nb.attentionF32({ q, k, v, bias: s.bias, B, Sq, Skv, H, Dh, out });
    } catch (e) {
      throw new KernelsError("E_NATIVE", `attentionF32: ${(e as Error).message}`, { cause: e });
    }
  } else {
    out.set(refAttention(q, k, v, B, Sq, Skv, H, Dh, s.bias));
  }
  return out;
}
