// Whole SVDQuant W4A4 layers and W4A16 layers ↔ the tensors of a nunchaku checkpoint, with padding.
import {
  bf16BitsToF32,
  decodeToFloat32,
  e4m3BitsToF32,
  encodeFloats,
  f16BitsToF32,
  f32ToE4m3Bits,
  Tensor,
} from "@svdquant/tensor";
import { QuantError } from "./errors.js";
import {
  packLoraDown,
  packLoraUp,
  packW4A4MicroScales,
  packW4A4Scales,
  packW4A4Vector,
  packW4A4Weight,
  unpackLoraDown,
  unpackLoraUp,
  unpackW4A4MicroScales,
  unpackW4A4Scales,
  unpackW4A4Vector,
  unpackW4A4Weight,
  W4A4_PAD_K,
  W4A4_WARP_N,
} from "./nunchaku-w4a4.js";
import { activationSpecFor, INT4_GROUP_SIZE, NVFP4_GROUP_SIZE, type QuantizedLinear } from "./record.js";
import {
  packW4A16Groups,
  packW4A16Weight,
  unpackW4A16Groups,
  unpackW4A16Weight,
  type W4A16Quantized,
  w4a16GroupRows,
} from "./w4a16.js";

export type HalfDType = "BF16" | "F16";

const roundUp = (x: number, m: number) => Math.ceil(x / m) * m;
type Mutable<T> = { -readonly [P in keyof T]: T[P] };

/** Copies a row-major [rows, cols] matrix into a zero-initialized (or `fill`) [Rows, Cols] one. */
function padMatrix<T extends Float32Array | Int8Array>(
  src: T,
  rows: number,
  cols: number,
  Rows: number,
  Cols: number,
  fill = 0,
): T {
  if (rows === Rows && cols === Cols) return src;
  const out = new (src.constructor as new (n: number) => T)(Rows * Cols);
  if (fill !== 0) out.fill(fill);
  for (let r = 0; r < rows; r++) out.set(src.subarray(r * cols, (r + 1) * cols), r * Cols);
  return out;
}
function cropMatrix<T extends Float32Array | Int8Array>(
  src: T,
  Rows: number,
  Cols: number,
  rows: number,
  cols: number,
): T {
  if (rows === Rows && cols === Cols) return src;
  const out = new (src.constructor as new (n: number) => T)(rows * cols);
  for (let r = 0; r < rows; r++) out.set(src.subarray(r * Cols, r * Cols + cols), r * cols);
  return out;
}

/** Encodes float values to 16-bit storage, throwing if any value is not exactly representable. */
function half(values: Float32Array, dtype: HalfDType, what: string, exact: boolean, name?: string): Uint16Array {
  const bits = encodeFloats(dtype, values) as Uint16Array;
  if (exact) {
    const dec = dtype === "BF16" ? bf16BitsToF32 : f16BitsToF32;
    for (let i = 0; i < values.length; i++)
      if (dec(bits[i]!) !== values[i])
        throw new QuantError(
          "E_ARGUMENT",
          `${what} value ${values[i]} at ${i} is not a ${dtype} value; quantize with scaleDtype ${dtype}`,
          name,
        );
  }
  return bits;
}

function representable(v: number, dtype: HalfDType): boolean {
  const b = encodeFloats(dtype, [v]) as Uint16Array;
  return (dtype === "BF16" ? bf16BitsToF32 : f16BitsToF32)(b[0]!) === v;
}

function vec(t: Tensor | undefined, what: string, len: number, name?: string): Float32Array {
  if (t === undefined) throw new QuantError("E_CODE", `missing tensor ${what}`, name);
  if (t.numel !== len)
    throw new QuantError("E_CODE", `${what} has shape [${t.shape.join(", ")}], expected ${len} elements`, name);
  return decodeToFloat32(t.dtype, t.data);
}

/**
 * Packs a W4A4 layer into the tensors of nunchaku's `SVDQW4A4Linear` (names as in nunchaku ≥ 0.3 / the v2
 * FLUX loader; older checkpoints call proj_down/proj_up `lora_down`/`lora_up` and smooth_factor `smooth`).
 * Padding: N and K up to multiples of 128, R up to a multiple of 16. Pad values: codes 0, int4 scales 1
 * (deepcompressor's pad of the scales), micro-scales 0, lora 0, bias 0, smooth factors 1 (a divisor).
 *
 * | name               | shape            | dtype        | layout                                        |
 * | ------------------ | ---------------- | ------------ | --------------------------------------------- |
 * | qweight            | [Np, Kp/2]       | I8           | packW4A4Weight (MMA B-fragment tiles)         |
 * | wscales (int4)     | [Kp/64, Np]      | BF16/F16     | packW4A4Scales (lane-permuted, tile-major)    |
 * | wscales (nvfp4)    | [Kp/16, Np]      | F8_E4M3      | packW4A4MicroScales (4 per 32-bit word)       |
 * | proj_down          | [Kp, Rp]         | BF16/F16     | packLoraDown (16×16 fragments)                |
 * | proj_up            | [Np, Rp]         | BF16/F16     | packLoraUp (16×16 fragments)                  |
 * | bias               | [Np]             | BF16/F16     | packW4A4Vector                                |
 * | smooth_factor(_orig) | [Kp]           | BF16/F16     | packW4A4Vector                                |
 * | wtscale (nvfp4)    | [1]              | BF16/F16     | the per-tensor global scale                   |
 * | wcscales (nvfp4)   | [Np]             | BF16/F16     | packW4A4Vector                                |
 */
export function packW4A4Layer(
  layer: QuantizedLinear,
  opts: { dtype?: HalfDType; name?: string } = {},
): Record<string, Tensor> {
  const dtype = opts.dtype ?? "BF16";
  const name = opts.name;
  const q = layer.residual;
  const fmt = q.spec.format;
  const N = q.rows;
  const K = q.cols;
  const R = layer.rank;
  if (fmt !== "int4" && fmt !== "nvfp4")
    throw new QuantError("E_ARGUMENT", `W4A4 layers hold int4 or nvfp4 weights, not ${fmt}`, name);
  const G = fmt === "int4" ? INT4_GROUP_SIZE : NVFP4_GROUP_SIZE;
  if (q.spec.groupSize !== G)
    throw new QuantError("E_ARGUMENT", `${fmt} W4A4 layers use groups of ${G}, got ${q.spec.groupSize}`, name);
  if (layer.lowRankDown.length !== R * K || layer.lowRankUp.length !== N * R)
    throw new QuantError("E_SHAPE", `lowRankDown must be [R=${R}, K=${K}] and lowRankUp [N=${N}, R=${R}]`, name);
  const Np = roundUp(N, W4A4_WARP_N);
  const Kp = roundUp(K, W4A4_PAD_K);
  const Rp = roundUp(Math.max(R, 1), 16);
  const out: Record<string, Tensor> = {};

  out.qweight = new Tensor("I8", [Np, Kp / 2], packW4A4Weight(padMatrix(q.codes, N, K, Np, Kp), Np, Kp, name));
  if (fmt === "int4") {
    const s = padMatrix(q.scales, N, K / G, Np, Kp / G, 1);
    out.wscales = new Tensor(
      dtype,
      [Kp / G, Np],
      packW4A4Scales(half(s, dtype, "scale", true, name), Np, Kp / G, name),
    );
  } else {
    const gs = q.spec.globalScale ?? 1;
    if (!representable(gs, dtype))
      throw new QuantError(
        "E_ARGUMENT",
        `nvfp4 globalScale ${gs} is not a ${dtype} value (wtscale is stored in ${dtype}); see nvfp4GlobalScale`,
        name,
      );
    const s = padMatrix(q.scales, N, K / G, Np, Kp / G, 0);
    const bytes = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) {
      const v = Math.fround(s[i]! / gs);
      const b = f32ToE4m3Bits(v);
      if (Math.abs(e4m3BitsToF32(b) * gs - s[i]!) > Math.abs(s[i]!) * 2 ** -20)
        throw new QuantError(
          "E_ARGUMENT",
          `nvfp4 scale ${s[i]} at ${i} is not an E4M3 value × global scale ${gs}`,
          name,
        );
      bytes[i] = b;
    }
    out.wscales = new Tensor("F8_E4M3", [Kp / G, Np], packW4A4MicroScales(bytes, Np, Kp / G, name));
    out.wtscale = new Tensor(dtype, [1], encodeFloats(dtype, [gs]) as Uint16Array);
    const wc = layer.wcscales ?? new Float32Array(N).fill(1);
    if (wc.length !== N) throw new QuantError("E_SHAPE", `wcscales must have N = ${N} values`, name);
    out.wcscales = new Tensor(
      dtype,
      [Np],
      packW4A4Vector(half(padMatrix(wc, 1, N, 1, Np, 1), dtype, "wcscales", false, name)),
    );
  }
  const down = padMatrix(layer.lowRankDown, R, K, Rp, Kp);
  out.proj_down = new Tensor(dtype, [Kp, Rp], packLoraDown(half(down, dtype, "lora_down", false, name), Rp, Kp, name));
  const up = padMatrix(layer.lowRankUp, N, R, Np, Rp);
  out.proj_up = new Tensor(dtype, [Np, Rp], packLoraUp(half(up, dtype, "lora_up", false, name), Np, Rp, name));
  if (layer.bias !== undefined) {
    if (layer.bias.length !== N) throw new QuantError("E_SHAPE", `bias must have N = ${N} values`, name);
    out.bias = new Tensor(
      dtype,
      [Np],
      packW4A4Vector(half(padMatrix(layer.bias, 1, N, 1, Np), dtype, "bias", false, name)),
    );
  }
  for (const [key, v] of [
    ["smooth_factor", layer.smooth],
    ["smooth_factor_orig", layer.smoothOrig ?? layer.smooth],
  ] as const) {
    const s = v ?? new Float32Array(K).fill(1);
    if (s.length !== K) throw new QuantError("E_SHAPE", `${key} must have K = ${K} values`, name);
    out[key] = new Tensor(dtype, [Kp], packW4A4Vector(half(padMatrix(s, 1, K, 1, Kp, 1), dtype, key, false, name)));
  }
  return out;
}

/**
 * Inverse of packW4A4Layer: reads the nunchaku tensors (also the older names lora_down/lora_up/smooth) back into
 * a QuantizedLinear cropped to the logical sizes (N, K, R; default: the padded ones). Values come back as float32.
 */
export function unpackW4A4Layer(
  tensors: Readonly<Record<string, Tensor>> | ReadonlyMap<string, Tensor>,
  dims: { N?: number; K?: number; rank?: number; name?: string; act?: QuantizedLinear["act"] } = {},
): QuantizedLinear {
  const get = (k: string) => (tensors instanceof Map ? tensors.get(k) : (tensors as Record<string, Tensor>)[k]);
  const name = dims.name;
  const qw = get("qweight");
  const ws = get("wscales");
  if (qw === undefined || ws === undefined)
    throw new QuantError("E_CODE", "W4A4 layer needs qweight and wscales", name);
  if (qw.dtype !== "I8" || qw.rank !== 2)
    throw new QuantError("E_CODE", `qweight must be I8 [N, K/2], got ${qw.dtype} [${qw.shape}]`, name);
  const Np = qw.shape[0]!;
  const Kp = qw.shape[1]! * 2;
  const N = dims.N ?? Np;
  const K = dims.K ?? Kp;
  const fp4 = ws.dtype === "F8_E4M3";
  const G = fp4 ? NVFP4_GROUP_SIZE : INT4_GROUP_SIZE;
  if (ws.numel !== (Np * Kp) / G)
    throw new QuantError("E_CODE", `wscales has ${ws.numel} values, expected ${(Np * Kp) / G}`, name);
  const codes = cropMatrix(unpackW4A4Weight(qw.data as Int8Array, Np, Kp, !fp4, name), Np, Kp, N, K);
  let scales: Float32Array;
  let globalScale: number | undefined;
  if (fp4) {
    const bytes = unpackW4A4MicroScales(ws.data as Uint8Array, Np, Kp / G, name);
    const wt = get("wtscale");
    globalScale = wt === undefined ? undefined : vec(wt, "wtscale", 1, name)[0]!;
    const f = new Float32Array(bytes.length);
    for (let i = 0; i < f.length; i++) f[i] = e4m3BitsToF32(bytes[i]!) * (globalScale ?? 1);
    scales = cropMatrix(f, Np, Kp / G, N, K / G);
  } else {
    scales = cropMatrix(
      decodeToFloat32(ws.dtype, unpackW4A4Scales(ws.data as Uint16Array, Np, Kp / G, name)),
      Np,
      Kp / G,
      N,
      K / G,
    );
  }
  const spec = fp4
    ? { format: "nvfp4" as const, groupSize: 16, ...(globalScale !== undefined ? { globalScale } : {}) }
    : { format: "int4" as const, groupSize: 64, scaleDtype: ws.dtype as HalfDType };
  const pd = get("proj_down") ?? get("lora_down");
  const pu = get("proj_up") ?? get("lora_up");
  if (pd === undefined || pu === undefined)
    throw new QuantError("E_CODE", "W4A4 layer needs proj_down and proj_up", name);
  const Rp = pd.shape[1]!;
  const R = dims.rank ?? Rp;
  const down = decodeToFloat32(pd.dtype, unpackLoraDown(pd.data as Uint16Array, Rp, Kp, name));
  const up = decodeToFloat32(pu.dtype, unpackLoraUp(pu.data as Uint16Array, Np, Rp, name));
  const layer: Mutable<QuantizedLinear> = {
    ...(name !== undefined ? { name } : {}),
    residual: { spec, rows: N, cols: K, codes, scales },
    lowRankDown: cropMatrix(down, Rp, Kp, R, K),
    lowRankUp: cropMatrix(up, Np, Rp, N, R),
    rank: R,
    act: dims.act ?? activationSpecFor(fp4 ? "nvfp4" : "int4"),
  };
  const v1 = (t: Tensor | undefined, len: number, keep: number) => {
    if (t === undefined) return undefined;
    if (t.numel !== len || (t.dtype !== "BF16" && t.dtype !== "F16"))
      throw new QuantError(
        "E_CODE",
        `vector ${t.dtype} [${t.shape.join(", ")}] does not fit ${len} 16-bit values`,
        name,
      );
    return decodeToFloat32(t.dtype, unpackW4A4Vector(t.data as Uint16Array, name)).slice(0, keep);
  };
  const bias = v1(get("bias"), Np, N);
  if (bias !== undefined) layer.bias = bias;
  const sm = v1(get("smooth_factor") ?? get("smooth"), Kp, K);
  if (sm !== undefined) layer.smooth = sm;
  const so = v1(get("smooth_factor_orig") ?? get("smooth_orig"), Kp, K);
  if (so !== undefined) layer.smoothOrig = so;
  const wc = v1(get("wcscales"), Np, N);
  if (wc !== undefined && fp4) layer.wcscales = wc;
  return layer;
}

/**
 * Packs a W4A16 (AdaNorm modulation) layer into nunchaku's `AWQW4A16Linear` tensors.
 *
 * | name    | shape        | dtype    | layout                                          |
 * | ------- | ------------ | -------- | ----------------------------------------------- |
 * | qweight | [N/4, K/2]   | I32      | packW4A16Weight (TinyChat pack_w4)              |
 * | wscales | [Gp, N]      | BF16/F16 | transpose of [N, G]; Gp = w4a16GroupRows(K, G)  |
 * | wzeros  | [Gp, N]      | BF16/F16 | transpose of the zeros (−z·scale)               |
 * | bias    | [N]          | BF16/F16 | plain                                           |
 */
export function packW4A16Layer(
  q: W4A16Quantized,
  bias?: Float32Array,
  opts: { dtype?: HalfDType; name?: string } = {},
): Record<string, Tensor> {
  const dtype = opts.dtype ?? "BF16";
  const { rows: N, cols: K, groupSize } = q;
  const G = K / groupSize;
  const Gp = w4a16GroupRows(K, groupSize);
  const out: Record<string, Tensor> = {
    qweight: new Tensor("I32", [N / 4, K / 2], packW4A16Weight(q.codes, N, K, opts.name)),
    wscales: new Tensor(dtype, [Gp, N], packW4A16Groups(half(q.scales, dtype, "scale", true, opts.name), N, G, Gp)),
    wzeros: new Tensor(dtype, [Gp, N], packW4A16Groups(half(q.zeros, dtype, "zero", true, opts.name), N, G, Gp)),
  };
  if (bias !== undefined) out.bias = new Tensor(dtype, [N], encodeFloats(dtype, bias) as Uint16Array);
  return out;
}

/** Inverse of packW4A16Layer (group size 64 unless given). */
export function unpackW4A16Layer(
  tensors: Readonly<Record<string, Tensor>>,
  opts: { groupSize?: number; name?: string } = {},
): { weight: W4A16Quantized; bias?: Float32Array } {
  const { qweight, wscales, wzeros, bias } = tensors;
  if (qweight === undefined || wscales === undefined || wzeros === undefined)
    throw new QuantError("E_CODE", "W4A16 layer needs qweight, wscales and wzeros", opts.name);
  const N = qweight.shape[0]! * 4;
  const K = qweight.shape[1]! * 2;
  const g = opts.groupSize ?? 64;
  const G = K / g;
  const weight: W4A16Quantized = {
    rows: N,
    cols: K,
    groupSize: g,
    codes: unpackW4A16Weight(qweight.data as Int32Array, N, K, opts.name),
    scales: decodeToFloat32(wscales.dtype, unpackW4A16Groups(wscales.data as Uint16Array, N, G)),
    zeros: decodeToFloat32(wzeros.dtype, unpackW4A16Groups(wzeros.data as Uint16Array, N, G)),
  };
  return bias === undefined ? { weight } : { weight, bias: decodeToFloat32(bias.dtype, bias.data) };
}
