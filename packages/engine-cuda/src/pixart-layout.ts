// Host-side layouts of the PixArt engine's inputs and output (kernels/cuda/engine/pixart.h): latents unfolded into
// patch rows, patch rows folded back into images, and the text mask as kept lengths. Pure host logic.
import { EngineError } from "./errors.js";

/**
 * Latents x [B, C, H, W] → patch rows [B·S, C·p²], S = (H/p)·(W/p) in row-major grid order, columns (c, pi, pj):
 * row (b, i·gw + j), column (c·p + pi)·p + pj holds x[b, c, i·p + pi, j·p + pj] (the patch-embedding conv as a
 * linear: its weight [D, C, p, p] flattened).
 */
export function unfoldPatches(
  x: ArrayLike<number>,
  B: number,
  C: number,
  H: number,
  W: number,
  p: number,
): Float32Array {
  const gh = H / p;
  const gw = W / p;
  const s = gh * gw;
  const cp = C * p * p;
  const out = new Float32Array(B * s * cp);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < gh; i++)
      for (let j = 0; j < gw; j++) {
        const row = (b * s + i * gw + j) * cp;
        for (let c = 0; c < C; c++)
          for (let pi = 0; pi < p; pi++)
            for (let pj = 0; pj < p; pj++)
              out[row + (c * p + pi) * p + pj] = x[((b * C + c) * H + i * p + pi) * W + j * p + pj]!;
      }
  return out;
}

/**
 * Output rows [B·S, p²·oc] (columns (pi, pj, channel), diffusers' unpatchify) → images [B, oc, H, W]:
 * out[b, ch, i·p + pi, j·p + pj] = y[b·S + i·gw + j, (pi·p + pj)·oc + ch].
 */
export function foldPatches(
  y: ArrayLike<number>,
  B: number,
  oc: number,
  H: number,
  W: number,
  p: number,
): Float32Array {
  const gh = H / p;
  const gw = W / p;
  const s = gh * gw;
  const out = new Float32Array(B * oc * H * W);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < gh; i++)
      for (let j = 0; j < gw; j++)
        for (let pi = 0; pi < p; pi++)
          for (let pj = 0; pj < p; pj++)
            for (let ch = 0; ch < oc; ch++)
              out[((b * oc + ch) * H + i * p + pi) * W + j * p + pj] =
                y[(b * s + i * gw + j) * p * p * oc + (pi * p + pj) * oc + ch]!;
  return out;
}

/**
 * Kept text tokens per item from a [B, L] mask (1 keep, 0 padding). The engine masks keys past a length, so each
 * row must be a prefix mask (ones then zeros, as T5 padding is) keeping at least one token; no mask keeps all L.
 */
export function textLengths(mask: ArrayLike<number> | undefined, B: number, L: number): Int32Array {
  const out = new Int32Array(B).fill(L);
  if (mask === undefined) return out;
  const where = "PixArtInputs.encoderAttentionMask";
  if (mask.length !== B * L)
    throw new EngineError("E_INPUT", `has ${mask.length} values, expected [${B}, ${L}]`, where);
  for (let b = 0; b < B; b++) {
    let k = 0;
    while (k < L && mask[b * L + k] === 1) k++;
    for (let j = k; j < L; j++)
      if (mask[b * L + j] !== 0)
        throw new EngineError(
          "E_INPUT",
          `row ${b} is not a prefix mask (ones then zeros, T5 padding): element ${j} is ${mask[b * L + j]}`,
          where,
        );
    if (k === 0) throw new EngineError("E_INPUT", `row ${b} keeps no text token`, where);
    out[b] = k;
  }
  return out;
}
