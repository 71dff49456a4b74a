import { LowRankError } from "./errors.js";

/**
 * The one matrix product the SVD needs, kept behind an interface so a native kernel can replace it.
 *
 * | operand | shape  | dtype   | layout                      |
 * | ------- | ------ | ------- | --------------------------- |
 * | a       | [M, K] | float64 | row-major (K contiguous)    |
 * | b       | [N, K] | float64 | row-major (K contiguous)    |
 * | out     | [M, N] | float64 | row-major; C = A·Bᵀ         |
 *
 * Both operands are contiguous along K ("NT" product), so every dot product streams two contiguous rows.
 */
export interface Gemm {
  readonly name: string;
  nt(a: Float64Array, b: Float64Array, m: number, n: number, k: number, out?: Float64Array): Float64Array;
  /**
   * C[M,N] = A[M,K]·B[K,N], all row-major float64 ("NN" product: B is contiguous along N). The SVD uses it for
   * Qᵀ·W without transposing the weight.
   */
  nn(a: Float64Array, b: Float64Array, m: number, n: number, k: number, out?: Float64Array): Float64Array;
}

/** N-chunk of the NN product: 4 rows of C (4·1024·8 B = 32 KiB) stay in L1 while B streams. */
const NCH = 1024;

/** K-block: 4 rows of B (4·1024·8 B = 32 KiB) stay in L1 while up to ~48 rows of A (384 KiB) stay in L2. */
const KB = 1024;

function checkNT(a: Float64Array, b: Float64Array, m: number, n: number, k: number, out: Float64Array): void {
  if (a.length < m * k) throw new LowRankError("E_SHAPE", `gemm A has ${a.length} elements, need M*K = ${m}*${k}`);
  if (b.length < n * k) throw new LowRankError("E_SHAPE", `gemm B has ${b.length} elements, need N*K = ${n}*${k}`);
  if (out.length < m * n) throw new LowRankError("E_SHAPE", `gemm C has ${out.length} elements, need M*N = ${m}*${n}`);
}

/**
 * Blocked TypeScript GEMM: K in blocks of 1024, B rows in blocks of 4 (streamed once from memory), A rows in
 * blocks of 4, a 4x4 register tile of float64 accumulators per block.
 */
export const tsGemm: Gemm = {
  name: "ts-blocked-f64",
  nt(a, b, m, n, k, out) {
    const c = out ?? new Float64Array(m * n);
    checkNT(a, b, m, n, k, c);
    c.fill(0, 0, m * n);
    const m4 = m - (m % 4);
    const n4 = n - (n % 4);
    for (let k0 = 0; k0 < k; k0 += KB) {
      const k1 = Math.min(k, k0 + KB);
      for (let j = 0; j < n4; j += 4) {
        const b0 = j * k;
        const b1 = b0 + k;
        const b2 = b1 + k;
        const b3 = b2 + k;
        for (let i = 0; i < m4; i += 4) {
          const a0 = i * k;
          const a1 = a0 + k;
          const a2 = a1 + k;
          const a3 = a2 + k;
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
            const x0 = a[a0 + p];
            const x1 = a[a1 + p];
            const x2 = a[a2 + p];
            const x3 = a[a3 + p];
            const y0 = b[b0 + p];
            const y1 = b[b1 + p];
            const y2 = b[b2 + p];
            const y3 = b[b3 + p];
            c00 += x0 * y0;
            c01 += x0 * y1;
            c02 += x0 * y2;
            c03 += x0 * y3;
            c10 += x1 * y0;
            c11 += x1 * y1;
            c12 += x1 * y2;
            c13 += x1 * y3;
            c20 += x2 * y0;
            c21 += x2 * y1;
            c22 += x2 * y2;
            c23 += x2 * y3;
            c30 += x3 * y0;
            c31 += x3 * y1;
            c32 += x3 * y2;
            c33 += x3 * y3;
          }
          let o = i * n + j;
          c[o] += c00;
          c[o + 1] += c01;
          c[o + 2] += c02;
          c[o + 3] += c03;
          o += n;
          c[o] += c10;
          c[o + 1] += c11;
          c[o + 2] += c12;
          c[o + 3] += c13;
          o += n;
          c[o] += c20;
          c[o + 1] += c21;
          c[o + 2] += c22;
          c[o + 3] += c23;
          o += n;
          c[o] += c30;
          c[o + 1] += c31;
          c[o + 2] += c32;
          c[o + 3] += c33;
        }
        // leftover rows of A against this 4-row block of B
        for (let i = m4; i < m; i++) {
          const a0 = i * k;
          let s0 = 0,
            s1 = 0,
            s2 = 0,
            s3 = 0;
          for (let p = k0; p < k1; p++) {
            const x = a[a0 + p];
            s0 += x * b[b0 + p];
            s1 += x * b[b1 + p];
            s2 += x * b[b2 + p];
            s3 += x * b[b3 + p];
          }
          const o = i * n + j;
          c[o] += s0;
          c[o + 1] += s1;
          c[o + 2] += s2;
          c[o + 3] += s3;
        }
      }
      // leftover rows of B
      for (let j = n4; j < n; j++) {
        const b0 = j * k;
        for (let i = 0; i < m; i++) {
          const a0 = i * k;
          let s = 0;
          for (let p = k0; p < k1; p++) s += a[a0 + p] * b[b0 + p];
          c[i * n + j] += s;
        }
      }
    }
    return c;
  },
  nn(a, b, m, n, k, out) {
    const c = out ?? new Float64Array(m * n);
    if (a.length < m * k) throw new LowRankError("E_SHAPE", `gemm A has ${a.length} elements, need M*K = ${m}*${k}`);
    if (b.length < k * n) throw new LowRankError("E_SHAPE", `gemm B has ${b.length} elements, need K*N = ${k}*${n}`);
    if (c.length < m * n) throw new LowRankError("E_SHAPE", `gemm C has ${c.length} elements, need M*N = ${m}*${n}`);
    c.fill(0, 0, m * n);
    const m4 = m - (m % 4);
    const k4 = k - (k % 4);
    for (let j0 = 0; j0 < n; j0 += NCH) {
      const j1 = Math.min(n, j0 + NCH);
      // 4 rows of B at a time against 4 rows of C: 16 weights in registers, one pass over the N-chunk
      for (let p = 0; p < k4; p += 4) {
        const r0 = p * n;
        const r1 = r0 + n;
        const r2 = r1 + n;
        const r3 = r2 + n;
        for (let i = 0; i < m4; i += 4) {
          const a0 = i * k + p;
          const a1 = a0 + k;
          const a2 = a1 + k;
          const a3 = a2 + k;
          const w00 = a[a0];
          const w01 = a[a0 + 1];
          const w02 = a[a0 + 2];
          const w03 = a[a0 + 3];
          const w10 = a[a1];
          const w11 = a[a1 + 1];
          const w12 = a[a1 + 2];
          const w13 = a[a1 + 3];
          const w20 = a[a2];
          const w21 = a[a2 + 1];
          const w22 = a[a2 + 2];
          const w23 = a[a2 + 3];
          const w30 = a[a3];
          const w31 = a[a3 + 1];
          const w32 = a[a3 + 2];
          const w33 = a[a3 + 3];
          const c0 = i * n;
          const c1 = c0 + n;
          const c2 = c1 + n;
          const c3 = c2 + n;
          for (let j = j0; j < j1; j++) {
            const x0 = b[r0 + j];
            const x1 = b[r1 + j];
            const x2 = b[r2 + j];
            const x3 = b[r3 + j];
            c[c0 + j] += w00 * x0 + w01 * x1 + w02 * x2 + w03 * x3;
            c[c1 + j] += w10 * x0 + w11 * x1 + w12 * x2 + w13 * x3;
            c[c2 + j] += w20 * x0 + w21 * x1 + w22 * x2 + w23 * x3;
            c[c3 + j] += w30 * x0 + w31 * x1 + w32 * x2 + w33 * x3;
          }
        }
        for (let i = m4; i < m; i++) {
          const a0 = i * k + p;
          const w0 = a[a0];
          const w1 = a[a0 + 1];
          const w2 = a[a0 + 2];
          const w3 = a[a0 + 3];
          const c0 = i * n;
          for (let j = j0; j < j1; j++) c[c0 + j] += w0 * b[r0 + j] + w1 * b[r1 + j] + w2 * b[r2 + j] + w3 * b[r3 + j];
        }
      }
      for (let p = k4; p < k; p++) {
        const r0 = p * n;
        for (let i = 0; i < m; i++) {
          const w = a[i * k + p];
          const c0 = i * n;
          for (let j = j0; j < j1; j++) c[c0 + j] += w * b[r0 + j];
        }
      }
    }
    return c;
  },
};

let current: Gemm = tsGemm;

/** The GEMM the SVD routines use unless one is passed explicitly. */
export function defaultGemm(): Gemm {
  return current;
}

/** Replace the default GEMM (e.g. with a native kernel); returns the previous one. */
export function setDefaultGemm(g: Gemm): Gemm {
  const prev = current;
  current = g;
  return prev;
}

/** Row-major transpose: a [rows, cols] -> [cols, rows], in 32x32 tiles. Accepts float32 or float64 input. */
export function transpose(a: Float32Array | Float64Array, rows: number, cols: number): Float64Array {
  if (a.length !== rows * cols)
    throw new LowRankError("E_SHAPE", `transpose: ${a.length} elements do not fit [${rows}, ${cols}]`);
  const t = new Float64Array(rows * cols);
  const T = 32;
  for (let i0 = 0; i0 < rows; i0 += T) {
    const i1 = Math.min(rows, i0 + T);
    for (let j0 = 0; j0 < cols; j0 += T) {
      const j1 = Math.min(cols, j0 + T);
      for (let i = i0; i < i1; i++) {
        const r = i * cols;
        for (let j = j0; j < j1; j++) t[j * rows + i] = a[r + j];
      }
    }
  }
  return t;
}
