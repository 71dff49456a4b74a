/**
 * The native f32 GEMM behind the plain nn.Linear contract that @svdquant/models' `GemmBackend` uses
 * (structurally: this package does not depend on the models).
 *
 * | tensor | shape  | dtype | layout                                   |
 * | ------ | ------ | ----- | ---------------------------------------- |
 * | X      | [M, K] | f32   | row-major, M tokens                      |
 * | W      | [N, K] | f32   | row-major (nn.Linear weight), unpacked   |
 * | b      | [N]    | f32   | optional                                 |
 * | Y      | [M, N] | f32   | row-major, overwritten                   |
 *
 * W is packed into the kernel's 16-column panels (see `packF32`) on every call, into a scratch buffer the
 * backend keeps: callers pass scratch arrays whose contents change between calls (attention's K panels, bf16
 * weights decoded in chunks), so caching by array identity would be wrong. Packing is one pass over W,
 * against M passes for the product.
 *
 * `prepare` packs a fixed weight once. Where the active path runs AMX-BF16 (`f32SplitInfo().amx`), it splits W
 * into bf16 parts for the split GEMM (split.ts; 3 parts by default: f32-class, 1.4–1.8x the f32 GEMM's speed on
 * the dev Xeon, docs/benchmarks.md), else it packs f32 panels.
 */
import { attentionF32 } from "./attention.js";
import { KernelsError } from "./errors.js";
import { packF32, writeF32Panels } from "./layout.js";
import { native } from "./native.js";
import { layerNormModulateF32, rmsNormRopeHeadsF32 } from "./norm.js";
import { type F32Splits, f32SplitInfo, gemmF32Split, packF32Split } from "./split.js";
import { dim, tensor } from "./validate.js";

/** A weight packed once (`F32GemmBackend.prepare`): Y [M,N] = X [M,K]·Wᵀ + b, optional GELU(tanh) epilogue. */
export interface PreparedF32Gemm {
  readonly n: number;
  readonly k: number;
  run(x: Float32Array, out: Float32Array, m: number, opts?: { gelu?: boolean }): void;
}

export interface F32GemmBackend {
  readonly name: string;
  /** Multi-head attention on the native online-softmax kernel (attentionF32), in the models' argument order. */
  attention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    bias: Float32Array | undefined,
    out: Float32Array,
    b: number,
    sq: number,
    skv: number,
    heads: number,
    dh: number,
  ): void;
  /** LayerNorm (no affine) + modulation (norm_f32.cc), in the models' argument order; returns a new array. */
  layerNormModulate(
    x: Float32Array,
    b: number,
    s: number,
    d: number,
    eps: number,
    scale: Float32Array,
    scaleOff: number,
    shift: Float32Array,
    shiftOff: number,
    stride: number,
  ): Float32Array;
  /** In place: per-head RMSNorm + interleaved RoPE (norm_f32.cc), in the models' argument order. */
  rmsNormRopeHeads(
    x: Float32Array,
    b: number,
    s: number,
    heads: number,
    dh: number,
    weight: Float32Array,
    eps: number,
    cos: Float32Array,
    sin: Float32Array,
    ropeRow0: number,
  ): void;
  /** Packs W [N,K] (+ bias) into the kernel's panels once (a copy: later edits of w are not seen). */
  prepare(w: Float32Array, bias: Float32Array | undefined, n: number, k: number): PreparedF32Gemm;
  gemm(
    x: Float32Array,
    w: Float32Array,
    bias: Float32Array | undefined,
    out: Float32Array,
    m: number,
    k: number,
    n: number,
  ): void;
}

export interface F32GemmBackendOptions {
  /**
   * bf16 parts per weight for `prepare` where AMX-BF16 runs (split.ts): 3 (default) is f32-class (6 part products,
   * dropped terms ≤ 2⁻²⁴ relative); 2 (3 products, ≈ 2⁻¹⁶ relative) is faster and less accurate; 0 keeps f32 panels.
   */
  amxSplits?: 0 | F32Splits;
}

// Panel width of the native f32 GEMM (kernels/cpu/gemm_f32.cc, the layout table of packF32).
const PANEL = 16;

/**
 * A GEMM backend on the native f32 kernel. Throws (naming the reason) when the native addon is not loaded:
 * the float64 reference fallback of this package is far too slow to serve as a model's GEMM, so a caller
 * should keep its own TypeScript GEMM instead.
 */
export function f32GemmBackend(opts: F32GemmBackendOptions = {}): F32GemmBackend {
  const splits = opts.amxSplits ?? 3;
  if (splits !== 0 && splits !== 2 && splits !== 3)
    throw new KernelsError("E_ARGUMENT", `amxSplits must be 0, 2 or 3, got ${String(splits)}`);
  const nb = native();
  if (!nb)
    throw new KernelsError(
      "E_NATIVE",
      "the native kernels are not loaded, so there is no native f32 GEMM (see nativeUnavailableReason())",
    );
  let panel = new Float32Array(0);
  // whether prepare() splits: decided per backend, on the path active when it is made
  const split = splits !== 0 && f32SplitInfo().amx ? splits : 0;
  return {
    name: `kernels-f32-${nb.getIsa()}${split ? `-bf16split${split}` : ""}`,
    attention(q, k, v, bias, out, b, sq, skv, heads, dh) {
      attentionF32(q, k, v, { B: b, Sq: sq, Skv: skv, heads, headDim: dh, bias, out });
    },
    layerNormModulate(x, b, s, d, eps, scale, scaleOff, shift, shiftOff, stride) {
      return layerNormModulateF32(x, { B: b, S: s, D: d, eps, scale, scaleOff, shift, shiftOff, stride });
    },
    rmsNormRopeHeads(x, b, s, heads, dh, weight, eps, cos, sin, ropeRow0) {
      rmsNormRopeHeadsF32(x, { B: b, S: s, heads, headDim: dh, weight, eps, cos, sin, ropeRow0 });
    },
    prepare(w, bias, n, k) {
      dim("N", n);
      dim("K", k);
      if (split) {
        const ws = packF32Split(w, n, k, { splits: split, bias: bias && Float32Array.from(bias), name: "weight" });
        return {
          n,
          k,
          run(x, out, m, opts = {}) {
            dim("M", m, true);
            gemmF32Split(x, m, ws, { gelu: !!opts.gelu, out });
          },
        };
      }
      const packed = packF32(w, n, k, { bias: bias && Float32Array.from(bias), name: "weight" });
      return {
        n,
        k,
        run(x, out, m, opts = {}) {
          dim("M", m, true);
          tensor("x", x, Float32Array, [m, k]);
          tensor("out", out, Float32Array, [m, n]);
          if (m === 0) return;
          try {
            nb.gemmF32({ x, M: m, K: k, N: n, wpanel: packed.wpanel, bias: packed.bias, gelu: !!opts.gelu, y: out });
          } catch (e) {
            throw new KernelsError("E_NATIVE", `gemmF32: ${(e as Error).message}`, { cause: e });
          }
        },
      };
    },
    gemm(x, w, bias, out, m, k, n) {
      dim("M", m, true);
      dim("K", k);
      dim("N", n);
      tensor("x", x, Float32Array, [m, k]);
      tensor("weight", w, Float32Array, [n, k]);
      if (bias !== undefined) tensor("bias", bias, Float32Array, [n]);
      tensor("out", out, Float32Array, [m, n]);
      if (m === 0) return;
      const np = Math.ceil(n / PANEL) * PANEL;
      if (panel.length < np * k) panel = new Float32Array(np * k);
      const wpanel = panel.length === np * k ? panel : panel.subarray(0, np * k);
      writeF32Panels(w, n, k, wpanel);
      try {
        nb.gemmF32({ x, M: m, K: k, N: n, wpanel, bias, gelu: false, y: out });
      } catch (e) {
        throw new KernelsError("E_NATIVE", `gemmF32: ${(e as Error).message}`, { cause: e });
      }
    },
  };
}
