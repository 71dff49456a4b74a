/**
 * The f32 GEMM on split-bf16 operands (kernels/cpu/gemm_f32_amx.cc): W is split once into S bf16 parts,
 * W = W₀ + W₁ (+ W₂), each part the bf16 rounding (to nearest even) of what the parts before it left; the kernel
 * splits X the same way per call and sums the part products Xᵢ·Wⱼᵀ with i + j < S in f32 on AMX-BF16 tiles.
 * S = 3 (6 products; the dropped terms are ≤ 2⁻²⁴ relative) is f32-class and the default of `f32GemmBackend`;
 * S = 2 (3 products, ≈ 2⁻¹⁶ relative, PyTorch's "bf16x3") is an explicit option. On a path without AMX-BF16 the
 * kernel rebuilds f32 panels from the parts (Σ parts, exactly W for S = 3) and runs the f32 GEMM.
 *
 * ## Split f32 weight (`PackedF32Split`), Np = N rounded up to 32, Kp = K rounded up to 32, padding zero
 *
 * | tensor   | shape                         | dtype           | element                                          |
 * | -------- | ----------------------------- | --------------- | ------------------------------------------------ |
 * | `wsplit` | [Np/16, Kp/32, S, 16, 16, 2]  | uint16 (bf16)   | [p, c, s, kk, j, t] = part s of W[16p+j, 32c+2kk+t] |
 * | `bias`   | [N]                           | float32         | bias[n]                                          |
 *
 * One [16, 16, 2] block is one 1 KiB AMX B tile (16 rows of k-pairs × 16 columns, the VNNI pair layout).
 */
import { KernelsError } from "./errors.js";
import { native } from "./native.js";
import { geluTanh } from "./reference.js";
import { dim, finite, record, tensor } from "./validate.js";

export type F32Splits = 2 | 3;

export interface PackedF32Split {
  readonly kind: "f32split";
  readonly N: number;
  readonly K: number;
  readonly splits: F32Splits;
  readonly wsplit: Uint16Array;
  readonly bias: Float32Array | null;
}

// The smallest float32 whose bf16 rounding (to nearest even) overflows: 0x7f7f8000, (2 − 2⁻⁸)·2¹²⁷.
const BF16_ROUNDS_TO_INF = (2 - 2 ** -8) * 2 ** 127;

const roundUp = (v: number, m: number) => Math.ceil(v / m) * m;

/** Elements of `wsplit` for N×K in `splits` parts. */
export function f32SplitElems(N: number, K: number, splits: F32Splits): number {
  return roundUp(N, 32) * roundUp(K, 32) * splits;
}

function checkSplits(splits: unknown): F32Splits {
  if (splits !== 2 && splits !== 3)
    throw new KernelsError("E_ARGUMENT", `splits must be 2 or 3, got ${String(splits)}`, { tensor: "splits" });
  return splits;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bf16 parts of one float32 (round to nearest even), TypeScript; part s+1 splits the rest left by part s. */
export function splitBf16(v: number, splits: F32Splits): number[] {
  const parts: number[] = [];
  let rest = Math.fround(v);
  for (let s = 0; s < splits; s++) {
    f32[0] = rest;
    const b = u32[0]!;
    const hi = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
    parts.push(hi);
    u32[0] = hi << 16;
    rest = Math.fround(rest - f32[0]!); // exact: the rest of a rounding
  }
  return parts;
}

/**
 * Packs W [N,K] (row-major, nn.Linear layout) into `splits` bf16 parts in the layout above, natively when the addon
 * is loaded (else in TypeScript, same bits).
 */
export function packF32Split(
  w: Float32Array,
  N: number,
  K: number,
  opts: { splits?: F32Splits; bias?: Float32Array; name?: string } = {},
): PackedF32Split {
  const name = opts.name ?? "f32split";
  const splits = checkSplits(opts.splits ?? 3);
  dim("N", N);
  dim("K", K);
  tensor(`${name}.weight`, w, Float32Array, [N, K]);
  finite(`${name}.weight`, w);
  for (let i = 0; i < w.length; i++)
    if (Math.abs(w[i]!) >= BF16_ROUNDS_TO_INF)
      throw new KernelsError("E_VALUE", `value ${w[i]} at flat index ${i} rounds to ±Inf in bf16`, {
        tensor: `${name}.weight`,
      });
  let bias: Float32Array | null = null;
  if (opts.bias !== undefined) {
    tensor(`${name}.bias`, opts.bias, Float32Array, [N]);
    finite(`${name}.bias`, opts.bias);
    bias = opts.bias.slice();
  }
  const wsplit = new Uint16Array(f32SplitElems(N, K, splits));
  const nb = native();
  if (nb?.packF32Split) {
    try {
      nb.packF32Split({ w, N, K, splits, out: wsplit });
    } catch (e) {
      throw new KernelsError("E_NATIVE", `packF32Split: ${(e as Error).message}`, { cause: e });
    }
  } else {
    const CH = roundUp(K, 32) / 32;
    for (let n = 0; n < N; n++) {
      const p = n >> 4;
      const j = n & 15;
      for (let k = 0; k < K; k++) {
        const parts = splitBf16(w[n * K + k]!, splits);
        const c = k >> 5;
        const base = (p * CH + c) * splits * 512 + ((k & 31) >> 1) * 32 + j * 2 + (k & 1);
        for (let s = 0; s < splits; s++) wsplit[base + s * 512] = parts[s]!;
      }
    }
  }
  return { kind: "f32split", N, K, splits, wsplit, bias };
}

/** W [N,K] as float64, Σ of the parts of a PackedF32Split (exactly the packed W for 3 parts). */
export function unpackF32Split(p: PackedF32Split): Float64Array {
  const { N, K, splits, wsplit } = p;
  const CH = roundUp(K, 32) / 32;
  const w = new Float64Array(N * K);
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) {
      const base = ((n >> 4) * CH + (k >> 5)) * splits * 512 + ((k & 31) >> 1) * 32 + (n & 15) * 2 + (k & 1);
      let s = 0;
      for (let q = 0; q < splits; q++) {
        u32[0] = wsplit[base + q * 512]! << 16;
        s += f32[0]!;
      }
      w[n * K + k] = s;
    }
  return w;
}

/** Whether the split GEMM can run on AMX-BF16 tiles here (`amxBf16`) and does on the active ISA path (`amx`). */
export function f32SplitInfo(): { amxBf16: boolean; amx: boolean } {
  const nb = native();
  return nb?.f32SplitInfo ? nb.f32SplitInfo() : { amxBf16: false, amx: false };
}

/**
 * Y [M,N] = X [M,K]·Wᵀ + bias on a split weight (optional GELU(tanh)), into `out` when given. Without the native
 * addon: the float64 product of X and the summed parts (the parts of X are the kernel's business; this fallback is
 * at least as accurate).
 */
export function gemmF32Split(
  x: Float32Array,
  M: number,
  w: PackedF32Split,
  opts: { gelu?: boolean; out?: Float32Array } = {},
): Float32Array {
  record("weight", w, { kind: "f32split", type: "PackedF32Split" });
  dim("M", M, true);
  const { N, K } = w;
  const splits = checkSplits(w.splits);
  tensor("x", x, Float32Array, [M, K]);
  tensor("weight.wsplit", w.wsplit, Uint16Array, [f32SplitElems(N, K, splits)]);
  if (w.bias) tensor("weight.bias", w.bias, Float32Array, [N]);
  const y = opts.out ?? new Float32Array(M * N);
  if (opts.out) tensor("out", opts.out, Float32Array, [M, N]);
  if (M === 0) return y;
  const nb = native();
  if (nb?.gemmF32Split) {
    try {
      nb.gemmF32Split({ x, M, K, N, wsplit: w.wsplit, splits, bias: w.bias, gelu: !!opts.gelu, y });
    } catch (e) {
      throw new KernelsError("E_NATIVE", `gemmF32Split: ${(e as Error).message}`, { cause: e });
    }
    return y;
  }
  const wf = unpackF32Split(w);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = w.bias ? w.bias[n]! : 0;
      for (let k = 0; k < K; k++) s += x[m * K + k]! * wf[n * K + k]!;
      y[m * N + n] = opts.gelu ? geluTanh(s) : s;
    }
  return y;
}
