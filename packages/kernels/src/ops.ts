/**
 * The operators. Every input is validated here (shapes, dtypes, lengths, code ranges) before it crosses into
 * C++; native errors surface as KernelsError("E_NATIVE"). Without the native addon the same calls run the
 * float64 references of reference.ts on the unpacked weights.
 */
import { availableParallelism } from "node:os";
import { KernelsError } from "./errors.js";
import {
  NF4_TABLE,
  type PackedF32,
  type PackedW4A4,
  type PackedW4A16,
  type PackedW8A8,
  unpackF32,
  unpackW4A4,
  unpackW4A16,
  unpackW8A8,
  W4A4_GROUP,
} from "./layout.js";
import { native, nativeUnavailableReason as nativeReason } from "./native.js";
import {
  type ActFormat,
  refActQuant,
  refActQuantInt8,
  refDequant4,
  refGemmF32,
  refGemmW4A4,
  refGemmW8A8,
} from "./reference.js";
import { dim, multipleOf, record, tensor } from "./validate.js";

export type { ActFormat };

/** 4-bit activations of M tokens: codes [M,K] int8, scales [M,K/64], low-rank activations [M,R]. */
export interface QuantizedActivations {
  readonly M: number;
  readonly K: number;
  readonly R: number;
  readonly format: ActFormat;
  readonly shift: number;
  readonly codes: Int8Array;
  readonly scales: Float32Array;
  readonly loraAct: Float32Array | null;
}

export interface ActQuantOptions {
  /** λ [K]: the kernel quantizes X̂ = X / λ (SVDQuant §4.2 smoothing). Default: no smoothing. */
  smooth?: Float32Array;
  /**
   * L_down [R,K] in the published-checkpoint convention: the branch sees the UNSMOOTHED input, loraAct = X·L_downᵀ
   * (1/λ is folded into L_down, as @svdquant/quantizer and nunchaku checkpoints store it).
   */
  lowRankDown?: Float32Array;
  rank?: number;
  /** "int4" (default) or "uint4" (codes of (X + shift)/λ, for non-negative inputs such as GELU outputs). */
  format?: ActFormat;
  shift?: number;
  /** Name used in error messages. */
  name?: string;
}

function call<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new KernelsError("E_NATIVE", `${what}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Operator 1: fused activation quantize + low-rank down. `x` is X [M,K] as float32, or bfloat16 bits in a
 * Uint16Array. K must be a multiple of 64.
 */
export function quantizeActivations(
  x: Float32Array | Uint16Array,
  M: number,
  K: number,
  opts: ActQuantOptions = {},
): QuantizedActivations {
  const name = opts.name ?? "x";
  dim("M", M, true);
  dim("K", K);
  multipleOf("K", K, W4A4_GROUP, "activations are quantized per 64 channels");
  const bf16 = x instanceof Uint16Array;
  if (bf16) tensor(name, x, Uint16Array, [M, K]);
  else tensor(name, x, Float32Array, [M, K]);
  if (opts.smooth) tensor(`${name}.smooth`, opts.smooth, Float32Array, [K]);
  const R = opts.lowRankDown ? dim("rank", opts.rank ?? opts.lowRankDown.length / K) : 0;
  if (opts.lowRankDown) tensor(`${name}.lowRankDown`, opts.lowRankDown, Float32Array, [R, K]);
  const format = opts.format ?? "int4";
  if (format !== "int4" && format !== "uint4")
    throw new KernelsError("E_ARGUMENT", `activation format must be "int4" or "uint4", got ${String(format)}`);
  const shift = opts.shift ?? 0;
  if (!Number.isFinite(shift)) throw new KernelsError("E_ARGUMENT", `shift must be finite, got ${shift}`);
  if (format === "int4" && shift !== 0) throw new KernelsError("E_ARGUMENT", "shift applies to the uint4 format only");
  const codes = new Int8Array(M * K);
  const scales = new Float32Array(M * (K / 64));
  const loraAct = R ? new Float32Array(M * R) : null;
  const nb = native();
  let bad = -1;
  if (nb) {
    // The native pass holds X̂ = X/λ in registers, so it takes the branch in the smoothed domain:
    // X·L_downᵀ = X̂·(L_down·diag(λ))ᵀ. O(R·K) per call, negligible next to the O(M·K·R) product.
    let ldown = opts.lowRankDown;
    if (ldown && opts.smooth) {
      const lam = opts.smooth;
      ldown = Float32Array.from(ldown, (v, i) => v * lam[i % K]);
    }
    bad = call("actQuant", () =>
      nb.actQuant({
        x,
        bf16,
        M,
        K,
        R,
        smooth: opts.smooth,
        ldown,
        format: format === "int4" ? 0 : 1,
        shift,
        codes,
        scales,
        loraAct,
      }),
    );
  } else {
    const xf = bf16 ? new Float32Array(new Uint32Array(Array.from(x, (b) => b << 16)).buffer) : x;
    for (let i = 0; i < xf.length && bad < 0; i++) {
      const v = opts.smooth ? xf[i] / opts.smooth[i % K] : xf[i];
      if (v - v !== 0) bad = Math.floor(i / K);
    }
    if (bad < 0) {
      const r = refActQuant(xf, M, K, { smooth: opts.smooth, ldown: opts.lowRankDown, R, format, shift });
      codes.set(r.codes);
      scales.set(r.scales);
      loraAct?.set(r.loraAct);
    }
  }
  if (bad >= 0)
    throw new KernelsError("E_VALUE", `row ${bad} of X/λ [${M}, ${K}] holds a NaN or Inf`, { tensor: name });
  if (nb && loraAct && shift !== 0) {
    // The native pass saw X + shift; the branch takes the unshifted X: remove shift·Σ_k L_down[r, k].
    const ld = opts.lowRankDown!;
    for (let r = 0; r < R; r++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += ld[r * K + k];
      const c = shift * s;
      for (let m = 0; m < M; m++) loraAct[m * R + r] -= c;
    }
  }
  return { M, K, R, format, shift, codes, scales, loraAct };
}

function checkActs(a: QuantizedActivations, name: string): void {
  record(name, a);
  dim(`${name}.M`, a.M, true);
  dim(`${name}.K`, a.K);
  multipleOf(`${name}.K`, a.K, 64, "activation groups of 64");
  tensor(`${name}.codes`, a.codes, Int8Array, [a.M, a.K]);
  tensor(`${name}.scales`, a.scales, Float32Array, [a.M, a.K / 64]);
  if (a.R) tensor(`${name}.loraAct`, a.loraAct, Float32Array, [a.M, a.R]);
}

export interface GemmW4A4Options {
  /** Apply GELU(tanh) to the output. */
  gelu?: boolean;
  /** Also quantize Y for the next layer (its λ, L_down, format) in the same call. */
  next?: ActQuantOptions;
}

/**
 * Operator 2: W4A4 GEMM with the fused epilogue,
 * Y [M,N] = Σ_g (codes_x·codes_w)·s_x·s_w + loraAct·L_upᵀ + bias (then GELU when asked).
 */
export function gemmW4A4(
  act: QuantizedActivations,
  w: PackedW4A4,
  opts: GemmW4A4Options = {},
): { y: Float32Array; next?: QuantizedActivations } {
  checkActs(act, "activations");
  record("weight", w, { kind: "w4a4", type: "PackedW4A4" });
  const { M, K } = act;
  const { N, R } = w;
  if (w.K !== K)
    throw new KernelsError("E_SHAPE", `activations [${M}, ${K}] do not match weight K = ${w.K} (N = ${N})`);
  if (act.R !== R)
    throw new KernelsError(
      "E_SHAPE",
      `activations carry rank ${act.R} low-rank activations but the weight has rank ${R}`,
    );
  tensor("weight.qweight", w.qweight, Uint8Array, [Math.ceil(N / 8) * 8 * (K / 2)]);
  tensor("weight.wscales", w.wscales, Float32Array, [Math.ceil(N / 8) * 8 * (K / 64)]);
  if (R) tensor("weight.lup", w.lup, Float32Array, [Math.ceil(N / 8) * 8 * R]);
  if (w.bias) tensor("weight.bias", w.bias, Float32Array, [N]);
  if (act.format === "uint4" && act.codes.length && act.codes.some((c) => c < 0))
    throw new KernelsError("E_VALUE", "uint4 activation codes must be in [0, 15]", { tensor: "activations.codes" });
  const y = new Float32Array(M * N);
  const nb = native();
  if (nb) {
    call("gemmW4A4", () =>
      nb.gemmW4A4({
        codes: act.codes,
        ascales: act.scales,
        loraAct: act.loraAct,
        M,
        K,
        N,
        R,
        qweight: w.qweight,
        wscales: w.wscales,
        lup: w.lup,
        bias: w.bias,
        gelu: !!opts.gelu,
        y,
      }),
    );
  } else {
    const u = unpackW4A4(w);
    y.set(
      refGemmW4A4({
        M,
        K,
        N,
        R,
        xCodes: act.codes,
        xScales: act.scales,
        loraAct: act.loraAct,
        wCodes: u.codes,
        wScales: u.scales,
        lowRankUp: u.lowRankUp,
        bias: w.bias,
        gelu: opts.gelu,
      }),
    );
  }
  if (!opts.next) return { y };
  return { y, next: quantizeActivations(y, M, N, { name: "y", ...opts.next }) };
}

/** Operator 4: Y [M,N] = X [M,K]·Wᵀ + bias on packed f32 panels (optional GELU). */
export function gemmF32(x: Float32Array, M: number, w: PackedF32, opts: { gelu?: boolean } = {}): Float32Array {
  record("weight", w, { kind: "f32", type: "PackedF32" });
  dim("M", M, true);
  const { K, N } = w;
  tensor("x", x, Float32Array, [M, K]);
  tensor("weight.wpanel", w.wpanel, Float32Array, [Math.ceil(N / 16) * 16 * K]);
  if (w.bias) tensor("weight.bias", w.bias, Float32Array, [N]);
  const y = new Float32Array(M * N);
  const nb = native();
  if (nb) call("gemmF32", () => nb.gemmF32({ x, M, K, N, wpanel: w.wpanel, bias: w.bias, gelu: !!opts.gelu, y }));
  else y.set(refGemmF32(x, M, K, unpackF32(w), N, w.bias, !!opts.gelu));
  return y;
}

/** Operator 3: W4A16 GEMM, Y [M,N] = X [M,K]·dequant(W)ᵀ + bias with 4-bit INT4 or NF4 weights. */
export function gemmW4A16(x: Float32Array, M: number, w: PackedW4A16): Float32Array {
  record("weight", w, { kind: "w4a16", type: "PackedW4A16" });
  dim("M", M, true);
  const { K, N, G } = w;
  tensor("x", x, Float32Array, [M, K]);
  const Np = Math.ceil(N / 16) * 16;
  tensor("weight.qweight", w.qweight, Uint32Array, [(Np / 8) * K]);
  tensor("weight.wscales", w.wscales, Float32Array, [Np * (K / G)]);
  tensor("weight.lut", w.lut, Float32Array, [16]);
  if (w.bias) tensor("weight.bias", w.bias, Float32Array, [N]);
  const y = new Float32Array(M * N);
  const nb = native();
  if (nb)
    call("gemmW4A16", () =>
      nb.gemmW4A16({ x, M, K, N, G, qweight: w.qweight, wscales: w.wscales, lut: w.lut, bias: w.bias, y }),
    );
  else {
    const u = unpackW4A16(w);
    const wd = refDequant4(u.codes, u.scales, N, K, G, w.format === "nf4" ? NF4_TABLE : null);
    y.set(refGemmF32(x, M, K, wd, N, w.bias));
  }
  return y;
}

/** INT8 activations: codes [M,K] in [-127,127] and per-token scales [M]. */
export interface Int8Activations {
  readonly M: number;
  readonly K: number;
  readonly codes: Int8Array;
  readonly scales: Float32Array;
}

/** Per-token symmetric INT8 quantization (scale = amax/127) for the W8A8 baseline. */
export function quantizeActivationsInt8(x: Float32Array, M: number, K: number): Int8Activations {
  dim("M", M, true);
  dim("K", K);
  tensor("x", x, Float32Array, [M, K]);
  for (let i = 0; i < x.length; i++)
    if (x[i] - x[i] !== 0)
      throw new KernelsError("E_VALUE", `row ${Math.floor(i / K)} of X [${M}, ${K}] holds a NaN or Inf`, {
        tensor: "x",
      });
  const codes = new Int8Array(M * K);
  const scales = new Float32Array(M);
  const nb = native();
  if (nb) call("actQuantInt8", () => nb.actQuantInt8({ x, M, K, codes, scales }));
  else {
    const r = refActQuantInt8(x, M, K);
    codes.set(r.codes);
    scales.set(r.scales);
  }
  return { M, K, codes, scales };
}

/** Operator 5: W8A8 GEMM, Y = (codes_x·codes_wᵀ)·s_x·s_w + bias. */
export function gemmW8A8(act: Int8Activations, w: PackedW8A8): Float32Array {
  record("weight", w, { kind: "w8a8", type: "PackedW8A8" });
  const { M, K } = record("activations", act);
  dim("M", M, true);
  if (K !== w.K) throw new KernelsError("E_SHAPE", `activations [${M}, ${K}] do not match weight K = ${w.K}`);
  multipleOf("K", K, 4, "4 codes per 32-bit lane");
  tensor("activations.codes", act.codes, Int8Array, [M, K]);
  tensor("activations.scales", act.scales, Float32Array, [M]);
  const { N } = w;
  const Np = Math.ceil(N / 8) * 8;
  tensor("weight.qweight", w.qweight, Int8Array, [Np * K]);
  tensor("weight.wscales", w.wscales, Float32Array, [Np]);
  if (w.bias) tensor("weight.bias", w.bias, Float32Array, [N]);
  for (let i = 0; i < act.codes.length; i++)
    if (act.codes[i] === -128)
      throw new KernelsError("E_VALUE", `code -128 at flat index ${i} is outside [-127, 127]`, {
        tensor: "activations.codes",
      });
  const y = new Float32Array(M * N);
  const nb = native();
  if (nb)
    call("gemmW8A8", () =>
      nb.gemmW8A8({
        codes: act.codes,
        ascales: act.scales,
        M,
        K,
        N,
        qweight: w.qweight,
        wscales: w.wscales,
        bias: w.bias,
        y,
      }),
    );
  else {
    const u = unpackW8A8(w);
    y.set(refGemmW8A8(act.codes, act.scales, M, K, u.codes, u.scales, N, w.bias));
  }
  return y;
}

export type IsaChoice = "auto" | "scalar" | "avx2";

export interface BackendInfo {
  native: boolean;
  isa: "avx2" | "scalar" | "typescript";
  threads: number;
  cpuHasAvx2Fma: boolean;
  reason: string;
}

/**
 * Sets the worker count of the native pool (n ≤ 0: one per core). Returns the count in use. `n` is bounded by the
 * available parallelism (more threads than cores only cost memory and contention). When the OS refuses a thread,
 * the pool goes back to its previous size and this throws KernelsError E_NATIVE: it never claims threads it lacks.
 */
export function setThreads(n: number): number {
  const cores = availableParallelism();
  if (!Number.isInteger(n) || n > cores)
    throw new KernelsError("E_ARGUMENT", `threads must be an integer ≤ ${cores} (available parallelism), got ${n}`);
  const nb = native();
  return nb ? call("setThreads", () => nb.setThreads(n)) : 1;
}

/** Chooses the native code path: "auto" (best the CPU has), "scalar" (portable), "avx2" (throws without AVX2+FMA). */
export function setIsa(isa: IsaChoice): void {
  const mode = { auto: 0, scalar: 1, avx2: 2 }[isa];
  if (mode === undefined)
    throw new KernelsError("E_ARGUMENT", `isa must be "auto", "scalar" or "avx2", got ${String(isa)}`);
  const nb = native();
  if (nb) call("setIsa", () => nb.setIsa(mode));
}

export function backendInfo(): BackendInfo {
  const nb = native();
  if (!nb) return { native: false, isa: "typescript", threads: 1, cpuHasAvx2Fma: false, reason: nativeReason() };
  return { native: true, isa: nb.getIsa(), threads: nb.getThreads(), cpuHasAvx2Fma: nb.hasAvx2(), reason: "" };
}
