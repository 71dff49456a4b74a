// The "int4p2" format: INT4 codes whose 64-group scales are a per-row float32 scale S times 2^e, e a small integer,
// so that every code times its power of two, q·2^e, is exact in FP8 E4M3 and a W4A4 layer becomes a plain FP8 GEMM
// with per-row (token) × per-column (output channel) scaling (issue 16: the Hopper-native variant of the format).
// Opt-in only: the published nunchaku checkpoints keep free BF16 group scales ("int4"); packW4A4Layer refuses this.

import { QuantError } from "./errors.js";
import type { Quantized, QuantSpec } from "./formats.js";
import { e4m3BitsOfValue, roundE4m3 } from "./scales.js";

type Floats = Float32Array | Float64Array;

/**
 * Smallest group exponent: 2^-9 is E4M3's subnormal quantum (OCP OFP8 v1.0, table 1), so q·2^e is exact for every
 * integer q with |q| ≤ 8 down to e = −9.
 */
export const P2_EXP_MIN = -9;
/** Largest group exponent: 8·2^5 = 256 ≤ 448 (E4M3's largest finite value); −8·2^6 = −512 would not fit. */
export const P2_EXP_MAX = 5;

/**
 * How the row scale S is chosen (int4p2 only):
 * - "max" (default; weights, offline): S = max_g(amax_g / 7) · 2^-5 rounded to float32, so the largest group uses
 *   e = 5 with its free scale, and every other group e = ⌈log2(amax_g / 7 / S)⌉, the smallest power of two that
 *   holds it.
 * - "pow2" (activations, what the one-pass GPU kernel does): t_g = float32(amax_g / 7), k_g = ⌈log2 t_g⌉,
 *   S = 2^(max_g k_g − 5): every group scale is a power of two, and S needs the row's largest exponent only.
 * With `p2Search` (default true) each group then takes e or e − 1 (finer, clipping the largest values), whichever
 * gives the smaller squared error; in "pow2" mode both candidates are known before S, so a one-pass kernel can choose.
 * e is clamped to [−9, 5]; groups below the window (2^14 under the row's largest) are coarser than their own scale.
 */
export type P2RowScale = "max" | "pow2";

/**
 * Layout of an int4p2 tensor (rows = tokens M of an activation or output channels N of a weight, cols = K, G = 64):
 *
 * | tensor     | shape        | dtype | meaning                                                            |
 * | ---------- | ------------ | ----- | ------------------------------------------------------------------ |
 * | codes      | [rows, K]    | int8  | q in [−8, 7] (`Quantized.codes`)                                   |
 * | rowScales  | [rows]       | f32   | S per token / per output channel (`Quantized.rowScales`)            |
 * | exponents  | [rows, K/G]  | int8  | e in [−9, 5] (`Quantized.exponents`; −9 for an all-zero group)      |
 * | scales     | [rows, K/G]  | f32   | decoded group scale S·2^e, 0 for an all-zero group (`dequantize`)   |
 * | operand    | [rows, K]    | e4m3  | q·2^e exactly (`p2OperandE4m3`): the FP8 GEMM operand, K-contiguous  |
 *
 * A layer then computes Y[m, n] = S_x[m] · S_w[n] · Σ_k operand_x[m, k] · operand_w[n, k] (f32 accumulation of
 * exact products; cuBLASLt FP8 with outer-vector scales), plus its low-rank branch and bias.
 */
export interface P2Parts {
  rowScales: Float32Array;
  exponents: Int8Array;
}

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);

/** ⌈log2 t⌉ for a positive finite float64 t, exactly (subnormals included). */
export function ceilLog2(t: number): number {
  f64[0] = t;
  const hi = u32[1]!;
  const lo = u32[0]!;
  const ex = (hi >>> 20) & 0x7ff;
  if (ex === 0) {
    // subnormal: t = m · 2^-1074 with an integer m < 2^52
    const m = (hi & 0xfffff) * 2 ** 32 + lo;
    const bits = m.toString(2);
    const pow2 = bits.indexOf("1", 1) === -1;
    return bits.length - 1 - 1074 + (pow2 ? 0 : 1);
  }
  const pow2 = (hi & 0xfffff) === 0 && lo === 0;
  return ex - 1023 + (pow2 ? 0 : 1);
}

/** 1.5 · 2^52: (q + RHE) − RHE rounds q half to even in float64 for |q| < 2^51. */
const RHE = 6755399441055744;

const clampCode = (q: number): number => (q < -8 ? -8 : Math.min(q, 7));

/**
 * Quantizes row `r` of x (cols values at r·cols) in groups of g: writes codes, decoded scales, dequantized values
 * (any may be null), its row scale and group exponents. Throws E_NONFINITE naming the element, E_RANGE when S
 * leaves float32. The numerics are the module comment's; codes are rint(x / (S·2^e)) (float64 quotient, ties to
 * even) clamped to [−8, 7].
 */
export function quantizeRowP2(
  x: Floats,
  r: number,
  cols: number,
  g: number,
  spec: QuantSpec,
  codes: Int8Array | null,
  scales: Float32Array | null,
  dq: Floats | null,
  parts: P2Parts | null,
  name?: string,
): void {
  const mode: P2RowScale = spec.p2RowScale ?? "max";
  const search = spec.p2Search ?? true;
  const groups = cols / g;
  const base = r * cols;
  // group statistics: t[j] = amax/7 (float64 for "max", float32 for "pow2")
  const t = new Float64Array(groups);
  let tmax = 0;
  for (let j = 0; j < groups; j++) {
    let amax = 0;
    let nan = 0;
    for (let i = base + j * g, end = i + g; i < end; i++) {
      const v = x[i]!;
      nan += v * 0;
      const a = v < 0 ? -v : v;
      if (a > amax) amax = a;
    }
    if (nan !== 0) {
      let bad = base;
      while (Number.isFinite(x[bad]!)) bad++;
      throw new QuantError(
        "E_NONFINITE",
        `non-finite value ${x[bad]} at [${r}, ${bad - base}] of shape [${x.length / cols}, ${cols}]`,
        name,
      );
    }
    t[j] = mode === "max" ? amax / 7 : Math.fround(Math.fround(amax) / 7); // SVDQuant §3: int4 scale absmax/7
    if (t[j]! > tmax) tmax = t[j]!;
  }
  let S: number;
  if (tmax === 0) S = 0;
  else if (mode === "max") S = Math.fround(tmax * 2 ** -P2_EXP_MAX);
  else S = 2 ** (ceilLog2(tmax) - P2_EXP_MAX);
  if (tmax !== 0 && (S === 0 || !Number.isFinite(S) || Math.fround(S) !== S))
    throw new QuantError("E_RANGE", `row ${r}: row scale of group scale ${tmax} leaves float32`, name);
  if (parts !== null) parts.rowScales[r] = S;
  for (let j = 0; j < groups; j++) {
    const gb = base + j * g;
    const ge = gb + g;
    const gi = r * groups + j;
    if (t[j] === 0) {
      if (codes !== null) codes.fill(0, gb, ge);
      if (dq !== null) dq.fill(0, gb, ge);
      if (scales !== null) scales[gi] = 0;
      if (parts !== null) parts.exponents[gi] = P2_EXP_MIN;
      continue;
    }
    let e = ceilLog2(t[j]! / S);
    e = e < P2_EXP_MIN ? P2_EXP_MIN : Math.min(e, P2_EXP_MAX);
    if (search && e > P2_EXP_MIN) {
      // the better of 2^e (no clipping) and 2^(e−1) (finer, clips the largest values) by squared error
      let err0 = 0;
      let err1 = 0;
      const s0 = S * 2 ** e;
      const s1 = s0 / 2;
      for (let i = gb; i < ge; i++) {
        const v = x[i]!;
        const d0 = v - clampCode(v / s0 + RHE - RHE) * s0;
        const d1 = v - clampCode(v / s1 + RHE - RHE) * s1;
        err0 += d0 * d0;
        err1 += d1 * d1;
      }
      if (err1 < err0) e -= 1;
    }
    const sc = S * 2 ** e; // exact: S is a float32 value, 2^e a power of two within range
    if (scales !== null) scales[gi] = sc;
    if (parts !== null) parts.exponents[gi] = e;
    for (let i = gb; i < ge; i++) {
      const q = clampCode(x[i]! / sc + RHE - RHE);
      if (codes !== null) codes[i] = q;
      if (dq !== null) dq[i] = q * sc;
    }
  }
}

/** The row scales and group exponents of an int4p2 tensor (E_ARGUMENT for another format). */
export function p2Parts(q: Quantized): P2Parts {
  if (q.spec.format !== "int4p2" || q.rowScales === undefined || q.exponents === undefined)
    throw new QuantError("E_ARGUMENT", `p2Parts needs an int4p2 tensor from quantize, got ${q.spec.format}`);
  return { rowScales: q.rowScales, exponents: q.exponents };
}

/**
 * The FP8 GEMM operand of an int4p2 tensor: E4M3 bytes of q·2^e, row-major [rows, cols] (see the layout table;
 * every value is exact). With the row scales it gives the tensor exactly: x = S[row] · e4m3(operand).
 */
export function p2OperandE4m3(q: Quantized): Uint8Array {
  const { exponents } = p2Parts(q);
  const { rows, cols, codes } = q;
  const g = q.spec.groupSize;
  const out = new Uint8Array(rows * cols);
  for (let i = 0; i < rows * cols; i++) {
    const c = codes[i]!;
    if (c === 0) continue;
    const e = exponents[(i / g) | 0]!;
    const v = (c < 0 ? -c : c) * 2 ** e;
    out[i] = (c < 0 ? 0x80 : 0) | e4m3BitsOfValue(v);
  }
  return out;
}

/** E4M3 bits of a float value, round to nearest even, saturating at ±448 (OCP OFP8 v1.0). */
function e4m3BitsRounded(v: number): number {
  const a = roundE4m3(Math.abs(v));
  return a === 0 ? 0 : (v < 0 ? 0x80 : 0) | e4m3BitsOfValue(a);
}

/** The value of E4M3 bits (finite codes; OCP OFP8 v1.0: bias 7, subnormal quantum 2^-9). */
function e4m3Value(bits: number): number {
  const e = (bits >> 3) & 15;
  const m = bits & 7;
  const v = e === 0 ? m * 2 ** -9 : (8 + m) * 2 ** (e - 10);
  return bits & 0x80 ? -v : v;
}

/**
 * The low-rank up-projection of an int4p2 layer as FP8 GEMM columns (the 3R columns the weight operand appends
 * after its K code columns; kernels/cuda/p2_fp8.h):
 *
 * | array   | shape    | dtype | meaning                                                                           |
 * | ------- | -------- | ----- | --------------------------------------------------------------------------------- |
 * | columns | [N, 3R]  | e4m3  | b_hi, b_lo, b_hi of b = lowRankUp[n, r] / S_w[n] · 2^c_r (R columns each)          |
 * | shift   | [R]      | int32 | c_r = 6 − ⌈log2 max_n |lowRankUp[n, r] / S_w[n]|⌉ (max |b| in (32, 64]); 0 if all 0 |
 *
 * b_hi = e4m3(b), b_lo = e4m3(b − b_hi) (round to nearest even): the activation side writes a_hi, a_hi, a_lo of
 * a = lora_act · 2^−(c_r + E_m) in the same columns, so hi·hi + hi·lo + lo·hi ≈ a·b to about 2^−8 relative.
 * Rows with S_w = 0 (an all-zero residual row) get b = 0. Layers that share one activation operand (one rank-R
 * branch for a stacked weight) must take their columns from one call on the stacked rows: c_r is per operand.
 * `lowRankUp` is [N, R] row-major, `rowScales` S_w [N] (p2Parts(residual).rowScales).
 */
export function p2LowRankColumns(
  lowRankUp: Float32Array | Float64Array,
  rowScales: Float32Array,
  R: number,
  name?: string,
): { columns: Uint8Array; shift: Int32Array } {
  const N = rowScales.length;
  if (!Number.isInteger(R) || R < 0 || lowRankUp.length !== N * R)
    throw new QuantError(
      "E_SHAPE",
      `lowRankUp holds ${lowRankUp.length} values, [N=${N}, R=${R}] needs ${N * R}`,
      name,
    );
  const columns = new Uint8Array(N * 3 * R);
  const shift = new Int32Array(R);
  for (let r = 0; r < R; r++) {
    let mx = 0;
    for (let n = 0; n < N; n++) {
      const s = rowScales[n]!;
      const u = lowRankUp[n * R + r]!;
      if (!Number.isFinite(u)) throw new QuantError("E_NONFINITE", `lowRankUp value ${u} at [${n}, ${r}]`, name);
      if (s > 0) mx = Math.max(mx, Math.abs(u / s));
    }
    // max |b| in (32, 64]: headroom to 448, far above E4M3's subnormals
    if (mx > 0 && !Number.isFinite(mx))
      throw new QuantError("E_RANGE", `rank ${r}: lowRankUp / S_w leaves the float range`, name);
    shift[r] = mx > 0 ? 6 - ceilLog2(mx) : 0;
    for (let n = 0; n < N; n++) {
      const s = rowScales[n]!;
      const b = s > 0 ? Math.fround((lowRankUp[n * R + r]! / s) * 2 ** shift[r]!) : 0;
      const hi = e4m3BitsRounded(b);
      const lo = e4m3BitsRounded(Math.fround(b - e4m3Value(hi)));
      columns[n * 3 * R + r] = hi;
      columns[n * 3 * R + R + r] = lo;
      columns[n * 3 * R + 2 * R + r] = hi;
    }
  }
  return { columns, shift };
}
