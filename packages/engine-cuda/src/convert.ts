// Host side of loading: turns a diffusers-layout FLUX or PixArt state dict, whose linear layers may be replaced by packed
// SVDQuant layers (nunchaku tensors as @svdquant/int4 packW4A4Layer / packW4A16Layer write them), into the named
// device tensors of the engine (table in kernels/cuda/engine/flux.h). Pure host logic, no device needed.
import { unpackLoraDown, unpackLoraUp, unpackW4A4Vector, unpackW4A16Layer } from "@svdquant/int4";
import type { FluxConfig, PixArtConfig } from "@svdquant/models";
import { decodeToFloat32, encodeFloats, type Tensor } from "@svdquant/tensor";
import { EngineError } from "./errors.js";

/** Where weights come from: a diffusers state dict (TensorSource fits) with packed layers under `<layer>.qweight`… */
export interface WeightSource {
  has(name: string): boolean;
  read(name: string): Promise<Tensor>;
}

/** One device tensor of the engine, or an integer flag. */
export type EngineItem =
  | { kind: "tensor"; name: string; data: Uint8Array | Uint16Array | Float32Array }
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
}

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

type Kind = "dense" | "w4a4" | "w4a16";

function kindOf(src: WeightSource, layer: string): Kind {
  if (src.has(`${layer}.qweight`)) {
    // the dtype tells the packers apart: I8 [N, K/2] (W4A4) vs I32 [N/4, K/2] (W4A16 / AWQ)
    return src.has(`${layer}.wzeros`) ? "w4a16" : "w4a4";
  }
  if (src.has(`${layer}.weight`)) return "dense";
  throw new EngineError("E_CHECKPOINT", "no weight (.weight) and no packed layer (.qweight)", layer);
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
): AsyncGenerator<EngineItem> {
  const kinds = L.sources.map((s) => kindOf(src, s));
  if (kinds.some((k) => k !== kinds[0]))
    throw new EngineError(
      "E_CHECKPOINT",
      `layers ${L.sources.join(", ")} read one input and must be packed alike (${kinds.join(", ")})`,
      L.name,
    );
  const kind = kinds[0]!;
  if (kind === "dense") {
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
 * Every engine tensor of a FLUX model, one at a time (upload each, then drop it: host memory stays about one
 * layer). Layer kinds come from the checkpoint: `<layer>.weight` (16-bit), `<layer>.qweight` + `wscales` +
 * `proj_down` + `proj_up` (+ `bias`, `smooth_factor`) (W4A4, nunchaku names) or `<layer>.qweight` + `wscales` +
 * `wzeros` (W4A16, AWQ layout). Layers of a fused group must be of one kind.
 */
export async function* fluxEngineItems(
  c: FluxConfig,
  src: WeightSource,
  opts: ConvertOptions = {},
): AsyncGenerator<EngineItem> {
  const unsigned = opts.unsignedLayer ?? defaultUnsignedLayer;
  const singleSmooth = new Map<string, Uint16Array | undefined>();
  for (const L of fluxEngineLinears(c)) {
    const single = /^single_transformer_blocks\.\d+\./.exec(L.name)?.[0];
    yield* linearItems(L, src, unsigned, (st) => {
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
    });
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
  for (const L of pixartEngineLinears(c)) yield* linearItems(L, src, unsigned, undefined, flatConv);
  for (const { name, rows } of pixartEngineTables(c)) {
    const t = await src.read(name);
    shapeIs(t, [rows, d], name);
    yield { kind: "tensor", name, data: bf16(t, name) };
  }
}
