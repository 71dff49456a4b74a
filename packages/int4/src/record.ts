// The one record of a quantized linear layer and the constants of the SVDQuant format, defined once and
// imported by every package (quantizer output → packers → checkpoint → CPU layer → CUDA buffers).
import type { Quantized } from "./formats.js";

/** INT4 W4A4: one scale per 64 input channels, for weights and activations (SVDQuant §5.1). */
export const INT4_GROUP_SIZE = 64;
/** NVFP4: E2M1 values with one E4M3 scale per 16 (SVDQuant §5.1; NVIDIA PTX block-scaled MMA). */
export const NVFP4_GROUP_SIZE = 16;
/** Rank of the 16-bit low-rank branch (SVDQuant §5.1: rank 32 for every model). */
export const DEFAULT_RANK = 32;
/**
 * Shift added to post-GELU inputs before unsigned 4-bit quantization: GELU(x) ≥ −0.1700, so x + 0.171875
 * (a BF16 value) is ≥ 0 and uses all 16 uint4 codes (the published nunchaku INT4 checkpoints' convention).
 */
export const GELU_SHIFT = 0.171875;

/** How a W4A4 layer's input is quantized at run time (per token, per group of `groupSize` channels). */
export interface ActivationSpec {
  /**
   * int4 (signed), uint4 (unsigned, for post-GELU inputs with `shift`), nvfp4, or int4p2 (signed, power-of-two
   * row scales "pow2" as the GPU's one-pass kernel makes them; p2.ts; opt-in Hopper format, never shifted).
   */
  readonly format: "int4" | "uint4" | "nvfp4" | "int4p2";
  readonly groupSize: number;
  /** Added to x before the 4-bit path (`GELU_SHIFT` with uint4, else 0). */
  readonly shift: number;
}

/**
 * One SVDQuant W4A4 linear layer, logical (unpadded) sizes:
 *
 *   y = Q_a((x + shift) / smooth) · residualᵀ  +  (x · lowRankDownᵀ) · lowRankUpᵀ  +  bias
 *
 * | field         | shape      | dtype                | meaning                                                      | published name      |
 * | ------------- | ---------- | -------------------- | ------------------------------------------------------------ | ------------------- |
 * | smooth        | [K]        | f32 (BF16 values)    | λ; the 4-bit path divides x by it (SVDQuant §4.2)            | smooth_factor       |
 * | smoothOrig    | [K]        | f32                  | λ before any later fold (kept for the format)                | smooth_factor_orig  |
 * | lowRankDown   | [R, K]     | f32 (BF16 values)    | L_down with diag(1/λ) folded: the branch reads the raw x     | proj_down           |
 * | lowRankUp     | [N, R]     | f32 (BF16 values)    | L_up = U·diag(S)                                             | proj_up             |
 * | residual      | [N, K]     | int8 codes + f32     | 4-bit R = Ŵ − L_up·L_down·diag(λ), scales [N, K/G]           | qweight, wscales    |
 * | bias          | [N]        | f32                  | bias, minus shift·Σ_k residual[n,k]/λ_k when shift ≠ 0        | bias                |
 * | wcscales      | [N]        | f32                  | nvfp4 per-channel second-level scales                        | wcscales            |
 * | act           | –          | –                    | activation format, group size, shift                         | metadata            |
 *
 * N out-features, K in-features, R rank, G group size (64 int4, 16 nvfp4).
 */
export interface QuantizedLinear {
  /** State-dict name without the parameter suffix (for error messages and reports). */
  readonly name?: string;
  readonly residual: Quantized;
  readonly rank: number;
  readonly lowRankDown: Float32Array;
  readonly lowRankUp: Float32Array;
  readonly bias?: Float32Array;
  readonly smooth?: Float32Array;
  readonly smoothOrig?: Float32Array;
  readonly wcscales?: Float32Array;
  readonly act: ActivationSpec;
}

/**
 * The activation spec that goes with a residual format: int4 g64 (or uint4 + GELU shift), nvfp4 g16, int4p2 g64
 * (always signed: the FP8 path has no unsigned codes, so `unsigned` does not apply to it).
 */
export function activationSpecFor(format: "int4" | "nvfp4" | "int4p2", unsigned = false): ActivationSpec {
  if (format === "nvfp4") return { format: "nvfp4", groupSize: NVFP4_GROUP_SIZE, shift: 0 };
  if (format === "int4p2") return { format: "int4p2", groupSize: INT4_GROUP_SIZE, shift: 0 };
  return unsigned
    ? { format: "uint4", groupSize: INT4_GROUP_SIZE, shift: GELU_SHIFT }
    : { format: "int4", groupSize: INT4_GROUP_SIZE, shift: 0 };
}

/** Out-features N of a record. */
export const outFeaturesOf = (l: QuantizedLinear): number => l.residual.rows;
/** In-features K of a record. */
export const inFeaturesOf = (l: QuantizedLinear): number => l.residual.cols;
