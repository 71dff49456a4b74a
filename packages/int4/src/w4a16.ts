// W4A16 (AWQ / TinyChat GEMV) layout used by nunchaku checkpoints for the AdaNorm modulation linears
// (`AWQW4A16Linear`: qweight int32 [N/4, K/2], wscales [K/G, N], wzeros [K/G, N], G = 64).
// Facts from mit-han-lab/nunchaku (commit 4132b3b): nunchaku/models/linear.py (shapes/dtypes),
// nunchaku/models/text_encoders/tinychat_utils.py (pack_w4, convert_to_tinychat_w4x16y16_linear_weight,
// ceil_num_groups) and src/kernels/awq/gemv_awq.cu (w = q · scale + zero with one fma). No fixture covers
// this layout: it is tested by round trip and against a literal transcription of the reshape/permute steps.
import { QuantError } from "./errors.js";
import type { ScaleDType } from "./formats.js";
import { roundScale } from "./scales.js";

type Floats = Float32Array | Float64Array;

/**
 * Asymmetric UINT4 quantization with an integer zero point per group of G along K (the AWQ W4A16 scheme):
 * range [min(x, 0), max(x, 0)], scale = (max − min)/15 rounded to `scaleDtype`, z = clamp(rhe(−min/scale), 0, 15),
 * q = clamp(rhe(x/scale) + z, 0, 15); the stored zero is wzero = −z·scale (rounded to `scaleDtype`), so
 * x ≈ q · scale + wzero, the kernel's fma. All-zero group: scale 0, codes 0, zero 0.
 *
 * | output | shape      | dtype | meaning                                  |
 * | ------ | ---------- | ----- | ---------------------------------------- |
 * | codes  | [N, K]     | int8  | 0..15                                    |
 * | scales | [N, K/G]   | f32   | decoded scale values (bf16/f16 values)   |
 * | zeros  | [N, K/G]   | f32   | decoded wzero values (−z·scale)          |
 */
export interface W4A16Quantized {
  rows: number;
  cols: number;
  groupSize: number;
  codes: Int8Array;
  scales: Float32Array;
  zeros: Float32Array;
}

export function quantizeW4A16(
  x: Floats,
  N: number,
  K: number,
  opts: { groupSize?: number; scaleDtype?: ScaleDType; name?: string } = {},
): W4A16Quantized {
  const g = opts.groupSize ?? 64;
  const dt = opts.scaleDtype ?? "BF16";
  const name = opts.name;
  if (!Number.isInteger(g) || g <= 0 || K % g !== 0)
    throw new QuantError("E_SHAPE", `W4A16: K = ${K} is not a multiple of the group size ${g}`, name);
  if (x.length !== N * K)
    throw new QuantError("E_SHAPE", `buffer holds ${x.length} values, [${N}, ${K}] needs ${N * K}`, name);
  const G = K / g;
  const codes = new Int8Array(N * K);
  const scales = new Float32Array(N * G);
  const zeros = new Float32Array(N * G);
  for (let n = 0; n < N; n++)
    for (let j = 0; j < G; j++) {
      const base = n * K + j * g;
      let lo = 0;
      let hi = 0;
      for (let i = base; i < base + g; i++) {
        const v = x[i]!;
        if (!Number.isFinite(v))
          throw new QuantError(
            "E_NONFINITE",
            `non-finite value ${v} at [${n}, ${i - n * K}] of shape [${N}, ${K}]`,
            name,
          );
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const s = roundScale(Math.fround(Math.fround(Math.fround(hi) - Math.fround(lo)) / 15), dt);
      if (!Number.isFinite(s)) throw new QuantError("E_RANGE", `row ${n}, group ${j}: scale overflows ${dt}`, name);
      if (s === 0) continue;
      let z = -lo / s + 6755399441055744 - 6755399441055744;
      z = z < 0 ? 0 : Math.min(z, 15);
      scales[n * G + j] = s;
      zeros[n * G + j] = roundScale(-z * s, dt);
      for (let i = base; i < base + g; i++) {
        let q = x[i]! / s + 6755399441055744 - 6755399441055744 + z;
        q = q < 0 ? 0 : Math.min(q, 15);
        codes[i] = q;
      }
    }
  return { rows: N, cols: K, groupSize: g, codes, scales, zeros };
}

/** x ≈ q · scale + zero, row-major [N, K] float32. */
export function dequantizeW4A16(q: W4A16Quantized): Float32Array {
  const { rows, cols, groupSize, codes, scales, zeros } = q;
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) {
    const gi = (((i / cols) | 0) * cols) / groupSize + (((i % cols) / groupSize) | 0);
    out[i] = codes[i]! * scales[gi]! + zeros[gi]!;
  }
  return out;
}

/**
 * W4A16 `qweight`: uint4 codes [N, K] → int32 [N/4, K/2] (N % 4 = 0, K % 64 = 0), TinyChat's pack_w4:
 *
 * 1. per row, every 32 consecutive codes k = 32c + i become 8 int16 words u[n, 8c + j] =
 *    q[32c + j] | q[32c + 8 + j] « 4 | q[32c + 16 + j] « 8 | q[32c + 24 + j] « 12 (j = 0..7);
 * 2. u viewed as [N/4, 4, K/64, 16] is permuted to [N/4, K/64, 4, 16] (four rows interleaved per 16 words);
 * 3. the int16 data is reinterpreted as int32 [N/4, K/2], little-endian (word = u[2m] | u[2m+1] « 16).
 *
 * | tensor  | shape      | dtype | index                                                             |
 * | ------- | ---------- | ----- | ----------------------------------------------------------------- |
 * | codes   | [N, K]     | int8  | row-major, 0..15                                                  |
 * | qweight | [N/4, K/2] | int32 | int16 position ((n/4)·(K/64) + k/64)·64 + (n%4)·16 + (k%64)/32·8 + k%8, nibble (k%32)/8 |
 */
export function packW4A16Weight(codes: Int8Array, N: number, K: number, name?: string): Int32Array {
  if (N % 4 !== 0 || K % 64 !== 0 || codes.length !== N * K)
    throw new QuantError("E_SHAPE", `W4A16 weight [${N}, ${K}] needs N % 4 = 0 and K % 64 = 0`, name);
  const u16 = new Uint16Array((N * K) / 4);
  const KB = K / 64;
  for (let n = 0; n < N; n++) {
    const rowOut = (n >>> 2) * KB * 64 + (n & 3) * 16;
    for (let kb = 0; kb < KB; kb++)
      for (let h = 0; h < 2; h++) {
        const src = n * K + kb * 64 + h * 32;
        const dst = rowOut + kb * 64 + h * 8;
        for (let j = 0; j < 8; j++) {
          const c0 = codes[src + j]!;
          const c1 = codes[src + 8 + j]!;
          const c2 = codes[src + 16 + j]!;
          const c3 = codes[src + 24 + j]!;
          if ((c0 | c1 | c2 | c3) & ~15)
            throw new QuantError("E_CODE", `W4A16 codes must be in 0..15 (row ${n})`, name);
          u16[dst + j] = c0 | (c1 << 4) | (c2 << 8) | (c3 << 12);
        }
      }
  }
  return new Int32Array(u16.buffer);
}

/** Inverse of packW4A16Weight: codes 0..15 [N, K]. */
export function unpackW4A16Weight(qweight: Int32Array, N: number, K: number, name?: string): Int8Array {
  if (N % 4 !== 0 || K % 64 !== 0 || qweight.length * 8 !== N * K)
    throw new QuantError("E_SHAPE", `W4A16 qweight (${qweight.length} words) does not fit [${N}, ${K}]`, name);
  const u16 = new Uint16Array(qweight.buffer, qweight.byteOffset, qweight.length * 2);
  const out = new Int8Array(N * K);
  const KB = K / 64;
  for (let n = 0; n < N; n++) {
    const rowOut = (n >>> 2) * KB * 64 + (n & 3) * 16;
    for (let kb = 0; kb < KB; kb++)
      for (let h = 0; h < 2; h++) {
        const dst = n * K + kb * 64 + h * 32;
        const src = rowOut + kb * 64 + h * 8;
        for (let j = 0; j < 8; j++) {
          const w = u16[src + j]!;
          out[dst + j] = w & 15;
          out[dst + 8 + j] = (w >>> 4) & 15;
          out[dst + 16 + j] = (w >>> 8) & 15;
          out[dst + 24 + j] = w >>> 12;
        }
      }
  }
  return out;
}

/**
 * Number of scale/zero rows TinyChat allocates for K/G groups (ceil_num_groups, 4-bit): groups are counted in
 * packs of 8, and the pack count is rounded up to a multiple of 1 (G ≥ 128), 2 (G = 64) or 4 (G = 32).
 */
export function w4a16GroupRows(K: number, groupSize: number): number {
  const ng = K / groupSize;
  const factor = groupSize >= 128 ? 1 : groupSize === 64 ? 2 : groupSize === 32 ? 4 : 0;
  if (factor === 0 || !Number.isInteger(ng))
    throw new QuantError("E_ARGUMENT", `W4A16 group size ${groupSize} unsupported for K = ${K}`);
  const packs = Math.ceil(Math.ceil(ng / 8) / factor) * factor;
  return packs * 8;
}

/**
 * `wscales` / `wzeros`: per-group values [N, G] → [Gp, N], the plain transpose, zero rows appended up to
 * Gp = w4a16GroupRows(K, G) (Gp = G whenever K/G is a multiple of 16, e.g. FLUX's K = 3072).
 */
export function packW4A16Groups<T extends Float32Array | Uint16Array>(v: T, N: number, G: number, Gp: number = G): T {
  if (v.length !== N * G || Gp < G)
    throw new QuantError("E_SHAPE", `W4A16 scales (${v.length}) do not fit [${N}, ${G}] → [${Gp}, ${N}]`);
  const out = new (v.constructor as new (n: number) => T)(Gp * N);
  for (let n = 0; n < N; n++) for (let g = 0; g < G; g++) out[g * N + n] = v[n * G + g]!;
  return out;
}

/** Inverse of packW4A16Groups (drops the padding rows): [Gp, N] → [N, G]. */
export function unpackW4A16Groups<T extends Float32Array | Uint16Array>(v: T, N: number, G: number): T {
  if (v.length % N !== 0 || v.length / N < G)
    throw new QuantError("E_SHAPE", `W4A16 scales (${v.length}) do not fit N = ${N}, G = ${G}`);
  const out = new (v.constructor as new (n: number) => T)(N * G);
  for (let n = 0; n < N; n++) for (let g = 0; g < G; g++) out[n * G + g] = v[g * N + n]!;
  return out;
}
