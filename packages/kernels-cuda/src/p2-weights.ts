// Load-time weight operand of the int4p2 FP8 path (kernels/cuda/p2_fp8.h): the residual's q·2^e as E4M3 bytes with
// the rank-R low-rank up-projection appended as 3R columns (hi/lo E4M3 split), so one FP8 GEMM computes the layer.
import { p2LowRankColumns, p2OperandE4m3, p2Parts, QuantError, type Quantized } from "@svdquant/int4";
import { CudaKernelError } from "./errors.js";

/**
 * | array   | shape    | dtype | meaning                                                                          |
 * | ------- | -------- | ----- | -------------------------------------------------------------------------------- |
 * | b8      | [N, Kx]  | e4m3  | q·2^e (k < K); then b_hi, b_lo, b_hi of b = lowRankUp[n, r] / S_w[n] · 2^c_r     |
 * | sw      | [N]      | f32   | S_w, the residual's row scales                                                   |
 * | lrShift | [R]      | int32 | c_r = 6 − ⌈log2 max_n |lowRankUp[n, r] / S_w[n]|⌉ (so max |b| is in (32, 64])      |
 * The low-rank columns and c_r come from @svdquant/int4 `p2LowRankColumns` (the format's one implementation).
 * Kx = K + 3R (K when R = 0). The activation side (quantizeActP2) writes a_hi, a_hi, a_lo of
 * a = lora_act[m, r] · 2^-(c_r + E_m) in the same columns: hi·hi + hi·lo + lo·hi ≈ a·b to about 2^-8.
 */
export interface P2WeightOperand {
  N: number;
  K: number;
  Kx: number;
  R: number;
  b8: Uint8Array;
  sw: Float32Array;
  lrShift: Int32Array;
}

/**
 * The weight operand of one int4p2 layer: `residual` [N, K] from @svdquant/int4's quantize (format "int4p2") and,
 * with R > 0, `lowRankUp` [N, R] (f32 values, row-major). Throws E_LAYOUT for another format, E_SHAPE on sizes.
 */
export function p2WeightOperand(residual: Quantized, lowRankUp?: Float32Array, R = 0): P2WeightOperand {
  if (residual.spec.format !== "int4p2")
    throw new CudaKernelError("E_LAYOUT", `p2WeightOperand needs an int4p2 residual, got ${residual.spec.format}`, {
      tensor: "residual",
    });
  const { rows: N, cols: K } = residual;
  if (R !== 0 && R !== 32) throw new CudaKernelError("E_SHAPE", `p2WeightOperand: rank R=${R} must be 0 or 32`);
  if (R > 0 && lowRankUp?.length !== N * R)
    throw new CudaKernelError("E_SHAPE", `holds ${lowRankUp?.length ?? 0} values, [N=${N}, R=${R}] needs ${N * R}`, {
      tensor: "lowRankUp",
    });
  const { rowScales } = p2Parts(residual);
  const Kx = K + 3 * R;
  const codes = p2OperandE4m3(residual);
  const b8 = new Uint8Array(N * Kx);
  for (let n = 0; n < N; n++) b8.set(codes.subarray(n * K, (n + 1) * K), n * Kx);
  let lr: { columns: Uint8Array; shift: Int32Array };
  try {
    lr = p2LowRankColumns(R > 0 ? lowRankUp! : new Float32Array(0), rowScales, R); // @svdquant/int4 p2.ts
  } catch (e) {
    if (e instanceof QuantError)
      throw new CudaKernelError(e.code === "E_SHAPE" ? "E_SHAPE" : "E_LAYOUT", e.message, {
        tensor: "lowRankUp",
        cause: e,
      });
    throw e;
  }
  for (let n = 0; n < N && R > 0; n++) b8.set(lr.columns.subarray(n * 3 * R, (n + 1) * 3 * R), n * Kx + K);
  const lrShift = lr.shift;
  return { N, K, Kx, R, b8, sw: Float32Array.from(rowScales), lrShift };
}
