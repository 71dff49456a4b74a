import type { FluxConfig, FluxInputs } from "@svdquant/models";
import { bf16BitsToF32, encodeFloats } from "@svdquant/tensor";
import {
  type ConvertOptions,
  defaultUnsignedLayer,
  fluxEngineItems,
  fluxEngineLinears,
  fluxEngineNorms,
  type WeightSource,
} from "./convert.js";
import { EngineError } from "./errors.js";
import type { NativeEngine, OpTime } from "./native.js";
import { openNativeEngine, uploadItems, wrap } from "./native-engine.js";
import { EngineCalibration, type EngineCalibrationOptions } from "./observer.js";
import { fnv1a32, randomLinear, randomRule } from "./random.js";

/** Device memory of an engine, measured: bytes it allocated (weights, workspace, peak of both) and cudaMemGetInfo. */
export interface EngineMemory {
  weights: number;
  workspace: number;
  peak: number;
  deviceFree: number;
  deviceTotal: number;
}

/** Options of a full-size model with random weights on the device (benchmarks; no checkpoint needed). */
export interface RandomFluxOptions {
  /**
   * "bf16": every linear 16-bit (cuBLAS); "w4a4": the SVDQuant recipe (block linears W4A4 INT4 g64 rank R, AdaNorm
   * W4A16); "w4a4p2": the same with the block linears in the opt-in Hopper format int4p2 (one FP8 GEMM per layer,
   * rank 32 per input group, sm_89+; see kernels/cuda/engine/flux.h).
   */
  mode: "bf16" | "w4a4" | "w4a4p2";
  /** Rank of the W4A4 low-rank branches (default 32; int4p2 layers always use 32). */
  rank?: number;
  /** int4p2: cuBLASLt's FP8 fast accumulation (faster, lower accumulation precision); default false. */
  p2FastAccum?: boolean;
  /**
   * int4p2 weight storage: "int4" (default) keeps 4-bit codes + one exponent byte per 64 on the device and builds
   * each layer's FP8 operand right before its GEMM (0.52 byte per weight); "e4m3" stores the FP8 operand (1 byte per
   * weight, no expansion pass).
   */
  p2Storage?: "int4" | "e4m3";
}

/**
 * A FLUX.1 transformer on the GPU. Weights are uploaded once; every device allocation (weights, inputs, output,
 * workspace) belongs to this object and is released by {@link FluxEngine.free} (or `using`), or by the garbage
 * collector if never freed. A step runs entirely on the device (one stream, no host round trip inside).
 */
export class FluxEngine {
  readonly config: FluxConfig;
  private readonly native: NativeEngine;
  private shape: { batch: number; txtTokens: number; imgTokens: number } | undefined;
  private calibration: EngineCalibration | undefined;

  private constructor(config: FluxConfig, native: NativeEngine) {
    this.config = config;
    this.native = native;
  }

  private static create(config: FluxConfig): FluxEngine {
    return new FluxEngine(config, openNativeEngine());
  }

  /**
   * Loads a diffusers-layout FLUX state dict whose linears may be packed SVDQuant layers (see convert.ts), one
   * tensor at a time (host memory: about one layer).
   */
  static async load(config: FluxConfig, source: WeightSource, opts: ConvertOptions = {}): Promise<FluxEngine> {
    const e = FluxEngine.create(config);
    try {
      await uploadItems(e.native, fluxEngineItems(config, source, opts));
    } catch (err) {
      e.free();
      throw err;
    }
    return e;
  }

  /**
   * A model with deterministic random weights drawn on the device (random.ts; the same values
   * tools/engine/flux_diffusers.py puts into diffusers' model for the 16-bit parameters). In "w4a4" mode the
   * packed layers hold random codes, scales and low-rank branches (for timing; their values mean nothing).
   */
  static random(config: FluxConfig, opts: RandomFluxOptions): FluxEngine {
    const e = FluxEngine.create(config);
    const n = e.native;
    const R = opts.rank ?? 32; // SVDQuant §5.1: rank 32
    try {
      wrap(() => {
        for (const L of fluxEngineLinears(config)) {
          const quantized =
            opts.mode !== "bf16" && (/transformer_blocks\./.test(L.name) || L.name === "norm_out.linear");
          const ada = /norm1(_context)?\.linear$|\.norm\.linear$|^norm_out\.linear$/.test(L.name);
          const kind = !quantized ? "dense" : ada ? "w4a16" : opts.mode === "w4a4p2" ? "int4p2" : "w4a4";
          randomLinear(n, L, kind, {
            rank: R,
            unsigned: defaultUnsignedLayer(L.name),
            // single blocks' proj_mlp reads attn.qkv's smoothed input (W4A4) or activation operand (int4p2; flux.h)
            smooth: !L.name.endsWith("proj_mlp"),
            p2: {
              storage: opts.p2Storage ?? "int4",
              sharedInput: /^single_transformer_blocks\.\d+\.proj_mlp$/.test(L.name),
            },
          });
        }
        for (const name of fluxEngineNorms(config)) {
          n.alloc(name, config.attentionHeadDim * 2);
          const r = randomRule(name, [config.attentionHeadDim]);
          n.fillRandom(name, "bf16", fnv1a32(name), r.center, r.scale);
        }
      });
      if (opts.p2FastAccum) n.setInt("p2.fast_accum", 1);
    } catch (err) {
      e.free();
      throw err;
    }
    return e;
  }

  /** Sizes the workspace and input buffers for a batch and token counts (done by step() when they change). */
  prepare(batch: number, txtTokens: number, imgTokens: number): void {
    const c = this.config;
    for (const [k, v] of [
      ["batch", batch],
      ["txtTokens", txtTokens],
      ["imgTokens", imgTokens],
    ] as const)
      if (!Number.isSafeInteger(v) || v <= 0)
        throw new EngineError("E_INPUT", `${k} must be a positive integer, got ${v}`, "FluxEngine.prepare");
    if (batch > 8)
      throw new EngineError("E_INPUT", `batch ${batch} > 8 (the W4A16 GEMV's limit)`, "FluxEngine.prepare");
    const n = this.live();
    const b = batch;
    wrap(() => {
      n.alloc("in.hidden", b * imgTokens * c.inChannels * 2);
      n.alloc("in.encoder", b * txtTokens * c.jointAttentionDim * 2);
      n.alloc("in.pooled", b * c.pooledProjectionDim * 2);
      n.alloc("in.timestep", b * 4);
      if (c.guidanceEmbeds) n.alloc("in.guidance", b * 4);
      n.alloc("in.ids", (txtTokens + imgTokens) * 3 * 4);
      n.alloc("out", b * imgTokens * this.outWidth * 2);
      n.prepareFlux(
        {
          heads: c.numAttentionHeads,
          headDim: c.attentionHeadDim,
          inChannels: c.inChannels,
          outChannels: this.outWidth,
          jointDim: c.jointAttentionDim,
          pooledDim: c.pooledProjectionDim,
          numLayers: c.numLayers,
          numSingleLayers: c.numSingleLayers,
          guidance: c.guidanceEmbeds ? 1 : 0,
          axes0: c.axesDimsRope[0]!,
          axes1: c.axesDimsRope[1]!,
          axes2: c.axesDimsRope[2]!,
        },
        b,
        txtTokens,
        imgTokens,
      );
    });
    this.shape = { batch, txtTokens, imgTokens };
  }

  private get outWidth(): number {
    return this.config.patchSize * this.config.patchSize * this.config.outChannels;
  }

  private live(): NativeEngine {
    if (this.native.freed)
      throw new EngineError("E_FREED", "the engine's device memory was released (free())", "FluxEngine");
    return this.native;
  }

  /** Uploads the inputs (f32 on the host, bf16 on the device; ids text first) for the next {@link run}. */
  setInputs(inp: FluxInputs): void {
    const c = this.config;
    const { batch: b, imgTokens: si, txtTokens: st } = inp;
    const s = this.shape;
    if (!s || s.batch !== b || s.txtTokens !== st || s.imgTokens !== si) this.prepare(b, st, si);
    const check = (name: string, a: ArrayLike<number> | undefined, n: number) => {
      if (a === undefined || a.length !== n)
        throw new EngineError("E_INPUT", `has ${a?.length ?? "no"} values, expected ${n}`, `FluxInputs.${name}`);
      for (let i = 0; i < a.length; i++)
        if (!Number.isFinite(a[i]!))
          throw new EngineError("E_INPUT", `element ${i} is ${a[i]} (not finite)`, `FluxInputs.${name}`);
    };
    check("hiddenStates", inp.hiddenStates, b * si * c.inChannels);
    check("encoderHiddenStates", inp.encoderHiddenStates, b * st * c.jointAttentionDim);
    check("pooledProjections", inp.pooledProjections, b * c.pooledProjectionDim);
    check("timestep", inp.timestep, b);
    check("imgIds", inp.imgIds, si * 3);
    check("txtIds", inp.txtIds, st * 3);
    if (c.guidanceEmbeds) check("guidance", inp.guidance, b);
    else if (inp.guidance !== undefined)
      throw new EngineError("E_INPUT", "given, but the model has no guidance embedder", "FluxInputs.guidance");
    const n = this.live();
    const bf = (a: Float32Array) => encodeFloats("BF16", a) as Uint16Array;
    wrap(() => {
      n.upload("in.hidden", bf(inp.hiddenStates));
      n.upload("in.encoder", bf(inp.encoderHiddenStates));
      n.upload("in.pooled", bf(inp.pooledProjections));
      n.upload("in.timestep", Float32Array.from(inp.timestep));
      if (c.guidanceEmbeds) n.upload("in.guidance", Float32Array.from(inp.guidance!));
      const ids = new Float32Array((st + si) * 3);
      ids.set(inp.txtIds, 0);
      ids.set(inp.imgIds, st * 3);
      n.upload("in.ids", ids);
    });
  }

  /**
   * Records every step's linear-layer inputs from now on (the calibration observer: per-channel absmax and a seeded
   * reservoir, the contract of @svdquant/models' CalibrationRecorder, on the device). Replaces an earlier
   * observer. Read the statistics with {@link EngineCalibration.stats}; {@link unobserve} frees them.
   */
  observe(opts: EngineCalibrationOptions = {}): EngineCalibration {
    const n = this.live();
    this.calibration = undefined;
    this.calibration = wrap(() => new EngineCalibration(n, this.config, opts));
    return this.calibration;
  }

  /** Removes the observer and frees its device statistics. */
  unobserve(): void {
    this.calibration = undefined;
    wrap(() => this.live().observe([], [], 1));
  }

  /**
   * One transformer step on the uploaded inputs (enqueued; `profile` adds CUDA events around every op). `graph`:
   * replay the step as a CUDA graph, captured on the first such call after one eager step (so that first-call tuning,
   * e.g. the int4p2 GEMMs' cuBLASLt choice, happens outside capture; no extra step while an observer records).
   */
  run(opts: { profile?: boolean; graph?: boolean } = {}): void {
    if (!this.shape) throw new EngineError("E_INPUT", "no inputs: call setInputs (or step) first", "FluxEngine.run");
    const n = this.live();
    const s = this.shape;
    if (this.calibration) wrap(() => this.calibration!.beforeStep(s.batch, s.txtTokens, s.imgTokens));
    wrap(() => (opts.graph ? n.stepGraph() : n.step(opts.profile === true)));
  }

  /** The last step's prediction [B, Si, patch²·Cout] as f32. */
  output(): Float32Array {
    if (!this.shape) throw new EngineError("E_INPUT", "no step has run", "FluxEngine.output");
    const bits = new Uint16Array(wrap(() => this.live().download("out")));
    const out = new Float32Array(bits.length);
    for (let i = 0; i < bits.length; i++) out[i] = bf16BitsToF32(bits[i]!);
    return out;
  }

  /** setInputs + run + output: one denoising step's transformer call, as a sampler makes it. */
  step(inp: FluxInputs): Float32Array {
    this.setInputs(inp);
    this.run();
    return this.output();
  }

  /**
   * The transformer interface the TypeScript samplers call (@svdquant/pipeline's FluxDenoiser, as FluxTransformer's
   * forward): one step on the device. Statistics are recorded on the device ({@link observe}); a host observer is
   * refused (the layer inputs never leave the GPU).
   */
  async forward(inp: FluxInputs, opts: { readonly observer?: unknown } = {}): Promise<Float32Array> {
    if (opts.observer !== undefined)
      throw new EngineError(
        "E_INPUT",
        "a host LinearObserver cannot see the device's layer inputs; record with FluxEngine.observe()",
        "FluxEngine.forward",
      );
    return this.step(inp);
  }

  /** Milliseconds per step over `iterations` steps (CUDA events; CUDA graph replays when `graph`). */
  timeSteps(iterations: number, graph = false): number {
    this.calibration?.invalidate("timeSteps ran observed steps without reservoir plans; observe() again to record");
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
