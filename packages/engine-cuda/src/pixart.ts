import { type PixArtConfig, type PixArtInputs, sincos2d } from "@svdquant/models";
import { bf16BitsToF32, encodeFloats } from "@svdquant/tensor";
import {
  type ConvertOptions,
  pixartEngineItems,
  pixartEngineLinears,
  pixartEngineTables,
  pixartUnsignedLayer,
  type WeightSource,
} from "./convert.js";
import { EngineError } from "./errors.js";
import type { EngineMemory } from "./flux.js";
import type { NativeEngine, OpTime } from "./native.js";
import { openNativeEngine, uploadItems, wrap } from "./native-engine.js";
import { foldPatches, textLengths, unfoldPatches } from "./pixart-layout.js";
import { fnv1a32, randomLinear, randomRule } from "./random.js";

/** Options of a PixArt model with random weights on the device (benchmarks; no checkpoint needed). */
export interface RandomPixArtOptions {
  /**
   * "bf16": every linear 16-bit (cuBLAS); "w4a4": the SVDQuant recipe (@svdquant/models SVDQUANT_RECIPE): block
   * linears W4A4 INT4 g64 rank R except the cross-attention K/V (16-bit), `adaln_single.linear` W4A16, embedders,
   * caption projection and proj_out 16-bit.
   */
  mode: "bf16" | "w4a4";
  rank?: number;
}

/** The SVDQuant recipe's W4A4 layers of a PixArt block (engine names; attn2.kv stays 16-bit: it only sees the text). */
const W4A4_LAYER =
  /^transformer_blocks\.\d+\.(attn1\.qkv|attn1\.to_out\.0|attn2\.to_q|attn2\.to_out\.0|ff\.net\.0\.proj|ff\.net\.2)$/;

/**
 * A PixArt-Σ transformer (PixArtTransformer2DModel) on the GPU. Weights are uploaded once; every device allocation
 * belongs to this object and is released by {@link PixArtEngine.free} (or `using`). Inputs and output are those
 * of @svdquant/models' `PixArtTransformer.forward` (latents [B, C, H, W] in, [B, out_channels, H, W] out); the
 * patch unfolding and the position embedding table are made on the host, the step runs on the device.
 */
export class PixArtEngine {
  readonly config: PixArtConfig;
  private readonly native: NativeEngine;
  private shape: { batch: number; textTokens: number; height: number; width: number } | undefined;

  private constructor(config: PixArtConfig, native: NativeEngine) {
    this.config = config;
    this.native = native;
  }

  private static create(config: PixArtConfig): PixArtEngine {
    if (config.useAdditionalConditions)
      throw new EngineError("E_INPUT", "use_additional_conditions = true (PixArt-α) has no engine step", "config");
    return new PixArtEngine(config, openNativeEngine());
  }

  /** Loads a PixArtTransformer2DModel state dict whose block linears may be packed SVDQuant layers (convert.ts). */
  static async load(config: PixArtConfig, source: WeightSource, opts: ConvertOptions = {}): Promise<PixArtEngine> {
    const e = PixArtEngine.create(config);
    try {
      await uploadItems(e.native, pixartEngineItems(config, source, opts));
    } catch (err) {
      e.free();
      throw err;
    }
    return e;
  }

  /**
   * A model with deterministic random weights drawn on the device (random.ts; the 16-bit values are the ones
   * tools/engine/pixart_diffusers.py puts into diffusers' model). Packed layers hold random values (timing only).
   */
  static random(config: PixArtConfig, opts: RandomPixArtOptions): PixArtEngine {
    if (opts.mode !== "bf16" && opts.mode !== "w4a4")
      throw new EngineError("E_INPUT", `mode "${String(opts.mode)}": PixArt's random weights are "bf16" or "w4a4"`);
    const e = PixArtEngine.create(config);
    const n = e.native;
    const rank = opts.rank ?? 32; // SVDQuant §5.1: rank 32
    const d = config.numAttentionHeads * config.attentionHeadDim;
    try {
      wrap(() => {
        for (const L of pixartEngineLinears(config)) {
          const kind =
            opts.mode === "w4a4" && W4A4_LAYER.test(L.name)
              ? "w4a4"
              : opts.mode === "w4a4" && L.name === "adaln_single.linear"
                ? "w4a16"
                : "dense";
          // the patch embedding's rule sees the conv's fan-in C·p² (pixart_diffusers.py does the same)
          randomLinear(n, L, kind, { rank, unsigned: pixartUnsignedLayer(L.name) });
        }
        for (const { name, rows } of pixartEngineTables(config)) {
          n.alloc(name, rows * d * 2);
          const r = randomRule(name, [rows, d]);
          n.fillRandom(name, "bf16", fnv1a32(name), r.center, r.scale);
        }
      });
    } catch (err) {
      e.free();
      throw err;
    }
    return e;
  }

  private get dims() {
    const c = this.config;
    const d = c.numAttentionHeads * c.attentionHeadDim;
    return { d, cp: c.inChannels * c.patchSize ** 2, cout: c.outChannels * c.patchSize ** 2 };
  }

  private get textWidth(): number {
    return this.config.captionChannels ?? this.config.crossAttentionDim;
  }

  /** Sizes the inputs and workspace for a batch, text length and latent size (done by setInputs when they change). */
  prepare(batch: number, textTokens: number, height: number, width: number): void {
    const c = this.config;
    for (const [k, v] of [
      ["batch", batch],
      ["textTokens", textTokens],
      ["height", height],
      ["width", width],
    ] as const)
      if (!Number.isSafeInteger(v) || v <= 0)
        throw new EngineError("E_INPUT", `${k} must be a positive integer, got ${v}`, "PixArtEngine.prepare");
    if (batch > 8)
      throw new EngineError("E_INPUT", `batch ${batch} > 8 (the W4A16 GEMV's limit)`, "PixArtEngine.prepare");
    if (height % c.patchSize || width % c.patchSize)
      throw new EngineError(
        "E_INPUT",
        `height ${height} and width ${width} must be multiples of patch_size ${c.patchSize}`,
        "PixArtEngine.prepare",
      );
    const { d, cp, cout } = this.dims;
    const gh = height / c.patchSize;
    const gw = width / c.patchSize;
    const si = gh * gw;
    const b = batch;
    const n = this.live();
    // 2-D sin-cos position embedding of this grid (as diffusers' PatchEmbed / @svdquant/models), per batch item
    const pos = sincos2d(d, gh, gw, c.sampleSize / c.patchSize, c.interpolationScale);
    const rep = new Float32Array(b * si * d);
    for (let i = 0; i < b; i++) rep.set(pos, i * si * d);
    wrap(() => {
      n.alloc("in.hidden", b * si * cp * 2);
      n.alloc("in.pos", b * si * d * 2);
      n.upload("in.pos", encodeFloats("BF16", rep) as Uint16Array);
      n.alloc("in.encoder", b * textTokens * this.textWidth * 2);
      n.alloc("in.timestep", b * 4);
      n.alloc("in.kv_len", b * 4);
      n.alloc("out", b * si * cout * 2);
      n.preparePixArt(
        {
          heads: c.numAttentionHeads,
          headDim: c.attentionHeadDim,
          patchChannels: cp,
          outChannels: cout,
          captionChannels: c.captionChannels ?? 0,
          crossDim: c.crossAttentionDim,
          numLayers: c.numLayers,
          normEps: c.normEps,
        },
        b,
        textTokens,
        si,
      );
    });
    this.shape = { batch, textTokens, height, width };
  }

  private live(): NativeEngine {
    if (this.native.freed)
      throw new EngineError("E_FREED", "the engine's device memory was released (free())", "PixArtEngine");
    return this.native;
  }

  /**
   * Uploads the inputs of one transformer call: latents unfolded into patches, T5 embeddings, timesteps and the
   * kept text length of each item. The text mask must be a prefix mask (ones, then zeros: T5 padding) keeping at
   * least one token; without one every text token is attended.
   */
  setInputs(inp: PixArtInputs): void {
    const c = this.config;
    const { batch: b, textTokens: l, height: H, width: W } = inp;
    const s = this.shape;
    if (!s || s.batch !== b || s.textTokens !== l || s.height !== H || s.width !== W) this.prepare(b, l, H, W);
    const check = (name: string, a: ArrayLike<number> | undefined, n: number, shape: string) => {
      if (a === undefined || a.length !== n)
        throw new EngineError("E_INPUT", `has ${a?.length ?? "no"} values, expected ${shape}`, `PixArtInputs.${name}`);
      for (let i = 0; i < a.length; i++)
        if (!Number.isFinite(a[i]!))
          throw new EngineError("E_INPUT", `element ${i} is ${a[i]} (not finite)`, `PixArtInputs.${name}`);
    };
    const C = c.inChannels;
    const tw = this.textWidth;
    check("hiddenStates", inp.hiddenStates, b * C * H * W, `[${b}, ${C}, ${H}, ${W}]`);
    check("encoderHiddenStates", inp.encoderHiddenStates, b * l * tw, `[${b}, ${l}, ${tw}]`);
    check("timestep", inp.timestep, b, `[${b}]`);
    const kvLen = textLengths(inp.encoderAttentionMask, b, l);
    const patches = unfoldPatches(inp.hiddenStates, b, C, H, W, c.patchSize);
    const n = this.live();
    wrap(() => {
      n.upload("in.hidden", encodeFloats("BF16", patches) as Uint16Array);
      n.upload("in.encoder", encodeFloats("BF16", Float32Array.from(inp.encoderHiddenStates)) as Uint16Array);
      n.upload("in.timestep", Float32Array.from(inp.timestep));
      n.upload("in.kv_len", kvLen);
    });
  }

  /**
   * One transformer step on the uploaded inputs (enqueued; `profile` adds CUDA events around every op). `graph`:
   * replay the step as a CUDA graph, captured on the first such call after one eager step (so that first-call tuning,
   * e.g. the int4p2 GEMMs' cuBLASLt choice, happens outside capture; no extra step while an observer records).
   */
  run(opts: { profile?: boolean; graph?: boolean } = {}): void {
    if (!this.shape) throw new EngineError("E_INPUT", "no inputs: call setInputs (or step) first", "PixArtEngine.run");
    const n = this.live();
    wrap(() => (opts.graph ? n.stepGraph() : n.step(opts.profile === true)));
  }

  /** The last step's output [B, out_channels, H, W] (ε and learned σ), f32. */
  output(): Float32Array {
    const s = this.shape;
    if (!s) throw new EngineError("E_INPUT", "no step has run", "PixArtEngine.output");
    const bits = new Uint16Array(wrap(() => this.live().download("out")));
    const y = new Float32Array(bits.length);
    for (let i = 0; i < bits.length; i++) y[i] = bf16BitsToF32(bits[i]!);
    const c = this.config;
    return foldPatches(y, s.batch, c.outChannels, s.height, s.width, c.patchSize);
  }

  /** setInputs + run + output: one denoising step's transformer call (both CFG branches in one batch). */
  step(inp: PixArtInputs): Float32Array {
    this.setInputs(inp);
    this.run();
    return this.output();
  }

  /** Milliseconds per step over `iterations` steps (CUDA events; CUDA graph replays when `graph`). */
  timeSteps(iterations: number, graph = false): number {
    return wrap(() => this.live().timeSteps(iterations, graph));
  }

  /** Per-op-kind times of the last profiled run ({@link run} with `profile: true`). */
  profile(): OpTime[] {
    return wrap(() => this.live().profile());
  }

  memory(): EngineMemory {
    return wrap(() => this.live().bytes());
  }

  /** Direct access for tests and benchmarks (fills, single ops). */
  get raw(): NativeEngine {
    return this.live();
  }

  get freed(): boolean {
    return this.native.freed;
  }

  /** Releases every device allocation of this engine now. */
  free(): void {
    this.native.free();
  }

  [Symbol.dispose](): void {
    this.free();
  }
}
