/**
 * A W4A4 linear layer prepared once for many calls: the weight (packed for the CPU kernels) and the activation
 * quantizer's constants derived from λ and L_down (L_down·diag(λ) and the UINT4 shift correction), which
 * quantizeActivations would otherwise recompute on every call, plus reusable activation buffers.
 *
 *   forward(x [M,K]) = GELU?( W4A4 GEMM(quantize(x / λ)) + (x·L_downᵀ)·L_upᵀ + bias )  →  Y [M,N]
 *
 * The activation buffers (codes [M,K] int8, scales [M,K/64] f32, loraAct [M,R] f32) grow to the largest M seen
 * and are reused, so a layer object must not run two forwards at once (the kernels are synchronous, so a
 * single-threaded JS caller never does).
 */
import { KernelsError } from "./errors.js";
import type { PackedW4A4 } from "./layout.js";
import {
  type ActFormat,
  checkW4A4,
  type FoldedLowRankDown,
  foldLowRankDown,
  planActQuant,
  prepareLowRankDownT,
  type QuantizedActivations,
  quantizeInto,
  runGemmW4A4,
} from "./ops.js";
import { dim, tensor } from "./validate.js";

export interface W4A4LayerSpec {
  /** Residual codes + group scales, L_up [N,R] and bias [N], packed by packW4A4. */
  weight: PackedW4A4;
  /** λ [K]: activations are divided by it before quantization (SVDQuant §4.2). Default: none. */
  smooth?: Float32Array;
  /** L_down [R,K] in the checkpoint convention (the branch reads the unsmoothed x). Needed when weight.R > 0. */
  lowRankDown?: Float32Array;
  /** Activation format: "int4" (default) or "uint4" with `shift` (for non-negative inputs such as GELU outputs). */
  format?: ActFormat;
  shift?: number;
  /** Name used in error messages (e.g. the checkpoint prefix of the layer). */
  name?: string;
}

export interface ForwardOptions {
  /** Apply GELU(tanh) to the output (fused in the GEMM epilogue). */
  gelu?: boolean;
  /** Write Y into this Float32Array of exactly M·N elements instead of a new one (avoids page-faulting a fresh buffer). */
  out?: Float32Array;
}

export interface PreparedW4A4Layer {
  readonly K: number;
  readonly N: number;
  readonly R: number;
  readonly format: ActFormat;
  readonly shift: number;
  /** Y [M,N] from X [M,K] (float32, or bfloat16 bits in a Uint16Array): quantize + low-rank down, then the GEMM. */
  forward(x: Float32Array | Uint16Array, M: number, opts?: ForwardOptions): Float32Array;
  /** The layer's activation quantization alone, into new arrays (same result as quantizeActivations). */
  quantize(x: Float32Array | Uint16Array, M: number): QuantizedActivations;
}

export function prepareW4A4Layer(spec: W4A4LayerSpec): PreparedW4A4Layer {
  const name = spec.name ?? "layer";
  const w = spec.weight;
  if (w?.kind !== "w4a4")
    throw new KernelsError("E_ARGUMENT", `expected a PackedW4A4 weight, got kind ${String(w?.kind)}`, {
      tensor: `${name}.weight`,
    });
  const { K, N, R } = w;
  checkW4A4(w, K, `${name}.weight`);
  if (R > 0 && !spec.lowRankDown)
    throw new KernelsError("E_ARGUMENT", `the weight has rank ${R} but no lowRankDown [${R}, ${K}] was given`, {
      tensor: `${name}.lowRankDown`,
    });
  if (R === 0 && spec.lowRankDown)
    throw new KernelsError("E_ARGUMENT", "lowRankDown was given but the weight has rank 0 (no lowRankUp)", {
      tensor: `${name}.lowRankDown`,
    });
  const plan = planActQuant(K, {
    smooth: spec.smooth,
    lowRankDown: spec.lowRankDown,
    rank: R || undefined,
    format: spec.format,
    shift: spec.shift,
    name: `${name}.x`,
  });
  if (spec.lowRankDown) tensor(`${name}.lowRankDown`, spec.lowRankDown, Float32Array, [R, K]);
  // Copies, so later edits of the caller's arrays cannot desynchronize the folded branch from λ.
  const smooth = plan.smooth && Float32Array.from(plan.smooth);
  const lowRankDown = plan.lowRankDown && Float32Array.from(plan.lowRankDown);
  const frozen = { ...plan, smooth, lowRankDown };
  const fold = foldLowRankDown(K, lowRankDown, R, smooth, plan.shift);
  const folded: FoldedLowRankDown = { ...fold, ldownT: prepareLowRankDownT(fold.ldown, R, K) };
  const { format, shift } = plan;

  let cap = 0;
  let codes = new Int8Array(0);
  let scales = new Float32Array(0);
  let lora = new Float32Array(0);
  const acts = (M: number): QuantizedActivations => {
    if (M > cap) {
      cap = M;
      codes = new Int8Array(M * K);
      scales = new Float32Array(M * (K / 64));
      lora = new Float32Array(M * R);
    }
    return {
      M,
      K,
      R,
      format,
      shift,
      codes: codes.subarray(0, M * K),
      scales: scales.subarray(0, M * (K / 64)),
      loraAct: R ? lora.subarray(0, M * R) : null,
    };
  };

  return {
    K,
    N,
    R,
    format,
    shift,
    forward(x, M, opts = {}) {
      dim("M", M, true);
      const y = opts.out ?? new Float32Array(M * N);
      if (opts.out) tensor(`${name}.out`, opts.out, Float32Array, [M, N]);
      const a = acts(M);
      quantizeInto(frozen, x, M, { codes: a.codes, scales: a.scales, loraAct: a.loraAct }, folded);
      runGemmW4A4(a, w, !!opts.gelu, y);
      return y;
    },
    quantize(x, M) {
      dim("M", M, true);
      const a = {
        codes: new Int8Array(M * K),
        scales: new Float32Array(M * (K / 64)),
        loraAct: R ? new Float32Array(M * R) : null,
      };
      quantizeInto(frozen, x, M, a, folded);
      return { M, K, R, format, shift, ...a };
    },
  };
}
