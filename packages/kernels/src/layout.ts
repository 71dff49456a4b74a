/**
 * CPU weight layouts of @svdquant/kernels and the converters from the checkpoint layout of @svdquant/int4
 * (`quantize(w, N, K, {format, groupSize})` → `{codes: Int8Array [N,K] one code per element, scales: Float32Array
 * [N, K/G]}`) and of the layer quantizer (L_up [N,R], bias [N]).
 *
 * Symbols: M tokens, K in-features, N out-features, G group size (along K), R rank, p panel index,
 * Np = N rounded up to the panel width. Padded columns hold code 0 and scale 0, so they produce zeros.
 *
 * ## W4A4 weight panel (`PackedW4A4`, panel width 8, G = 64)
 *
 * | tensor    | shape                   | dtype   | element                                                                  |
 * | --------- | ----------------------- | ------- | ------------------------------------------------------------------------ |
 * | `qweight` | [Np/8, K/64, 8, 8, 4]   | uint8   | [p, g, q, c, t]: low nibble W[8p+c, 64g+8q+t] + 8, high nibble W[8p+c, 64g+8q+4+t] + 8 |
 * | `wscales` | [Np/8, K/64, 8]         | float32 | [p, g, c] = s_w[8p+c, g]                                                 |
 * | `lup`     | [Np/8, R, 8]            | float32 | [p, r, c] = L_up[8p+c, r]                                                |
 * | `bias`    | [N]                     | float32 | bias[n]                                                                  |
 *
 * One 32-byte row [p, g, q] holds 8 columns × 8 consecutive K: masking the low nibbles gives, per column, a
 * 32-bit lane of 4 codes (k = 64g+8q … +3) that matches a broadcast of 4 activation bytes; shifting by 4 gives
 * the next 4. Codes are stored offset by +8 (unsigned) because vpmaddubsw multiplies unsigned by signed bytes.
 *
 * ## 4-bit activations (`QuantizedActivations`, G = 64)
 *
 * | tensor    | shape      | dtype   | element                                                           |
 * | --------- | ---------- | ------- | ----------------------------------------------------------------- |
 * | `codes`   | [M, K]     | int8    | INT4 code in [-8, 7] (or UINT4 in [0, 15]), one per byte          |
 * | `scales`  | [M, K/64]  | float32 | per token, per 64 channels                                        |
 * | `loraAct` | [M, R]     | float32 | X·L_downᵀ (unsmoothed X; 1/λ is folded into L_down)               |
 *
 * Activation codes stay one per byte: the kernel broadcasts 4 consecutive codes per step, and the
 * activations are produced and consumed once per layer, so nibble packing would only add work.
 *
 * ## f32 panel (`PackedF32`, panel width 16)
 *
 * | tensor   | shape          | dtype   | element                    |
 * | -------- | -------------- | ------- | -------------------------- |
 * | `wpanel` | [Np/16, K, 16] | float32 | [p, k, j] = W[16p+j, k]    |
 * | `bias`   | [N]            | float32 | bias[n]                    |
 *
 * ## W4A16 panel (`PackedW4A16`, panel width 16, any G dividing K)
 *
 * | tensor    | shape            | dtype   | element                                                              |
 * | --------- | ---------------- | ------- | -------------------------------------------------------------------- |
 * | `qweight` | [Np/16, K, 2]    | uint32  | [p, k, h]: bits 4c..4c+3 = nibble of W[16p+8h+c, k]                  |
 * | `wscales` | [Np/16, K/G, 16] | float32 | [p, g, j] = s_w[16p+j, g]                                            |
 * | `lut`     | [16]             | float32 | nibble → value; INT4: nibble = code+8, lut[i] = i−8; NF4: the NF4 table |
 *
 * Weight value = lut[nibble] · scale.
 *
 * ## W8A8 panel (`PackedW8A8`, panel width 8)
 *
 * | tensor    | shape             | dtype   | element                           |
 * | --------- | ----------------- | ------- | --------------------------------- |
 * | `qweight` | [Np/8, K/4, 8, 4] | int8    | [p, k4, c, t] = W[8p+c, 4k4+t]    |
 * | `wscales` | [Np]              | float32 | per output channel                |
 * | `bias`    | [N]               | float32 | bias[n]                           |
 */
import { KernelsError } from "./errors.js";
import { codeRange, dim, finite, multipleOf, tensor } from "./validate.js";

/** W4A4 group size along K (SVDQuant §5 / Nunchaku: INT4 groups of 64 channels). */
export const W4A4_GROUP = 64;

/**
 * NF4 code book (QLoRA, Dettmers et al. 2023, Appendix E; the values bitsandbytes ships): the 16 quantiles of a
 * standard normal, normalized to [-1, 1], with an exact zero.
 */
export const NF4_TABLE: readonly number[] = [
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
];

/**
 * Checkpoint-side quantized tensor, as @svdquant/int4's `quantize` returns it (`spec`, `rows`, `cols` are checked
 * when present, so a tensor quantized in another format or group size cannot be packed by mistake).
 */
export interface QuantizedTensor {
  codes: Int8Array;
  scales: Float32Array;
  spec?: { format: string; groupSize: number };
  rows?: number;
  cols?: number;
}

function checkSpec(
  name: string,
  q: QuantizedTensor,
  N: number,
  K: number,
  formats: string[],
  groupSizes: number[],
): void {
  if (q.rows !== undefined && q.rows !== N)
    throw new KernelsError("E_SHAPE", `quantized tensor has ${q.rows} rows, expected N = ${N}`, { tensor: name });
  if (q.cols !== undefined && q.cols !== K)
    throw new KernelsError("E_SHAPE", `quantized tensor has ${q.cols} columns, expected K = ${K}`, { tensor: name });
  if (q.spec === undefined) return;
  if (!formats.includes(q.spec.format))
    throw new KernelsError(
      "E_ARGUMENT",
      `format ${q.spec.format} cannot be packed here (expected ${formats.join(" or ")})`,
      {
        tensor: name,
      },
    );
  if (!groupSizes.includes(q.spec.groupSize))
    throw new KernelsError("E_ARGUMENT", `group size ${q.spec.groupSize}, expected ${groupSizes.join(" or ")}`, {
      tensor: name,
    });
}

export interface PackedW4A4 {
  readonly kind: "w4a4";
  readonly N: number;
  readonly K: number;
  readonly R: number;
  readonly qweight: Uint8Array;
  readonly wscales: Float32Array;
  readonly lup: Float32Array | null;
  readonly bias: Float32Array | null;
}

export interface PackedF32 {
  readonly kind: "f32";
  readonly N: number;
  readonly K: number;
  readonly wpanel: Float32Array;
  readonly bias: Float32Array | null;
}

export type W4A16Format = "int4" | "nf4";

export interface PackedW4A16 {
  readonly kind: "w4a16";
  readonly N: number;
  readonly K: number;
  readonly G: number;
  readonly format: W4A16Format;
  readonly qweight: Uint32Array;
  readonly wscales: Float32Array;
  readonly lut: Float32Array;
  readonly bias: Float32Array | null;
}

export interface PackedW8A8 {
  readonly kind: "w8a8";
  readonly N: number;
  readonly K: number;
  readonly qweight: Int8Array;
  readonly wscales: Float32Array;
  readonly bias: Float32Array | null;
}

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

function optBias(bias: Float32Array | undefined, N: number, name: string): Float32Array | null {
  if (bias === undefined) return null;
  tensor(`${name}.bias`, bias, Float32Array, [N]);
  finite(`${name}.bias`, bias);
  return bias.slice();
}

/**
 * Packs a W4A4 residual (INT4 codes [N,K] in [-8,7], scales [N,K/64]) with its low-rank up-projection
 * L_up [N,R] and bias [N] into the W4A4 weight panel layout (table above).
 */
export function packW4A4(
  residual: QuantizedTensor,
  N: number,
  K: number,
  opts: { lowRankUp?: Float32Array; rank?: number; bias?: Float32Array; name?: string } = {},
): PackedW4A4 {
  const name = opts.name ?? "w4a4";
  dim("N", N);
  dim("K", K);
  multipleOf("K", K, W4A4_GROUP, "W4A4 groups of 64 along K");
  const G = K / W4A4_GROUP;
  checkSpec(name, residual, N, K, ["int4"], [W4A4_GROUP]);
  const codes = tensor(`${name}.codes`, residual.codes, Int8Array, [N, K]);
  const scales = tensor(`${name}.scales`, residual.scales, Float32Array, [N, G]);
  codeRange(`${name}.codes`, codes, -8, 7);
  finite(`${name}.scales`, scales);
  const R = opts.lowRankUp ? dim("rank", opts.rank ?? opts.lowRankUp.length / N) : 0;
  if (opts.lowRankUp) {
    tensor(`${name}.lowRankUp`, opts.lowRankUp, Float32Array, [N, R]);
    finite(`${name}.lowRankUp`, opts.lowRankUp);
  }
  const Np = roundUp(N, 8);
  const qweight = new Uint8Array((Np * K) / 2).fill(0x88);
  const wscales = new Float32Array(Np * G);
  for (let n = 0; n < N; n++) {
    const p = n >> 3;
    const c = n & 7;
    for (let g = 0; g < G; g++) {
      wscales[(p * G + g) * 8 + c] = scales[n * G + g];
      const src = n * K + g * 64;
      const base = (p * G + g) * 256 + c * 4;
      for (let q = 0; q < 8; q++)
        for (let t = 0; t < 4; t++)
          qweight[base + q * 32 + t] =
            ((codes[src + 8 * q + t] + 8) & 15) | (((codes[src + 8 * q + 4 + t] + 8) & 15) << 4);
    }
  }
  let lup: Float32Array | null = null;
  if (opts.lowRankUp) {
    const L = opts.lowRankUp;
    lup = new Float32Array(Np * R);
    for (let n = 0; n < N; n++) for (let r = 0; r < R; r++) lup[((n >> 3) * R + r) * 8 + (n & 7)] = L[n * R + r];
  }
  return { kind: "w4a4", N, K, R, qweight, wscales, lup, bias: optBias(opts.bias, N, name) };
}

/** Inverse of packW4A4: codes [N,K], scales [N,K/64], L_up [N,R] (or null). */
export function unpackW4A4(w: PackedW4A4): { codes: Int8Array; scales: Float32Array; lowRankUp: Float32Array | null } {
  const { N, K, R } = w;
  const G = K / 64;
  const codes = new Int8Array(N * K);
  const scales = new Float32Array(N * G);
  for (let n = 0; n < N; n++) {
    const p = n >> 3;
    const c = n & 7;
    for (let g = 0; g < G; g++) {
      scales[n * G + g] = w.wscales[(p * G + g) * 8 + c];
      const base = (p * G + g) * 256 + c * 4;
      for (let q = 0; q < 8; q++)
        for (let t = 0; t < 4; t++) {
          const b = w.qweight[base + q * 32 + t];
          codes[n * K + g * 64 + 8 * q + t] = (b & 15) - 8;
          codes[n * K + g * 64 + 8 * q + 4 + t] = (b >> 4) - 8;
        }
    }
  }
  let lowRankUp: Float32Array | null = null;
  if (w.lup) {
    lowRankUp = new Float32Array(N * R);
    for (let n = 0; n < N; n++)
      for (let r = 0; r < R; r++) lowRankUp[n * R + r] = w.lup[((n >> 3) * R + r) * 8 + (n & 7)];
  }
  return { codes, scales, lowRankUp };
}

/** Packs a dense weight W [N,K] (PyTorch Linear layout) into 16-column f32 panels. */
export function packF32(
  w: Float32Array,
  N: number,
  K: number,
  opts: { bias?: Float32Array; name?: string } = {},
): PackedF32 {
  const name = opts.name ?? "f32";
  dim("N", N);
  dim("K", K);
  tensor(`${name}.weight`, w, Float32Array, [N, K]);
  finite(`${name}.weight`, w);
  const wpanel = new Float32Array(roundUp(N, 16) * K);
  writeF32Panels(w, N, K, wpanel);
  return { kind: "f32", N, K, wpanel, bias: optBias(opts.bias, N, name) };
}

/**
 * The panel order of packF32, written into `wpanel` (roundUp(N,16)·K floats, unchecked): element (n, k) goes to
 * (n/16)·K·16 + k·16 + n%16. Padding columns n ≥ N are left as they are (the kernel never stores them).
 */
export function writeF32Panels(w: Float32Array, N: number, K: number, wpanel: Float32Array): void {
  for (let n = 0; n < N; n++) {
    const base = (n >> 4) * K * 16 + (n & 15);
    const row = n * K;
    for (let k = 0; k < K; k++) wpanel[base + k * 16] = w[row + k]!;
  }
}

/** Inverse of packF32. */
export function unpackF32(p: PackedF32): Float32Array {
  const { N, K } = p;
  const w = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    const base = (n >> 4) * K * 16 + (n & 15);
    for (let k = 0; k < K; k++) w[n * K + k] = p.wpanel[base + k * 16];
  }
  return w;
}

function lutFor(format: W4A16Format): Float32Array {
  return format === "nf4" ? Float32Array.from(NF4_TABLE) : Float32Array.from({ length: 16 }, (_, i) => i - 8);
}

/**
 * Packs 4-bit weights for the W4A16 GEMM. `int4`: codes in [-8,7], value = code·scale. `nf4`: codes are NF4 table
 * indices in [0,15], value = NF4_TABLE[code]·scale (scale = absmax of the group). Groups of `groupSize` along K.
 */
export function packW4A16(
  q: QuantizedTensor,
  N: number,
  K: number,
  opts: { format: W4A16Format; groupSize: number; bias?: Float32Array; name?: string },
): PackedW4A16 {
  const name = opts.name ?? "w4a16";
  dim("N", N);
  dim("K", K);
  const G = dim("groupSize", opts.groupSize);
  multipleOf("K", K, G, "groups along K");
  if (opts.format !== "int4" && opts.format !== "nf4")
    throw new KernelsError("E_ARGUMENT", `W4A16 format must be "int4" or "nf4", got ${String(opts.format)}`);
  checkSpec(name, q, N, K, [opts.format], [G]);
  const codes = tensor(`${name}.codes`, q.codes, Int8Array, [N, K]);
  const scales = tensor(`${name}.scales`, q.scales, Float32Array, [N, K / G]);
  const off = opts.format === "int4" ? 8 : 0;
  codeRange(`${name}.codes`, codes, -off, 15 - off);
  finite(`${name}.scales`, scales);
  const Np = roundUp(N, 16);
  const KG = K / G;
  const qweight = new Uint32Array((Np / 8) * K);
  if (off) {
    // padded columns: code 0 (nibble 8) with scale 0
    for (let n = N; n < Np; n++)
      for (let k = 0; k < K; k++) {
        const i = ((n >> 4) * K + k) * 2 + ((n >> 3) & 1);
        qweight[i] = (qweight[i] | (8 << (4 * (n & 7)))) >>> 0;
      }
  }
  for (let n = 0; n < N; n++) {
    const h = (n >> 3) & 1;
    const sh = 4 * (n & 7);
    const base = (n >> 4) * K * 2 + h;
    for (let k = 0; k < K; k++) {
      const i = base + k * 2;
      qweight[i] = (qweight[i] | (((codes[n * K + k] + off) & 15) << sh)) >>> 0;
    }
  }
  const wscales = new Float32Array((Np / 16) * KG * 16);
  for (let n = 0; n < N; n++)
    for (let g = 0; g < KG; g++) wscales[((n >> 4) * KG + g) * 16 + (n & 15)] = scales[n * KG + g];
  return {
    kind: "w4a16",
    N,
    K,
    G,
    format: opts.format,
    qweight,
    wscales,
    lut: lutFor(opts.format),
    bias: optBias(opts.bias, N, name),
  };
}

/** Inverse of packW4A16: the checkpoint codes [N,K] and scales [N,K/G]. */
export function unpackW4A16(p: PackedW4A16): QuantizedTensor {
  const { N, K, G } = p;
  const KG = K / G;
  const off = p.format === "int4" ? 8 : 0;
  const codes = new Int8Array(N * K);
  const scales = new Float32Array(N * KG);
  for (let n = 0; n < N; n++) {
    const base = (n >> 4) * K * 2 + ((n >> 3) & 1);
    const sh = 4 * (n & 7);
    for (let k = 0; k < K; k++) codes[n * K + k] = ((p.qweight[base + k * 2] >>> sh) & 15) - off;
    for (let g = 0; g < KG; g++) scales[n * KG + g] = p.wscales[((n >> 4) * KG + g) * 16 + (n & 15)];
  }
  return { codes, scales };
}

/** Packs INT8 weights (codes [N,K] in [-127,127], per-output-channel scales [N]) for the W8A8 GEMM. */
export function packW8A8(
  q: QuantizedTensor,
  N: number,
  K: number,
  opts: { bias?: Float32Array; name?: string } = {},
): PackedW8A8 {
  const name = opts.name ?? "w8a8";
  dim("N", N);
  dim("K", K);
  multipleOf("K", K, 4, "4 codes per 32-bit lane");
  checkSpec(name, q, N, K, ["int8"], [0, K]); // @svdquant/int4: groupSize 0 = per row
  const codes = tensor(`${name}.codes`, q.codes, Int8Array, [N, K]);
  const scales = tensor(`${name}.scales`, q.scales, Float32Array, [N]);
  // -128 is excluded: the AVX2 path negates weight bytes (vpsignb). Quantize with F32 scales (amax/127) to stay inside.
  codeRange(`${name}.codes`, codes, -127, 127);
  finite(`${name}.scales`, scales);
  const Np = roundUp(N, 8);
  const qweight = new Int8Array(Np * K);
  for (let n = 0; n < N; n++) {
    const base = (n >> 3) * K * 8 + (n & 7) * 4;
    for (let k = 0; k < K; k++) qweight[base + (k >> 2) * 32 + (k & 3)] = codes[n * K + k];
  }
  const wscales = new Float32Array(Np);
  wscales.set(scales);
  return { kind: "w8a8", N, K, qweight, wscales, bias: optBias(opts.bias, N, name) };
}

/** Inverse of packW8A8. */
export function unpackW8A8(p: PackedW8A8): QuantizedTensor {
  const { N, K } = p;
  const codes = new Int8Array(N * K);
  for (let n = 0; n < N; n++) {
    const base = (n >> 3) * K * 8 + (n & 7) * 4;
    for (let k = 0; k < K; k++) codes[n * K + k] = p.qweight[base + (k >> 2) * 32 + (k & 3)];
  }
  return { codes, scales: p.wscales.slice(0, N) };
}
