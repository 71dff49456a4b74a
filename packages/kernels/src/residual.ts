/**
 * Operator 7: the layer quantizer's residual pass (kernels/cpu/residual_quant.cc). For a smoothed weight
 * Ŵ = W·diag(λ) and a rank-R branch L = L_up·(L_down·diag(λ)) it quantizes R = Ŵ − L per group of G along K and
 * returns, in one pass over the rows (on the kernel threads), whichever of these the caller asks for:
 *
 * | output              | shape                 | dtype   | element                                         |
 * | ------------------- | --------------------- | ------- | ----------------------------------------------- |
 * | `codes`             | [N, K]                | int8    | Q(R) codes, INT4 [-8, 7] or UINT4 [0, 15]       |
 * | `scales`            | [N, K/G]              | float32 | group scales, rounded to `scaleDtype`           |
 * | `packed`            | PackedW4A4 [N, K], R  | —       | `qweight`, `wscales` and `lup` (from L_up) of layout.ts (INT4, G = 64) |
 * | `dequantized`       | [N, K]                | float32 | Q(R) = code·scale                               |
 * | `difference`        | [N, K]                | float32 | A = Ŵ − Q(R)                                    |
 * | `differenceT`       | PackedF32 [K, N]      | —       | Aᵀ as f32 GEMM panels                           |
 * | `rowSumsOverSmooth` | [N]                   | float64 | Σ_k Q(R)[n, k]/λ_k                              |
 *
 * and always ‖R‖² and ‖R − Q(R)‖². With A and Aᵀ's panels, the products a randomized SVD of A needs are plain
 * GEMMs: A·Z = gemmF32(difference, N, packF32(Zᵀ)) and Qᵀ·A = gemmF32(Qᵀ, L, differenceT). Inputs: W [N, K] float32, λ [K] float64, L_up [N, R] and L_down·diag(λ)
 * [R, K] float32. Numerics are @svdquant/int4's `quantize` on the float64 R (R = W·λ − L with L accumulated in
 * float32): raw scale float32(absmax)/7 (UINT4: max/15) in float32, rounded to nearest even in the scale dtype;
 * codes the float64 quotient rounded half to even, clamped. Without the native addon the same pass runs in
 * TypeScript (float64, same numerics).
 */
import { KernelsError } from "./errors.js";
import { type PackedF32, type PackedW4A4, W4A4_GROUP } from "./layout.js";
import { native } from "./native.js";
import { dim, multipleOf, tensor } from "./validate.js";

export type ResidualScaleDtype = "BF16" | "F16" | "F32";

export interface ResidualQuantInput {
  /** W [N, K] float32 (row-major, PyTorch Linear layout). */
  weight: Float32Array;
  N: number;
  K: number;
  /** λ [K]: the residual is W·diag(λ) − L. */
  smooth: Float64Array;
  /** L_up [N, R] float32; leave out for R = 0. */
  lowRankUp?: Float32Array;
  /** L_down·diag(λ) [R, K] float32 (the branch in the smoothed domain). */
  smoothedLowRankDown?: Float32Array;
  rank?: number;
  /** "int4" (default: absmax/7, codes [-8, 7]) or "uint4" (max/15, codes [0, 15]). */
  format?: "int4" | "uint4";
  /** Group size G along K (K a multiple of it). */
  groupSize: number;
  /** Scale storage dtype (default BF16, the published checkpoints' group scales). */
  scaleDtype?: ResidualScaleDtype;
  /** Named in error messages. */
  name?: string;
}

/** Caller-owned outputs (see the module table); each is filled when present. */
export interface ResidualQuantOutputs {
  codes?: Int8Array;
  scales?: Float32Array;
  /**
   * The residual and L_up as a W4A4 weight of rank R (make one with `emptyPackedW4A4(N, K, R)`): its qweight,
   * wscales and lup are overwritten, its bias is kept; gemmW4A4 then runs the quantized layer.
   */
  packed?: PackedW4A4;
  dequantized?: Float32Array;
  /** A = Ŵ − Q(R) [N, K] float32, row-major. */
  difference?: Float32Array;
  /** Aᵀ [K, N] (`emptyPackedF32(K, N)`). */
  differenceT?: PackedF32;
  rowSumsOverSmooth?: Float64Array;
}

/** A zero f32 panel weight [N, K] without bias, to be filled by an operator (quantizeResidual). */
export function emptyPackedF32(N: number, K: number): PackedF32 {
  dim("N", N);
  dim("K", K);
  return { kind: "f32", N, K, wpanel: new Float32Array(Math.ceil(N / 16) * 16 * K), bias: null };
}

/**
 * A W4A4 weight [N, K] of rank R without bias, all codes 0 and scales 0, to be filled by an operator
 * (quantizeResidual). Padding columns N ≤ n < Np keep code 0 (byte 0x88) and scale 0.
 */
export function emptyPackedW4A4(N: number, K: number, R: number): PackedW4A4 {
  dim("N", N);
  dim("K", K);
  dim("R", R, true);
  multipleOf("K", K, W4A4_GROUP, "W4A4 groups of 64 along K");
  const Np = Math.ceil(N / 8) * 8;
  return {
    kind: "w4a4",
    N,
    K,
    R,
    qweight: new Uint8Array((Np * K) / 2).fill(0x88),
    wscales: new Float32Array((Np * K) / W4A4_GROUP),
    lup: R ? new Float32Array(Np * R) : null,
    bias: null,
  };
}

function checkPanels(name: string, p: PackedF32, N: number, K: number): Float32Array {
  if (p.kind !== "f32" || p.N !== N || p.K !== K || p.bias !== null)
    throw new KernelsError("E_SHAPE", `expected an f32 panel weight [${N}, ${K}] without bias (emptyPackedF32)`, {
      tensor: name,
    });
  return tensor(`${name}.wpanel`, p.wpanel, Float32Array, [Math.ceil(N / 16) * 16 * K]);
}

export interface ResidualQuantResult {
  /** ‖R‖² (float64). */
  norm2: number;
  /** ‖R − Q(R)‖² (float64). */
  err2: number;
}

/** 1.5·2^52: (q + RHE) − RHE rounds q half to even in float64 for |q| < 2^51. */
const RHE = 6755399441055744;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 → bfloat16 → float32, round to nearest even (past the largest finite value: Inf). */
function bf16Round(x: number): number {
  f32[0] = x;
  const b = u32[0];
  u32[0] = (b + 0x7fff + ((b >>> 16) & 1)) & 0xffff0000;
  return f32[0];
}

/** float32 → binary16 → float32 of a finite x ≥ 0, round to nearest even, overflow → Inf, subnormals kept. */
function f16Round(x: number): number {
  if (!(x < 65520)) return Number.POSITIVE_INFINITY; // 65504 + half an ulp ties to even = Inf
  if (x === 0) return 0;
  const e = Math.floor(Math.log2(x));
  const adj = 2 ** e > x ? e - 1 : 2 ** (e + 1) <= x ? e + 1 : e; // log2 rounding at binade edges
  const u = 2 ** Math.max(adj - 10, -24);
  return (x / u + RHE - RHE) * u;
}

function roundScale(raw: number, dtype: ResidualScaleDtype): number {
  return dtype === "BF16" ? bf16Round(raw) : dtype === "F16" ? f16Round(raw) : raw;
}

/** Operator 7 (see the module comment). Throws KernelsError naming the row of a non-finite or overflowing value. */
export function quantizeResidual(input: ResidualQuantInput, out: ResidualQuantOutputs): ResidualQuantResult {
  const name = input.name ?? "residual";
  const N = dim("N", input.N);
  const K = dim("K", input.K);
  const G = dim("groupSize", input.groupSize);
  multipleOf("K", K, G, "groups along K");
  const format = input.format ?? "int4";
  if (format !== "int4" && format !== "uint4")
    throw new KernelsError("E_ARGUMENT", `residual format must be "int4" or "uint4", got ${String(format)}`);
  const scaleDtype = input.scaleDtype ?? "BF16";
  if (scaleDtype !== "BF16" && scaleDtype !== "F16" && scaleDtype !== "F32")
    throw new KernelsError("E_ARGUMENT", `scale dtype must be BF16, F16 or F32, got ${String(scaleDtype)}`);
  tensor(`${name}.weight`, input.weight, Float32Array, [N, K]);
  tensor(`${name}.smooth`, input.smooth, Float64Array, [K]);
  const R = input.lowRankUp ? dim("rank", input.rank ?? input.lowRankUp.length / N) : 0;
  if (R) {
    tensor(`${name}.lowRankUp`, input.lowRankUp, Float32Array, [N, R]);
    tensor(`${name}.smoothedLowRankDown`, input.smoothedLowRankDown, Float32Array, [R, K]);
  }
  if (out.codes) tensor(`${name}.codes`, out.codes, Int8Array, [N, K]);
  if (out.scales) tensor(`${name}.scales`, out.scales, Float32Array, [N, K / G]);
  const Np = Math.ceil(N / 8) * 8;
  if (out.packed) {
    if (format !== "int4" || G !== W4A4_GROUP)
      throw new KernelsError(
        "E_ARGUMENT",
        `the W4A4 panel holds INT4 groups of ${W4A4_GROUP}, got ${format} groups of ${G}`,
        { tensor: `${name}.packed` },
      );
    const p = out.packed;
    if (p.kind !== "w4a4" || p.N !== N || p.K !== K || p.R !== R)
      throw new KernelsError("E_SHAPE", `expected a W4A4 weight [${N}, ${K}] of rank ${R} (emptyPackedW4A4)`, {
        tensor: `${name}.packed`,
      });
    tensor(`${name}.packed.qweight`, p.qweight, Uint8Array, [(Np * K) / 2]);
    tensor(`${name}.packed.wscales`, p.wscales, Float32Array, [Np * (K / W4A4_GROUP)]);
    if (R) tensor(`${name}.packed.lup`, p.lup, Float32Array, [Np * R]);
  }
  if (out.dequantized) tensor(`${name}.dequantized`, out.dequantized, Float32Array, [N, K]);
  if (out.difference) tensor(`${name}.difference`, out.difference, Float32Array, [N, K]);
  const diffTPanel = out.differenceT ? checkPanels(`${name}.differenceT`, out.differenceT, K, N) : undefined;
  if (out.rowSumsOverSmooth) tensor(`${name}.rowSumsOverSmooth`, out.rowSumsOverSmooth, Float64Array, [N]);
  const stats = new Float64Array(4);
  const nb = native();
  const args = {
    w: input.weight,
    lambda: input.smooth,
    up: input.lowRankUp,
    dl: input.smoothedLowRankDown,
    N,
    K,
    R,
    G,
    format: format === "int4" ? 0 : 1,
    scaleDtype: scaleDtype === "F32" ? 0 : scaleDtype === "BF16" ? 1 : 2,
    codes: out.codes,
    scales: out.scales,
    qweight: out.packed?.qweight,
    wscales: out.packed?.wscales,
    dq: out.dequantized,
    diff: out.difference,
    diffTPanel,
    rowInv: out.rowSumsOverSmooth,
    stats,
  };
  if (nb?.quantizeResidual) {
    try {
      nb.quantizeResidual(args);
    } catch (e) {
      throw new KernelsError("E_NATIVE", `quantizeResidual: ${(e as Error).message}`, { cause: e });
    }
  } else residualPassTs(args, scaleDtype);
  if (stats[2] >= 0) {
    const row = stats[2];
    throw new KernelsError(
      "E_VALUE",
      stats[3] === 1
        ? `row ${row} of the residual [${N}, ${K}]: a group scale overflows ${scaleDtype}; store the scales in a wider dtype`
        : `row ${row} of the residual W·diag(λ) − L [${N}, ${K}] holds a NaN or Inf`,
      { tensor: name },
    );
  }
  if (out.packed?.lup) {
    const up = input.lowRankUp!;
    const lup = out.packed.lup;
    for (let n = 0; n < N; n++) for (let r = 0; r < R; r++) lup[((n >> 3) * R + r) * 8 + (n & 7)] = up[n * R + r];
  }
  return { norm2: stats[0], err2: stats[1] };
}

/** The arguments of the pass as residual_quant.cc takes them (format 0 INT4, 1 UINT4; stats [4] out). */
export type PassArgs = {
  w: Float32Array;
  lambda: Float64Array;
  up?: Float32Array;
  dl?: Float32Array;
  N: number;
  K: number;
  R: number;
  G: number;
  format: number;
  codes?: Int8Array;
  scales?: Float32Array;
  qweight?: Uint8Array;
  wscales?: Float32Array;
  dq?: Float32Array;
  diff?: Float32Array;
  diffTPanel?: Float32Array;
  rowInv?: Float64Array;
  stats: Float64Array;
};

/**
 * The pass in TypeScript (the fallback without the addon, and the tests' bit-exact twin of residual_quant.cc):
 * the same float32 branch sums in r order, the same float64 operations, the same 8 summation lanes (lane = k mod 8
 * when 8 divides G) added in lane order per row, rows added in order.
 */
export function residualPassTs(a: PassArgs, scaleDtype: ResidualScaleDtype): void {
  const { w, lambda, up, dl, N, K, R, G } = a;
  const groups = K / G;
  const unsigned = a.format === 1;
  const lo = unsigned ? 0 : -8;
  const hi = unsigned ? 15 : 7;
  const l = new Float32Array(K);
  const v = new Float64Array(G);
  const c = new Int8Array(G);
  const n2l = new Float64Array(8);
  const e2l = new Float64Array(8);
  const invl = new Float64Array(8);
  const g8 = G - (G % 8);
  let norm2 = 0;
  let err2 = 0;
  a.stats[2] = -1;
  a.stats[3] = 0;
  for (let i = 0; i < N; i++) {
    l.fill(0);
    for (let r = 0; r < R; r++) {
      const u = up![i * R + r];
      for (let j = 0; j < K; j++) l[j] = Math.fround(l[j] + Math.fround(u * dl![r * K + j]));
    }
    n2l.fill(0);
    e2l.fill(0);
    invl.fill(0);
    for (let g = 0; g < groups; g++) {
      let amax = 0;
      let vmax = 0;
      for (let t = 0; t < G; t++) {
        const j = g * G + t;
        const x = w[i * K + j] * lambda[j] - l[j];
        v[t] = x;
        n2l[t < g8 ? t & 7 : 0] += x * x;
        if (x > vmax) vmax = x;
        if (Math.abs(x) > amax) amax = Math.abs(x);
      }
      const raw = unsigned ? Math.fround(Math.fround(vmax) / 15) : Math.fround(Math.fround(amax) / 7);
      const scale = roundScale(raw, scaleDtype);
      if (!Number.isFinite(amax) || !Number.isFinite(scale)) {
        a.stats[2] = i;
        a.stats[3] = Number.isFinite(amax) ? 1 : 2;
        return;
      }
      if (a.scales) a.scales[i * groups + g] = scale;
      for (let t = 0; t < G; t++) {
        const j = g * G + t;
        let q = 0;
        if (scale !== 0) {
          q = v[t] / scale + RHE - RHE;
          q = q < lo ? lo : Math.min(q, hi);
        }
        const d = Math.fround(q * scale);
        const e = v[t] - d;
        e2l[t & 7] += e * e;
        c[t] = q;
        if (a.codes) a.codes[i * K + j] = q;
        if (a.dq) a.dq[i * K + j] = d;
        if (a.diff || a.diffTPanel) {
          const x = Math.fround(w[i * K + j] * lambda[j] - d);
          if (a.diff) a.diff[i * K + j] = x;
          if (a.diffTPanel) a.diffTPanel[(j >> 4) * N * 16 + i * 16 + (j & 15)] = x;
        }
        if (a.rowInv) invl[t & 7] += d / lambda[j];
      }
      if (a.qweight) {
        const base = ((i >> 3) * groups + g) * 256 + (i & 7) * 4;
        for (let q8 = 0; q8 < 8; q8++)
          for (let t = 0; t < 4; t++)
            a.qweight[base + q8 * 32 + t] = ((c[8 * q8 + t] + 8) & 15) | (((c[8 * q8 + 4 + t] + 8) & 15) << 4);
        a.wscales![((i >> 3) * groups + g) * 8 + (i & 7)] = scale;
      }
    }
    let n2 = 0;
    let e2 = 0;
    let inv = 0;
    for (let x = 0; x < 8; x++) {
      n2 += n2l[x];
      e2 += e2l[x];
      inv += invl[x];
    }
    if (!Number.isFinite(n2)) {
      a.stats[2] = i;
      a.stats[3] = 2;
      return;
    }
    norm2 += n2;
    err2 += e2;
    if (a.rowInv) a.rowInv[i] = inv;
  }
  a.stats[0] = norm2;
  a.stats[1] = err2;
}
