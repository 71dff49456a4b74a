/**
 * Where each linear layer of a model goes in a quantized checkpoint: which model layers are fused into one
 * 4-bit layer, which are split along K, which read one input, and the names at the file boundary.
 *
 * FLUX.1 follows the published SVDQuant single-file checkpoint that the reference engine loads (its
 * `NunchakuFluxTransformer2dModel` state dict; facts read from its public loader/converter):
 *
 * | file layer (per block)      | model layers (diffusers)                    | kind  | notes                          |
 * | --------------------------- | ------------------------------------------- | ----- | ------------------------------ |
 * | qkv_proj                    | attn.to_q, attn.to_k, attn.to_v             | W4A4  | fused along N                  |
 * | qkv_proj_context            | attn.add_q_proj, add_k_proj, add_v_proj     | W4A4  | fused along N                  |
 * | out_proj / out_proj_context | attn.to_out.0 / attn.to_add_out             | W4A4  |                                |
 * | mlp_fc1 / mlp_context_fc1   | ff.net.0.proj / ff_context.net.0.proj       | W4A4  |                                |
 * | mlp_fc2 / mlp_context_fc2   | ff.net.2 / ff_context.net.2                 | W4A4  | uint4 + GELU shift             |
 * | norm1.linear, norm1_context.linear | the same                             | W4A16 | AdaNorm rows interleaved, +1   |
 * | single: qkv_proj, mlp_fc1   | attn.to_q/k/v (fused), proj_mlp             | W4A4  | one input: one shared λ        |
 * | single: out_proj, mlp_fc2   | proj_out[:, :D], proj_out[:, D:]            | W4A4  | K-split; mlp_fc2 uint4 + shift |
 * | single: norm.linear         | norm.linear                                 | W4A16 | AdaNorm rows interleaved, +1   |
 * | norm_q, norm_k, norm_added_q, norm_added_k | attn.norm_q, … (RMSNorm weights) | 16-bit | renamed              |
 *
 * Each W4A4 layer holds `qweight`, `wscales`, `lora_down`, `lora_up`, `smooth`, `smooth_orig`, `bias` (nvfp4:
 * also `wtscale`, `wcscales`); each W4A16 layer `qweight`, `wscales`, `wzeros`, `bias`. Everything outside the
 * blocks keeps its diffusers name and 16-bit weights. PixArt-Σ has no published engine layout: it uses the same
 * per-layer tensors under its diffusers module names, with attn1 q/k/v fused as `attn1.to_qkv`.
 */
import type { ModelConfig } from "@svdquant/models";

/** One 4-bit layer of the checkpoint, made of one or more model layers. */
export interface UnitSpec {
  /** Block-relative name in the file (published name for FLUX). */
  readonly file: string;
  /** Block-relative model (diffusers) layer names, stacked along N in this order. */
  readonly members: readonly string[];
  /** A K-range [k0, k1) of the single member (FLUX single-block proj_out split into out_proj and mlp_fc2). */
  readonly kSlice?: readonly [number, number];
  /** The input is a GELU output: unsigned activations with the GELU shift (SVDQuant's published INT4 convention). */
  readonly unsigned?: boolean;
  /** Units of one block with the same key read one input and share λ. */
  readonly input: string;
  /** AdaNorm modulation layer (W4A16): output chunk count and the "scale" chunks (+1 folded into their bias). */
  readonly adaNorm?: { readonly chunks: number; readonly scaleChunks: readonly number[] };
}

export interface BlockLayout {
  /** State-dict prefix of block i, e.g. `transformer_blocks.3.`. */
  readonly prefix: (i: number) => string;
  readonly count: number;
  readonly units: readonly UnitSpec[];
  /** Block-relative 16-bit tensors stored under another name in the file: model name → file name. */
  readonly renames: Readonly<Record<string, string>>;
}

export interface ModelLayout {
  readonly kind: ModelConfig["kind"];
  /** `model_class` metadata of the file (the reference engine's class for FLUX). */
  readonly modelClass: string;
  readonly blocks: readonly BlockLayout[];
  /** Units outside the blocks (prefix ""): the recipe decides whether they are quantized. */
  readonly head: readonly UnitSpec[];
}

const one = (file: string, member: string, input: string, extra: Partial<UnitSpec> = {}): UnitSpec => ({
  file,
  members: [member],
  input,
  ...extra,
});

/** AdaLayerNormZero: shift, scale, gate (msa), shift, scale, gate (mlp); AdaLayerNormZeroSingle: shift, scale, gate. */
const ADA6 = { chunks: 6, scaleChunks: [1, 4] } as const;
const ADA3 = { chunks: 3, scaleChunks: [1] } as const;

export function fluxLayout(c: Extract<ModelConfig, { kind: "flux" }>): ModelLayout {
  const d = c.numAttentionHeads * c.attentionHeadDim;
  const double: BlockLayout = {
    prefix: (i) => `transformer_blocks.${i}.`,
    count: c.numLayers,
    units: [
      { file: "qkv_proj", members: ["attn.to_q", "attn.to_k", "attn.to_v"], input: "img" },
      { file: "qkv_proj_context", members: ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"], input: "txt" },
      one("out_proj", "attn.to_out.0", "attn_img"),
      one("out_proj_context", "attn.to_add_out", "attn_txt"),
      one("mlp_fc1", "ff.net.0.proj", "ff_img"),
      one("mlp_fc2", "ff.net.2", "ff_img_hidden", { unsigned: true }),
      one("mlp_context_fc1", "ff_context.net.0.proj", "ff_txt"),
      one("mlp_context_fc2", "ff_context.net.2", "ff_txt_hidden", { unsigned: true }),
      one("norm1.linear", "norm1.linear", "temb", { adaNorm: ADA6 }),
      one("norm1_context.linear", "norm1_context.linear", "temb", { adaNorm: ADA6 }),
    ],
    renames: {
      "attn.norm_q.weight": "norm_q.weight",
      "attn.norm_k.weight": "norm_k.weight",
      "attn.norm_added_q.weight": "norm_added_q.weight",
      "attn.norm_added_k.weight": "norm_added_k.weight",
    },
  };
  const single: BlockLayout = {
    prefix: (i) => `single_transformer_blocks.${i}.`,
    count: c.numSingleLayers,
    units: [
      { file: "qkv_proj", members: ["attn.to_q", "attn.to_k", "attn.to_v"], input: "x" },
      one("mlp_fc1", "proj_mlp", "x"),
      one("out_proj", "proj_out", "proj_out_attn", { kSlice: [0, d] }),
      one("mlp_fc2", "proj_out", "proj_out_mlp", { kSlice: [d, 5 * d], unsigned: true }), // mlp_ratio 4
      one("norm.linear", "norm.linear", "temb", { adaNorm: ADA3 }),
    ],
    renames: { "attn.norm_q.weight": "norm_q.weight", "attn.norm_k.weight": "norm_k.weight" },
  };
  const head = [
    "x_embedder",
    "context_embedder",
    "time_text_embed.timestep_embedder.linear_1",
    "time_text_embed.timestep_embedder.linear_2",
    "time_text_embed.text_embedder.linear_1",
    "time_text_embed.text_embedder.linear_2",
    ...(c.guidanceEmbeds
      ? ["time_text_embed.guidance_embedder.linear_1", "time_text_embed.guidance_embedder.linear_2"]
      : []),
    "norm_out.linear",
    "proj_out",
  ].map((n) => one(n, n, n));
  return { kind: "flux", modelClass: "NunchakuFluxTransformer2dModel", blocks: [double, single], head };
}

export function pixartLayout(c: Extract<ModelConfig, { kind: "pixart" }>): ModelLayout {
  const block: BlockLayout = {
    prefix: (i) => `transformer_blocks.${i}.`,
    count: c.numLayers,
    units: [
      { file: "attn1.to_qkv", members: ["attn1.to_q", "attn1.to_k", "attn1.to_v"], input: "x1" },
      one("attn1.to_out.0", "attn1.to_out.0", "attn1_out"),
      one("attn2.to_q", "attn2.to_q", "x2"),
      one("attn2.to_k", "attn2.to_k", "text"),
      one("attn2.to_v", "attn2.to_v", "text"),
      one("attn2.to_out.0", "attn2.to_out.0", "attn2_out"),
      one("ff.net.0.proj", "ff.net.0.proj", "ff"),
      one("ff.net.2", "ff.net.2", "ff_hidden", { unsigned: true }),
    ],
    renames: {},
  };
  const head = [
    "pos_embed.proj",
    "adaln_single.emb.timestep_embedder.linear_1",
    "adaln_single.emb.timestep_embedder.linear_2",
    "adaln_single.linear",
    ...(c.captionChannels !== undefined ? ["caption_projection.linear_1", "caption_projection.linear_2"] : []),
    "proj_out",
  ].map((n) => one(n, n, n));
  return { kind: "pixart", modelClass: "PixArtTransformer2DModel", blocks: [block], head };
}

/**
 * The layout of a model's checkpoint in a residual format. "int4" and "nvfp4": the published layouts above.
 * "int4p2" (the opt-in Hopper format, @svdquant/engine-cuda's int4p2 path) differs where the engine's FP8 layers
 * do: activations are signed (no unsigned GELU-shift units), and a K-split model layer is one unit over its whole
 * K (FLUX single blocks: `proj_out` [D, 5D] is one int4p2 layer, not out_proj + mlp_fc2), since one FP8 GEMM with
 * one row scale per token runs it. Units that read one input share λ and, in int4p2, one low-rank branch.
 */
export function layoutOf(c: ModelConfig, format: "int4" | "nvfp4" | "int4p2" = "int4"): ModelLayout {
  const base = c.kind === "flux" ? fluxLayout(c) : pixartLayout(c);
  return format === "int4p2" ? p2Layout(base) : base;
}

function p2Units(units: readonly UnitSpec[]): UnitSpec[] {
  const out: UnitSpec[] = [];
  const whole = new Set<string>();
  for (const u of units) {
    if (u.kSlice !== undefined) {
      const m = u.members[0]!;
      if (!whole.has(m)) out.push({ file: m, members: [m], input: m });
      whole.add(m);
      continue;
    }
    const { unsigned: _unsigned, ...rest } = u;
    out.push(rest);
  }
  return out;
}

function p2Layout(l: ModelLayout): ModelLayout {
  return {
    ...l,
    blocks: l.blocks.map((b) => ({ ...b, units: p2Units(b.units) })),
    head: p2Units(l.head),
  };
}

/** Suffixes of a W4A4 layer's tensors: the int4 packer's names → the published file's names. */
export const W4A4_FILE_SUFFIX: Readonly<Record<string, string>> = {
  qweight: "qweight",
  wscales: "wscales",
  proj_down: "lora_down",
  proj_up: "lora_up",
  smooth_factor: "smooth",
  smooth_factor_orig: "smooth_orig",
  bias: "bias",
  wtscale: "wtscale",
  wcscales: "wcscales",
};
