import type { TensorSource } from "@svdquant/tensor";
import { type PixArtConfig, parsePixArtConfig } from "./config.js";
import { ModelError } from "./errors.js";
import { linearNamesOf, type ModelLoadOptions } from "./flux.js";
import type { LinearLayer } from "./linear.js";
import { attention, gatedAdd, layerNormModulate, silu, sincos2d, timestepEmbedding } from "./ops.js";
import { pixartBlockParams, pixartParams } from "./params.js";
import { LinearFactory } from "./recipe.js";
import { type ForwardOptions, runEmbedMlp, runLinear, runLinearGelu, runShared } from "./runtime.js";
import { checkBlocks, readBlock, TransformerBase } from "./transformer-base.js";
import {
  type BlockArena,
  checkBlockCounts,
  loadFromFolder,
  loadWeightSet,
  rejectUnexpectedTensors,
  type WeightSet,
} from "./weights.js";

/**
 * Inputs of the PixArt transformer (PixArtTransformer2DModel.forward), float32, row-major.
 *
 * | input                | shape                   | notes                                           |
 * | -------------------- | ----------------------- | ----------------------------------------------- |
 * | hiddenStates         | [B, C, H, W]            | latents; H, W multiples of patch_size           |
 * | encoderHiddenStates  | [B, L, caption_channels]| T5 embeddings                                   |
 * | encoderAttentionMask | [B, L]                  | 1 = keep, 0 = padding (optional)                |
 * | timestep             | [B]                     | in [0, 1000), not rescaled                      |
 *
 * Output: [B, out_channels, H, W] (out_channels 8 = ε and learned σ for 4 latent channels).
 */
export interface PixArtInputs {
  readonly batch: number;
  readonly height: number;
  readonly width: number;
  readonly textTokens: number;
  readonly hiddenStates: Float32Array;
  readonly encoderHiddenStates: Float32Array;
  readonly encoderAttentionMask?: ArrayLike<number>;
  readonly timestep: ArrayLike<number>;
}

const ADALN_ROWS = 6; // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp

class PixArtBlock {
  readonly lin: Record<string, LinearLayer>;
  private readonly table: Float32Array;
  constructor(
    readonly prefix: string,
    ws: WeightSet,
    factory: LinearFactory,
  ) {
    this.table = ws.f32("scale_shift_table");
    this.lin = factory.buildAll(
      ws,
      [
        "attn1.to_q",
        "attn1.to_k",
        "attn1.to_v",
        "attn1.to_out.0",
        "attn2.to_q",
        "attn2.to_k",
        "attn2.to_v",
        "attn2.to_out.0",
        "ff.net.0.proj",
        "ff.net.2",
      ],
      prefix,
    );
  }

  forward(
    o: ForwardOptions,
    c: PixArtConfig,
    x: Float32Array,
    enc: Float32Array,
    bias: Float32Array | undefined,
    t6: Float32Array,
    b: number,
    s: number,
    l: number,
  ): void {
    const L = this.lin;
    const heads = c.numAttentionHeads;
    const dh = c.attentionHeadDim;
    const d = heads * dh;
    // mod[b, r, :] = scale_shift_table[r, :] + t6[b, r*D:(r+1)*D]
    const mod = new Float32Array(b * ADALN_ROWS * d);
    for (let bi = 0; bi < b; bi++)
      for (let i = 0; i < ADALN_ROWS * d; i++)
        mod[bi * ADALN_ROWS * d + i] = this.table[i]! + t6[bi * ADALN_ROWS * d + i]!;
    const stride = ADALN_ROWS * d;
    const n1 = layerNormModulate(x, b, s, d, c.normEps, mod, d, mod, 0, stride);
    const [q, k, v] = runShared(o, [L["attn1.to_q"]!, L["attn1.to_k"]!, L["attn1.to_v"]!], n1, b * s);
    const a1 = attention(q!, k!, v!, b, s, s, heads, dh, undefined, o.attention);
    gatedAdd(x, runLinear(o, L["attn1.to_out.0"]!, a1, b * s), b, s, d, mod, 2 * d, stride);
    // Cross-attention reads x without a norm (PixArt).
    const q2 = runLinear(o, L["attn2.to_q"]!, x, b * s);
    const [k2, v2] = runShared(o, [L["attn2.to_k"]!, L["attn2.to_v"]!], enc, b * l);
    const a2 = attention(q2, k2!, v2!, b, s, l, heads, dh, bias, o.attention);
    gatedAdd(x, runLinear(o, L["attn2.to_out.0"]!, a2, b * s), b, s, d, undefined, 0, 0);
    const n2 = layerNormModulate(x, b, s, d, c.normEps, mod, 4 * d, mod, 3 * d, stride);
    const h = runLinearGelu(o, L["ff.net.0.proj"]!, n2, b * s);
    gatedAdd(x, runLinear(o, L["ff.net.2"]!, h, b * s), b, s, d, mod, 5 * d, stride);
  }
}

/** PixArt-Σ transformer (PixArtTransformer2DModel, ada_norm_single) on the CPU, float32 compute. */
export class PixArtTransformer extends TransformerBase {
  readonly config: PixArtConfig;
  private readonly blocks: (PixArtBlock | undefined)[];

  private constructor(
    config: PixArtConfig,
    factory: LinearFactory,
    head: WeightSet,
    blocks: (PixArtBlock | undefined)[],
    source: TensorSource | undefined,
  ) {
    super(factory, head, source);
    this.config = config;
    this.blocks = blocks;
    const names = [
      "adaln_single.emb.timestep_embedder.linear_1",
      "adaln_single.emb.timestep_embedder.linear_2",
      "adaln_single.linear",
      "proj_out",
    ];
    if (config.captionChannels !== undefined) names.push("caption_projection.linear_1", "caption_projection.linear_2");
    Object.assign(this.headLin, factory.buildAll(head, names));
    // The patch-embedding conv (kernel = stride = p) is a linear map of each unfolded patch:
    // weight [D, C, p, p] viewed as [D, C·p·p].
    if (factory.provides("pos_embed.proj")) this.headLin["pos_embed.proj"] = factory.buildProvided("pos_embed.proj");
    else {
      const w = head.get("pos_embed.proj.weight");
      this.headLin["pos_embed.proj"] = factory.build(
        "pos_embed.proj",
        w.reshape([w.shape[0]!, -1]),
        head.get("pos_embed.proj.bias"),
      );
    }
  }

  /** Load from a diffusers model folder (config.json + safetensors, sharded or not). */
  static fromFolder(dir: string, opts: ModelLoadOptions = {}): Promise<PixArtTransformer> {
    return loadFromFolder(dir, opts.streaming, parsePixArtConfig, (c, src) =>
      PixArtTransformer.fromSource(c, src, opts),
    );
  }

  static async fromSource(
    config: PixArtConfig,
    source: TensorSource,
    opts: ModelLoadOptions = {},
  ): Promise<PixArtTransformer> {
    checkBlockCounts(source, [{ prefix: "transformer_blocks.", count: config.numLayers, key: "num_layers" }]);
    const factory = opts.factory ?? new LinearFactory();
    // every tensor must belong to the config; the provider's layers' tensors are allowed but not read
    rejectUnexpectedTensors(source, pixartParams(config), "PixArt");
    const all = factory.requiredSpecs(pixartParams(config));
    const head = await loadWeightSet(
      source,
      all.filter((p) => !p.name.startsWith("transformer_blocks.")),
    );
    const blocks: (PixArtBlock | undefined)[] = new Array(config.numLayers).fill(undefined);
    checkBlocks(source, factory, pixartBlockParams(config), "transformer_blocks.", config.numLayers);
    if (!opts.streaming)
      for (let i = 0; i < config.numLayers; i++) blocks[i] = await loadBlock(source, config, i, factory);
    return new PixArtTransformer(config, factory, head, blocks, opts.streaming ? source : undefined);
  }

  linearNames(): string[] {
    return ["pos_embed.proj", ...linearNamesOf(pixartParams(this.config))];
  }

  protected residentBlocks(): readonly (PixArtBlock | undefined)[] {
    return this.blocks;
  }

  async forward(inp: PixArtInputs, opts: ForwardOptions = {}): Promise<Float32Array> {
    const c = this.config;
    const d = c.numAttentionHeads * c.attentionHeadDim;
    checkInputs(c, inp);
    const { batch: b, textTokens: l } = inp;
    const p = c.patchSize;
    const gh = inp.height / p;
    const gw = inp.width / p;
    const s = gh * gw;
    const H = this.headLin;
    // 1. patch embedding + 2-D sin-cos position embedding (recomputed for any grid, as the reference).
    const cpp = c.inChannels * p * p;
    const patches = new Float32Array(b * s * cpp);
    for (let bi = 0; bi < b; bi++)
      for (let i = 0; i < gh; i++)
        for (let j = 0; j < gw; j++) {
          const row = (bi * s + i * gw + j) * cpp;
          for (let ch = 0; ch < c.inChannels; ch++)
            for (let pi = 0; pi < p; pi++)
              for (let pj = 0; pj < p; pj++)
                patches[row + (ch * p + pi) * p + pj] =
                  inp.hiddenStates[((bi * c.inChannels + ch) * inp.height + i * p + pi) * inp.width + j * p + pj]!;
        }
    const x = runLinear(opts, H["pos_embed.proj"]!, patches, b * s);
    const pos = sincos2d(d, gh, gw, c.sampleSize / p, c.interpolationScale);
    for (let bi = 0; bi < b; bi++) for (let i = 0; i < s * d; i++) x[bi * s * d + i] = x[bi * s * d + i]! + pos[i]!;
    // 2. timestep conditioning (AdaLayerNormSingle).
    const emb = runEmbedMlp(
      opts,
      H["adaln_single.emb.timestep_embedder.linear_1"]!,
      H["adaln_single.emb.timestep_embedder.linear_2"]!,
      timestepEmbedding(inp.timestep, 256),
      b,
    );
    const t6 = runLinear(opts, H["adaln_single.linear"]!, silu(emb), b);
    // 3. caption projection and key-padding bias ((1 - mask) * -10000, as the reference).
    let enc = inp.encoderHiddenStates;
    if (c.captionChannels !== undefined) {
      const h1 = runLinearGelu(opts, H["caption_projection.linear_1"]!, enc, b * l);
      enc = runLinear(opts, H["caption_projection.linear_2"]!, h1, b * l);
    }
    let bias: Float32Array | undefined;
    if (inp.encoderAttentionMask !== undefined) {
      bias = new Float32Array(b * l);
      for (let i = 0; i < b * l; i++) bias[i] = (1 - inp.encoderAttentionMask[i]!) * -10000.0;
    }
    for (let i = 0; i < c.numLayers; i++) {
      const blk = this.blocks[i] ?? this.streamed(await loadBlock(this.source!, c, i, this.factory, this.arena));
      opts.onBlockStart?.(blk.prefix);
      blk.forward(opts, c, x, enc, bias, t6, b, s, l);
      opts.onBlockEnd?.(blk.prefix);
    }
    // 4. final layer: shift, scale = scale_shift_table[2, D] + embedded timestep.
    const table = this.head.f32("scale_shift_table");
    const mod = new Float32Array(b * 2 * d);
    for (let bi = 0; bi < b; bi++)
      for (let r = 0; r < 2; r++)
        for (let i = 0; i < d; i++) mod[(bi * 2 + r) * d + i] = table[r * d + i]! + emb[bi * d + i]!;
    const nx = layerNormModulate(x, b, s, d, 1e-6, mod, d, mod, 0, 2 * d);
    const y = runLinear(opts, H.proj_out!, nx, b * s); // [B, S, p·p·oc]
    // 5. unpatchify: out[b, ch, i·p+pi, j·p+pj] = y[b, i·gw+j, (pi·p+pj)·oc + ch]
    const oc = c.outChannels;
    const out = new Float32Array(b * oc * inp.height * inp.width);
    for (let bi = 0; bi < b; bi++)
      for (let i = 0; i < gh; i++)
        for (let j = 0; j < gw; j++)
          for (let pi = 0; pi < p; pi++)
            for (let pj = 0; pj < p; pj++)
              for (let ch = 0; ch < oc; ch++)
                out[((bi * oc + ch) * inp.height + i * p + pi) * inp.width + j * p + pj] =
                  y[(bi * s + i * gw + j) * p * p * oc + (pi * p + pj) * oc + ch]!;
    return out;
  }
}

function loadBlock(
  src: TensorSource,
  c: PixArtConfig,
  i: number,
  f: LinearFactory,
  arena?: BlockArena,
): Promise<PixArtBlock> {
  const make = (prefix: string, ws: WeightSet, f: LinearFactory) => new PixArtBlock(prefix, ws, f);
  return readBlock(src, pixartBlockParams(c), `transformer_blocks.${i}.`, f, make, arena);
}

function checkInputs(c: PixArtConfig, inp: PixArtInputs): void {
  const { batch: b, height: h, width: w, textTokens: l } = inp;
  const ok = (v: number) => Number.isSafeInteger(v) && v > 0;
  if (!ok(b) || !ok(h) || !ok(w) || !ok(l))
    throw new ModelError(
      "E_INPUT",
      `batch ${b}, height ${h}, width ${w}, textTokens ${l} must be positive integers`,
      "PixArtInputs",
    );
  if (h % c.patchSize !== 0 || w % c.patchSize !== 0)
    throw new ModelError(
      "E_INPUT",
      `height ${h} and width ${w} must be multiples of patch_size ${c.patchSize}`,
      "PixArtInputs",
    );
  const textWidth = c.captionChannels ?? c.crossAttentionDim;
  const need: [string, ArrayLike<number> | undefined, number, string][] = [
    ["hiddenStates", inp.hiddenStates, b * c.inChannels * h * w, `[${b}, ${c.inChannels}, ${h}, ${w}]`],
    ["encoderHiddenStates", inp.encoderHiddenStates, b * l * textWidth, `[${b}, ${l}, ${textWidth}]`],
    ["timestep", inp.timestep, b, `[${b}]`],
  ];
  if (inp.encoderAttentionMask !== undefined)
    need.push(["encoderAttentionMask", inp.encoderAttentionMask, b * l, `[${b}, ${l}]`]);
  for (const [name, arr, n, shape] of need) {
    if (arr === undefined || arr.length !== n)
      throw new ModelError("E_INPUT", `has ${arr?.length ?? "no"} values, expected ${shape}`, `PixArtInputs.${name}`);
    for (let i = 0; i < arr.length; i++)
      if (!Number.isFinite(arr[i]!))
        throw new ModelError("E_INPUT", `element ${i} is ${arr[i]} (not finite)`, `PixArtInputs.${name}`);
  }
}
