import { ModelError } from "./errors.js";

/**
 * A GEMM backend computes Y = X·Wᵀ (+ b), the nn.Linear product, in float32 storage.
 *
 * | tensor | shape  | dtype | layout                         |
 * | ------ | ------ | ----- | ------------------------------ |
 * | X      | [M, K] | f32   | row-major, M tokens            |
 * | W      | [N, K] | f32   | row-major (nn.Linear weight)   |
 * | b      | [N]    | f32   | optional                       |
 * | Y      | [M, N] | f32   | row-major, overwritten         |
 *
 * The TypeScript backend below is the default; a native backend (@svdquant/kernels' f32 GEMM) plugs in
 * through `setGemmBackend` or per layer, with no change to the models.
 */
export interface GemmBackend {
  readonly name: string;
  gemm(
    x: Float32Array,
    w: Float32Array,
    bias: Float32Array | undefined,
    out: Float32Array,
    m: number,
    k: number,
    n: number,
  ): void;
  /**
   * Optional: packs a fixed weight W [N, K] (+ bias [N]) once into the backend's own layout, for layers that run
   * many times (`DenseLinear.prepare()`); the returned object then computes Y [M, N] = X·Wᵀ + b without re-packing.
   * The backend copies what it needs: later changes of `w` are not seen.
   */
  prepare?(w: Float32Array, bias: Float32Array | undefined, n: number, k: number): PreparedGemm;
  /**
   * Optional: the whole multi-head attention of `attention()` (ops.ts) in one call, same tensors and layout
   * (q [B, Sq, H·Dh], k/v [B, Skv, H·Dh], bias [B, Skv] or undefined, out [B, Sq, H·Dh] overwritten), e.g.
   * @svdquant/kernels' native online-softmax kernel. When absent, attention runs on `gemm` plus a TypeScript softmax.
   */
  /**
   * Optional: `layerNormModulate` of ops.ts (same arguments and result, a new array; within one f32 ulp of the
   * TypeScript op), e.g. @svdquant/kernels' native kernel. When absent, the TypeScript op runs.
   */
  layerNormModulate?(
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
  /** Optional: `rmsNormRopeHeads` of ops.ts (in place, same arguments), as `layerNormModulate`. */
  rmsNormRopeHeads?(
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
  attention?(
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
}

/** A weight packed once by `GemmBackend.prepare`. */
export interface PreparedGemm {
  readonly n: number;
  readonly k: number;
  /** Y [M, N] = X [M, K]·Wᵀ + b into `out` (overwritten), then GELU(tanh) in the same pass when `gelu`. */
  run(x: Float32Array, out: Float32Array, m: number, opts?: { gelu?: boolean }): void;
}

export function checkGemmArgs(
  who: string,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  bias: ArrayLike<number> | undefined,
  out: ArrayLike<number>,
  m: number,
  k: number,
  n: number,
): void {
  if (!(Number.isSafeInteger(m) && Number.isSafeInteger(k) && Number.isSafeInteger(n) && m >= 0 && k >= 0 && n >= 0))
    throw new ModelError("E_SHAPE", `M, K, N must be non-negative integers, got ${m}, ${k}, ${n}`, who);
  if (x.length !== m * k) throw new ModelError("E_SHAPE", `X has ${x.length} elements, expected M*K = ${m}*${k}`, who);
  if (w.length !== n * k) throw new ModelError("E_SHAPE", `W has ${w.length} elements, expected N*K = ${n}*${k}`, who);
  if (bias !== undefined && bias.length !== n)
    throw new ModelError("E_SHAPE", `bias has ${bias.length} elements, expected N = ${n}`, who);
  if (out.length !== m * n)
    throw new ModelError("E_SHAPE", `Y has ${out.length} elements, expected M*N = ${m}*${n}`, who);
}

// Cache blocking: a K-panel of KC columns of 4 rows of W (4*KC*4 B = 4 KiB) stays in L1 while
// it meets every row of X; the X panel (M*KC*4 B) is reused for all of W's rows within the panel.
const KC = 256;

/**
 * Blocked, register-tiled TypeScript GEMM. Tiles of 4 rows of X by 4 rows of W keep 16 dot-product
 * accumulators in registers (float64 in V8, rounded to f32 on store), so each pair of loads feeds
 * 2 multiply-adds instead of 1; K is walked in panels of KC for cache reuse.
 */
export function gemmTs(
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array | undefined,
  out: Float32Array,
  m: number,
  k: number,
  n: number,
): void {
  checkGemmArgs("gemmTs", x, w, bias, out, m, k, n);
  // out holds the running sums across K panels; start at the bias.
  for (let i = 0; i < m; i++) {
    const o = i * n;
    if (bias === undefined) out.fill(0, o, o + n);
    else out.set(bias, o);
  }
  const m4 = m - (m % 4);
  const n4 = n - (n % 4);
  for (let k0 = 0; k0 < k; k0 += KC) {
    const k1 = Math.min(k, k0 + KC);
    for (let j = 0; j < n4; j += 4) {
      const w0 = j * k;
      const w1 = w0 + k;
      const w2 = w1 + k;
      const w3 = w2 + k;
      let i = 0;
      for (; i < m4; i += 4) {
        const x0 = i * k;
        const x1 = x0 + k;
        const x2 = x1 + k;
        const x3 = x2 + k;
        let c00 = 0,
          c01 = 0,
          c02 = 0,
          c03 = 0;
        let c10 = 0,
          c11 = 0,
          c12 = 0,
          c13 = 0;
        let c20 = 0,
          c21 = 0,
          c22 = 0,
          c23 = 0;
        let c30 = 0,
          c31 = 0,
          c32 = 0,
          c33 = 0;
        for (let p = k0; p < k1; p++) {
          const a0 = x[x0 + p]!;
          const a1 = x[x1 + p]!;
          const a2 = x[x2 + p]!;
          const a3 = x[x3 + p]!;
          const b0 = w[w0 + p]!;
          const b1 = w[w1 + p]!;
          const b2 = w[w2 + p]!;
          const b3 = w[w3 + p]!;
          c00 += a0 * b0;
          c01 += a0 * b1;
          c02 += a0 * b2;
          c03 += a0 * b3;
          c10 += a1 * b0;
          c11 += a1 * b1;
          c12 += a1 * b2;
          c13 += a1 * b3;
          c20 += a2 * b0;
          c21 += a2 * b1;
          c22 += a2 * b2;
          c23 += a2 * b3;
          c30 += a3 * b0;
          c31 += a3 * b1;
          c32 += a3 * b2;
          c33 += a3 * b3;
        }
        let o = i * n + j;
        out[o] += c00;
        out[o + 1] += c01;
        out[o + 2] += c02;
        out[o + 3] += c03;
        o += n;
        out[o] += c10;
        out[o + 1] += c11;
        out[o + 2] += c12;
        out[o + 3] += c13;
        o += n;
        out[o] += c20;
        out[o + 1] += c21;
        out[o + 2] += c22;
        out[o + 3] += c23;
        o += n;
        out[o] += c30;
        out[o + 1] += c31;
        out[o + 2] += c32;
        out[o + 3] += c33;
      }
      for (; i < m; i++) {
        const x0 = i * k;
        let c0 = 0,
          c1 = 0,
          c2 = 0,
          c3 = 0;
        for (let p = k0; p < k1; p++) {
          const a = x[x0 + p]!;
          c0 += a * w[w0 + p]!;
          c1 += a * w[w1 + p]!;
          c2 += a * w[w2 + p]!;
          c3 += a * w[w3 + p]!;
        }
        const o = i * n + j;
        out[o] += c0;
        out[o + 1] += c1;
        out[o + 2] += c2;
        out[o + 3] += c3;
      }
    }
    for (let j = n4; j < n; j++) {
      const w0 = j * k;
      for (let i = 0; i < m; i++) {
        const x0 = i * k;
        let c = 0;
        for (let p = k0; p < k1; p++) c += x[x0 + p]! * w[w0 + p]!;
        out[i * n + j] += c;
      }
    }
  }
}

/** Straightforward triple loop (one dot product per output), the peer of `gemmTs` in benchmarks. */
export function gemmNaive(
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array | undefined,
  out: Float32Array,
  m: number,
  k: number,
  n: number,
): void {
  checkGemmArgs("gemmNaive", x, w, bias, out, m, k, n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = bias === undefined ? 0 : bias[j]!;
      for (let p = 0; p < k; p++) s += x[i * k + p]! * w[j * k + p]!;
      out[i * n + j] = s;
    }
  }
}

export const TS_GEMM: GemmBackend = Object.freeze({ name: "ts-blocked", gemm: gemmTs });

let current: GemmBackend = TS_GEMM;

/** The backend dense layers use when none is given to them. */
export function getGemmBackend(): GemmBackend {
  return current;
}

/** Swap the process-wide default GEMM backend (e.g. to @svdquant/kernels' native f32 GEMM); returns the old one. */
export function setGemmBackend(backend: GemmBackend): GemmBackend {
  if (backend === null || typeof backend !== "object" || typeof backend.gemm !== "function")
    throw new ModelError(
      "E_BACKEND",
      "a GEMM backend needs a gemm(x, w, bias, out, m, k, n) function",
      "setGemmBackend",
    );
  const old = current;
  current = backend;
  return old;
}
