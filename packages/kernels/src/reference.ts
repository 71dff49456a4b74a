/**
 * Float64 TypeScript references of every operator, written directly from the math (no packed layouts). They are
 * the oracle of the tests and the fallback when the native addon is unavailable. Conventions are those of the
 * kernels: per token per 64 channels; INT4 scale = amax/7, codes clamp(rne(x̂·7/amax), -8, 7); UINT4 on
 * v = (x + shift)/λ, scale = vmax/15, codes clamp(rne(v·15/vmax), 0, 15); INT8 per token scale = amax/127.
 */
export type ActFormat = "int4" | "uint4";

/** Round half to even (IEEE 754 roundTiesToEven), the rounding of the kernels. */
export function rne(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** bfloat16 bits → float (exact). */
export function bf16ToNumber(b: number): number {
  const f = new Float32Array(new Uint32Array([(b & 0xffff) << 16]).buffer);
  return f[0];
}

/** GELU, tanh approximation (Hendrycks & Gimpel 2016). */
export function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}

export interface RefActQuant {
  codes: Int8Array;
  scales: Float64Array;
  loraAct: Float64Array;
  /** the value that was rounded (x̂·qmax/amax), to tell apart genuine ties from errors in tests */
  unrounded: Float64Array;
}

export function refActQuant(
  x: ArrayLike<number>,
  M: number,
  K: number,
  opts: { smooth?: ArrayLike<number>; ldown?: ArrayLike<number>; R?: number; format?: ActFormat; shift?: number } = {},
): RefActQuant {
  const R = opts.R ?? 0;
  const fmt = opts.format ?? "int4";
  const shift = fmt === "uint4" ? (opts.shift ?? 0) : 0;
  const qmax = fmt === "int4" ? 7 : 15;
  const [lo, hi] = fmt === "int4" ? [-8, 7] : [0, 15];
  const G = K / 64;
  const codes = new Int8Array(M * K);
  const scales = new Float64Array(M * G);
  const loraAct = new Float64Array(M * R);
  const unrounded = new Float64Array(M * K);
  const xh = new Float64Array(K);
  for (let m = 0; m < M; m++) {
    // x̂ = (x + shift)/λ: the shift comes before the smoothing division (Nunchaku's EpilogueQuantize order)
    for (let k = 0; k < K; k++) xh[k] = opts.smooth ? (x[m * K + k] + shift) / opts.smooth[k] : x[m * K + k] + shift;
    for (let g = 0; g < G; g++) {
      let mx = 0;
      for (let i = 0; i < 64; i++) {
        const v = xh[g * 64 + i];
        mx = Math.max(mx, fmt === "int4" ? Math.abs(v) : v);
      }
      scales[m * G + g] = mx / qmax;
      for (let i = 0; i < 64; i++) {
        const k = g * 64 + i;
        const u = mx > 0 ? (xh[k] * qmax) / mx : 0;
        unrounded[m * K + k] = u;
        codes[m * K + k] = Math.min(hi, Math.max(lo, rne(u)));
      }
    }
    for (let r = 0; r < R; r++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * opts.ldown![r * K + k]; // unsmoothed X (checkpoint convention)
      loraAct[m * R + r] = s;
    }
  }
  return { codes, scales, loraAct, unrounded };
}

/**
 * Y[m,n] = Σ_g s_x[m,g]·s_w[n,g]·Σ_{k∈g} cx[m,k]·cw[n,k] + Σ_r la[m,r]·L_up[n,r] + bias[n], optional GELU.
 */
export function refGemmW4A4(args: {
  M: number;
  K: number;
  N: number;
  R: number;
  xCodes: ArrayLike<number>;
  xScales: ArrayLike<number>;
  loraAct?: ArrayLike<number> | null;
  wCodes: ArrayLike<number>;
  wScales: ArrayLike<number>;
  lowRankUp?: ArrayLike<number> | null;
  bias?: ArrayLike<number> | null;
  gelu?: boolean;
}): Float64Array {
  const { M, K, N, R } = args;
  const G = K / 64;
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let g = 0; g < G; g++) {
        let d = 0;
        for (let i = 0; i < 64; i++) d += args.xCodes[m * K + g * 64 + i] * args.wCodes[n * K + g * 64 + i];
        s += d * args.xScales[m * G + g] * args.wScales[n * G + g];
      }
      if (args.loraAct && args.lowRankUp)
        for (let r = 0; r < R; r++) s += args.loraAct[m * R + r] * args.lowRankUp[n * R + r];
      if (args.bias) s += args.bias[n];
      y[m * N + n] = args.gelu ? geluTanh(s) : s;
    }
  return y;
}

/** bf16 max finite value (2 − 2^-7)·2^127 and its smallest normal 2^-126 (the f32 exponent range). */
const BF16_MAX = (2 - 2 ** -7) * 2 ** 127;
const BF16_MIN_EXP = -126;

/**
 * v rounded to bfloat16 (8 significant bits, round half to even, the f32 exponent range with subnormals down to
 * 2^-133; beyond the largest finite value ±Infinity), from the float64 v directly (one rounding).
 */
export function roundBf16(v: number): number {
  if (v === 0 || !Number.isFinite(v)) return v;
  const a = Math.abs(v);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const step = 2 ** (Math.max(e, BF16_MIN_EXP) - 7); // 7 fraction bits
  const r = rne(v / step) * step; // v / step is exact (a power of two)
  return Math.abs(r) > BF16_MAX ? Math.sign(r) * Number.POSITIVE_INFINITY : r;
}

export interface RefP2BranchBf16 {
  /** x·L_downᵀ [M, R]: Σ_k bf16(x[m,k])·bf16(L_down[r,k]) in float64 (every product exact). */
  lact: Float64Array;
  /** Σ_k |bf16(x)·bf16(L_down)| [M, R]: the scale of a summation error of lact. */
  lactAbs: Float64Array;
  /** The branch [M, N]: Σ_r bf16(lact[m,r]) · bf16(L_up[n,r] / s[n]) · s[n]. */
  y: Float64Array;
  /** Σ_r |bf16(a[m,r]) · b[n,r]| [M, N]: the scale of the summation error of y's branch. */
  yAbs: Float64Array;
  /**
   * [M, N]: how far y can move when each lact, before its bf16 rounding, is off by up to lactTol·lactAbs (a sum in
   * another order or precision may round to the neighbouring bf16 value; 0 where it cannot).
   */
  yAmbig: Float64Array;
}

/**
 * The int4p2 layer's low-rank branch at precision "bf16" (p2-layer.ts P2BranchPrecision), float64 after the
 * roundings the option specifies: x and L_down to bf16, lora_act to bf16, L_up / s to bf16 with s [N] the scale the
 * weight operand divides by (the layer's row scale S_w, 1 where it is 0).
 */
export function refP2BranchBf16(args: {
  x: ArrayLike<number>;
  M: number;
  K: number;
  lowRankDown: ArrayLike<number>;
  R: number;
  lowRankUp: ArrayLike<number>;
  N: number;
  upScale: ArrayLike<number>;
  lactTol: number;
}): RefP2BranchBf16 {
  const { M, K, R, N } = args;
  const xb = Float64Array.from({ length: M * K }, (_, i) => roundBf16(args.x[i]));
  const lb = Float64Array.from({ length: R * K }, (_, i) => roundBf16(args.lowRankDown[i]));
  const b = new Float64Array(N * R);
  for (let n = 0; n < N; n++)
    for (let r = 0; r < R; r++) b[n * R + r] = roundBf16(args.lowRankUp[n * R + r] / args.upScale[n]) * args.upScale[n];
  const lact = new Float64Array(M * R);
  const lactAbs = new Float64Array(M * R);
  const a = new Float64Array(M * R);
  const amb = new Float64Array(M * R);
  for (let m = 0; m < M; m++)
    for (let r = 0; r < R; r++) {
      let s = 0;
      let abs = 0;
      for (let k = 0; k < K; k++) {
        const p = xb[m * K + k] * lb[r * K + k];
        s += p;
        abs += Math.abs(p);
      }
      const i = m * R + r;
      lact[i] = s;
      lactAbs[i] = abs;
      a[i] = roundBf16(s);
      const d = args.lactTol * abs;
      amb[i] = Math.max(Math.abs(roundBf16(s - d) - a[i]), Math.abs(roundBf16(s + d) - a[i]));
    }
  const y = new Float64Array(M * N);
  const yAbs = new Float64Array(M * N);
  const yAmbig = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      let abs = 0;
      let am = 0;
      for (let r = 0; r < R; r++) {
        const p = a[m * R + r] * b[n * R + r];
        s += p;
        abs += Math.abs(p);
        am += amb[m * R + r] * Math.abs(b[n * R + r]);
      }
      y[m * N + n] = s;
      yAbs[m * N + n] = abs;
      yAmbig[m * N + n] = am;
    }
  return { lact, lactAbs, y, yAbs, yAmbig };
}

/** Y = X·Wᵀ + bias (W [N,K]), optional GELU. */
export function refGemmF32(
  x: ArrayLike<number>,
  M: number,
  K: number,
  w: ArrayLike<number>,
  N: number,
  bias?: ArrayLike<number> | null,
  gelu = false,
): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = bias ? bias[n] : 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
      y[m * N + n] = gelu ? geluTanh(s) : s;
    }
  return y;
}

/** Dequantized W4A16 weight [N,K]: value[code]·scale with value = code (INT4) or NF4 table[code]. */
export function refDequant4(
  codes: ArrayLike<number>,
  scales: ArrayLike<number>,
  N: number,
  K: number,
  G: number,
  table: readonly number[] | null,
): Float64Array {
  const w = new Float64Array(N * K);
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) {
      const c = codes[n * K + k];
      w[n * K + k] = (table ? table[c] : c) * scales[n * (K / G) + Math.floor(k / G)];
    }
  return w;
}

/** Per-token symmetric INT8: scale = amax/127, code = clamp(rne(x·127/amax), ±127). */
export function refActQuantInt8(x: ArrayLike<number>, M: number, K: number) {
  const codes = new Int8Array(M * K);
  const scales = new Float64Array(M);
  const unrounded = new Float64Array(M * K);
  for (let m = 0; m < M; m++) {
    let mx = 0;
    for (let k = 0; k < K; k++) mx = Math.max(mx, Math.abs(x[m * K + k]));
    scales[m] = mx / 127;
    for (let k = 0; k < K; k++) {
      const u = mx > 0 ? (x[m * K + k] * 127) / mx : 0;
      unrounded[m * K + k] = u;
      codes[m * K + k] = Math.max(-127, Math.min(127, rne(u)));
    }
  }
  return { codes, scales, unrounded };
}

/** Y[m,n] = (Σ_k cx·cw)·s_x[m]·s_w[n] + bias[n]. */
export function refGemmW8A8(
  xCodes: ArrayLike<number>,
  xScales: ArrayLike<number>,
  M: number,
  K: number,
  wCodes: ArrayLike<number>,
  wScales: ArrayLike<number>,
  N: number,
  bias?: ArrayLike<number> | null,
): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let d = 0;
      for (let k = 0; k < K; k++) d += xCodes[m * K + k] * wCodes[n * K + k];
      y[m * N + n] = d * xScales[m] * wScales[n] + (bias ? bias[n] : 0);
    }
  return y;
}

// ---- Operator 6: float64 symmetric linear algebra (row-major n x n; "lower" = entries j ≤ i) ----

/**
 * Cholesky–Banachiewicz, row by row from the definition: L[i][j] = (A[i][j] − Σ_{k<j} L[i][k]·L[j][k]) / L[j][j],
 * L[j][j] = √(A[j][j] − Σ_{k<j} L[j][k]²). Reads the lower triangle. Fails at the first column whose pivot is
 * ≤ tol·max(diag A) (or NaN): `failedAt` is that column, −1 on success. `l` has zeros above the diagonal.
 */
export function refCholeskyF64(a: Float64Array, n: number, tol = 1e-12): { l: Float64Array; failedAt: number } {
  const l = new Float64Array(n * n);
  let maxDiag = 0;
  for (let i = 0; i < n; i++) maxDiag = Math.max(maxDiag, a[i * n + i]);
  if (!(maxDiag > 0)) return { l, failedAt: 0 };
  for (let j = 0; j < n; j++) {
    let s = a[j * n + j];
    for (let k = 0; k < j; k++) s -= l[j * n + k] ** 2;
    if (!(s > tol * maxDiag)) return { l, failedAt: j };
    const ljj = Math.sqrt(s);
    l[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let t = a[i * n + j];
      for (let k = 0; k < j; k++) t -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = t / ljj;
    }
  }
  return { l, failedAt: -1 };
}

/**
 * Pivoted (positive semidefinite) Cholesky P·A·Pᵀ ≈ L·Lᵀ, from the definition: at step r the index with the largest
 * remaining pivot A(i,i) − Σ_{k<r} L(i,k)² (the first one on ties) becomes r; stop when that pivot is
 * ≤ tol·max(diag A). Works on a full symmetric copy of the lower triangle (rows and columns swapped explicitly).
 * Returns L [n, n] (lower, zero beyond column rank), perm (row i of P·A·Pᵀ is row perm[i] of A), rank.
 */
export function refPivotedCholeskyF64(
  a: Float64Array,
  n: number,
  tol = 1e-12,
): { l: Float64Array; perm: Int32Array; rank: number } {
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      m[i * n + j] = a[i * n + j];
      m[j * n + i] = a[i * n + j];
    }
  const perm = Int32Array.from({ length: n }, (_, i) => i);
  const l = new Float64Array(n * n);
  let maxDiag = 0;
  for (let i = 0; i < n; i++) maxDiag = Math.max(maxDiag, m[i * n + i]);
  const pivot = (i: number, r: number) => {
    let s = m[i * n + i];
    for (let k = 0; k < r; k++) s -= l[i * n + k] ** 2;
    return s;
  };
  let rank = 0;
  for (; rank < n && maxDiag > 0; rank++) {
    const r = rank;
    let p = r;
    for (let i = r + 1; i < n; i++) if (pivot(i, r) > pivot(p, r)) p = i;
    const dp = pivot(p, r);
    if (!(dp > tol * maxDiag)) break;
    if (p !== r) {
      for (let k = 0; k < n; k++) [m[r * n + k], m[p * n + k]] = [m[p * n + k], m[r * n + k]];
      for (let k = 0; k < n; k++) [m[k * n + r], m[k * n + p]] = [m[k * n + p], m[k * n + r]];
      for (let k = 0; k < r; k++) [l[r * n + k], l[p * n + k]] = [l[p * n + k], l[r * n + k]];
      [perm[r], perm[p]] = [perm[p], perm[r]];
    }
    const lrr = Math.sqrt(dp);
    l[r * n + r] = lrr;
    for (let i = r + 1; i < n; i++) {
      let t = m[i * n + r];
      for (let k = 0; k < r; k++) t -= l[i * n + k] * l[r * n + k];
      l[i * n + r] = t / lrr;
    }
  }
  return { l, perm, rank };
}

/** M = Lᵀ·S·L in full (two plain triple loops), for lower-triangular L (upper part ignored) and full S. */
export function refCongruenceF64(l: Float64Array, s: Float64Array, n: number): Float64Array {
  const sl = new Float64Array(n * n); // S·L
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let t = 0;
      for (let k = j; k < n; k++) t += s[i * n + k] * l[k * n + j];
      sl[i * n + j] = t;
    }
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let t = 0;
      for (let k = i; k < n; k++) t += l[k * n + i] * sl[k * n + j];
      m[i * n + j] = t;
    }
  return m;
}

/**
 * Eigenvalues of the symmetric matrix whose lower triangle is `a`, ascending, by the cyclic Jacobi method
 * (Golub & Van Loan, Matrix Computations 4th ed., §8.5.3): rotations until the off-diagonal mass is below
 * 1e-30 of the total. Independent of the Householder route of the native operator; O(n³) per sweep.
 */
export function refSymmetricEigenvaluesF64(a: Float64Array, n: number): Float64Array {
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      m[i * n + j] = a[i * n + j];
      m[j * n + i] = a[i * n + j];
    }
  let total = 0;
  for (let i = 0; i < n * n; i++) total += m[i] * m[i];
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += 2 * m[p * n + q] ** 2;
    if (off <= 1e-30 * total) return Float64Array.from({ length: n }, (_, i) => m[i * n + i]).sort();
    for (let p = 0; p < n - 1; p++)
      for (let q = p + 1; q < n; q++) {
        const apq = m[p * n + q];
        if (apq === 0) continue;
        const theta = (m[q * n + q] - m[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          // columns p, q of M·J
          const mkp = m[k * n + p];
          const mkq = m[k * n + q];
          m[k * n + p] = c * mkp - s * mkq;
          m[k * n + q] = s * mkp + c * mkq;
        }
        for (let k = 0; k < n; k++) {
          // rows p, q of Jᵀ·(M·J)
          const mpk = m[p * n + k];
          const mqk = m[q * n + k];
          m[p * n + k] = c * mpk - s * mqk;
          m[q * n + k] = s * mpk + c * mqk;
        }
      }
  }
  throw new Error(`Jacobi eigenvalue iteration did not converge for n = ${n}`);
}

/** Float64 multi-head attention: softmax(q·kᵀ/√Dh + bias)·v per batch and head (layout of attentionF32). */
export function refAttention(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  B: number,
  Sq: number,
  Skv: number,
  H: number,
  Dh: number,
  bias?: ArrayLike<number>,
): Float64Array {
  const d = H * Dh;
  const out = new Float64Array(B * Sq * d);
  const p = new Float64Array(Skv);
  const scale = 1 / Math.sqrt(Dh);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < Sq; i++) {
        const qo = (b * Sq + i) * d + h * Dh;
        let mx = -Infinity;
        for (let j = 0; j < Skv; j++) {
          const ko = (b * Skv + j) * d + h * Dh;
          let s = 0;
          for (let t = 0; t < Dh; t++) s += q[qo + t] * k[ko + t];
          p[j] = s * scale + (bias ? bias[b * Skv + j] : 0);
          if (p[j] > mx) mx = p[j];
        }
        let sum = 0;
        for (let j = 0; j < Skv; j++) {
          p[j] = Math.exp(p[j] - mx);
          sum += p[j];
        }
        for (let j = 0; j < Skv; j++) {
          const w = p[j] / sum;
          const vo = (b * Skv + j) * d + h * Dh;
          for (let t = 0; t < Dh; t++) out[qo + t] += w * v[vo + t];
        }
      }
  return out;
}
