/**
 * The operators. Every input is validated here (shapes, dtypes, lengths, code ranges) before it crosses into
 * C++; native errors surface as KernelsError("E_NATIVE"). Without the native addon the same calls run the
 * float64 references of reference.ts on the unpacked weights.
 */
import { availableParallelism } from "node:os";
import { cpuLabel } from "./cpu-label.js";
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
import { NATIVE_ISAS, type NativeIsa, native, nativeUnavailableReason as nativeReason } from "./native.js";
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
 * The low-rank branch as the native pass takes it, derived once from a layer's λ and L_down: the pass holds
 * X̂ = (X [+ shift])/λ in registers, so it takes L_down in the smoothed domain, X·L_downᵀ = X̂·(L_down·diag(λ))ᵀ,
 * and the shift it added is removed afterwards: shiftCorrection[r] = shift·Σ_k L_down[r, k].
 */
export interface FoldedLowRankDown {
  readonly ldown: Float32Array | undefined;
  readonly shiftCorrection: Float64Array | null;
  /** prepareLowRankDownT of `ldown` (prepared layers only). */
  readonly ldownT?: Float32Array;
}

/** O(R·K); quantizeActivations does it per call, a prepared layer (prepareW4A4Layer) once. */
export function foldLowRankDown(
  K: number,
  lowRankDown: Float32Array | undefined,
  R: number,
  smooth: Float32Array | undefined,
  shift: number,
): FoldedLowRankDown {
  let ldown = lowRankDown;
  if (lowRankDown && smooth) {
    ldown = new Float32Array(R * K);
    for (let r = 0; r < R; r++) for (let k = 0; k < K; k++) ldown[r * K + k] = lowRankDown[r * K + k] * smooth[k];
  }
  let shiftCorrection: Float64Array | null = null;
  if (lowRankDown && shift !== 0) {
    shiftCorrection = new Float64Array(R);
    for (let r = 0; r < R; r++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += lowRankDown[r * K + k];
      shiftCorrection[r] = shift * s;
    }
  }
  return { ldown, shiftCorrection };
}

/**
 * L_downᵀ as the native AVX-512 down-projection reads it (kernels/cpu/lowrank_down.h), prepared once per layer so
 * the activation pass does not transpose L_down on every call (0.07 ms at K = 3072, R = 32 on the dev Xeon):
 *
 * | tensor          | shape           | dtype   | element                                                            |
 * | --------------- | --------------- | ------- | ------------------------------------------------------------------ |
 * | `lowRankDownT`  | [K, Rp] (+ 16)  | float32 | [k, r] = L_down[r, k] for r < R, 0 for R ≤ r < Rp = roundUp(R, 16) |
 *
 * written by the addon from the array's first 64-byte aligned element (the 16 extra elements are that slack).
 * undefined without the addon (or with an addon that predates it): the native pass then transposes per call.
 */
export function prepareLowRankDownT(ldown: Float32Array | undefined, R: number, K: number): Float32Array | undefined {
  const nb = native();
  if (!ldown || R === 0 || !nb?.transposeLowRankDown) return undefined;
  const out = new Float32Array(K * Math.ceil(R / 16) * 16 + 16);
  call("transposeLowRankDown", () => nb.transposeLowRankDown!({ ldown, R, K, out }));
  return out;
}

/** Validated arguments of operator 1 (see quantizeActivations). */
export interface ActQuantPlan {
  readonly K: number;
  readonly R: number;
  readonly format: ActFormat;
  readonly shift: number;
  readonly smooth: Float32Array | undefined;
  readonly lowRankDown: Float32Array | undefined;
  readonly name: string;
}

/** Checks λ, L_down, rank, format and shift for inputs of K channels. */
export function planActQuant(K: number, opts: ActQuantOptions): ActQuantPlan {
  const name = opts.name ?? "x";
  dim("K", K);
  multipleOf("K", K, W4A4_GROUP, "activations are quantized per 64 channels");
  if (opts.smooth) tensor(`${name}.smooth`, opts.smooth, Float32Array, [K]);
  const R = opts.lowRankDown ? dim("rank", opts.rank ?? opts.lowRankDown.length / K) : 0;
  if (opts.lowRankDown) tensor(`${name}.lowRankDown`, opts.lowRankDown, Float32Array, [R, K]);
  const format = opts.format ?? "int4";
  if (format !== "int4" && format !== "uint4")
    throw new KernelsError("E_ARGUMENT", `activation format must be "int4" or "uint4", got ${String(format)}`);
  const shift = opts.shift ?? 0;
  if (!Number.isFinite(shift)) throw new KernelsError("E_ARGUMENT", `shift must be finite, got ${shift}`);
  if (format === "int4" && shift !== 0) throw new KernelsError("E_ARGUMENT", "shift applies to the uint4 format only");
  return { K, R, format, shift, smooth: opts.smooth, lowRankDown: opts.lowRankDown, name };
}

/**
 * Runs operator 1 for a validated plan into caller-owned codes [M,K], scales [M,K/64] and loraAct [M,R] (all of
 * exactly those lengths); `folded` is foldLowRankDown of the plan (computed here when absent).
 */
export function quantizeInto(
  plan: ActQuantPlan,
  x: Float32Array | Uint16Array,
  M: number,
  out: { codes: Int8Array; scales: Float32Array; loraAct: Float32Array | null },
  folded?: FoldedLowRankDown,
): void {
  const { K, R, format, shift, smooth, name } = plan;
  dim("M", M, true);
  const bf16 = x instanceof Uint16Array;
  if (bf16) tensor(name, x, Uint16Array, [M, K]);
  else tensor(name, x, Float32Array, [M, K]);
  const { codes, scales, loraAct } = out;
  const nb = native();
  let bad = -1;
  if (nb) {
    const f = folded ?? foldLowRankDown(K, plan.lowRankDown, R, smooth, shift);
    bad = call("actQuant", () =>
      nb.actQuant({
        x,
        bf16,
        M,
        K,
        R,
        smooth,
        ldown: f.ldown,
        ldownT: f.ldownT,
        format: format === "int4" ? 0 : 1,
        shift,
        codes,
        scales,
        loraAct,
      }),
    );
    if (bad < 0 && loraAct && f.shiftCorrection) {
      // The native pass saw X + shift; the branch takes the unshifted X.
      const c = f.shiftCorrection;
      for (let m = 0; m < M; m++) for (let r = 0; r < R; r++) loraAct[m * R + r] -= c[r];
    }
  } else {
    const xf = bf16 ? new Float32Array(new Uint32Array(Array.from(x, (b) => b << 16)).buffer) : x;
    for (let i = 0; i < xf.length && bad < 0; i++) {
      const v = smooth ? xf[i] / smooth[i % K] : xf[i];
      if (v - v !== 0) bad = Math.floor(i / K);
    }
    if (bad < 0) {
      const r = refActQuant(xf, M, K, { smooth, ldown: plan.lowRankDown, R, format, shift });
      codes.set(r.codes);
      scales.set(r.scales);
      loraAct?.set(r.loraAct);
    }
  }
  if (bad >= 0)
    throw new KernelsError("E_VALUE", `row ${bad} of X/λ [${M}, ${K}] holds a NaN or Inf`, { tensor: name });
}

/**
 * Operator 1: fused activation quantize + low-rank down. `x` is X [M,K] as float32, or bfloat16 bits in a
 * Uint16Array. K must be a multiple of 64. (A layer applied many times: prepareW4A4Layer folds λ into L_down once.)
 */
export function quantizeActivations(
  x: Float32Array | Uint16Array,
  M: number,
  K: number,
  opts: ActQuantOptions = {},
): QuantizedActivations {
  dim("M", M, true);
  const plan = planActQuant(K, opts);
  const { R, format, shift } = plan;
  const codes = new Int8Array(M * K);
  const scales = new Float32Array(M * (K / 64));
  const loraAct = R ? new Float32Array(M * R) : null;
  quantizeInto(plan, x, M, { codes, scales, loraAct });
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
  /** Write Y into this Float32Array of exactly M·N elements instead of a new one (no page faults of a fresh buffer). */
  out?: Float32Array;
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
  if (w.K !== act.K)
    throw new KernelsError("E_SHAPE", `activations [${act.M}, ${act.K}] do not match weight K = ${w.K} (N = ${w.N})`);
  checkW4A4(w, act.K);
  if (act.R !== w.R)
    throw new KernelsError(
      "E_SHAPE",
      `activations carry rank ${act.R} low-rank activations but the weight has rank ${w.R}`,
    );
  if (act.format === "uint4" && act.codes.length && act.codes.some((c) => c < 0))
    throw new KernelsError("E_VALUE", "uint4 activation codes must be in [0, 15]", { tensor: "activations.codes" });
  const y = opts.out ? tensor("out", opts.out, Float32Array, [act.M, w.N]) : new Float32Array(act.M * w.N);
  runGemmW4A4(act, w, !!opts.gelu, y);
  if (!opts.next) return { y };
  return { y, next: quantizeActivations(y, act.M, w.N, { name: "y", ...opts.next }) };
}

/** Checks a packed W4A4 weight's kind and tensor lengths against K. */
export function checkW4A4(w: PackedW4A4, K: number, name = "weight"): void {
  if (w.kind !== "w4a4")
    throw new KernelsError("E_ARGUMENT", `expected a PackedW4A4 weight, got kind ${String(w.kind)}`, { tensor: name });
  const { N, R } = w;
  if (w.K !== K)
    throw new KernelsError("E_SHAPE", `activations of K = ${K} do not match ${name} K = ${w.K} (N = ${N})`);
  tensor(`${name}.qweight`, w.qweight, Uint8Array, [Math.ceil(N / 8) * 8 * (K / 2)]);
  tensor(`${name}.wscales`, w.wscales, Float32Array, [Math.ceil(N / 8) * 8 * (K / 64)]);
  if (R) tensor(`${name}.lup`, w.lup, Float32Array, [Math.ceil(N / 8) * 8 * R]);
  if (w.bias) tensor(`${name}.bias`, w.bias, Float32Array, [N]);
}

/** Operator 2 on checked arguments, into y [M,N]. */
export function runGemmW4A4(act: QuantizedActivations, w: PackedW4A4, gelu: boolean, y: Float32Array): void {
  const { M, K } = act;
  const { N, R } = w;
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
        gelu,
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
        gelu,
      }),
    );
  }
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
  const codes = new Int8Array(M * K);
  const scales = new Float32Array(M);
  const nb = native();
  let bad = -1;
  if (nb) bad = call("actQuantInt8", () => nb.actQuantInt8({ x, M, K, codes, scales }));
  else {
    for (let i = 0; i < x.length && bad < 0; i++) if (x[i] - x[i] !== 0) bad = Math.floor(i / K);
    if (bad < 0) {
      const r = refActQuantInt8(x, M, K);
      codes.set(r.codes);
      scales.set(r.scales);
    }
  }
  if (bad >= 0) throw new KernelsError("E_VALUE", `row ${bad} of X [${M}, ${K}] holds a NaN or Inf`, { tensor: "x" });
  return { M, K, codes, scales };
}

export interface GemmW8A8Options {
  /**
   * Write Y into this Float32Array of exactly M·N elements instead of a new one: a fresh 1024 × 3072 output costs
   * ≈ 5 ms of first-touch page faults, as much as the AMX GEMM's own time on two cores (docs/benchmarks.md).
   */
  out?: Float32Array;
}

/** Operator 5: W8A8 GEMM, Y = (codes_x·codes_wᵀ)·s_x·s_w + bias. */
export function gemmW8A8(act: Int8Activations, w: PackedW8A8, opts: GemmW8A8Options = {}): Float32Array {
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
  // indexOf runs natively: 0.9 ms against 3.2 ms for a JS loop over 1024 × 3072 codes (Node 20, dev Xeon)
  const bad = act.codes.indexOf(-128);
  if (bad >= 0)
    throw new KernelsError("E_VALUE", `code -128 at flat index ${bad} is outside [-127, 127]`, {
      tensor: "activations.codes",
    });
  const y = opts.out ? tensor("out", opts.out, Float32Array, [M, N]) : new Float32Array(M * N);
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

/** A native code path to force, or "auto" (the best the CPU has). */
export type IsaChoice = "auto" | NativeIsa;

export interface BackendInfo {
  native: boolean;
  /** The path the operators run now: a native path, or "typescript" (the float64 reference fallback). */
  isa: NativeIsa | "typescript";
  threads: number;
  cpuHasAvx2Fma: boolean;
  /** The native paths this CPU (and OS) can run, worst to best ([] without the addon). */
  supportedIsas: NativeIsa[];
  reason: string;
  /** This CPU as benchmark lines name it: model name, and family / model / stepping on x86 Linux (cpuLabel()). */
  cpu: string;
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

/**
 * Chooses the native code path: "auto" (the best the CPU has), or one of "scalar" (portable), "avx2" (AVX2+FMA),
 * "avx512" (AVX-512 with VNNI), "amx" (AMX-INT8 tiles; operators without an AMX kernel run their avx512 kernel).
 * Throws E_UNSUPPORTED when the CPU (or OS) cannot run the path. The environment variable SVDQ_KERNELS_ISA sets the
 * same at load time.
 */
export function setIsa(isa: IsaChoice): void {
  const idx = (NATIVE_ISAS as readonly unknown[]).indexOf(isa);
  if (isa !== "auto" && idx < 0)
    throw new KernelsError("E_ARGUMENT", `isa must be "auto" or one of ${NATIVE_ISAS.join(", ")}; got ${String(isa)}`);
  const nb = native();
  if (!nb) return;
  if (isa !== "auto" && !nb.supportedIsas().includes(isa))
    throw new KernelsError(
      "E_UNSUPPORTED",
      `this CPU cannot run the ${isa} path (it supports ${nb.supportedIsas().join(", ")})`,
    );
  call("setIsa", () => nb.setIsa(idx + 1));
}

export function backendInfo(): BackendInfo {
  const nb = native();
  if (!nb)
    return {
      native: false,
      isa: "typescript",
      threads: 1,
      cpuHasAvx2Fma: false,
      supportedIsas: [],
      reason: nativeReason(),
      cpu: cpuLabel(),
    };
  return {
    native: true,
    isa: nb.getIsa(),
    threads: nb.getThreads(),
    cpuHasAvx2Fma: nb.hasAvx2(),
    supportedIsas: nb.supportedIsas(),
    reason: "",
    cpu: cpuLabel(),
  };
}
