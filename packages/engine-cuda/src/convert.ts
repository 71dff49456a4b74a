// Host side of loading: turns a diffusers-layout FLUX or PixArt state dict, whose linear layers may be replaced by packed
// SVDQuant layers (nunchaku tensors as @svdquant/int4 packW4A4Layer / packW4A16Layer write them), into the named
// device tensors of the engine (table in kernels/cuda/engine/flux.h). Pure host logic, no device needed.
import {
  P2_LAYER_TENSORS,
  p2LowRankColumns,
  packNibbles,
  QuantError,
  type QuantizedLinear,
  unpackLoraDown,
  unpackLoraUp,
  unpackP2Layer,
  unpackW4A4Vector,
  unpackW4A16Layer,
} from "@svdquant/int4";
import type { FluxConfig, PixArtConfig } from "@svdquant/models";
import { decodeToFloat32, encodeFloats, type Tensor } from "@svdquant/tensor";
import { EngineError } from "./errors.js";
import { loadAddon } from "./native.js";

/** Where weights come from: a diffusers state dict (TensorSource fits) with packed layers under `<layer>.qweight`… */
export interface WeightSource {
  has(name: string): boolean;
  read(name: string): Promise<Tensor>;
}

/** One device tensor of the engine, or an integer flag. */
export type EngineItem =
  | { kind: "tensor"; name: string; data: Uint8Array | Int8Array | Uint16Array | Int32Array | Float32Array }
  | { kind: "int"; name: string; value: number };

/** One engine linear: its engine name, the state-dict layers stacked along N, and K. */
export interface EngineLinear {
  name: string;
  sources: string[];
  N: number[];
  K: number;
}

export interface ConvertOptions {
  /**
   * Which W4A4 layers take unsigned activation codes of (x + 0.171875)/λ (inputs after GELU). Default: the FFN
   * down projections `ff.net.2` and `ff_context.net.2` (nunchaku's convention; their bias then carries the shift
   * correction, as the checkpoint's does).
   */
  unsignedLayer?: (layer: string) => boolean;
  /**
   * Whether the engine's int4p2 kernels take in-features K. Default: the addon's `p2SupportedK`
   * (kernels/cuda/p2_fp8.h svdq_p2_supported_k, the one list); without an addon there is no engine to load into and
   * nothing is checked here (the engine's prepare checks again).
   */
  p2SupportedK?: (K: number) => boolean;
}

/** int4p2 rank: the FP8 kernels take R = 0 or 32 (kernels/cuda/p2_fp8.h, svdq_p2_act_args.R). */
const P2_RANKS: readonly number[] = [0, 32];

export const defaultUnsignedLayer = (layer: string): boolean => /\.ff(_context)?\.net\.2$/.test(layer);

/** The engine's linears of a FLUX config, with the q/k/v groups fused (engine names `attn.qkv`, `attn.add_qkv`). */
export function fluxEngineLinears(c: FluxConfig): EngineLinear[] {
  const d = c.numAttentionHeads * c.attentionHeadDim;
  const L: EngineLinear[] = [];
  const lin = (name: string, N: number, K: number, sources = [name]) =>
    L.push({ name, sources, N: sources.length === 1 ? [N] : sources.map(() => N / sources.length), K });
  lin("time_text_embed.timestep_embedder.linear_1", d, 256);
  lin("time_text_embed.timestep_embedder.linear_2", d, d);
  if (c.guidanceEmbeds) {
    lin("time_text_embed.guidance_embedder.linear_1", d, 256);
    lin("time_text_embed.guidance_embedder.linear_2", d, d);
  }
  lin("time_text_embed.text_embedder.linear_1", d, c.pooledProjectionDim);
  lin("time_text_embed.text_embedder.linear_2", d, d);
  lin("context_embedder", d, c.jointAttentionDim);
  lin("x_embedder", d, c.inChannels);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `transformer_blocks.${i}.`;
    lin(`${p}norm1.linear`, 6 * d, d);
    lin(`${p}norm1_context.linear`, 6 * d, d);
    lin(`${p}attn.qkv`, 3 * d, d, [`${p}attn.to_q`, `${p}attn.to_k`, `${p}attn.to_v`]);
    lin(`${p}attn.add_qkv`, 3 * d, d, [`${p}attn.add_q_proj`, `${p}attn.add_k_proj`, `${p}attn.add_v_proj`]);
    lin(`${p}attn.to_out.0`, d, d);
    lin(`${p}attn.to_add_out`, d, d);
    lin(`${p}ff.net.0.proj`, 4 * d, d);
    lin(`${p}ff.net.2`, d, 4 * d);
    lin(`${p}ff_context.net.0.proj`, 4 * d, d);
    lin(`${p}ff_context.net.2`, d, 4 * d);
  }
  for (let i = 0; i < c.numSingleLayers; i++) {
    const p = `single_transformer_blocks.${i}.`;
    lin(`${p}norm.linear`, 3 * d, d);
    lin(`${p}attn.qkv`, 3 * d, d, [`${p}attn.to_q`, `${p}attn.to_k`, `${p}attn.to_v`]);
    lin(`${p}proj_mlp`, 4 * d, d);
    lin(`${p}proj_out`, d, 5 * d);
  }
  lin("norm_out.linear", 2 * d, d);
  lin("proj_out", c.patchSize * c.patchSize * c.outChannels, d);
  return L;
}

/** The RMSNorm weights [Dh] of the attention blocks (engine names = state-dict names). */
export function fluxEngineNorms(c: FluxConfig): string[] {
  const out: string[] = [];
  for (let i = 0; i < c.numLayers; i++)
    for (const n of ["norm_q", "norm_k", "norm_added_q", "norm_added_k"])
      out.push(`transformer_blocks.${i}.attn.${n}.weight`);
  for (let i = 0; i < c.numSingleLayers; i++)
    for (const n of ["norm_q", "norm_k"]) out.push(`single_transformer_blocks.${i}.attn.${n}.weight`);
  return out;
}

type Kind = "dense" | "w4a4" | "w4a16" | "int4p2";

function kindOf(src: WeightSource, layer: string): Kind {
  if (src.has(`${layer}.p2_codes`)) return "int4p2";
  if (src.has(`${layer}.qweight`)) {
    // the dtype tells the packers apart: I8 [N, K/2] (W4A4) vs I32 [N/4, K/2] (W4A16 / AWQ)
    return src.has(`${layer}.wzeros`) ? "w4a16" : "w4a4";
  }
  if (src.has(`${layer}.weight`)) return "dense";
  throw new EngineError("E_CHECKPOINT", "no weight (.weight) and no packed layer (.qweight, .p2_codes)", layer);
}

function bf16(t: Tensor, where: string): Uint16Array {
  if (t.dtype === "BF16") return t.data as Uint16Array;
  if (t.dtype === "F32" || t.dtype === "F16" || t.dtype === "F64")
    return encodeFloats("BF16", decodeToFloat32(t.dtype, t.data)) as Uint16Array;
  throw new EngineError("E_CHECKPOINT", `dtype ${t.dtype} cannot be a 16-bit weight`, where);
}

function shapeIs(t: Tensor, shape: number[], where: string): void {
  if (t.shape.length !== shape.length || t.shape.some((v, i) => v !== shape[i]))
    throw new EngineError("E_CHECKPOINT", `shape [${t.shape.join(", ")}], expected [${shape.join(", ")}]`, where);
}

function concat<T extends Uint8Array | Uint16Array>(parts: T[]): T {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new (parts[0]!.constructor as new (n: number) => T)(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function sameBits(a: Uint16Array, b: Uint16Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Repacks a W4A16 layer (codes 0..15 [N, K], scales/zeros [N, K/64]) into the engine's GEMV layout: codes as
 * nibbles of bytes (n·K + k)/2, low nibble for even k; scales and zeros row-major [N, K/64] bf16.
 */
export function w4a16EngineLayout(
  codes: Int8Array,
  scales: Float32Array,
  zeros: Float32Array,
  N: number,
  K: number,
): { codes: Uint8Array; scales: Uint16Array; zeros: Uint16Array } {
  if (K % 64 !== 0 || codes.length !== N * K || scales.length !== (N * K) / 64 || zeros.length !== scales.length)
    throw new EngineError("E_CHECKPOINT", `W4A16 layer does not fit N=${N}, K=${K}, group 64`);
  const out = new Uint8Array((N * K) / 2);
  for (let i = 0; i < N * K; i += 2) out[i / 2] = (codes[i]! & 15) | ((codes[i + 1]! & 15) << 4);
  return {
    codes: out,
    scales: encodeFloats("BF16", scales) as Uint16Array,
    zeros: encodeFloats("BF16", zeros) as Uint16Array,
  };
}

/**
 * Stacks W4A4 layers that read one input along N: qweight / wscales chunks of 128 output rows are independent in
 * the checkpoint layouts (chunk-major in n), so they concatenate; the low-rank branches become one of rank ΣR
 * (lora_down stacked [ΣR, K], lora_up block-diagonal [ΣN, ΣR]); the smooth factor must be the same.
 */
export function stackW4A4(
  parts: {
    N: number;
    R: number;
    qweight: Uint8Array;
    wscales: Uint16Array;
    down: Uint16Array;
    up: Uint16Array;
    bias?: Uint16Array;
    smooth?: Uint16Array;
  }[],
  where: string,
): {
  qweight: Uint8Array;
  wscales: Uint16Array;
  down: Uint16Array;
  up: Uint16Array;
  bias?: Uint16Array;
  smooth?: Uint16Array;
  R: number;
  N: number;
} {
  const N = parts.reduce((a, p) => a + p.N, 0);
  const R = parts.reduce((a, p) => a + p.R, 0);
  const up = new Uint16Array(N * R);
  let n0 = 0;
  let r0 = 0;
  for (const p of parts) {
    for (let n = 0; n < p.N; n++) for (let r = 0; r < p.R; r++) up[(n0 + n) * R + r0 + r] = p.up[n * p.R + r]!;
    n0 += p.N;
    r0 += p.R;
  }
  const s0 = parts[0]!.smooth;
  for (const p of parts)
    if ((p.smooth === undefined) !== (s0 === undefined) || (s0 && p.smooth && !sameBits(s0, p.smooth)))
      throw new EngineError("E_CHECKPOINT", "layers of one input group must share smooth_factor", where);
  const hasBias = parts.some((p) => p.bias);
  return {
    qweight: concat(parts.map((p) => p.qweight)),
    wscales: concat(parts.map((p) => p.wscales)),
    down: concat(parts.map((p) => p.down)),
    up,
    ...(hasBias ? { bias: concat(parts.map((p) => p.bias ?? new Uint16Array(p.N))) } : {}),
    ...(s0 ? { smooth: s0 } : {}),
    R,
    N,
  };
}

async function readW4A4(src: WeightSource, layer: string, N: number, K: number) {
  const get = (k: string) => src.read(`${layer}.${k}`);
  const qw = await get("qweight");
  shapeIs(qw, [N, K / 2], `${layer}.qweight`);
  if (qw.dtype !== "I8" && qw.dtype !== "U8")
    throw new EngineError("E_CHECKPOINT", `dtype ${qw.dtype}, expected I8`, `${layer}.qweight`);
  const ws = await get("wscales");
  shapeIs(ws, [K / 64, N], `${layer}.wscales`);
  if (ws.dtype !== "BF16")
    throw new EngineError(
      "E_CHECKPOINT",
      `dtype ${ws.dtype}: the engine runs bf16 (INT4 g64 scales in BF16)`,
      `${layer}.wscales`,
    );
  const pd = await get("proj_down");
  const Rp = pd.shape[1]!;
  shapeIs(pd, [K, Rp], `${layer}.proj_down`);
  const pu = await get("proj_up");
  shapeIs(pu, [N, Rp], `${layer}.proj_up`);
  const down = unpackLoraDown(bf16(pd, `${layer}.proj_down`), Rp, K, layer);
  const up = unpackLoraUp(bf16(pu, `${layer}.proj_up`), N, Rp, layer);
  let bias: Uint16Array | undefined;
  if (src.has(`${layer}.bias`)) {
    const b = await get("bias");
    shapeIs(b, [N], `${layer}.bias`);
    bias = unpackW4A4Vector(bf16(b, `${layer}.bias`), layer);
  }
  let smooth: Uint16Array | undefined;
  if (src.has(`${layer}.smooth_factor`)) {
    const s = await get("smooth_factor");
    shapeIs(s, [K], `${layer}.smooth_factor`);
    smooth = unpackW4A4Vector(bf16(s, `${layer}.smooth_factor`), layer);
  }
  const qbytes = new Uint8Array(qw.data.buffer, qw.data.byteOffset, qw.data.byteLength);
  return {
    N,
    R: Rp,
    qweight: qbytes,
    wscales: ws.data as Uint16Array,
    down,
    up,
    ...(bias ? { bias } : {}),
    ...(smooth ? { smooth } : {}),
  };
}

/** One int4p2 layer of the checkpoint (packP2Layer's tensors under `layer.`), checked against the model's N and K. */
async function readP2(src: WeightSource, layer: string, N: number, K: number): Promise<QuantizedLinear> {
  const t: Record<string, Tensor> = {};
  for (const k of P2_LAYER_TENSORS) if (src.has(`${layer}.${k}`)) t[k] = await src.read(`${layer}.${k}`);
  let rec: QuantizedLinear;
  try {
    rec = unpackP2Layer(t, { name: layer });
  } catch (e) {
    if (!(e instanceof QuantError)) throw e;
    const msg = e.message.replace(/^tensor "[^"]*": /, "");
    throw new EngineError("E_CHECKPOINT", msg, e.tensor ?? layer, e);
  }
  const q = rec.residual;
  if (q.rows !== N || q.cols !== K)
    throw new EngineError(
      "E_CHECKPOINT",
      `int4p2 layer is [N=${q.rows}, K=${q.cols}], the model's layer is [N=${N}, K=${K}]`,
      `${layer}.p2_codes`,
    );
  if (!P2_RANKS.includes(rec.rank))
    throw new EngineError(
      "E_CHECKPOINT",
      `rank R=${rec.rank}: the engine's int4p2 kernels take R = ${P2_RANKS.join(" or ")}`,
      `${layer}.proj_down`,
    );
  return rec;
}

/** Whether two optional float vectors hold the same values. */
function sameValues(a: Float32Array | undefined, b: Float32Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * int4p2 layers that read one activation operand, stacked along N (rows are independent: codes, exponents, row
 * scales, lowRankUp rows, bias). The operand carries one rank-R branch, so every layer must hold the same
 * proj_down and smooth_factor (the quantizer's one branch of the stacked weight), else one error names the layer.
 */
export function stackP2(parts: readonly { name: string; rec: QuantizedLinear }[]): {
  N: number;
  K: number;
  R: number;
  codes: Int8Array;
  exponents: Int8Array;
  rowScales: Float32Array;
  lowRankUp: Float32Array;
  lowRankDown: Float32Array;
  smooth: Float32Array | undefined;
  bias: Float32Array;
} {
  const first = parts[0]!.rec;
  const K = first.residual.cols;
  const R = first.rank;
  for (const { name, rec } of parts) {
    if (rec.residual.cols !== K || rec.rank !== R)
      throw new EngineError(
        "E_CHECKPOINT",
        `[K=${rec.residual.cols}, R=${rec.rank}] differs from [K=${K}, R=${R}]`,
        name,
      );
    if (!sameValues(rec.lowRankDown, first.lowRankDown))
      throw new EngineError(
        "E_CHECKPOINT",
        `layers ${parts.map((p) => p.name).join(", ")} read one int4p2 activation operand: proj_down must be the same (one rank-${R} branch)`,
        `${name}.proj_down`,
      );
    if (!sameValues(rec.smooth, first.smooth))
      throw new EngineError(
        "E_CHECKPOINT",
        `layers ${parts.map((p) => p.name).join(", ")} read one int4p2 activation operand: smooth_factor must be the same`,
        `${name}.smooth_factor`,
      );
  }
  const N = parts.reduce((a, p) => a + p.rec.residual.rows, 0);
  const G = K / 64;
  const codes = new Int8Array(N * K);
  const exponents = new Int8Array(N * G);
  const rowScales = new Float32Array(N);
  const lowRankUp = new Float32Array(N * R);
  const bias = new Float32Array(N);
  let n0 = 0;
  for (const { rec } of parts) {
    const q = rec.residual;
    codes.set(q.codes, n0 * K);
    exponents.set(q.exponents!, n0 * G);
    rowScales.set(q.rowScales!, n0);
    lowRankUp.set(rec.lowRankUp, n0 * R);
    if (rec.bias) bias.set(rec.bias, n0);
    n0 += q.rows;
  }
  return {
    N,
    K,
    R,
    codes,
    exponents,
    rowScales,
    lowRankUp,
    lowRankDown: first.lowRankDown,
    smooth: first.smooth,
    bias,
  };
}

/** The addon's list of int4p2 in-features (undefined: no addon here, no check). */
function addonP2SupportedK(): ((K: number) => boolean) | undefined {
  const f = loadAddon().addon?.p2SupportedK;
  return f === undefined ? undefined : (K: number) => f(K);
}

/**
 * The engine tensors of int4p2 linears that read one activation operand: `group[0]` owns the operand (its
 * lora_down, smooth and p2_lr_shift); the others (a FLUX single block's proj_mlp after attn.qkv) only their weight
 * rows. c_r is computed over every row of the group (p2LowRankColumns on the stacked rows), as the one operand
 * needs. Device tensors per linear L (N out, K in, G = 64, R = 32; kernels/cuda/engine/flux.h):
 *
 * | tensor        | shape     | dtype | meaning                                                         |
 * | ------------- | --------- | ----- | --------------------------------------------------------------- |
 * | L.p2_codes    | [N, K/2]  | u8    | packNibbles of the residual codes q ∈ [−8, 7]                    |
 * | L.p2_exps     | [N, K/G]  | i8    | group exponents e ∈ [−9, 5]                                      |
 * | L.p2_wscale   | [N]       | f32   | S_w                                                             |
 * | L.p2_lowrank  | [N, 3R]   | e4m3  | b_hi, b_lo, b_hi of b = lowRankUp / S_w · 2^c_r (R > 0)          |
 * | L.p2_lr_shift | [R]       | i32   | c_r (group[0] only, R > 0)                                      |
 * | L.lora_down   | [R, K]    | bf16  | lowRankDown, applied to the raw x (group[0] only, R > 0)         |
 * | L.smooth      | [K]       | bf16  | λ (group[0] only, when the checkpoint has it)                   |
 * | L.bias        | [N]       | bf16  | bias (zeros when the checkpoint has none)                       |
 */
async function* p2GroupItems(
  group: readonly EngineLinear[],
  src: WeightSource,
  supportedK: ((K: number) => boolean) | undefined,
): AsyncGenerator<EngineItem> {
  const owner = group[0]!;
  const stacks: ReturnType<typeof stackP2>[] = [];
  const all: { name: string; rec: QuantizedLinear }[] = [];
  for (const L of group) {
    const kinds = L.sources.map((s) => kindOf(src, s));
    if (kinds.some((k) => k !== "int4p2"))
      throw new EngineError(
        "E_CHECKPOINT",
        `layers ${group.flatMap((g) => g.sources).join(", ")} read one int4p2 activation operand and must all be int4p2 (${kinds.join(", ")})`,
        L.name,
      );
    if (L.K !== owner.K)
      throw new EngineError("E_CHECKPOINT", `K = ${L.K} differs from ${owner.name}'s ${owner.K}`, L.name);
    if (supportedK !== undefined && !supportedK(L.K))
      throw new EngineError(
        "E_CHECKPOINT",
        `int4p2 layer with K = ${L.K} in-features: the engine's int4p2 kernels do not take this K (svdq_p2_supported_k)`,
        L.name,
      );
    const parts: { name: string; rec: QuantizedLinear }[] = [];
    for (let i = 0; i < L.sources.length; i++)
      parts.push({ name: L.sources[i]!, rec: await readP2(src, L.sources[i]!, L.N[i]!, L.K) });
    stacks.push(stackP2(parts));
    all.push(...parts);
  }
  const whole = stackP2(all); // checks the one branch across the group
  const { R, K } = whole;
  const lr = R > 0 ? p2LowRankColumns(whole.lowRankUp, whole.rowScales, R, owner.name) : undefined;
  let n0 = 0;
  for (const [i, L] of group.entries()) {
    const st = stacks[i]!;
    yield { kind: "tensor", name: `${L.name}.p2_codes`, data: packNibbles(st.codes, st.N, K, L.name) };
    yield { kind: "tensor", name: `${L.name}.p2_exps`, data: st.exponents };
    yield { kind: "tensor", name: `${L.name}.p2_wscale`, data: st.rowScales };
    if (lr)
      yield { kind: "tensor", name: `${L.name}.p2_lowrank`, data: lr.columns.slice(n0 * 3 * R, (n0 + st.N) * 3 * R) };
    yield { kind: "tensor", name: `${L.name}.bias`, data: encodeFloats("BF16", st.bias) as Uint16Array };
    if (i === 0) {
      if (lr) {
        yield { kind: "tensor", name: `${L.name}.p2_lr_shift`, data: lr.shift };
        yield {
          kind: "tensor",
          name: `${L.name}.lora_down`,
          data: encodeFloats("BF16", whole.lowRankDown) as Uint16Array,
        };
      }
      if (whole.smooth)
        yield { kind: "tensor", name: `${L.name}.smooth`, data: encodeFloats("BF16", whole.smooth) as Uint16Array };
    }
    n0 += st.N;
  }
}

/**
 * The engine tensors of one (possibly fused) linear: `.weight` + `.bias` (16-bit), the W4A16 GEMV tensors, or the
 * stacked W4A4 tensors + `act_unsigned` flag. `checkW4A4` sees a stacked W4A4 layer before it is yielded.
 */
async function* linearItems(
  L: EngineLinear,
  src: WeightSource,
  unsigned: (layer: string) => boolean,
  checkW4A4?: (st: ReturnType<typeof stackW4A4>) => void,
  reshape?: (s: string, t: Tensor) => Tensor,
  supportedK?: (K: number) => boolean,
): AsyncGenerator<EngineItem> {
  const kinds = L.sources.map((s) => kindOf(src, s));
  if (kinds.some((k) => k !== kinds[0]))
    throw new EngineError(
      "E_CHECKPOINT",
      `layers ${L.sources.join(", ")} read one input and must be packed alike (${kinds.join(", ")})`,
      L.name,
    );
  const kind = kinds[0]!;
  if (kind === "int4p2") {
    yield* p2GroupItems([L], src, supportedK);
  } else if (kind === "dense") {
    const ws: Uint16Array[] = [];
    const bs: Uint16Array[] = [];
    for (let i = 0; i < L.sources.length; i++) {
      const s = L.sources[i]!;
      const raw = await src.read(`${s}.weight`);
      const w = reshape ? reshape(s, raw) : raw;
      shapeIs(w, [L.N[i]!, L.K], `${s}.weight`);
      ws.push(bf16(w, `${s}.weight`));
      if (src.has(`${s}.bias`)) {
        const b = await src.read(`${s}.bias`);
        shapeIs(b, [L.N[i]!], `${s}.bias`);
        bs.push(bf16(b, `${s}.bias`));
      } else bs.push(new Uint16Array(L.N[i]!));
    }
    yield { kind: "tensor", name: `${L.name}.weight`, data: concat(ws) };
    yield { kind: "tensor", name: `${L.name}.bias`, data: concat(bs) };
  } else if (kind === "w4a16") {
    if (L.sources.length !== 1) throw new EngineError("E_CHECKPOINT", "fused groups cannot be W4A16", L.name);
    const s = L.sources[0]!;
    const t: Record<string, Tensor> = {};
    for (const k of ["qweight", "wscales", "wzeros", "bias"])
      if (src.has(`${s}.${k}`)) t[k] = await src.read(`${s}.${k}`);
    const { weight, bias } = unpackW4A16Layer(t, { name: s });
    if (weight.rows !== L.N[0] || weight.cols !== L.K)
      throw new EngineError(
        "E_CHECKPOINT",
        `W4A16 layer is [${weight.rows}, ${weight.cols}], expected [${L.N[0]}, ${L.K}]`,
        s,
      );
    const e = w4a16EngineLayout(weight.codes, weight.scales, weight.zeros, weight.rows, weight.cols);
    yield { kind: "tensor", name: `${L.name}.w4a16_codes`, data: e.codes };
    yield { kind: "tensor", name: `${L.name}.w4a16_scales`, data: e.scales };
    yield { kind: "tensor", name: `${L.name}.w4a16_zeros`, data: e.zeros };
    if (bias) yield { kind: "tensor", name: `${L.name}.bias`, data: encodeFloats("BF16", bias) as Uint16Array };
  } else {
    const parts = [];
    for (let i = 0; i < L.sources.length; i++) parts.push(await readW4A4(src, L.sources[i]!, L.N[i]!, L.K));
    const st = stackW4A4(parts, L.name);
    checkW4A4?.(st);
    yield { kind: "tensor", name: `${L.name}.qweight`, data: st.qweight };
    yield { kind: "tensor", name: `${L.name}.wscales`, data: st.wscales };
    yield { kind: "tensor", name: `${L.name}.lora_down`, data: st.down };
    yield { kind: "tensor", name: `${L.name}.lora_up`, data: st.up };
    if (st.bias) yield { kind: "tensor", name: `${L.name}.bias`, data: st.bias };
    if (st.smooth && !/^single_transformer_blocks\.\d+\.proj_mlp$/.test(L.name))
      yield { kind: "tensor", name: `${L.name}.smooth`, data: st.smooth };
    yield { kind: "int", name: `${L.name}.act_unsigned`, value: unsigned(L.sources[0]!) ? 1 : 0 };
  }
}

/**
 * The engine tensors of one engine linear `L` (its state-dict `sources` stacked along N) from `src`, of whichever
 * kind the checkpoint holds: what {@link fluxEngineItems} yields per layer, for loading a single layer (tests,
 * device checks through the engine's `linear`).
 */
export function engineLinearItems(
  L: EngineLinear,
  src: WeightSource,
  opts: ConvertOptions = {},
): AsyncGenerator<EngineItem> {
  return linearItems(
    L,
    src,
    opts.unsignedLayer ?? defaultUnsignedLayer,
    undefined,
    undefined,
    opts.p2SupportedK ?? addonP2SupportedK(),
  );
}

/**
 * Every engine tensor of a FLUX model, one at a time (upload each, then drop it: host memory stays about one
 * layer). Layer kinds come from the checkpoint: `<layer>.weight` (16-bit), `<layer>.qweight` + `wscales` +
 * `proj_down` + `proj_up` (+ `bias`, `smooth_factor`) (W4A4, nunchaku names), `<layer>.qweight` + `wscales` +
 * `wzeros` (W4A16, AWQ layout) or `<layer>.p2_codes` + `p2_exponents` + `p2_wscale` (+ `proj_down`, `proj_up`,
 * `smooth_factor`, `bias`) (int4p2, @svdquant/int4 packP2Layer). Layers of a fused group must be of one kind; in
 * int4p2 a single block's proj_mlp reads attn.qkv's activation operand, so to_q/k/v and proj_mlp are int4p2
 * together and share one branch (proj_down, smooth_factor).
 */
export async function* fluxEngineItems(
  c: FluxConfig,
  src: WeightSource,
  opts: ConvertOptions = {},
): AsyncGenerator<EngineItem> {
  const unsigned = opts.unsignedLayer ?? defaultUnsignedLayer;
  const supportedK = opts.p2SupportedK ?? addonP2SupportedK();
  const singleSmooth = new Map<string, Uint16Array | undefined>();
  const linears = fluxEngineLinears(c);
  const done = new Set<string>();
  for (const L of linears) {
    if (done.has(L.name)) continue;
    const single = /^single_transformer_blocks\.\d+\./.exec(L.name)?.[0];
    if (single && L.name.endsWith("attn.qkv") && kindOf(src, L.sources[0]!) === "int4p2") {
      const mlp = linears.find((m) => m.name === `${single}proj_mlp`)!;
      yield* p2GroupItems([L, mlp], src, supportedK);
      done.add(mlp.name);
      continue;
    }
    if (single && L.name.endsWith("proj_mlp") && kindOf(src, L.sources[0]!) === "int4p2")
      throw new EngineError(
        "E_CHECKPOINT",
        "an int4p2 proj_mlp reads attn.qkv's activation operand: attn.to_q/k/v must be int4p2 too",
        L.name,
      );
    yield* linearItems(
      L,
      src,
      unsigned,
      (st) => {
        if (single && L.name.endsWith("attn.qkv")) singleSmooth.set(single, st.smooth);
        if (single && L.name.endsWith("proj_mlp")) {
          const q = singleSmooth.get(single);
          if ((q === undefined) !== (st.smooth === undefined) || (q && st.smooth && !sameBits(q, st.smooth)))
            throw new EngineError(
              "E_CHECKPOINT",
              "proj_mlp shares its input quantization with to_q/k/v: smooth_factor must be equal",
              `${single}proj_mlp`,
            );
        }
      },
      undefined,
      supportedK,
    );
  }
  for (const n of fluxEngineNorms(c)) {
    const t = await src.read(n);
    shapeIs(t, [c.attentionHeadDim], n);
    yield { kind: "tensor", name: n, data: bf16(t, n) };
  }
}

/** The engine's linears of a PixArt config (kernels/cuda/engine/pixart.h), attn1 q/k/v and attn2 k/v fused. */
export function pixartEngineLinears(c: PixArtConfig): EngineLinear[] {
  const d = c.numAttentionHeads * c.attentionHeadDim;
  const L: EngineLinear[] = [];
  const lin = (name: string, N: number, K: number, sources = [name]) =>
    L.push({ name, sources, N: sources.length === 1 ? [N] : sources.map(() => N / sources.length), K });
  lin("pos_embed.proj", d, c.inChannels * c.patchSize * c.patchSize);
  lin("adaln_single.emb.timestep_embedder.linear_1", d, 256);
  lin("adaln_single.emb.timestep_embedder.linear_2", d, d);
  lin("adaln_single.linear", 6 * d, d);
  if (c.captionChannels !== undefined) {
    lin("caption_projection.linear_1", d, c.captionChannels);
    lin("caption_projection.linear_2", d, d);
  }
  for (let i = 0; i < c.numLayers; i++) {
    const p = `transformer_blocks.${i}.`;
    lin(`${p}attn1.qkv`, 3 * d, d, [`${p}attn1.to_q`, `${p}attn1.to_k`, `${p}attn1.to_v`]);
    lin(`${p}attn1.to_out.0`, d, d);
    lin(`${p}attn2.to_q`, d, d);
    lin(`${p}attn2.kv`, 2 * d, c.crossAttentionDim, [`${p}attn2.to_k`, `${p}attn2.to_v`]);
    lin(`${p}attn2.to_out.0`, d, d);
    lin(`${p}ff.net.0.proj`, 4 * d, d);
    lin(`${p}ff.net.2`, d, 4 * d);
  }
  lin("proj_out", c.patchSize * c.patchSize * c.outChannels, d);
  return L;
}

/** The modulation tables of a PixArt config: name and rows (each [rows, D]). */
export function pixartEngineTables(c: PixArtConfig): { name: string; rows: number }[] {
  const out = [{ name: "scale_shift_table", rows: 2 }];
  for (let i = 0; i < c.numLayers; i++) out.push({ name: `transformer_blocks.${i}.scale_shift_table`, rows: 6 });
  return out;
}

/** PixArt W4A4 layers after a GELU (`ff.net.2`) take unsigned activation codes. */
export const pixartUnsignedLayer = (layer: string): boolean => /\.ff\.net\.2$/.test(layer);

/**
 * Every engine tensor of a PixArt model (PixArtTransformer2DModel state dict, linears possibly packed as in
 * {@link fluxEngineItems}), one at a time. The patch-embedding conv weight [D, C, p, p] becomes the linear
 * [D, C·p²] of unfolded patches; the scale-shift tables are converted to bf16.
 */
export async function* pixartEngineItems(
  c: PixArtConfig,
  src: WeightSource,
  opts: ConvertOptions = {},
): AsyncGenerator<EngineItem> {
  if (c.useAdditionalConditions)
    throw new EngineError("E_CHECKPOINT", "use_additional_conditions = true (PixArt-α) has no engine step", "config");
  const d = c.numAttentionHeads * c.attentionHeadDim;
  const cp = c.inChannels * c.patchSize * c.patchSize;
  const unsigned = opts.unsignedLayer ?? pixartUnsignedLayer;
  const flatConv = (s: string, t: Tensor): Tensor => {
    if (s !== "pos_embed.proj") return t;
    shapeIs(t, [d, c.inChannels, c.patchSize, c.patchSize], `${s}.weight`);
    return t.reshape([d, cp]);
  };
  const supportedK = opts.p2SupportedK ?? addonP2SupportedK();
  for (const L of pixartEngineLinears(c)) yield* linearItems(L, src, unsigned, undefined, flatConv, supportedK);
  for (const { name, rows } of pixartEngineTables(c)) {
    const t = await src.read(name);
    shapeIs(t, [rows, d], name);
    yield { kind: "tensor", name, data: bf16(t, name) };
  }
}
