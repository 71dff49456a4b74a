// Tensor layouts of the SVDQuant W4A4 linear layer as stored in the published nunchaku checkpoints
// (`SVDQW4A4Linear`: qweight, wscales, proj_down/proj_up a.k.a. lora_down/lora_up, bias, smooth_factor).
//
// Facts from mit-han-lab/nunchaku (commit 4132b3b): nunchaku/lora/flux/packer.py (NunchakuWeightPacker with
// bits 4, warp_n 128: comp_n 16, comp_k = insn_k 64, k_pack 2, n_pack 2, 8 n-lanes × 4 k-lanes, 2 k-unrolls),
// nunchaku/models/linear.py (parameter names, shapes, dtypes) and the PTX ISA fragment layout of
// mma.m16n8k64 (int4/e2m1 B operand: lane l holds n = l/4, k = (l%4)·8 … +7 in register 0 and k + 32 in
// register 1). The INT4 weight, the g64 scales and the low-rank tensors are confirmed byte-exact against
// fixtures/nunchaku-pack/case-a.safetensors; the NVFP4 micro-scale order and the 1-D vector order follow the
// same packer code but have no fixture (see README).
import { QuantError } from "./errors.js";

/** Tile sizes (packer.py, warp_n = 128): N is padded to WARP_N, K to MEM_K · K_UNROLLS, R to LORA_TILE. */
export const W4A4_WARP_N = 128;
export const W4A4_MEM_K = 64;
export const W4A4_PAD_K = 128; // mem_k (64) × num_k_unrolls (2)
export const W4A4_LORA_TILE = 16;

type Elems = Uint8Array | Int8Array | Uint16Array | Int16Array | Float32Array | Float64Array | Int32Array;

function like<T extends Elems>(a: T, n: number): T {
  return new (a.constructor as new (n: number) => T)(n);
}

function need(cond: boolean, code: "E_SHAPE" | "E_ARGUMENT", msg: string, name?: string): void {
  if (!cond) throw new QuantError(code, msg, name);
}

// ------------------------------------------------------------------------------------------ weights

/**
 * W4A4 `qweight`: 4-bit codes [N, K] in the m16n8k64 B-fragment tile order, two codes per byte.
 *
 * | tensor  | shape    | dtype | order                                                                      |
 * | ------- | -------- | ----- | -------------------------------------------------------------------------- |
 * | codes   | [N, K]   | int8  | row-major; int4 -8..7 or E2M1 codes 0..15; N % 128 = 0, K % 64 = 0         |
 * | qweight | [N, K/2] | int8  | 32-bit words in the order below; word = 8 codes, k ascending from bit 0    |
 *
 * Word index w = ((((((nt·KT + kt)·8 + np)·8 + nl)·4 + kl)·2 + ns)·2 + ks), KT = K/64, holding
 * n = nt·128 + np·16 + ns·8 + nl and k = kt·64 + ks·32 + kl·8 + (0..7), little-endian nibbles
 * (code k+0 in bits 0–3, k+7 in bits 28–31). Read per warp: lane nl·4 + kl loads the 16 bytes (ns, ks) ∈ 2×2 —
 * the B fragments of two m16n8k64 MMAs (ns) with their two registers (ks).
 */
export function packW4A4Weight(codes: Int8Array, N: number, K: number, name?: string): Int8Array {
  need(
    N % W4A4_WARP_N === 0 && K % W4A4_MEM_K === 0,
    "E_SHAPE",
    `W4A4 weight [${N}, ${K}] must be padded to N % 128 = 0, K % 64 = 0`,
    name,
  );
  need(codes.length === N * K, "E_SHAPE", `codes hold ${codes.length} values, [${N}, ${K}] needs ${N * K}`, name);
  const out = new Int8Array((N * K) >>> 1);
  const KT = K / W4A4_MEM_K;
  let o = 0;
  for (let nt = 0; nt < N / 128; nt++)
    for (let kt = 0; kt < KT; kt++)
      for (let np = 0; np < 8; np++)
        for (let nl = 0; nl < 8; nl++)
          for (let kl = 0; kl < 4; kl++)
            for (let ns = 0; ns < 2; ns++) {
              const rowBase = (nt * 128 + np * 16 + ns * 8 + nl) * K + kt * 64 + kl * 8;
              for (let ks = 0; ks < 2; ks++) {
                const s = rowBase + ks * 32;
                out[o++] = (codes[s]! & 15) | ((codes[s + 1]! & 15) << 4);
                out[o++] = (codes[s + 2]! & 15) | ((codes[s + 3]! & 15) << 4);
                out[o++] = (codes[s + 4]! & 15) | ((codes[s + 5]! & 15) << 4);
                out[o++] = (codes[s + 6]! & 15) | ((codes[s + 7]! & 15) << 4);
              }
            }
  return out;
}

/** Inverse of packW4A4Weight; `signed` sign-extends nibbles (int4), else codes are 0..15 (E2M1). */
export function unpackW4A4Weight(
  qweight: Int8Array | Uint8Array,
  N: number,
  K: number,
  signed: boolean,
  name?: string,
): Int8Array {
  need(
    N % W4A4_WARP_N === 0 && K % W4A4_MEM_K === 0,
    "E_SHAPE",
    `W4A4 weight [${N}, ${K}] must have N % 128 = 0, K % 64 = 0`,
    name,
  );
  need(
    qweight.length * 2 === N * K,
    "E_SHAPE",
    `qweight holds ${qweight.length} bytes, [${N}, ${K / 2}] expected`,
    name,
  );
  const out = new Int8Array(N * K);
  const KT = K / W4A4_MEM_K;
  const sh = signed ? 28 : 0;
  let o = 0;
  for (let nt = 0; nt < N / 128; nt++)
    for (let kt = 0; kt < KT; kt++)
      for (let np = 0; np < 8; np++)
        for (let nl = 0; nl < 8; nl++)
          for (let kl = 0; kl < 4; kl++)
            for (let ns = 0; ns < 2; ns++) {
              const rowBase = (nt * 128 + np * 16 + ns * 8 + nl) * K + kt * 64 + kl * 8;
              for (let ks = 0; ks < 2; ks++) {
                const s = rowBase + ks * 32;
                for (let b = 0; b < 4; b++) {
                  const v = qweight[o++]! & 0xff;
                  out[s + 2 * b] = ((v & 15) << sh) >> sh;
                  out[s + 2 * b + 1] = ((v >>> 4) << sh) >> sh;
                }
              }
            }
  return out;
}

// ------------------------------------------------------------------------------------------ scales

/**
 * Position in the packed order of per-channel element n (0 ≤ n < N, N % 128 = 0) of group g (0 ≤ g < G) for
 * the g64 INT4 scales (`wscales`) and, with G = 1, for 1-D per-channel vectors (bias; packer.pack_scale).
 *
 * | tensor  | shape   | dtype     | order                                                                     |
 * | ------- | ------- | --------- | ------------------------------------------------------------------------- |
 * | scales  | [N, G]  | bf16/f16  | row-major, G = K/64 groups along K                                        |
 * | wscales | [G, N]  | bf16/f16  | flat ((t·G + g)·8 + a)·16 + c·4 + b·2 + d for n = t·128 + a·16 + b·8 + c·2 + d |
 *
 * The [G, N] shape is nominal (it is how the checkpoint declares it): the data is tile-major over
 * 128-channel tiles t, so for N > 128 a "row" of wscales is not one group. Within a tile, lane 4a + c loads
 * the 4 values (b, d) — the channels n its m16n8 accumulators hold (PTX mma C fragment: col = (lane%4)·2 + d).
 */
export function w4a4ScaleIndex(n: number, g: number, G: number): number {
  const t = (n / 128) | 0;
  const r = n & 127;
  const a = r >>> 4;
  const b = (r >>> 3) & 1;
  const c = (r >>> 1) & 3;
  const d = r & 1;
  return ((t * G + g) * 8 + a) * 16 + c * 4 + b * 2 + d;
}

/** Packs scales [N, G] (row-major, any element type: bf16 bits, f16 bits, float values) into `wscales`. */
export function packW4A4Scales<T extends Elems>(scales: T, N: number, G: number, name?: string): T {
  need(N % W4A4_WARP_N === 0, "E_SHAPE", `W4A4 scales need N % 128 = 0, got N = ${N}`, name);
  need(scales.length === N * G, "E_SHAPE", `scales hold ${scales.length} values, [${N}, ${G}] needs ${N * G}`, name);
  const out = like(scales, N * G);
  for (let n = 0; n < N; n++) for (let g = 0; g < G; g++) out[w4a4ScaleIndex(n, g, G)] = scales[n * G + g]!;
  return out;
}

/** Inverse of packW4A4Scales: wscales → scales [N, G] row-major. */
export function unpackW4A4Scales<T extends Elems>(wscales: T, N: number, G: number, name?: string): T {
  need(
    N % W4A4_WARP_N === 0 && wscales.length === N * G,
    "E_SHAPE",
    `wscales (${wscales.length}) do not fit N = ${N}, G = ${G}`,
    name,
  );
  const out = like(wscales, N * G);
  for (let n = 0; n < N; n++) for (let g = 0; g < G; g++) out[n * G + g] = wscales[w4a4ScaleIndex(n, g, G)]!;
  return out;
}

/** 1-D per-channel vectors (bias [N], smooth_factor [K], …): packed like scales with one group (pack_scale, group −1). */
export function packW4A4Vector<T extends Elems>(v: T, name?: string): T {
  return packW4A4Scales(v, v.length, 1, name);
}
export function unpackW4A4Vector<T extends Elems>(v: T, name?: string): T {
  return unpackW4A4Scales(v, v.length, 1, name);
}

/**
 * Position of the NVFP4 micro-scale of channel n, group g (16 elements of K each), G = K/16 (G % 4 = 0),
 * in the packed `wscales` (packer.pack_micro_scale, warp_n 128: s_pack 4, 32 lanes).
 *
 * | tensor  | shape    | dtype   | order                                                                       |
 * | ------- | -------- | ------- | --------------------------------------------------------------------------- |
 * | scales  | [N, G]   | fp8 e4m3 | row-major, G = K/16                                                        |
 * | wscales | [G, N]   | fp8 e4m3 | flat (((t·G/4 + go)·8 + l)·4 + q)·4 + s)·4 + gi for n = t·128 + s·32 + q·8 + l, g = go·4 + gi |
 *
 * Four consecutive bytes (gi = 0..3: the four 16-element groups of one 64-wide MMA k-step) form one 32-bit
 * word; lane 4l + q loads 4 such words (s = 0..3), the channels its mma block-scale selector addresses.
 * [G, N] is nominal, as for the INT4 scales. Not covered by the fixture: derived from packer.py only.
 */
export function w4a4MicroScaleIndex(n: number, g: number, G: number): number {
  const t = (n / 128) | 0;
  const r = n & 127;
  const s = r >>> 5;
  const q = (r >>> 3) & 3;
  const l = r & 7;
  const go = g >>> 2;
  const gi = g & 3;
  return ((((t * (G >>> 2) + go) * 8 + l) * 4 + q) * 4 + s) * 4 + gi;
}

/** Packs NVFP4 E4M3 micro-scale bytes [N, K/16] into the nunchaku order (four per 32-bit word). */
export function packW4A4MicroScales(scales: Uint8Array, N: number, G: number, name?: string): Uint8Array {
  need(
    N % W4A4_WARP_N === 0 && G % 4 === 0,
    "E_SHAPE",
    `NVFP4 micro-scales need N % 128 = 0 and K/16 % 4 = 0, got [${N}, ${G}]`,
    name,
  );
  need(scales.length === N * G, "E_SHAPE", `scales hold ${scales.length} values, [${N}, ${G}] needs ${N * G}`, name);
  const out = new Uint8Array(N * G);
  for (let n = 0; n < N; n++) for (let g = 0; g < G; g++) out[w4a4MicroScaleIndex(n, g, G)] = scales[n * G + g]!;
  return out;
}

export function unpackW4A4MicroScales(wscales: Uint8Array, N: number, G: number, name?: string): Uint8Array {
  need(
    N % W4A4_WARP_N === 0 && G % 4 === 0 && wscales.length === N * G,
    "E_SHAPE",
    `micro-scales (${wscales.length}) do not fit [${N}, ${G}]`,
    name,
  );
  const out = new Uint8Array(N * G);
  for (let n = 0; n < N; n++) for (let g = 0; g < G; g++) out[n * G + g] = wscales[w4a4MicroScaleIndex(n, g, G)]!;
  return out;
}

// ------------------------------------------------------------------------------------------ low rank

/**
 * Position inside a 16×16 low-rank tile (packer.pack_lowrank_weight, 16-bit elements: reg_k 2, 8 n-lanes,
 * 4 k-lanes, n_pack 2, k_pack 2) of the element at row p (the "n" side), column q (the "k" side):
 * (((nl·4 + kl)·2 + ns)·2 + ks)·2 + rk with p = ns·8 + nl, q = ks·8 + kl·2 + rk — the mma.m16n8k16 fragment order.
 */
export function loraTileIndex(p: number, q: number): number {
  const ns = p >>> 3;
  const nl = p & 7;
  const ks = q >>> 3;
  const kl = (q >>> 1) & 3;
  const rk = q & 1;
  return ((((nl * 4 + kl) * 2 + ns) * 2 + ks) << 1) + rk;
}

/** Flat index of lora_down[r, k] in proj_down (RP = R/16 rank tiles; table below). */
function loraDownIndex(r: number, k: number, RP: number): number {
  return ((k >>> 4) * RP + (r >>> 4)) * 256 + loraTileIndex(r & 15, k & 15);
}
/** Flat index of lora_up[n, r] in proj_up (RP = R/16 rank tiles; table below). */
function loraUpIndex(n: number, r: number, RP: number): number {
  return ((n >>> 4) * RP + (r >>> 4)) * 256 + loraTileIndex(n & 15, r & 15);
}

/**
 * `proj_down` (lora_down): the down projection given as [R, K] (rank × in, as PEFT's lora_A) is stored as
 * [K, R] 16-bit, in 16×16 tiles ordered (K/16, R/16) tile-major; inside a tile rank is the fragment's
 * "n" side and K its "k" side (loraTileIndex(r % 16, k % 16)). R % 16 = 0 and K % 16 = 0 (pad first).
 *
 * | tensor    | shape  | dtype    | order                                                        |
 * | --------- | ------ | -------- | ------------------------------------------------------------ |
 * | lora_down | [R, K] | bf16/f16 | row-major                                                    |
 * | proj_down | [K, R] | bf16/f16 | flat ((k/16)·(R/16) + r/16)·256 + loraTileIndex(r%16, k%16)  |
 */
export function packLoraDown<T extends Elems>(down: T, R: number, K: number, name?: string): T {
  need(
    R % 16 === 0 && K % 16 === 0 && down.length === R * K,
    "E_SHAPE",
    `lora_down [${R}, ${K}] must be [R, K] with R, K multiples of 16`,
    name,
  );
  const out = like(down, R * K);
  const RP = R / 16;
  for (let r = 0; r < R; r++) for (let k = 0; k < K; k++) out[loraDownIndex(r, k, RP)] = down[r * K + k]!;
  return out;
}
export function unpackLoraDown<T extends Elems>(packed: T, R: number, K: number, name?: string): T {
  need(
    R % 16 === 0 && K % 16 === 0 && packed.length === R * K,
    "E_SHAPE",
    `proj_down must hold [${K}, ${R}] with R, K multiples of 16`,
    name,
  );
  const out = like(packed, R * K);
  const RP = R / 16;
  for (let r = 0; r < R; r++) for (let k = 0; k < K; k++) out[r * K + k] = packed[loraDownIndex(r, k, RP)]!;
  return out;
}

/**
 * `proj_up` (lora_up): [N, R] (out × rank, as PEFT's lora_B) stored as [N, R] 16-bit in 16×16 tiles ordered
 * (N/16, R/16) tile-major; N is the fragment's "n" side, rank its "k" side.
 *
 * | tensor  | shape  | dtype    | order                                                       |
 * | ------- | ------ | -------- | ----------------------------------------------------------- |
 * | lora_up | [N, R] | bf16/f16 | row-major                                                   |
 * | proj_up | [N, R] | bf16/f16 | flat ((n/16)·(R/16) + r/16)·256 + loraTileIndex(n%16, r%16) |
 */
export function packLoraUp<T extends Elems>(up: T, N: number, R: number, name?: string): T {
  need(
    R % 16 === 0 && N % 16 === 0 && up.length === N * R,
    "E_SHAPE",
    `lora_up [${N}, ${R}] must be [N, R] with N, R multiples of 16`,
    name,
  );
  const out = like(up, N * R);
  const RP = R / 16;
  for (let n = 0; n < N; n++) for (let r = 0; r < R; r++) out[loraUpIndex(n, r, RP)] = up[n * R + r]!;
  return out;
}
export function unpackLoraUp<T extends Elems>(packed: T, N: number, R: number, name?: string): T {
  need(
    R % 16 === 0 && N % 16 === 0 && packed.length === N * R,
    "E_SHAPE",
    `proj_up must hold [${N}, ${R}] with N, R multiples of 16`,
    name,
  );
  const out = like(packed, N * R);
  const RP = R / 16;
  for (let n = 0; n < N; n++) for (let r = 0; r < R; r++) out[n * R + r] = packed[loraUpIndex(n, r, RP)]!;
  return out;
}
