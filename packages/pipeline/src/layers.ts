/**
 * Linear layers built from quantized records, behind the models' `LinearLayer` seam, in two backends:
 * - "kernels": @svdquant/kernels' fused CPU kernels, packed once at build (activation quantize + L_down in one
 *   pass, W4A4 GEMM + L_up + bias epilogue; W4A16 GEMM);
 * - "reference": float64 fake-quant arithmetic on the same parameters (the oracle the kernels are tested against).
 * int4p2 layers (the opt-in Hopper format) run their "kernels" backend as P2KernelLinear: the kernels' prepared
 * int4p2 layer, one bf16 GEMM per call (every q·2^e is exact in bf16).
 *
 * | tensor         | shape        | notes                                                       |
 * | -------------- | ------------ | ----------------------------------------------------------- |
 * | x              | [M, K]       | the model's input; zero-padded to Kp = roundUp(K, 64)       |
 * | record         | N_unit × Kp  | one fused unit (e.g. q/k/v); a member is rows [r0, r1)       |
 * | y              | [M, r1 − r0] | this member's output                                        |
 */
import {
  dequantize,
  dequantizeW4A16,
  fakeQuantize,
  INT4_GROUP_SIZE,
  type QuantizedLinear,
  type QuantSpec,
  specFor,
  type W4A16Quantized,
} from "@svdquant/int4";
import {
  gemmW4A4,
  gemmW4A16,
  KernelsError,
  type P2BranchPrecision,
  type P2Operand,
  type PackedW4A4,
  type PackedW4A16,
  type PreparedP2Layer,
  type PreparedW4A4Layer,
  packW4A4,
  packW4A16,
  prepareP2Layer,
  prepareW4A4Layer,
  type QuantizedActivations,
} from "@svdquant/kernels";
import { checkInput, type LinearLayer } from "@svdquant/models";
import { PipelineError } from "./errors.js";
import { padCols, sliceCols } from "./quantize-units.js";

export type LayerBackend = "kernels" | "reference";

/** Rows [r0, r1) of a row-major [rows, cols] matrix. */
function rowsOf<T extends Float32Array | Int8Array>(a: T, cols: number, r0: number, r1: number): T {
  return a.slice(r0 * cols, r1 * cols) as T;
}

/**
 * One member (rows [r0, r1)) of a W4A4 unit, on the CPU kernels. Packed and prepared once at load: the weight
 * panels, and λ folded into L_down (L_down·diag(λ)) with the UINT4 shift correction (kernels' prepareW4A4Layer),
 * so a call only quantizes its input and runs the GEMM.
 */
export class W4A4KernelLinear implements LinearLayer {
  readonly kind = "w4a4-packed";
  readonly inputKey: string;
  private readonly kp: number;
  private readonly packed: PackedW4A4;
  private readonly prepared: PreparedW4A4Layer;

  constructor(
    readonly name: string,
    rec: QuantizedLinear,
    r0: number,
    r1: number,
    readonly inFeatures: number,
  ) {
    const q = rec.residual;
    if (rec.act.format === "nvfp4" || q.spec.format !== "int4")
      throw new PipelineError(
        "E_UNSUPPORTED",
        `the CPU kernels run INT4 W4A4, not ${q.spec.format}; load this checkpoint with backend "reference"`,
        name,
      );
    this.kp = q.cols;
    this.inputKey = rec.name ?? name;
    const R = rec.rank;
    this.packed = packW4A4(
      {
        codes: rowsOf(q.codes, this.kp, r0, r1),
        scales: rowsOf(q.scales, this.kp / INT4_GROUP_SIZE, r0, r1),
        spec: q.spec,
      },
      r1 - r0,
      this.kp,
      {
        ...(R > 0 ? { lowRankUp: rowsOf(rec.lowRankUp, R, r0, r1), rank: R } : {}),
        ...(rec.bias ? { bias: rec.bias.slice(r0, r1) } : {}),
        name,
      },
    );
    this.prepared = prepareW4A4Layer({
      weight: this.packed,
      ...(rec.smooth ? { smooth: rec.smooth } : {}),
      ...(R > 0 ? { lowRankDown: rec.lowRankDown } : {}),
      format: rec.act.format === "uint4" ? "uint4" : "int4",
      shift: rec.act.shift,
      name,
    });
  }
  get outFeatures(): number {
    return this.packed.N;
  }
  prepareInput(x: Float32Array, m: number): QuantizedActivations {
    return this.prepared.quantize(padCols(x, m, this.inFeatures, this.kp), m);
  }
  forwardPrepared(prepared: unknown, _m: number): Float32Array {
    return gemmW4A4(prepared as QuantizedActivations, this.packed).y;
  }
  /** GELU(tanh) in the W4A4 GEMM's epilogue (the MLP up-projections). */
  forwardPreparedGelu(prepared: unknown, _m: number): Float32Array {
    return gemmW4A4(prepared as QuantizedActivations, this.packed, { gelu: true }).y;
  }
  forward(x: Float32Array, m: number): Float32Array {
    checkInput(this, x, m);
    return this.forwardPrepared(this.prepareInput(x, m), m);
  }
  forwardGelu(x: Float32Array, m: number): Float32Array {
    checkInput(this, x, m);
    return this.forwardPreparedGelu(this.prepareInput(x, m), m);
  }
}

/**
 * One member (rows [r0, r1)) of an int4p2 unit on the CPU: @svdquant/kernels' prepared int4p2 layer
 * (prepareP2Layer), packed once at load. A call quantizes v = x · f32(1/λ) natively (int4p2 "pow2", the codes of
 * @svdquant/int4's quantizer), computes the branch x · L_downᵀ, and runs ONE bf16 GEMM (AMX-BF16 tiles where the
 * CPU has them) of [Q(v) | branch columns] with [Q(residual) | L_up columns], f32 sums over all of K, S_x·S_w and the
 * bias (and GELU) in its epilogue; where the CPU has AMX-INT8 the code columns run as exact int8 exponent bands on
 * tdpbssd instead (the kernels' "amx-int8" path). The branch precision (`branch`, @svdquant/kernels
 * P2BranchPrecision): "f32" (3 bf16 parts per value) or "bf16" (bf16 x, L_down, lora_act and L_up, f32 sums).
 * Members of one unit (same λ and L_down arrays, same precision) share one quantized operand: `prepareInput`
 * quantizes, `forwardPrepared` runs the GEMM.
 */
export class P2KernelLinear implements LinearLayer {
  readonly kind = "w4a4-int4p2";
  readonly inputKey: string;
  private readonly kp: number;
  private readonly layer: PreparedP2Layer;

  constructor(
    readonly name: string,
    rec: QuantizedLinear,
    r0: number,
    r1: number,
    readonly inFeatures: number,
    branch: P2BranchPrecision,
  ) {
    const q = rec.residual;
    if (q.spec.format !== "int4p2" || q.rowScales === undefined || q.exponents === undefined)
      throw new PipelineError("E_UNSUPPORTED", `P2KernelLinear runs int4p2 layers, not ${q.spec.format}`, name);
    this.kp = q.cols;
    this.inputKey = rec.name ?? name;
    const R = rec.rank;
    try {
      this.layer = prepareP2Layer({
        N: r1 - r0,
        K: this.kp,
        codes: rowsOf(q.codes, this.kp, r0, r1),
        exponents: rowsOf(q.exponents, this.kp / INT4_GROUP_SIZE, r0, r1),
        rowScales: q.rowScales.slice(r0, r1),
        ...(rec.smooth ? { smooth: rec.smooth } : {}),
        ...(R > 0 ? { lowRankDown: rec.lowRankDown, lowRankUp: rowsOf(rec.lowRankUp, R, r0, r1) } : {}),
        ...(rec.bias ? { bias: rec.bias.slice(r0, r1) } : {}),
        branch,
        name,
      });
    } catch (e) {
      if (e instanceof KernelsError && e.code === "E_NATIVE")
        throw new PipelineError(
          "E_UNSUPPORTED",
          `int4p2 on the CPU needs the native kernels (${e.message}); load with backend "reference"`,
          name,
          { cause: e },
        );
      throw e;
    }
  }
  get outFeatures(): number {
    return this.layer.N;
  }
  prepareInput(x: Float32Array, m: number): P2Operand {
    return this.layer.quantizeOperand(padCols(x, m, this.inFeatures, this.kp), m);
  }
  forwardPrepared(prepared: unknown, _m: number): Float32Array {
    return this.layer.forwardOperand(prepared as P2Operand);
  }
  forwardPreparedGelu(prepared: unknown, _m: number): Float32Array {
    return this.layer.forwardOperand(prepared as P2Operand, { gelu: true });
  }
  forward(x: Float32Array, m: number): Float32Array {
    checkInput(this, x, m);
    return this.forwardPrepared(this.prepareInput(x, m), m);
  }
  forwardGelu(x: Float32Array, m: number): Float32Array {
    checkInput(this, x, m);
    return this.forwardPreparedGelu(this.prepareInput(x, m), m);
  }
}

/** The activation quantizer the kernels implement, as an int4 spec (scales kept in float32). */
function actSpecOf(rec: QuantizedLinear): QuantSpec {
  if (rec.act.format === "nvfp4") return specFor("nvfp4");
  if (rec.act.format === "int4p2") return specFor("int4p2", { p2RowScale: "pow2" }); // the engine's activation kernel
  return { format: rec.act.format, groupSize: rec.act.groupSize, scaleDtype: "F32" };
}

/** One member of a W4A4 unit in float64 fake-quant arithmetic: Q_a((x+shift)/λ)·Q(R)ᵀ + x·L_downᵀ·L_upᵀ + b. */
export class W4A4ReferenceLinear implements LinearLayer {
  readonly kind = "w4a4-reference";
  readonly inputKey: string;
  private readonly kp: number;
  private readonly n: number;
  private readonly residual: Float32Array;
  private readonly up: Float32Array;
  private readonly bias: Float32Array | undefined;

  constructor(
    readonly name: string,
    private readonly rec: QuantizedLinear,
    r0: number,
    r1: number,
    readonly inFeatures: number,
  ) {
    this.kp = rec.residual.cols;
    this.n = r1 - r0;
    this.inputKey = rec.name ?? name;
    this.residual = rowsOf(dequantize(rec.residual), this.kp, r0, r1);
    this.up = rowsOf(rec.lowRankUp, rec.rank, r0, r1);
    this.bias = rec.bias?.slice(r0, r1);
  }
  get outFeatures(): number {
    return this.n;
  }
  prepareInput(x: Float32Array, m: number): { q: Float64Array; branch: Float64Array } {
    const { rec, kp } = this;
    const xp = padCols(x, m, this.inFeatures, kp);
    const p = new Float64Array(m * kp);
    for (let t = 0; t < m; t++)
      for (let j = 0; j < kp; j++) p[t * kp + j] = (xp[t * kp + j]! + rec.act.shift) / (rec.smooth?.[j] ?? 1);
    const q = Float64Array.from(fakeQuantize(p, m, kp, actSpecOf(rec), this.name));
    const R = rec.rank;
    const branch = new Float64Array(m * R);
    for (let t = 0; t < m; t++)
      for (let r = 0; r < R; r++) {
        let s = 0;
        for (let j = 0; j < kp; j++) s += xp[t * kp + j]! * rec.lowRankDown[r * kp + j]!;
        branch[t * R + r] = s;
      }
    return { q, branch };
  }
  forwardPrepared(prepared: unknown, m: number): Float32Array {
    const { q, branch } = prepared as { q: Float64Array; branch: Float64Array };
    const { kp, n, residual, up } = this;
    const R = this.rec.rank;
    const y = new Float32Array(m * n);
    for (let t = 0; t < m; t++)
      for (let o = 0; o < n; o++) {
        let s = this.bias?.[o] ?? 0;
        for (let j = 0; j < kp; j++) s += q[t * kp + j]! * residual[o * kp + j]!;
        for (let r = 0; r < R; r++) s += branch[t * R + r]! * up[o * R + r]!;
        y[t * n + o] = s;
      }
    return y;
  }
  forward(x: Float32Array, m: number): Float32Array {
    checkInput(this, x, m);
    return this.forwardPrepared(this.prepareInput(x, m), m);
  }
}

/**
 * W4A16 (AWQ-style asymmetric INT4 weights, value = code·s + z) on the symmetric CPU W4A16 kernel:
 * x·(c·s + z)ᵀ = x·((c − 8)·s)ᵀ + Σ_g (z + 8s)[n, g]·Σ_{k∈g} x[m, k], the second term a [M, G]·[G, N] product.
 */
export class W4A16KernelLinear implements LinearLayer {
  readonly kind = "w4a16-packed";
  private readonly kp: number;
  private readonly g: number;
  private readonly packed: PackedW4A16;
  private readonly offset: Float32Array;

  constructor(
    readonly name: string,
    q: W4A16Quantized,
    bias: Float32Array | undefined,
    readonly inFeatures: number,
  ) {
    const { rows: N, cols: kp, groupSize: g } = q;
    this.kp = kp;
    this.g = g;
    this.packed = packW4A16({ codes: q.codes.map((c) => c - 8), scales: q.scales }, N, kp, {
      format: "int4",
      groupSize: g,
      ...(bias ? { bias } : {}),
      name,
    });
    const G = kp / g;
    this.offset = new Float32Array(N * G);
    for (let i = 0; i < N * G; i++) this.offset[i] = q.zeros[i]! + 8 * q.scales[i]!;
  }
  get outFeatures(): number {
    return this.packed.N;
  }
  forward(x: Float32Array, m: number): Float32Array {
    checkInput(this, x, m);
    const { kp, g } = this;
    const N = this.packed.N;
    const G = kp / g;
    const xp = padCols(x, m, this.inFeatures, kp);
    const y = gemmW4A16(xp, m, this.packed);
    for (let t = 0; t < m; t++) {
      const sums = new Float64Array(G);
      for (let j = 0; j < kp; j++) sums[(j / g) | 0]! += xp[t * kp + j]!;
      for (let o = 0; o < N; o++) {
        let s = 0;
        for (let gi = 0; gi < G; gi++) s += this.offset[o * G + gi]! * sums[gi]!;
        y[t * N + o]! += s;
      }
    }
    return y;
  }
}

/** W4A16 in float64: x·dequant(W)ᵀ + b. */
export class W4A16ReferenceLinear implements LinearLayer {
  readonly kind = "w4a16-reference";
  private readonly w: Float32Array;
  private readonly kp: number;
  readonly outFeatures: number;

  constructor(
    readonly name: string,
    q: W4A16Quantized,
    private readonly bias: Float32Array | undefined,
    readonly inFeatures: number,
  ) {
    this.w = dequantizeW4A16(q);
    this.kp = q.cols;
    this.outFeatures = q.rows;
  }
  forward(x: Float32Array, m: number): Float32Array {
    checkInput(this, x, m);
    const { kp, w } = this;
    const n = this.outFeatures;
    const xp = padCols(x, m, this.inFeatures, kp);
    const y = new Float32Array(m * n);
    for (let t = 0; t < m; t++)
      for (let o = 0; o < n; o++) {
        let s = this.bias?.[o] ?? 0;
        for (let j = 0; j < kp; j++) s += xp[t * kp + j]! * w[o * kp + j]!;
        y[t * n + o] = s;
      }
    return y;
  }
}

/** A model layer split along K into parts (FLUX single-block proj_out = out_proj on attn ⊕ mlp_fc2 on the MLP). */
export class SplitKLinear implements LinearLayer {
  readonly kind = "split-k";
  constructor(
    readonly name: string,
    private readonly parts: readonly { layer: LinearLayer; k0: number; k1: number }[],
    readonly inFeatures: number,
    readonly outFeatures: number,
  ) {}
  forward(x: Float32Array, m: number): Float32Array {
    checkInput(this, x, m);
    const y = new Float32Array(m * this.outFeatures);
    for (const { layer, k0, k1 } of this.parts) {
      const part = layer.forward(sliceCols(x, m, this.inFeatures, k0, k1), m);
      for (let i = 0; i < y.length; i++) y[i]! += part[i]!;
    }
    return y;
  }
}
