import type { FluxConfig, FluxInputs } from "@svdquant/models";
import { bf16BitsToF32, encodeFloats } from "@svdquant/tensor";
import {
  type ConvertOptions,
  fluxEngineItems,
  fluxEngineLinears,
  fluxEngineNorms,
  type WeightSource,
} from "./convert.js";
import { EngineError } from "./errors.js";
import type { NativeEngine, OpTime } from "./native.js";
import { openNativeEngine, uploadItems, wrap } from "./native-engine.js";
import { EngineCalibration, type EngineCalibrationOptions } from "./observer.js";
import { fnv1a32, hash32, randomRule } from "./random.js";

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

/** int4p2 rank: the FP8 kernels' fixed R (kernels/cuda/p2_fp8.h). */
const P2_RANK = 32;

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
          const N = L.N.reduce((a, b) => a + b, 0);
          const K = L.K;
          const quantized =
            opts.mode !== "bf16" && (/transformer_blocks\./.test(L.name) || L.name === "norm_out.linear");
          const ada = /norm1(_context)?\.linear$|\.norm\.linear$|^norm_out\.linear$/.test(L.name);
          if (quantized && ada) {
            n.alloc(`${L.name}.w4a16_codes`, (N * K) / 2);
            n.fillRandom(`${L.name}.w4a16_codes`, "bytes", fnv1a32(`${L.name}.codes`));
            for (const [k, c, s] of [
              ["w4a16_scales", 0.004, 0.002],
              ["w4a16_zeros", -0.03, 0.01],
            ] as const) {
              n.alloc(`${L.name}.${k}`, (N * K) / 32);
              n.fillRandom(`${L.name}.${k}`, "bf16", fnv1a32(`${L.name}.${k}`), c, s);
            }
          } else if (quantized && opts.mode === "w4a4p2") {
            // one rank-32 branch per input group: single blocks' proj_mlp reads attn.qkv's operand (flux.h)
            const shared = /^single_transformer_blocks\.\d+\.proj_mlp$/.test(L.name);
            const Kx = K + 3 * P2_RANK;
            if (opts.p2Storage === "e4m3") {
              n.alloc(`${L.name}.p2_weight`, N * Kx);
              // q·2^e values of a weight whose largest group sits at e = 5 (|v| <= 224): uniform ±128 as E4M3
              n.fillRandom(`${L.name}.p2_weight`, "e4m3", fnv1a32(`${L.name}.p2_weight`), 0, 256);
            } else {
              n.alloc(`${L.name}.p2_codes`, (N * K) / 2);
              n.fillRandom(`${L.name}.p2_codes`, "bytes", fnv1a32(`${L.name}.p2_codes`));
              // group exponents 2..5: the largest group at e = 5 (P2_EXP_MAX), the others up to 8x finer
              const seed = fnv1a32(`${L.name}.p2_exps`);
              const exps = new Int8Array((N * K) / 64);
              for (let i = 0; i < exps.length; i++) exps[i] = 2 + (hash32(i, seed) & 3);
              n.alloc(`${L.name}.p2_exps`, exps.length);
              n.upload(`${L.name}.p2_exps`, exps);
              // low-rank columns b_hi, b_lo, b_hi: max |b| in (32, 64] (p2-weights.ts)
              n.alloc(`${L.name}.p2_lowrank`, N * 3 * P2_RANK);
              n.fillRandom(`${L.name}.p2_lowrank`, "e4m3", fnv1a32(`${L.name}.p2_lowrank`), 0, 128);
            }
            // S_w so that w = v·S_w spans about ±1/√K, torch's nn.Linear bound
            n.alloc(`${L.name}.p2_wscale`, N * 4);
            n.fillRandom(
              `${L.name}.p2_wscale`,
              "f32",
              fnv1a32(`${L.name}.p2_wscale`),
              1 / (128 * Math.sqrt(K)),
              0.1 / (128 * Math.sqrt(K)),
            );
            if (!shared) {
              n.alloc(`${L.name}.lora_down`, P2_RANK * K * 2);
              n.fillRandom(`${L.name}.lora_down`, "bf16", fnv1a32(`${L.name}.lora_down`), 0, 2 / Math.sqrt(K));
              n.alloc(`${L.name}.p2_lr_shift`, P2_RANK * 4);
              // c_r of lora_up / S_w values near 2^8 (p2-weights.ts: max |b| in (32, 64])
              n.upload(`${L.name}.p2_lr_shift`, new Int32Array(P2_RANK).fill(-2));
              n.alloc(`${L.name}.smooth`, K * 2);
              n.fillRandom(`${L.name}.smooth`, "bf16", fnv1a32(`${L.name}.smooth`), 1, 0.2);
            }
          } else if (quantized) {
            const r = R * L.sources.length;
            n.alloc(`${L.name}.qweight`, (N * K) / 2);
            n.fillRandom(`${L.name}.qweight`, "bytes", fnv1a32(`${L.name}.qweight`));
            n.alloc(`${L.name}.wscales`, (N * K) / 32);
            n.fillRandom(
              `${L.name}.wscales`,
              "bf16",
              fnv1a32(`${L.name}.wscales`),
              0.6 / Math.sqrt(K) / 4,
              0.1 / Math.sqrt(K),
            );
            n.alloc(`${L.name}.lora_down`, r * K * 2);
            n.fillRandom(`${L.name}.lora_down`, "bf16", fnv1a32(`${L.name}.lora_down`), 0, 2 / Math.sqrt(K));
            n.alloc(`${L.name}.lora_up`, N * r * 2);
            n.fillRandom(`${L.name}.lora_up`, "bf16", fnv1a32(`${L.name}.lora_up`), 0, 0.2 / Math.sqrt(r));
            if (!L.name.endsWith("proj_mlp")) {
              n.alloc(`${L.name}.smooth`, K * 2);
              n.fillRandom(`${L.name}.smooth`, "bf16", fnv1a32(`${L.name}.smooth`), 1, 0.2);
            }
            n.setInt(`${L.name}.act_unsigned`, /\.ff(_context)?\.net\.2$/.test(L.name) ? 1 : 0);
          } else {
            n.alloc(`${L.name}.weight`, N * K * 2);
            L.sources.forEach((s, i) => {
              const off = L.N.slice(0, i).reduce((a, b) => a + b, 0) * K * 2;
              const r = randomRule(`${s}.weight`, [L.N[i]!, K]);
              n.fillRandom(`${L.name}.weight`, "bf16", fnv1a32(`${s}.weight`), r.center, r.scale, off, L.N[i]! * K);
            });
          }
          n.alloc(`${L.name}.bias`, N * 2);
          L.sources.forEach((s, i) => {
            const off = L.N.slice(0, i).reduce((a, b) => a + b, 0) * 2;
            const r = randomRule(`${s}.bias`, [L.N[i]!]);
            n.fillRandom(`${L.name}.bias`, "bf16", fnv1a32(`${s}.bias`), r.center, r.scale, off, L.N[i]!);
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

  /** One transformer step on the uploaded inputs (enqueued; `profile` adds CUDA events around every op). */
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
