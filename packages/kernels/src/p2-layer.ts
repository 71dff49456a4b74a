/**
 * The int4p2 W4A4 layer (the opt-in format of @svdquant/int4 p2.ts) prepared once for many calls on the native
 * kernels (kernels/cpu/p2_layer.h). Every 64-group scale of int4p2 is a per-row f32 scale S times 2^e, so each
 * q·2^e is exact in bf16 and the layer is ONE GEMM with f32 sums over all of K and S_x[m]·S_w[n] applied once in
 * the epilogue; the rank-R branch rides in the same GEMM as extra K columns, at the precision `branch` picks
 * (P2BranchPrecision):
 *
 * | branch | down-projection x·L_downᵀ                                  | GEMM columns | branch accuracy                     |
 * | ------ | ---------------------------------------------------------- | ------------ | ----------------------------------- |
 * | "f32"  | f32 x, f32 L_down, f32 sums (AVX-512 FMA)                  | 6R           | ≈ 2^-23 per product: an f32 epilogue |
 * | "bf16" | bf16(x), bf16(L_down), f32 sums (AMX-BF16 tiles, fused)    | R            | bf16 inputs and parts (≈ 2^-9)       |
 *
 * "f32": three bf16 parts of each f32 value, the six products of parts down to 2^-16. "bf16" (SVDQuant §4 keeps the
 * branch in 16 bit, the reference engine computes it from 16-bit x and L_down with f32 sums): lora_act rounded to
 * bf16 after dividing by S_x (a power of two), L_up rounded to bf16 after dividing by S_w: one part each.
 *
 *   forward(x [M,K]) = GELU?( S_x·S_w · Σ_k Q(x·(1/λ))·Q(W) + (x·L_downᵀ)·L_upᵀ + bias )  →  Y [M,N]
 *
 * with Q(x·(1/λ)) the int4p2 "pow2" activation quantization of v = f32(x · f32(1/λ)) (p2.ts quantizeRowP2 with
 * p2RowScale "pow2" and its e / e − 1 search: codes and exponents equal to the TypeScript quantizer's, byte for
 * byte), x·L_downᵀ on the raw x (L_down has 1/λ folded in, the checkpoint convention).
 *
 * Inputs (N out, K in, R rank, G = 64):
 *
 * | tensor      | shape    | dtype | meaning                                                     |
 * | ----------- | -------- | ----- | ----------------------------------------------------------- |
 * | codes       | [N, K]   | int8  | residual codes q in [−8, 7] (`Quantized.codes`)              |
 * | exponents   | [N, K/G] | int8  | group exponents e in [−9, 5] (`Quantized.exponents`)         |
 * | rowScales   | [N]      | f32   | S_w ≥ 0 (`Quantized.rowScales`)                              |
 * | smooth      | [K]      | f32   | λ (optional; finite, non-zero)                              |
 * | lowRankDown | [R, K]   | f32   | L_down (1/λ folded in)                                      |
 * | lowRankUp   | [N, R]   | f32   | L_up                                                        |
 * | bias        | [N]      | f32   | optional                                                    |
 *
 * Packed once at prepare (the native operand, see the package README's layout table): `wop` bf16
 * [Np/32][Kt/32][2][16][16][2] with Np = roundUp(N, 32), Kt = K + roundUp(6R, 32) ("f32") or K + roundUp(R, 32)
 * ("bf16"), `sw` f32 [Np]; "bf16" also `ldb` bf16 [K/32][Rp/16][16][16][2] = bf16(L_down) as AMX B tiles
 * (Rp = roundUp(R, 16); kernels/cpu/p2_layer.h).
 *
 * On a CPU with AMX-INT8 (and `amxInt8` not false) prepare also packs the int8 band operand of
 * kernels/cpu/p2_int8.h, and the `amx` ISA then runs the "amx-int8" path: every q·2^e of a row whose exponents lie
 * within 5 levels of its largest is an int8 times one power of two, so the GEMM runs on `tdpbssd` with exact int32
 * sums (rows with a wider spread get "shadow" rows for their other exponent bands); the branch columns (either
 * precision) run on bf16 tiles after the int8 loop.
 *
 * Where the active ISA is `avx2` (and `avx2Int8` not false) prepare also packs the 4-bit weight of
 * kernels/cpu/p2_avx2.h and forward runs the "avx2-int8" path: each 64-group's dot product of the int4 codes summed
 * exactly by vpmaddubsw (as the INT4 W4A4 AVX2 GEMM), times 2^(e_x + e_w) in f32, the branch (either precision, the
 * same values as its bf16 columns) as an f32 sum in the epilogue.
 */
import { KernelsError } from "./errors.js";
import { W4A4_GROUP } from "./layout.js";
import { type NativeBinding, native, nativeUnavailableReason } from "./native.js";
import { prepareLowRankDownT } from "./ops.js";
import { codeRange, dim, finite, multipleOf, tensor } from "./validate.js";

/**
 * Precision of the int4p2 layer's low-rank branch (the table above). The one home of the option's values: every
 * package that passes it (e.g. @svdquant/pipeline's int4p2 CPU layers) uses this type.
 */
export type P2BranchPrecision = "f32" | "bf16";
export const P2_BRANCH_PRECISIONS: readonly P2BranchPrecision[] = ["f32", "bf16"];

/** `branch` checked: one of P2_BRANCH_PRECISIONS (default "f32"), else E_ARGUMENT naming `where`. */
export function p2BranchPrecision(branch: unknown, where: string): P2BranchPrecision {
  if (branch === undefined) return "f32";
  if (!P2_BRANCH_PRECISIONS.includes(branch as P2BranchPrecision))
    throw new KernelsError(
      "E_ARGUMENT",
      `branch precision ${JSON.stringify(branch)}: expected one of ${P2_BRANCH_PRECISIONS.map((b) => `"${b}"`).join(", ")}`,
      { tensor: where },
    );
  return branch as P2BranchPrecision;
}

export interface P2LayerSpec {
  N: number;
  K: number;
  codes: Int8Array;
  exponents: Int8Array;
  rowScales: Float32Array;
  smooth?: Float32Array;
  /** L_down [R, K]; with lowRankUp, or neither (rank 0). */
  lowRankDown?: Float32Array;
  /** L_up [N, R]. */
  lowRankUp?: Float32Array;
  bias?: Float32Array;
  /** Precision of the low-rank branch (default "f32"). */
  branch?: P2BranchPrecision;
  /** Name used in error messages (e.g. the checkpoint prefix of the layer). */
  name?: string;
  /**
   * Pack the int8 band operand too and run the "amx-int8" path on the `amx` ISA (default true where the CPU has
   * AMX-INT8; it costs Na·K bytes beside `wop`); false keeps "amx-bf16". A weight whose rows need more than
   * MAX_SHADOW_COLUMNS·N shadow columns (exponents spread over more than 5 levels in most rows) keeps "amx-bf16".
   */
  amxInt8?: boolean;
  /**
   * Pack the 4-bit weight of the "avx2-int8" path too and run it where the active ISA is `avx2` (default true there;
   * it costs about N·K/2 bytes beside `wop`); false keeps "avx2-f32" (the f32 FMA GEMM on the bf16 operand).
   */
  avx2Int8?: boolean;
}

/** The layer's activation quantization: codes [M,K], exponents [M,K/64], S_x [M], x·L_downᵀ [M,R]. */
export interface P2Activations {
  readonly M: number;
  readonly K: number;
  readonly R: number;
  readonly codes: Int8Array;
  readonly exponents: Int8Array;
  readonly rowScales: Float32Array;
  readonly loraAct: Float32Array | null;
}

/**
 * A quantized activation operand (`quantizeOperand`): the bf16 GEMM operand of x [M, K] with its branch columns and
 * row scales, reusable by every layer prepared with the same `smooth` and `lowRankDown` arrays (the members of one
 * fused unit, e.g. q/k/v) — one quantization for all of them. Opaque; owns its buffers.
 */
export interface P2Operand {
  readonly kind: "p2-operand";
  readonly M: number;
  readonly K: number;
  readonly R: number;
  /** The branch precision of the quantizing layer (its branch columns). */
  readonly branch: P2BranchPrecision;
  /** The arrays the quantizing layer was prepared with (identity decides who may use the operand). */
  readonly smooth: Float32Array | undefined;
  readonly lowRankDown: Float32Array | undefined;
  readonly aop: Uint16Array;
  readonly sx: Float32Array;
  /** The int8 band operand (native handle) when a layer on the "amx-int8" path quantized it. */
  readonly bands?: unknown;
  /**
   * The int4 operand of the "avx2-int8" path (kernels/cpu/p2_avx2.h) when a layer on that path quantized it; `aop`
   * and `sx` are then empty and only layers on that path can use the operand.
   */
  readonly a2?: Uint8Array;
}

export interface P2ForwardOptions {
  /** Apply GELU(tanh) to the output (in the GEMM epilogue). */
  gelu?: boolean;
  /** Write Y into this Float32Array of exactly M·N elements instead of a new one. */
  out?: Float32Array;
}

/** The GEMM path the native int4p2 layer takes on the active ISA (backendInfo().isa). */
export type P2GemmPath = "amx-int8" | "amx-bf16" | "avx512-f32" | "avx2-int8" | "avx2-f32" | "scalar-f32";

export interface PreparedP2Layer {
  readonly K: number;
  readonly N: number;
  readonly R: number;
  readonly branch: P2BranchPrecision;
  /** The path forward() takes now (it follows setIsa / SVDQ_KERNELS_ISA). */
  readonly path: P2GemmPath;
  /** The 4-bit weight of the "avx2-int8" path (null when not packed): its bytes (p2_avx2.h). */
  readonly avx2Weight: { readonly bytes: number } | null;
  /** The int8 band weight of the "amx-int8" path (null when not packed): its shadow columns (p2_int8.h). */
  readonly int8Weight: { readonly shadowColumns: number; readonly bytes: number } | null;
  /** Y [M,N] from X [M,K] (float32). */
  forward(x: Float32Array, M: number, opts?: P2ForwardOptions): Float32Array;
  /** The activation quantization alone, into new arrays (loraAct at the layer's branch precision). */
  quantize(x: Float32Array, M: number): P2Activations;
  /** x quantized into a GEMM operand that layers prepared with the same smooth / lowRankDown arrays can share. */
  quantizeOperand(x: Float32Array, M: number): P2Operand;
  /** Y [M,N] from an operand of quantizeOperand (equal to forward(x, M) of its x). */
  forwardOperand(op: P2Operand, opts?: P2ForwardOptions): Float32Array;
}

/** The int4p2 exponent window (p2.ts P2_EXP_MIN / P2_EXP_MAX). */
const EXP_MIN = -9;
const EXP_MAX = 5;

const roundUp = (v: number, to: number) => Math.ceil(v / to) * to;

/** Largest K of the AMX-INT8 path: its int32 sums stay exact while 128·128·K < 2^31 (p2_int8.h). */
const MAX_INT8_K = 131008;

/** Shadow weight columns (a fraction of N) above which prepare keeps the AMX-BF16 path (see prepareP2Layer). */
export const MAX_SHADOW_COLUMNS = 0.5;

function binding(branch: P2BranchPrecision): NativeBinding {
  const nb = native();
  if (!nb?.p2Forward || (branch === "bf16" && !nb.p2PackDownBf16))
    throw new KernelsError(
      "E_NATIVE",
      nb
        ? "the loaded native addon predates the int4p2 layer; rebuild it (pnpm rebuild @svdquant/kernels)"
        : `the int4p2 layer needs the native kernels (${nativeUnavailableReason()})`,
    );
  return nb;
}

/**
 * The GEMM path of the int4p2 layer on the active ISA (for a layer prepared with the default `amxInt8`), or null
 * without the native addon.
 */
export function p2GemmPath(): P2GemmPath | null {
  const nb = native();
  const p = (nb?.p2GemmPath?.() as P2GemmPath | undefined) ?? null;
  if (p === "amx-bf16" && nb?.p2i8Available?.()) return "amx-int8";
  return p === "avx2-f32" && nb?.p2a2Available?.() ? "avx2-int8" : p;
}

export function prepareP2Layer(spec: P2LayerSpec): PreparedP2Layer {
  const name = spec.name ?? "layer";
  const branch = p2BranchPrecision(spec.branch, `${name}.branch`);
  const nb = binding(branch);
  const N = dim("N", spec.N);
  const K = dim("K", spec.K);
  multipleOf("K", K, W4A4_GROUP, "int4p2 groups are 64 channels");
  const G = K / W4A4_GROUP;
  tensor(`${name}.codes`, spec.codes, Int8Array, [N, K]);
  codeRange(`${name}.codes`, spec.codes, -8, 7);
  tensor(`${name}.exponents`, spec.exponents, Int8Array, [N, G]);
  codeRange(`${name}.exponents`, spec.exponents, EXP_MIN, EXP_MAX);
  tensor(`${name}.rowScales`, spec.rowScales, Float32Array, [N]);
  finite(`${name}.rowScales`, spec.rowScales);
  for (let n = 0; n < N; n++)
    if (!(spec.rowScales[n]! >= 0))
      throw new KernelsError("E_VALUE", `row scale ${spec.rowScales[n]} at [${n}] is negative`, {
        tensor: `${name}.rowScales`,
      });
  if (!spec.lowRankDown !== !spec.lowRankUp)
    throw new KernelsError("E_ARGUMENT", "give both lowRankDown [R, K] and lowRankUp [N, R], or neither", {
      tensor: `${name}.${spec.lowRankDown ? "lowRankUp" : "lowRankDown"}`,
    });
  const R = spec.lowRankUp ? spec.lowRankUp.length / N : 0;
  if (!Number.isInteger(R))
    throw new KernelsError("E_LENGTH", `${spec.lowRankUp!.length} values are not [N=${N}, R]`, {
      tensor: `${name}.lowRankUp`,
    });
  if (spec.lowRankUp && spec.lowRankDown) {
    tensor(`${name}.lowRankDown`, spec.lowRankDown, Float32Array, [R, K]);
    finite(`${name}.lowRankDown`, spec.lowRankDown);
    finite(`${name}.lowRankUp`, spec.lowRankUp);
  }
  let invSmooth: Float32Array | undefined;
  if (spec.smooth) {
    tensor(`${name}.smooth`, spec.smooth, Float32Array, [K]);
    finite(`${name}.smooth`, spec.smooth);
    invSmooth = new Float32Array(K);
    for (let k = 0; k < K; k++) {
      invSmooth[k] = 1 / spec.smooth[k]!; // f32(1/λ): the engine's activation kernel multiplies by it
      if (!Number.isFinite(invSmooth[k]!))
        throw new KernelsError("E_VALUE", `λ = ${spec.smooth[k]} at [${k}] has no finite f32 inverse`, {
          tensor: `${name}.smooth`,
        });
    }
  }
  const bias = spec.bias && Float32Array.from(tensor(`${name}.bias`, spec.bias, Float32Array, [N]));
  if (bias) finite(`${name}.bias`, bias);
  // Copies: later edits of the caller's arrays cannot change the prepared layer.
  const lowRankDown = spec.lowRankDown && Float32Array.from(spec.lowRankDown);
  // L_downᵀ once per layer (ops.ts); "bf16": of bf16(L_down), the f32 FMA down-projections' operand (AVX-512, AVX2)
  const lowRankDownT = branch === "f32" ? prepareLowRankDownT(lowRankDown, R, K) : undefined;
  const lowRankDownTBf16 =
    branch === "bf16" && lowRankDown ? prepareLowRankDownT(roundBf16F32(lowRankDown), R, K) : undefined;
  const branchCode = branch === "bf16" ? 1 : 0; // kernels/cpu/p2_layer.h Branch
  const Kt = K + roundUp(branch === "bf16" ? R : 6 * R, 32); // kernels/cpu/p2_layer.h kt_of
  // bf16(L_down) as AMX B tiles, once per layer (+ 32: the native side starts at a 64-byte boundary)
  let lowRankDownBf16: Uint16Array | undefined;
  if (branch === "bf16" && R > 0) {
    lowRankDownBf16 = new Uint16Array(K * roundUp(R, 16) + 32);
    nb.p2PackDownBf16!({ K, R, lowRankDown, ldb: lowRankDownBf16 });
  }
  const quantArgs = {
    K,
    R,
    invSmooth,
    lowRankDown,
    lowRankDownT,
    lowRankDownTBf16,
    lowRankDownBf16,
    branch: branchCode,
  };
  const wop = new Uint16Array(roundUp(N, 32) * Kt + 32); // + 32: the native packer starts at a 64-byte boundary
  const sw = new Float32Array(roundUp(N, 32));
  const gemmArgs = { K, N, R, wop, wopOffset: 0, sw, bias, branch: branchCode };
  gemmArgs.wopOffset = nb.p2PackWeight!({
    branch: branchCode,
    N,
    K,
    R,
    codes: spec.codes,
    exponents: spec.exponents,
    rowScales: spec.rowScales,
    lowRankUp: spec.lowRankUp,
    wop,
    sw,
  });
  // the int8 band weight (AMX-INT8 path): packed when the CPU has AMX-INT8 (p2i8Available: also the active ISA)
  let w8 =
    spec.amxInt8 !== false && K <= MAX_INT8_K && nb.p2i8PackWeight && nb.p2i8Available?.()
      ? call(() =>
          nb.p2i8PackWeight!({
            codes: spec.codes,
            exponents: spec.exponents,
            rowScales: spec.rowScales,
            ...gemmArgs,
          }),
        )
      : null;
  // Shadow columns enlarge the int8 GEMM: its per-core rate is 1.9–2.0x the bf16 one (docs/benchmarks.md "int4p2
  // on AMX-INT8"), so beyond N/2 of them (1.5x the columns) the layer stays on AMX-BF16.
  if (w8 && w8.shadowColumns > MAX_SHADOW_COLUMNS * N) w8 = null;
  const int8Now = () => w8 !== null && nb.p2i8Available!();
  // the 4-bit weight of the AVX2 integer path: packed where the active ISA is avx2
  const a2w =
    spec.avx2Int8 !== false && nb.p2a2PackWeight && nb.p2a2Available?.()
      ? call(() =>
          nb.p2a2PackWeight!({
            branch: branchCode,
            N,
            K,
            R,
            codes: spec.codes,
            exponents: spec.exponents,
            rowScales: spec.rowScales,
            lowRankUp: spec.lowRankUp,
          }),
        )
      : null;
  const a2Now = () => a2w !== null && nb.p2a2Available!();
  const pathNow = (): P2GemmPath => (int8Now() ? "amx-int8" : a2Now() ? "avx2-int8" : (nb.p2GemmPath!() as P2GemmPath));

  const fail = (st: number, x: Float32Array, M: number): never => {
    if (st <= -2) {
      const m = -2 - st;
      throw new KernelsError(
        "E_VALUE",
        `row ${m} of x/λ [${M}, ${K}]: its int4p2 row scale leaves float32 (largest |x/λ| below ≈ 2^-146)`,
        { tensor: `${name}.x` },
      );
    }
    let k = 0;
    while (k < K && Number.isFinite(Math.fround(x[st * K + k]! * (invSmooth ? invSmooth[k]! : 1)))) k++;
    throw new KernelsError(
      "E_VALUE",
      `non-finite x/λ at [${st}, ${k}] of [${M}, ${K}] (x = ${x[st * K + k]}${invSmooth ? `, 1/λ = ${invSmooth[k]}` : ""})`,
      { tensor: `${name}.x` },
    );
  };

  return {
    K,
    N,
    R,
    branch,
    get path() {
      return pathNow();
    },
    avx2Weight: a2w && { bytes: a2w.byteLength },
    int8Weight: w8 && { shadowColumns: w8.shadowColumns, bytes: w8.bytes },
    forward(x, M, opts = {}) {
      dim("M", M, true);
      tensor(`${name}.x`, x, Float32Array, [M, K]);
      const y = opts.out ?? new Float32Array(M * N);
      if (opts.out) tensor(`${name}.out`, opts.out, Float32Array, [M, N]);
      if (M === 0) return y;
      if (int8Now()) {
        const st = call(() => nb.p2i8Forward!({ x, M, ...quantArgs, weight: w8!.handle, bias, gelu: !!opts.gelu, y }));
        if (st !== -1) fail(st, x, M);
        return y;
      }
      if (a2Now()) {
        const st = call(() => nb.p2a2Forward!({ x, M, ...quantArgs, N, weight: a2w!, bias, gelu: !!opts.gelu, y }));
        if (st !== -1) fail(st, x, M);
        return y;
      }
      const st = call(() =>
        nb.p2Forward!({
          x,
          M,
          ...quantArgs,
          ...gemmArgs,
          gelu: !!opts.gelu,
          y,
        }),
      );
      if (st !== -1) fail(st, x, M);
      return y;
    },
    quantize(x, M) {
      dim("M", M, true);
      tensor(`${name}.x`, x, Float32Array, [M, K]);
      const out = {
        codes: new Int8Array(M * K),
        exponents: new Int8Array(M * G),
        rowScales: new Float32Array(M),
        loraAct: R ? new Float32Array(M * R) : null,
      };
      if (M > 0) {
        const st = call(() => nb.p2Quantize!({ x, M, ...quantArgs, ...out }));
        if (st !== -1) fail(st, x, M);
      }
      return { M, K, R, ...out };
    },
    quantizeOperand(x, M) {
      dim("M", M, true);
      tensor(`${name}.x`, x, Float32Array, [M, K]);
      if (M > 0 && a2Now()) {
        const q = call(() => nb.p2a2QuantizeOperand!({ x, M, ...quantArgs }));
        if (q.status !== -1) fail(q.status, x, M);
        const empty = { aop: new Uint16Array(0), sx: new Float32Array(0) };
        return {
          kind: "p2-operand",
          M,
          K,
          R,
          branch,
          smooth: spec.smooth,
          lowRankDown: spec.lowRankDown,
          ...empty,
          a2: q.op!,
        };
      }
      const aop = new Uint16Array(roundUp(M, 32) * Kt + 32); // + 32: the native side starts at a 64-byte boundary
      const sx = new Float32Array(M);
      const base = {
        kind: "p2-operand",
        M,
        K,
        R,
        branch,
        smooth: spec.smooth,
        lowRankDown: spec.lowRankDown,
        aop,
        sx,
      } as const;
      if (M > 0 && int8Now()) {
        const q = call(() => nb.p2i8QuantizeOperand!({ x, M, ...quantArgs, aop, sx }));
        if (q.status !== -1) fail(q.status, x, M);
        return { ...base, bands: q.handle };
      }
      const op: P2Operand = base;
      if (M > 0) {
        const st = call(() => nb.p2QuantizeOperand!({ x, M, ...quantArgs, aop: op.aop, sx: op.sx }));
        if (st !== -1) fail(st, x, M);
      }
      return op;
    },
    forwardOperand(op, opts = {}) {
      if (op?.kind !== "p2-operand" || op.K !== K || op.R !== R || op.branch !== branch)
        throw new KernelsError("E_ARGUMENT", `expected a P2Operand of K = ${K}, R = ${R}, branch "${branch}"`, {
          tensor: `${name}.x`,
        });
      if (op.smooth !== spec.smooth || op.lowRankDown !== spec.lowRankDown)
        throw new KernelsError(
          "E_ARGUMENT",
          "the operand was quantized by a layer prepared with other smooth / lowRankDown arrays",
          { tensor: `${name}.x` },
        );
      const { M } = op;
      const y = opts.out ?? new Float32Array(M * N);
      if (opts.out) tensor(`${name}.out`, opts.out, Float32Array, [M, N]);
      if (M === 0) return y;
      if (op.a2 !== undefined) {
        if (!a2Now())
          throw new KernelsError(
            "E_ARGUMENT",
            `the operand was quantized for the "avx2-int8" path; this layer runs "${pathNow()}" now (quantize it again)`,
            { tensor: `${name}.x` },
          );
        call(() => nb.p2a2Gemm!({ M, K, N, R, weight: a2w!, op: op.a2, bias, gelu: !!opts.gelu, y }));
        return y;
      }
      if (op.bands !== undefined && int8Now())
        call(() =>
          nb.p2i8Gemm!({ M, K, weight: w8!.handle, act: op.bands, aop: op.aop, sx: op.sx, bias, gelu: !!opts.gelu, y }),
        );
      else call(() => nb.p2Gemm!({ M, ...gemmArgs, aop: op.aop, sx: op.sx, gelu: !!opts.gelu, y }));
      return y;
    },
  };
}

/** bf16(v) of each element as f32 values (nearest even: kernels/cpu p2_layer.h bf16_round; finite v). */
function roundBf16F32(v: Float32Array): Float32Array {
  const out = Float32Array.from(v);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < u.length; i++) u[i] = ((u[i]! + 0x7fff + ((u[i]! >>> 16) & 1)) & 0xffff0000) >>> 0;
  return out;
}

function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw new KernelsError("E_NATIVE", `int4p2 layer: ${(e as Error).message}`, { cause: e });
  }
}
