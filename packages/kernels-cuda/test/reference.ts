// Float64 references for the CUDA kernels, written from the math (SVDQuant W4A4 + low-rank), independently of
// kernels/cuda. 16-bit values are passed as raw bits and decoded with @svdquant/tensor.
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from "@svdquant/tensor";

export type D16 = "bf16" | "f16";
export const dec = (d: D16, b: number): number => (d === "bf16" ? bf16BitsToF32(b) : f16BitsToF32(b));
export const enc = (d: D16, v: number): number => (d === "bf16" ? f32ToBf16Bits(v) : f32ToF16Bits(v));
export const round16 = (d: D16, v: number): number => dec(d, enc(d, v));

/** Seeded PRNG (mulberry32) with a normal sampler. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(): number {
    const u = 1 - this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  /** n 16-bit values ~ N(0, sd^2) (+ mean), as raw bits. */
  halfs(d: D16, n: number, sd = 1, mean = 0): Uint16Array {
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) out[i] = enc(d, mean + sd * this.normal());
    return out;
  }
}

export const GELU_SHIFT = 0.171875;

/** Round half to even (the kernels' rintf). */
export function rne(x: number): number {
  return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : Math.round(x);
}

/**
 * Reference activation quantization: codes [M, K], scales [M, K/64] (as the 16-bit value), per SVDQuant §4 with
 * the kernels' documented float32 contract (each step rounded to f32 with Math.fround): v = (x [+ shift]) · (1/λ),
 * scale = amax · (1/qmax), code = rne(v · (1/scale)) clamped, scale stored as 16-bit.
 */
export function quantizeRef(
  d: D16,
  x: Uint16Array,
  M: number,
  K: number,
  smooth: Uint16Array | undefined,
  unsigned: boolean,
): { codes: Int8Array; scales: Float64Array; xq: Float64Array } {
  const G = K / 64;
  const qmax = unsigned ? 15 : 7;
  const qlo = unsigned ? 0 : -8;
  const codes = new Int8Array(M * K);
  const scales = new Float64Array(M * G);
  const xq = new Float64Array(M * K); // the quantized input the codes encode: code * scale16
  for (let m = 0; m < M; m++) {
    for (let g = 0; g < G; g++) {
      let amax = 0;
      const v = new Float64Array(64);
      for (let j = 0; j < 64; j++) {
        const k = g * 64 + j;
        let f = Math.fround(dec(d, x[m * K + k]) + (unsigned ? GELU_SHIFT : 0));
        if (smooth) f = Math.fround(f * Math.fround(1 / dec(d, smooth[k])));
        v[j] = f;
        amax = Math.max(amax, Math.abs(f));
      }
      const scale = Math.fround(amax * Math.fround(1 / qmax));
      const rs = amax > 0 ? Math.fround(1 / scale) : 0;
      const s16 = round16(d, scale);
      scales[m * G + g] = s16;
      for (let j = 0; j < 64; j++) {
        const q = Math.min(qmax, Math.max(qlo, rne(Math.fround(v[j] * rs))));
        codes[m * K + g * 64 + j] = q;
        xq[m * K + g * 64 + j] = q * s16;
      }
    }
  }
  return { codes, scales, xq };
}

/** lora_act [M, R] = x · lora_downᵀ in float64. */
export function loraDownRef(d: D16, x: Uint16Array, M: number, K: number, down: Uint16Array, R: number): Float64Array {
  const out = new Float64Array(M * R);
  const xd = Float64Array.from(x, (b) => dec(d, b));
  const ld = Float64Array.from(down, (b) => dec(d, b));
  for (let m = 0; m < M; m++)
    for (let r = 0; r < R; r++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += xd[m * K + k] * ld[r * K + k];
      out[m * R + r] = s;
    }
  return out;
}

export const geluTanh = (x: number): number =>
  0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

/**
 * W4A4 GEMM reference: out[m, n] = Σ_g (Σ_{k∈g} qa[m,k] qw[n,k]) sa[m,g] sw[n,g] + Σ_r la[m,r] up[n,r] + bias[n],
 * then GELU when asked. qw [N, K] ints, sw [N, G] values, la [M, R] values, up [N, R] 16-bit bits.
 */
export function gemmRef(
  d: D16,
  M: number,
  N: number,
  K: number,
  qa: Int8Array,
  sa: Float64Array,
  qw: Int8Array,
  sw: Float64Array,
  la: Float64Array | undefined,
  up: Uint16Array | undefined,
  R: number,
  bias: Uint16Array | undefined,
  gelu: boolean,
): Float64Array {
  const G = K / 64;
  const out = new Float64Array(M * N);
  const upd = up ? Float64Array.from(up, (b) => dec(d, b)) : undefined;
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let g = 0; g < G; g++) {
        let p = 0;
        const a0 = m * K + g * 64,
          w0 = n * K + g * 64;
        for (let j = 0; j < 64; j++) p += qa[a0 + j] * qw[w0 + j];
        acc += p * sa[m * G + g] * sw[n * G + g];
      }
      if (la && upd) for (let r = 0; r < R; r++) acc += la[m * R + r] * upd[n * R + r];
      if (bias) acc += dec(d, bias[n]);
      out[m * N + n] = gelu ? geluTanh(acc) : acc;
    }
  }
  return out;
}

/** ‖a − b‖ / ‖b‖ over all elements; NaN anywhere gives Infinity. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0,
    den = 0;
  for (let i = 0; i < b.length; i++) {
    if (!Number.isFinite(a[i])) return Number.POSITIVE_INFINITY;
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-300));
}
