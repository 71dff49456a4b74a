/**
 * The normalizations around the GEMMs of the FLUX/PixArt blocks (kernels/cpu/norm_f32.cc), with the numerics of
 * @svdquant/models' TypeScript ops (`layerNormModulate`, `rmsNormRopeHeads`): statistics and products in float64,
 * values rounded to f32 where those round them (results agree within one f32 ulp: the native float64 sums run in 8
 * lanes). Without the native addon the same TypeScript loops run here.
 *
 * | tensor       | shape                     | dtype   |                                                   |
 * | ------------ | ------------------------- | ------- | ------------------------------------------------- |
 * | x, out       | [B, S, D]                 | float32 | layerNormModulateF32 (out may not alias x)        |
 * | scale, shift | rows of `stride` per batch | float32 | batch b's row starts at b·stride + scaleOff/shiftOff |
 * | x (in place) | [B, S, H·Dh]              | float32 | rmsNormRopeHeadsF32                               |
 * | weight       | [Dh]                      | float32 | RMSNorm weight                                    |
 * | cos, sin     | [≥ ropeRow0 + S, Dh]      | float32 | rotary rows; token t uses row ropeRow0 + t         |
 */
import { KernelsError } from "./errors.js";
import { native } from "./native.js";
import { dim } from "./validate.js";

const f32 = Math.fround;

function need(name: string, v: unknown, n: number): Float32Array {
  if (!(v instanceof Float32Array)) throw new KernelsError("E_DTYPE", "expected a Float32Array", { tensor: name });
  if (v.length < n)
    throw new KernelsError("E_LENGTH", `needs at least ${n} elements, got ${v.length}`, { tensor: name });
  return v;
}

function offset(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0)
    throw new KernelsError("E_SHAPE", `${name} must be a non-negative integer, got ${v}`);
  return v;
}

/**
 * out[b, t, :] = f32(f32((x − mean)·inv)·(1 + scale) + shift), inv = 1/√(var + eps) (biased variance), scale and
 * shift read from batch b's row (b·stride + scaleOff, b·stride + shiftOff). Returns `out` (allocated when absent).
 */
export function layerNormModulateF32(
  x: Float32Array,
  o: {
    B: number;
    S: number;
    D: number;
    eps: number;
    scale: Float32Array;
    scaleOff: number;
    shift: Float32Array;
    shiftOff: number;
    stride: number;
    out?: Float32Array;
  },
): Float32Array {
  const { B, S, D, eps } = o;
  dim("B", B, true);
  dim("S", S, true);
  dim("D", D);
  const [scaleOff, shiftOff, stride] = [
    offset("scaleOff", o.scaleOff),
    offset("shiftOff", o.shiftOff),
    offset("stride", o.stride),
  ];
  if (!(eps >= 0)) throw new KernelsError("E_ARGUMENT", `eps must be ≥ 0, got ${eps}`);
  const n = B * S * D;
  need("x", x, n);
  if (x.length !== n)
    throw new KernelsError("E_LENGTH", `shape [${B}, ${S}, ${D}] needs ${n} elements, got ${x.length}`, {
      tensor: "x",
    });
  const last = B > 0 ? (B - 1) * stride : 0;
  const scale = need("scale", o.scale, last + scaleOff + D);
  const shift = need("shift", o.shift, last + shiftOff + D);
  const out = o.out ?? new Float32Array(n);
  if (out.length !== n) throw new KernelsError("E_LENGTH", `needs ${n} elements, got ${out.length}`, { tensor: "out" });
  if (n === 0) return out;
  const nb = native();
  if (nb?.layerNormModulateF32) {
    try {
      nb.layerNormModulateF32({ x, B, S, D, eps, scale, scaleOff, shift, shiftOff, stride, out });
    } catch (e) {
      throw new KernelsError("E_NATIVE", `layerNormModulateF32: ${(e as Error).message}`, { cause: e });
    }
    return out;
  }
  for (let bi = 0; bi < B; bi++) {
    const sc = bi * stride + scaleOff;
    const sh = bi * stride + shiftOff;
    for (let t = 0; t < S; t++) {
      const r = (bi * S + t) * D;
      let mean = 0;
      for (let i = 0; i < D; i++) mean += x[r + i]!;
      mean /= D;
      let v = 0;
      for (let i = 0; i < D; i++) {
        const u = x[r + i]! - mean;
        v += u * u;
      }
      const inv = 1 / Math.sqrt(v / D + eps);
      for (let i = 0; i < D; i++) out[r + i] = f32((x[r + i]! - mean) * inv) * (1 + scale[sc + i]!) + shift[sh + i]!;
    }
  }
  return out;
}

/**
 * In place, per token and head of x [B, S, H·Dh]: y = f32(x·inv·weight), inv = 1/√(mean x² + eps), then the
 * interleaved rotary pairs (y₂ᵢ, y₂ᵢ₊₁) → (y₂ᵢ·cos − y₂ᵢ₊₁·sin, y₂ᵢ₊₁·cos + y₂ᵢ·sin) with row ropeRow0 + t.
 */
export function rmsNormRopeHeadsF32(
  x: Float32Array,
  o: {
    B: number;
    S: number;
    heads: number;
    headDim: number;
    weight: Float32Array;
    eps: number;
    cos: Float32Array;
    sin: Float32Array;
    ropeRow0: number;
  },
): void {
  const { B, S, heads: H, headDim: Dh, eps } = o;
  dim("B", B, true);
  dim("S", S, true);
  dim("heads", H);
  dim("headDim", Dh);
  if (Dh % 2) throw new KernelsError("E_SHAPE", `headDim = ${Dh} must be even (rotary pairs)`);
  const row0 = offset("ropeRow0", o.ropeRow0);
  if (!(eps >= 0)) throw new KernelsError("E_ARGUMENT", `eps must be ≥ 0, got ${eps}`);
  const n = B * S * H * Dh;
  need("x", x, n);
  if (x.length !== n)
    throw new KernelsError("E_LENGTH", `shape [${B}, ${S}, ${H * Dh}] needs ${n} elements, got ${x.length}`, {
      tensor: "x",
    });
  const weight = need("weight", o.weight, Dh);
  const cos = need("cos", o.cos, (row0 + S) * Dh);
  const sin = need("sin", o.sin, (row0 + S) * Dh);
  if (n === 0) return;
  const nb = native();
  if (nb?.rmsNormRopeHeadsF32) {
    try {
      nb.rmsNormRopeHeadsF32({ x, B, S, H, Dh, weight, eps, cos, sin, ropeRow0: row0 });
    } catch (e) {
      throw new KernelsError("E_NATIVE", `rmsNormRopeHeadsF32: ${(e as Error).message}`, { cause: e });
    }
    return;
  }
  for (let bi = 0; bi < B; bi++)
    for (let t = 0; t < S; t++) {
      const ro = (row0 + t) * Dh;
      for (let h = 0; h < H; h++) {
        const p = ((bi * S + t) * H + h) * Dh;
        let ss = 0;
        for (let i = 0; i < Dh; i++) ss += x[p + i]! * x[p + i]!;
        const inv = 1 / Math.sqrt(ss / Dh + eps);
        for (let i = 0; i < Dh; i += 2) {
          const a = f32(x[p + i]! * inv * weight[i]!);
          const c = f32(x[p + i + 1]! * inv * weight[i + 1]!);
          x[p + i] = a * cos[ro + i]! - c * sin[ro + i]!;
          x[p + i + 1] = c * cos[ro + i + 1]! + a * sin[ro + i + 1]!;
        }
      }
    }
}
