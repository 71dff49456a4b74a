import type { TensorSource } from "@svdquant/tensor";
import { type FluxConfig, parseFluxConfig } from "./config.js";
import { ModelError } from "./errors.js";
import type { LinearLayer } from "./linear.js";
import { attention, fluxRope, gatedAdd, layerNormModulate, rmsNormRopeHeads, silu, timestepEmbedding } from "./ops.js";
import { fluxDoubleBlockParams, fluxParams, fluxSingleBlockParams, type ParamSpec } from "./params.js";
import { LinearFactory } from "./recipe.js";
import {
  concatFeatures,
  concatTokens,
  type ForwardOptions,
  runEmbedMlp,
  runLinear,
  runLinearGelu,
  runShared,
  sliceTokens,
} from "./runtime.js";
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
 * Inputs of the FLUX transformer (FluxTransformer2DModel.forward), float32, row-major.
 *
 * | input               | shape                  | notes                                      |
 * | ------------------- | ---------------------- | ------------------------------------------ |
 * | hiddenStates        | [B, Simg, in_channels] | packed 2x2 latent patches                  |
 * | encoderHiddenStates | [B, Stxt, joint_dim]   | T5 embeddings                              |
 * | pooledProjections   | [B, pooled_dim]        | CLIP pooled embedding                      |
 * | timestep            | [B]                    | in [0, 1]; the model multiplies by 1000    |
 * | guidance            | [B]                    | dev only (guidance_embeds); also x1000     |
 * | imgIds              | [Simg, 3]              | (0, row, col)                              |
 * | txtIds              | [Stxt, 3]              | zeros                                      |
 */
export interface FluxInputs {
  readonly batch: number;
  readonly imgTokens: number;
  readonly txtTokens: number;
  readonly hiddenStates: Float32Array;
  readonly encoderHiddenStates: Float32Array;
  readonly pooledProjections: Float32Array;
  readonly timestep: ArrayLike<number>;
  readonly guidance?: ArrayLike<number>;
  readonly imgIds: Float32Array;
  readonly txtIds: Float32Array;
}

export interface ModelLoadOptions {
  /** Builds every linear layer (recipe + fake quantizer + GEMM backend); default: dense. */
  readonly factory?: LinearFactory;
  /**
   * Keep only the non-block weights resident; each block's weights are read from the checkpoint just
   * before it runs and dropped after (peak weight memory: the head plus about one block).
   */
  readonly streaming?: boolean;
}

const HEAD_PREFIXES = ["transformer_blocks.", "single_transformer_blocks."];

class FluxDoubleBlock {
  readonly lin: Record<string, LinearLayer>;
  private readonly ws: WeightSet;
  constructor(
    readonly prefix: string,
    ws: WeightSet,
    factory: LinearFactory,
  ) {
    this.ws = ws;
    const names = [
      "norm1.linear",
      "norm1_context.linear",
      "attn.to_q",
      "attn.to_k",
      "attn.to_v",
      "attn.to_out.0",
      "attn.add_q_proj",
      "attn.add_k_proj",
      "attn.add_v_proj",
      "attn.to_add_out",
      "ff.net.0.proj",
      "ff.net.2",
      "ff_context.net.0.proj",
      "ff_context.net.2",
    ];
    this.lin = factory.buildAll(ws, names, prefix);
  }

  /** img [B, Si, D], txt [B, St, D] updated in place. */
  forward(
    o: ForwardOptions,
    c: FluxConfig,
    img: Float32Array,
    txt: Float32Array,
    tembSilu: Float32Array,
    rope: { cos: Float32Array; sin: Float32Array },
    b: number,
    si: number,
    st: number,
  ): void {
    const L = this.lin;
    const heads = c.numAttentionHeads;
    const dh = c.attentionHeadDim;
    const d = heads * dh;
    const mod = runLinear(o, L["norm1.linear"]!, tembSilu, b); // [B, 6D]: shift, scale, gate (msa), shift, scale, gate (mlp)
    const cmod = runLinear(o, L["norm1_context.linear"]!, tembSilu, b);
    const nimg = layerNormModulate(img, b, si, d, 1e-6, mod, d, mod, 0, 6 * d);
    const ntxt = layerNormModulate(txt, b, st, d, 1e-6, cmod, d, cmod, 0, 6 * d);
    const [q, k, v] = runShared(o, [L["attn.to_q"]!, L["attn.to_k"]!, L["attn.to_v"]!], nimg, b * si);
    const [eq, ek, ev] = runShared(
      o,
      [L["attn.add_q_proj"]!, L["attn.add_k_proj"]!, L["attn.add_v_proj"]!],
      ntxt,
      b * st,
    );
    // RMSNorm per head and RoPE in one pass; the joint sequence is [text; image], so image tokens take rope rows
    // from St on (the same as norming, concatenating, then rotating)
    const { cos, sin } = rope;
    rmsNormRopeHeads(q!, b, si, heads, dh, this.ws.f32("attn.norm_q.weight"), 1e-6, cos, sin, st);
    rmsNormRopeHeads(k!, b, si, heads, dh, this.ws.f32("attn.norm_k.weight"), 1e-6, cos, sin, st);
    rmsNormRopeHeads(eq!, b, st, heads, dh, this.ws.f32("attn.norm_added_q.weight"), 1e-6, cos, sin, 0);
    rmsNormRopeHeads(ek!, b, st, heads, dh, this.ws.f32("attn.norm_added_k.weight"), 1e-6, cos, sin, 0);
    const s = st + si;
    const Q = concatTokens(eq!, st, q!, si, b, d);
    const K = concatTokens(ek!, st, k!, si, b, d);
    const V = concatTokens(ev!, st, v!, si, b, d);
    const att = attention(Q, K, V, b, s, s, heads, dh, undefined, o.attention);
    const attTxt = sliceTokens(att, b, s, d, 0, st);
    const attImg = sliceTokens(att, b, s, d, st, si);
    const imgOut = runLinear(o, L["attn.to_out.0"]!, attImg, b * si);
    const txtOut = runLinear(o, L["attn.to_add_out"]!, attTxt, b * st);
    this.mlp(o, img, imgOut, mod, b, si, d, "ff");
    this.mlp(o, txt, txtOut, cmod, b, st, d, "ff_context");
  }

  private mlp(
    o: ForwardOptions,
    x: Float32Array,
    attnOut: Float32Array,
    mod: Float32Array,
    b: number,
    s: number,
    d: number,
    ff: string,
  ): void {
    gatedAdd(x, attnOut, b, s, d, mod, 2 * d, 6 * d);
    const n2 = layerNormModulate(x, b, s, d, 1e-6, mod, 4 * d, mod, 3 * d, 6 * d);
    const h = runLinearGelu(o, this.lin[`${ff}.net.0.proj`]!, n2, b * s);
    const f = runLinear(o, this.lin[`${ff}.net.2`]!, h, b * s);
    gatedAdd(x, f, b, s, d, mod, 5 * d, 6 * d);
  }
}

class FluxSingleBlock {
  readonly lin: Record<string, LinearLayer>;
  private readonly ws: WeightSet;
  constructor(
    readonly prefix: string,
    ws: WeightSet,
    factory: LinearFactory,
  ) {
    this.ws = ws;
    this.lin = factory.buildAll(
      ws,
      ["norm.linear", "attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out"],
      prefix,
    );
  }

  /** x [B, S, D] (text tokens first) updated in place. */
  forward(
    o: ForwardOptions,
    c: FluxConfig,
    x: Float32Array,
    tembSilu: Float32Array,
    rope: { cos: Float32Array; sin: Float32Array },
    b: number,
    s: number,
  ): void {
    const L = this.lin;
    const heads = c.numAttentionHeads;
    const dh = c.attentionHeadDim;
    const d = heads * dh;
    const mod = runLinear(o, L["norm.linear"]!, tembSilu, b); // [B, 3D]: shift, scale, gate
    const nx = layerNormModulate(x, b, s, d, 1e-6, mod, d, mod, 0, 3 * d);
    const [q, k, v, mlp] = runShared(o, [L["attn.to_q"]!, L["attn.to_k"]!, L["attn.to_v"]!, L.proj_mlp!], nx, b * s, [
      false,
      false,
      false,
      true,
    ]);
    rmsNormRopeHeads(q!, b, s, heads, dh, this.ws.f32("attn.norm_q.weight"), 1e-6, rope.cos, rope.sin, 0);
    rmsNormRopeHeads(k!, b, s, heads, dh, this.ws.f32("attn.norm_k.weight"), 1e-6, rope.cos, rope.sin, 0);
    const att = attention(q!, k!, v!, b, s, s, heads, dh, undefined, o.attention);
    const cat = concatFeatures(att, d, mlp!, 4 * d, b * s);
    const y = runLinear(o, L.proj_out!, cat, b * s);
    gatedAdd(x, y, b, s, d, mod, 2 * d, 3 * d);
  }
}

/** FLUX.1 transformer (FluxTransformer2DModel) on the CPU, float32 compute. */
export class FluxTransformer extends TransformerBase {
  readonly config: FluxConfig;
  private readonly doubles: (FluxDoubleBlock | undefined)[];
  private readonly singles: (FluxSingleBlock | undefined)[];

  private constructor(
    config: FluxConfig,
    factory: LinearFactory,
    head: WeightSet,
    doubles: (FluxDoubleBlock | undefined)[],
    singles: (FluxSingleBlock | undefined)[],
    source: TensorSource | undefined,
  ) {
    super(factory, head, source);
    this.config = config;
    this.doubles = doubles;
    this.singles = singles;
    const names = [
      "time_text_embed.timestep_embedder.linear_1",
      "time_text_embed.timestep_embedder.linear_2",
      "time_text_embed.text_embedder.linear_1",
      "time_text_embed.text_embedder.linear_2",
      "context_embedder",
      "x_embedder",
      "norm_out.linear",
      "proj_out",
    ];
    if (config.guidanceEmbeds)
      names.push("time_text_embed.guidance_embedder.linear_1", "time_text_embed.guidance_embedder.linear_2");
    Object.assign(this.headLin, factory.buildAll(head, names));
  }

  /** Load from a diffusers model folder (config.json + safetensors, sharded or not). */
  static fromFolder(dir: string, opts: ModelLoadOptions = {}): Promise<FluxTransformer> {
    return loadFromFolder(dir, opts.streaming, parseFluxConfig, (c, src) => FluxTransformer.fromSource(c, src, opts));
  }

  /** Load from any tensor source with this config. Streaming keeps `source` open (close it after use). */
  static async fromSource(
    config: FluxConfig,
    source: TensorSource,
    opts: ModelLoadOptions = {},
  ): Promise<FluxTransformer> {
    checkBlockCounts(source, [
      { prefix: "transformer_blocks.", count: config.numLayers, key: "num_layers" },
      { prefix: "single_transformer_blocks.", count: config.numSingleLayers, key: "num_single_layers" },
    ]);
    const factory = opts.factory ?? new LinearFactory();
    // every tensor must belong to the config; the provider's layers' tensors are allowed but not read
    rejectUnexpectedTensors(source, fluxParams(config), "FLUX");
    const all = factory.requiredSpecs(fluxParams(config));
    const headSpecs = all.filter((p) => !HEAD_PREFIXES.some((h) => p.name.startsWith(h)));
    const head = await loadWeightSet(source, headSpecs);
    const doubles: (FluxDoubleBlock | undefined)[] = new Array(config.numLayers).fill(undefined);
    const singles: (FluxSingleBlock | undefined)[] = new Array(config.numSingleLayers).fill(undefined);
    // Validate every block's names/shapes up front, even when streaming.
    checkBlocks(source, factory, fluxDoubleBlockParams(config), "transformer_blocks.", config.numLayers);
    checkBlocks(source, factory, fluxSingleBlockParams(config), "single_transformer_blocks.", config.numSingleLayers);
    if (!opts.streaming) {
      for (let i = 0; i < config.numLayers; i++) doubles[i] = await loadDouble(source, config, i, factory);
      for (let i = 0; i < config.numSingleLayers; i++) singles[i] = await loadSingle(source, config, i, factory);
    }
    return new FluxTransformer(config, factory, head, doubles, singles, opts.streaming ? source : undefined);
  }

  /** Every linear layer name of this model, in forward order. */
  linearNames(): string[] {
    return linearNamesOf(fluxParams(this.config));
  }

  protected residentBlocks(): readonly (FluxDoubleBlock | FluxSingleBlock | undefined)[] {
    return [...this.doubles, ...this.singles];
  }

  /** Forward pass; returns the prediction [B, Simg, patch² · out_channels]. */
  async forward(inp: FluxInputs, opts: ForwardOptions = {}): Promise<Float32Array> {
    const c = this.config;
    const d = c.numAttentionHeads * c.attentionHeadDim;
    const { batch: b, imgTokens: si, txtTokens: st } = inp;
    checkInputs(c, inp);
    const H = this.headLin;
    const img = runLinear(opts, H.x_embedder!, inp.hiddenStates, b * si);
    const t1000 = Array.from(inp.timestep, (t) => t * 1000);
    const embed = (name: string, x: Float32Array) =>
      runEmbedMlp(opts, H[`time_text_embed.${name}.linear_1`]!, H[`time_text_embed.${name}.linear_2`]!, x, b);
    const temb = embed("timestep_embedder", timestepEmbedding(t1000, 256));
    if (c.guidanceEmbeds) {
      const g1000 = Array.from(inp.guidance!, (g) => g * 1000);
      const g = embed("guidance_embedder", timestepEmbedding(g1000, 256));
      for (let i = 0; i < temb.length; i++) temb[i] = temb[i]! + g[i]!;
    }
    const pooled = embed("text_embedder", inp.pooledProjections);
    for (let i = 0; i < temb.length; i++) temb[i] = temb[i]! + pooled[i]!;
    const tembSilu = silu(temb);
    const txt = runLinear(opts, H.context_embedder!, inp.encoderHiddenStates, b * st);
    const ids = new Float32Array((st + si) * 3);
    ids.set(inp.txtIds, 0);
    ids.set(inp.imgIds, st * 3);
    const rope = fluxRope(ids, st + si, c.axesDimsRope);
    for (let i = 0; i < c.numLayers; i++) {
      const blk = this.doubles[i] ?? this.streamed(await loadDouble(this.source!, c, i, this.factory, this.arena));
      opts.onBlockStart?.(blk.prefix);
      blk.forward(opts, c, img, txt, tembSilu, rope, b, si, st);
      opts.onBlockEnd?.(blk.prefix);
    }
    let x = concatTokens(txt, st, img, si, b, d);
    for (let i = 0; i < c.numSingleLayers; i++) {
      const blk = this.singles[i] ?? this.streamed(await loadSingle(this.source!, c, i, this.factory, this.arena));
      opts.onBlockStart?.(blk.prefix);
      blk.forward(opts, c, x, tembSilu, rope, b, st + si);
      opts.onBlockEnd?.(blk.prefix);
    }
    x = sliceTokens(x, b, st + si, d, st, si);
    const mod = runLinear(opts, H["norm_out.linear"]!, tembSilu, b); // [B, 2D]: scale, shift
    const nx = layerNormModulate(x, b, si, d, 1e-6, mod, 0, mod, d, 2 * d);
    return runLinear(opts, H.proj_out!, nx, b * si);
  }
}

function loadDouble(
  src: TensorSource,
  c: FluxConfig,
  i: number,
  f: LinearFactory,
  arena?: BlockArena,
): Promise<FluxDoubleBlock> {
  const make = (prefix: string, ws: WeightSet, f: LinearFactory) => new FluxDoubleBlock(prefix, ws, f);
  return readBlock(src, fluxDoubleBlockParams(c), `transformer_blocks.${i}.`, f, make, arena);
}
function loadSingle(
  src: TensorSource,
  c: FluxConfig,
  i: number,
  f: LinearFactory,
  arena?: BlockArena,
): Promise<FluxSingleBlock> {
  const make = (prefix: string, ws: WeightSet, f: LinearFactory) => new FluxSingleBlock(prefix, ws, f);
  return readBlock(src, fluxSingleBlockParams(c), `single_transformer_blocks.${i}.`, f, make, arena);
}

export function linearNamesOf(params: readonly ParamSpec[]): string[] {
  return params.filter((p) => p.name.endsWith(".weight") && p.shape.length === 2).map((p) => p.name.slice(0, -7));
}

function checkInputs(c: FluxConfig, inp: FluxInputs): void {
  const { batch: b, imgTokens: si, txtTokens: st } = inp;
  const ok = (v: number) => Number.isSafeInteger(v) && v > 0;
  if (!ok(b) || !ok(si) || !ok(st))
    throw new ModelError(
      "E_INPUT",
      `batch ${b}, imgTokens ${si}, txtTokens ${st} must be positive integers`,
      "FluxInputs",
    );
  const need: [string, ArrayLike<number> | undefined, number, string][] = [
    ["hiddenStates", inp.hiddenStates, b * si * c.inChannels, `[${b}, ${si}, ${c.inChannels}]`],
    [
      "encoderHiddenStates",
      inp.encoderHiddenStates,
      b * st * c.jointAttentionDim,
      `[${b}, ${st}, ${c.jointAttentionDim}]`,
    ],
    ["pooledProjections", inp.pooledProjections, b * c.pooledProjectionDim, `[${b}, ${c.pooledProjectionDim}]`],
    ["timestep", inp.timestep, b, `[${b}]`],
    ["imgIds", inp.imgIds, si * 3, `[${si}, 3]`],
    ["txtIds", inp.txtIds, st * 3, `[${st}, 3]`],
  ];
  if (c.guidanceEmbeds) need.push(["guidance", inp.guidance, b, `[${b}] (this model has guidance_embeds)`]);
  else if (inp.guidance !== undefined)
    throw new ModelError(
      "E_INPUT",
      "given, but this model has no guidance embedder (guidance_embeds false)",
      "FluxInputs.guidance",
    );
  for (const [name, arr, n, shape] of need) {
    if (arr === undefined || arr.length !== n)
      throw new ModelError("E_INPUT", `has ${arr?.length ?? "no"} values, expected ${shape}`, `FluxInputs.${name}`);
    for (let i = 0; i < arr.length; i++)
      if (!Number.isFinite(arr[i]!))
        throw new ModelError("E_INPUT", `element ${i} is ${arr[i]} (not finite)`, `FluxInputs.${name}`);
  }
}
