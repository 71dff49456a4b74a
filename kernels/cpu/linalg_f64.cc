// Operator 6: dense symmetric float64 linear algebra for the Fréchet distance (tr √(Σa·Σb), @svdquant/metrics):
//   cholesky_f64     Σ = L·Lᵀ, right-looking blocked (LAPACK dpotrf order): unblocked diagonal block, panel
//                    L21 = A21·L11⁻ᵀ as a GEMM with the explicit inverse of the 128x128 L11, trailing
//                    A22 −= L21·L21ᵀ as a lower-triangle GEMM (SYRK).
//   pivoted_cholesky_f64  P·A·Pᵀ ≈ L·Lᵀ for a PSD A (LAPACK dpstf2 order, left-looking, rows threaded): the factor
//                    of a singular covariance.
//   congruence_f64   lower triangle of M = Lᵀ·S·L: W = S·L by 256-column blocks (k ≥ block start: L is
//                    triangular), then M = Lᵀ·W by 128-row blocks, lower triangle only. ≈ 2n³/3 multiply-adds.
//   sym_eigvals_f64  eigenvalues of a symmetric matrix: blocked Householder tridiagonalization (LAPACK dsytrd /
//                    dlatrd, UPLO = 'U' order on the row-major lower triangle so every access is a contiguous row),
//                    32 columns per panel with a rank-64 trailing update (SYR2K as a lower-triangle GEMM), the
//                    per-column symmetric matrix-vector product threaded over rows, then implicit QL on the
//                    tridiagonal matrix.
// Matrices are row-major n x n double; "lower" routines read and write only j ≤ i.
// One GEMM serves all of them: C (op=) alpha·A·B with A, B given by element strides (so transposes are packing
// choices), Goto blocking (KC = 256 rows of B in an [8]-column panel stay in L1, MC = 96 rows of A in L2) and a
// 6x8 f64 FMA micro-kernel (12 accumulators + 2 B vectors + 1 broadcast of the 16 YMM registers).
#include "x86.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"

namespace svdq {

namespace {

// √(x² + y²) without std::hypot's cost (it dominates the QL sweep); hypot only when x² + y² leaves the range.
inline double hyp(double x, double y) {
  const double s = x * x + y * y;
  if (s > 1e-300 && s < 1e300) return std::sqrt(s);
  return std::hypot(x, y);
}

constexpr int kMR = 6;
constexpr int kNR = 8;
constexpr int64_t kKC = 256;
constexpr int64_t kMC = 96;   // multiple of kMR
constexpr int64_t kNCH = 64;  // columns per task (multiple of kNR)

struct Gemm {
  int64_t M, N, K;
  double alpha;
  const double* a;
  int64_t ars, acs;  // A(i, k) = a[i·ars + k·acs]
  const double* b;
  int64_t brs, bcs;  // B(k, j) = b[k·brs + j·bcs]
  bool accumulate;   // C += alpha·A·B (else C = alpha·A·B)
  double* c;
  int64_t ldc;
  int tri;       // 0: all of C; 1: only j − i ≤ off (lower); 2: only j − i ≥ off (upper)
  int64_t off;
};

#if SVDQ_X86
__attribute__((target("avx2,fma"))) void micro_avx2(const double* ap, const double* bp, int64_t kc, double* out) {
  __m256d acc[kMR][2];
  #pragma GCC unroll 6
  for (int i = 0; i < kMR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_pd();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256d b0 = _mm256_loadu_pd(bp + k * kNR), b1 = _mm256_loadu_pd(bp + k * kNR + 4);
    #pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      const __m256d av = _mm256_broadcast_sd(ap + k * kMR + i);
      acc[i][0] = _mm256_fmadd_pd(av, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_pd(av, b1, acc[i][1]);
    }
  }
  #pragma GCC unroll 6
  for (int i = 0; i < kMR; ++i) {
    _mm256_storeu_pd(out + i * kNR, acc[i][0]);
    _mm256_storeu_pd(out + i * kNR + 4, acc[i][1]);
  }
}
#endif  // SVDQ_X86

void micro_scalar(const double* ap, const double* bp, int64_t kc, double* out) {
  double acc[kMR * kNR] = {};
  for (int64_t k = 0; k < kc; ++k)
    for (int i = 0; i < kMR; ++i) {
      const double av = ap[k * kMR + i];
      for (int j = 0; j < kNR; ++j) acc[i * kNR + j] += av * bp[k * kNR + j];
    }
  std::memcpy(out, acc, sizeof acc);
}

// Is element (i, j) of C kept by the triangle mode?
inline bool keep(const Gemm& g, int64_t i, int64_t j) {
  return g.tri == 0 || (g.tri == 1 ? j - i <= g.off : j - i >= g.off);
}
// 0: rectangle [i0, i1) x [j0, j1) entirely outside the triangle, 1: entirely inside, 2: straddles.
inline int rect(const Gemm& g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  if (g.tri == 0) return 1;
  if (g.tri == 1) {
    if (j0 - (i1 - 1) > g.off) return 0;
    return (j1 - 1) - i0 <= g.off ? 1 : 2;
  }
  if ((j1 - 1) - i0 < g.off) return 0;
  return j0 - (i1 - 1) >= g.off ? 1 : 2;
}

void gemm(const Gemm& g) {
  if (g.M <= 0 || g.N <= 0) return;
  if (g.K <= 0) {
    if (!g.accumulate)
      for (int64_t i = 0; i < g.M; ++i)
        for (int64_t j = 0; j < g.N; ++j)
          if (keep(g, i, j)) g.c[i * g.ldc + j] = 0;
    return;
  }
#if SVDQ_X86
  const bool avx = isa_at_least(Isa::Avx2);
#endif  // SVDQ_X86
  const int64_t mp = (g.M + kMR - 1) / kMR, np = (g.N + kNR - 1) / kNR;
  std::vector<double> apack(mp * kMR * kKC), bpack(np * kNR * kKC);
  const int64_t mblocks = (g.M + kMC - 1) / kMC, nchunks = (g.N + kNCH - 1) / kNCH;
  for (int64_t pc = 0; pc < g.K; pc += kKC) {
    const int64_t kc = std::min(kKC, g.K - pc);
    const bool overwrite = pc == 0 && !g.accumulate;
    // Pack A as [mp][kc][6] and B as [np][kc][8] (zero-padded edges); tasks: 6-row panels of A then 8-col panels of B.
    const int64_t pg = 16;  // panels per packing task
    const int64_t at = (mp + pg - 1) / pg, bt = (np + pg - 1) / pg;
    parallel_for(at + bt, [&](int64_t t, int) {
      if (t < at) {
        for (int64_t p = t * pg; p < std::min(mp, (t + 1) * pg); ++p) {
          double* dst = apack.data() + p * kMR * kc;
          for (int r = 0; r < kMR; ++r) {
            const int64_t i = p * kMR + r;
            if (i < g.M) {
              const double* src = g.a + i * g.ars + pc * g.acs;
              for (int64_t k = 0; k < kc; ++k) dst[k * kMR + r] = src[k * g.acs];
            } else {
              for (int64_t k = 0; k < kc; ++k) dst[k * kMR + r] = 0;
            }
          }
        }
      } else {
        t -= at;
        for (int64_t p = t * pg; p < std::min(np, (t + 1) * pg); ++p) {
          double* dst = bpack.data() + p * kNR * kc;
          for (int64_t k = 0; k < kc; ++k) {
            const double* src = g.b + (pc + k) * g.brs;
            for (int c = 0; c < kNR; ++c) {
              const int64_t j = p * kNR + c;
              dst[k * kNR + c] = j < g.N ? src[j * g.bcs] : 0;
            }
          }
        }
      }
    });
    parallel_for(mblocks * nchunks, [&](int64_t t, int) {
      const int64_t mb = t / nchunks, ch = t % nchunks;
      const int64_t m0 = mb * kMC, m1 = std::min(g.M, m0 + kMC);
      const int64_t n0 = ch * kNCH, n1 = std::min(g.N, n0 + kNCH);
      if (rect(g, m0, m1, n0, n1) == 0) return;
      double out[kMR * kNR];
      for (int64_t j0 = n0; j0 < n1; j0 += kNR) {
        const int64_t nr = std::min<int64_t>(kNR, n1 - j0);
        const double* bp = bpack.data() + (j0 / kNR) * kNR * kc;
        for (int64_t i0 = m0; i0 < m1; i0 += kMR) {
          const int64_t mr = std::min<int64_t>(kMR, m1 - i0);
          const int where = rect(g, i0, i0 + mr, j0, j0 + nr);
          if (where == 0) continue;
          const double* ap = apack.data() + (i0 / kMR) * kMR * kc;
#if SVDQ_X86
          if (avx)
            micro_avx2(ap, bp, kc, out);
          else
#endif  // SVDQ_X86
            micro_scalar(ap, bp, kc, out);
          for (int64_t r = 0; r < mr; ++r) {
            double* crow = g.c + (i0 + r) * g.ldc + j0;
            const double* o = out + r * kNR;
            if (where == 1 && nr == kNR) {
              if (overwrite)
                for (int c = 0; c < kNR; ++c) crow[c] = g.alpha * o[c];
              else
                for (int c = 0; c < kNR; ++c) crow[c] += g.alpha * o[c];
            } else {
              for (int64_t c = 0; c < nr; ++c) {
                if (where == 2 && !keep(g, i0 + r, j0 + c)) continue;
                crow[c] = overwrite ? g.alpha * o[c] : crow[c] + g.alpha * o[c];
              }
            }
          }
        }
      }
    });
  }
}

// ---- symmetric matrix-vector product on the leading k x k block of a lower triangle ----
// y[0..k) += A[0:k, 0:k]·v for rows [r0, r1) of the lower triangle: row r contributes A(r, c)·v[c] to y[r] and,
// by symmetry, A(r, c)·v[r] to y[c] (c < r). The portable version takes one row at a time.
void symv_rows_scalar(const double* a, int64_t n, int64_t r0, int64_t r1, const double* v, double* y) {
  for (int64_t r = r0; r < r1; ++r) {
    const double* x0 = a + r * n;
    double t0 = 0;
    for (int64_t c = 0; c < r; ++c) {
      t0 += x0[c] * v[c];
      y[c] += x0[c] * v[r];
    }
    y[r] += t0 + x0[r] * v[r];
  }
}

#if SVDQ_X86
// AVX2: two rows per sweep share the loads of v and y.
__attribute__((target("avx2,fma"))) void symv_rows_avx2(const double* a, int64_t n, int64_t r0, int64_t r1,
                                                        const double* v, double* y) {
  int64_t r = r0;
  for (; r + 1 < r1; r += 2) {
    const double* x0 = a + r * n;
    const double* x1 = x0 + n;
    const __m256d vr0 = _mm256_set1_pd(v[r]), vr1 = _mm256_set1_pd(v[r + 1]);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t c = 0;
    for (; c + 4 <= r; c += 4) {
      const __m256d a0 = _mm256_loadu_pd(x0 + c), a1 = _mm256_loadu_pd(x1 + c), vc = _mm256_loadu_pd(v + c);
      s0 = _mm256_fmadd_pd(a0, vc, s0);
      s1 = _mm256_fmadd_pd(a1, vc, s1);
      __m256d yc = _mm256_loadu_pd(y + c);
      yc = _mm256_fmadd_pd(a0, vr0, yc);
      yc = _mm256_fmadd_pd(a1, vr1, yc);
      _mm256_storeu_pd(y + c, yc);
    }
    alignas(32) double h0[4], h1[4];
    _mm256_store_pd(h0, s0);
    _mm256_store_pd(h1, s1);
    double t0 = (h0[0] + h0[1]) + (h0[2] + h0[3]), t1 = (h1[0] + h1[1]) + (h1[2] + h1[3]);
    for (; c < r; ++c) {
      t0 += x0[c] * v[c];
      t1 += x1[c] * v[c];
      y[c] += x0[c] * v[r] + x1[c] * v[r + 1];
    }
    y[r] += t0 + x0[r] * v[r] + x1[r] * v[r + 1];
    y[r + 1] += t1 + x1[r] * v[r] + x1[r + 1] * v[r + 1];
  }
  if (r < r1) symv_rows_scalar(a, n, r, r1, v, y);  // an odd last row
}
#endif  // SVDQ_X86

// y[0..k) = A[0:k, 0:k]·v (lower triangle of a, leading block). scratch: threads·n doubles.
void symv_lower(const double* a, int64_t n, int64_t k, const double* v, double* y, std::vector<double>& scratch) {
#if SVDQ_X86
  const bool avx = isa_at_least(Isa::Avx2);
#endif  // SVDQ_X86
  const int T = k >= 256 ? num_threads() : 1;  // below ≈ 256 rows the pool's wake-up costs more than it saves
#if SVDQ_X86
  auto rows = avx ? symv_rows_avx2 : symv_rows_scalar;
#else
  auto rows = symv_rows_scalar;
#endif  // SVDQ_X86
  if (T == 1) {
    std::fill(y, y + k, 0.0);
    rows(a, n, 0, k, v, y);
    return;
  }
  if (static_cast<int64_t>(scratch.size()) < T * n) scratch.assign(T * n, 0.0);
  // Equal areas of the triangle: part t ends at row k·√((t+1)/T).
  parallel_for(T, [&](int64_t t, int) {
    const int64_t r0 = t == 0 ? 0 : static_cast<int64_t>(k * std::sqrt(static_cast<double>(t) / T));
    const int64_t r1 = t == T - 1 ? k : static_cast<int64_t>(k * std::sqrt(static_cast<double>(t + 1) / T));
    double* yt = scratch.data() + t * n;
    std::fill(yt, yt + r1, 0.0);  // rows < r1 are all this part touches
    rows(a, n, r0, r1, v, yt);
  });
  std::fill(y, y + k, 0.0);
  for (int t = 0; t < T; ++t) {
    const int64_t r1 = t == T - 1 ? k : static_cast<int64_t>(k * std::sqrt(static_cast<double>(t + 1) / T));
    const double* yt = scratch.data() + t * n;
    for (int64_t i = 0; i < r1; ++i) y[i] += yt[i];
  }
}

double dot_scalar(const double* x, const double* y, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += x[i] * y[i];
    s1 += x[i + 1] * y[i + 1];
    s2 += x[i + 2] * y[i + 2];
    s3 += x[i + 3] * y[i + 3];
  }
  for (; i < n; ++i) s0 += x[i] * y[i];
  return (s0 + s1) + (s2 + s3);
}

#if SVDQ_X86
__attribute__((target("avx2,fma"))) double dot_avx2(const double* x, const double* y, int64_t n) {
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 = _mm256_fmadd_pd(_mm256_loadu_pd(x + i), _mm256_loadu_pd(y + i), s0);
    s1 = _mm256_fmadd_pd(_mm256_loadu_pd(x + i + 4), _mm256_loadu_pd(y + i + 4), s1);
  }
  if (i + 4 <= n) {
    s0 = _mm256_fmadd_pd(_mm256_loadu_pd(x + i), _mm256_loadu_pd(y + i), s0);
    i += 4;
  }
  alignas(32) double h[4];
  _mm256_store_pd(h, _mm256_add_pd(s0, s1));
  double t = (h[0] + h[1]) + (h[2] + h[3]);
  for (; i < n; ++i) t += x[i] * y[i];
  return t;
}
#endif  // SVDQ_X86

// x[i] −= a·u[i] + b·w[i] for i < n (the rank-2 pieces of the tridiagonalization panel).
void axpy2_scalar(double* x, double a, const double* u, double b, const double* w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] -= a * u[i] + b * w[i];
}

#if SVDQ_X86
__attribute__((target("avx2,fma"))) void axpy2_avx2(double* x, double a, const double* u, double b, const double* w,
                                                    int64_t n) {
  const __m256d va = _mm256_set1_pd(a), vb = _mm256_set1_pd(b);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const __m256d t = _mm256_fmadd_pd(vb, _mm256_loadu_pd(w + i), _mm256_mul_pd(va, _mm256_loadu_pd(u + i)));
    _mm256_storeu_pd(x + i, _mm256_sub_pd(_mm256_loadu_pd(x + i), t));
  }
  for (; i < n; ++i) x[i] -= a * u[i] + b * w[i];
}
#endif  // SVDQ_X86

double dot(const double* x, const double* y, int64_t n) {
#if SVDQ_X86
  return isa_at_least(Isa::Avx2) ? dot_avx2(x, y, n) : dot_scalar(x, y, n);
#else
  return dot_scalar(x, y, n);
#endif  // SVDQ_X86
}

}  // namespace

// ---- Cholesky ----
int64_t cholesky_f64(double* a, int64_t n, double tol) {
  double maxd = 0;
  for (int64_t i = 0; i < n; ++i) maxd = std::max(maxd, a[i * n + i]);
  if (!(maxd > 0)) return 0;
  const double floor = tol * maxd;  // a pivot ≤ tol·max(diag) means "not numerically positive definite"
  constexpr int64_t nb = 128;
  std::vector<double> linv(nb * nb), tmp;
  for (int64_t k0 = 0; k0 < n; k0 += nb) {
    const int64_t k1 = std::min(n, k0 + nb), kb = k1 - k0;
    // Unblocked on the diagonal block (already holds the trailing updates of earlier panels).
    for (int64_t j = k0; j < k1; ++j) {
      double* rj = a + j * n;
      const double s = rj[j] - dot(rj + k0, rj + k0, j - k0);
      if (!(s > floor)) return j;
      const double ljj = std::sqrt(s);
      rj[j] = ljj;
      for (int64_t i = j + 1; i < k1; ++i) {
        double* ri = a + i * n;
        ri[j] = (ri[j] - dot(ri + k0, rj + k0, j - k0)) / ljj;
      }
    }
    if (k1 == n) break;
    // L11⁻¹ (lower), column by column: X[i][j] = −(Σ_{j≤q<i} L[i][q]·X[q][j]) / L[i][i].
    std::fill(linv.begin(), linv.end(), 0.0);
    for (int64_t j = 0; j < kb; ++j) {
      linv[j * kb + j] = 1.0 / a[(k0 + j) * n + k0 + j];
      for (int64_t i = j + 1; i < kb; ++i) {
        const double* li = a + (k0 + i) * n + k0;
        double s = 0;
        for (int64_t q = j; q < i; ++q) s += li[q] * linv[q * kb + j];
        linv[i * kb + j] = -s / li[i];
      }
    }
    // Panel: L21 = A21·L11⁻ᵀ (A21 copied first: the GEMM writes in place).
    const int64_t m = n - k1;
    tmp.resize(m * kb);
    for (int64_t i = 0; i < m; ++i) std::memcpy(tmp.data() + i * kb, a + (k1 + i) * n + k0, kb * sizeof(double));
    gemm(Gemm{m, kb, kb, 1.0, tmp.data(), kb, 1, linv.data(), 1, kb, false, a + k1 * n + k0, n, 0, 0});
    // Trailing: A22 −= L21·L21ᵀ, lower triangle only.
    const double* l21 = a + k1 * n + k0;
    gemm(Gemm{m, m, kb, -1.0, l21, n, 1, l21, 1, n, true, a + k1 * n + k1, n, 1, 0});
  }
  return -1;
}

// ---- pivoted (positive semidefinite) Cholesky, the order of LAPACK dpstf2 ----
// P·A·Pᵀ = L·Lᵀ + E with L lower trapezoidal n x rank: at step r the largest remaining pivot d[i] =
// A(i,i) − Σ_{k<r} L(i,k)² is swapped to r; the factorization stops when it is ≤ tol·max(diag A) (or NaN).
// Left-looking: column r is A(r+1.., r) − L(r+1.., 0..r)·L(r, 0..r)ᵀ, dot products of contiguous row prefixes,
// threaded over rows. perm[i] = original index of row i. Columns ≥ rank of the lower triangle are zeroed.
namespace {
void swap_sym_lower(double* a, int64_t n, int64_t j, int64_t p) {  // swap indices j < p of a symmetric matrix
  for (int64_t k = 0; k < j; ++k) std::swap(a[j * n + k], a[p * n + k]);
  std::swap(a[j * n + j], a[p * n + p]);
  for (int64_t i = j + 1; i < p; ++i) std::swap(a[i * n + j], a[p * n + i]);
  for (int64_t i = p + 1; i < n; ++i) std::swap(a[i * n + j], a[i * n + p]);
}
}  // namespace

int64_t pivoted_cholesky_f64(double* a, int64_t n, double tol, int32_t* perm) {
  std::vector<double> d(n);
  double maxd = 0;
  for (int64_t i = 0; i < n; ++i) {
    d[i] = a[i * n + i];
    perm[i] = static_cast<int32_t>(i);
    maxd = std::max(maxd, d[i]);
  }
  const double stop = tol * maxd;
  int64_t r = 0;
  for (; r < n && maxd > 0; ++r) {
    int64_t p = r;
    for (int64_t i = r + 1; i < n; ++i)
      if (d[i] > d[p]) p = i;
    if (!(d[p] > stop)) break;
    if (p != r) {
      swap_sym_lower(a, n, r, p);
      std::swap(d[r], d[p]);
      std::swap(perm[r], perm[p]);
    }
    const double ljj = std::sqrt(d[r]);
    const double* rr = a + r * n;
    a[r * n + r] = ljj;
    constexpr int64_t rows_per_task = 64;
    const int64_t m = n - r - 1, tasks = (m + rows_per_task - 1) / rows_per_task;
    auto column = [&](int64_t t, int) {
      const int64_t i1 = std::min(n, r + 1 + (t + 1) * rows_per_task);
      for (int64_t i = r + 1 + t * rows_per_task; i < i1; ++i) {
        double* ri = a + i * n;
        const double lir = (ri[r] - dot(ri, rr, r)) / ljj;
        ri[r] = lir;
        d[i] -= lir * lir;
      }
    };
    if (m * r >= (1 << 16))
      parallel_for(tasks, column);
    else
      for (int64_t t = 0; t < tasks; ++t) column(t, 0);
  }
  for (int64_t i = r; i < n; ++i) std::fill(a + i * n + r, a + i * n + i + 1, 0.0);
  return r;
}

// ---- M = Lᵀ·S·L (lower triangle) ----
void congruence_f64(const double* l, const double* s, int64_t n, double* w, double* m) {
  // W = S·L; column block [j0, j1) only needs rows k ≥ j0 of L (L is lower triangular, its upper part zero).
  constexpr int64_t jb = 256;
  for (int64_t j0 = 0; j0 < n; j0 += jb) {
    const int64_t nb = std::min(jb, n - j0);
    gemm(Gemm{n, nb, n - j0, 1.0, s + j0, n, 1, l + j0 * n + j0, n, 1, false, w + j0, n, 0, 0});
  }
  // M[i0:i1, 0:i1] = L[i0:n, i0:i1]ᵀ·W[i0:n, 0:i1], keeping j ≤ i.
  constexpr int64_t ib = 128;
  for (int64_t i0 = 0; i0 < n; i0 += ib) {
    const int64_t mb = std::min(ib, n - i0);
    gemm(Gemm{mb, i0 + mb, n - i0, 1.0, l + i0 * n + i0, 1, n, w + i0 * n, n, 1, false, m + i0 * n, n, 1, i0});
  }
}

// ---- eigenvalues of a symmetric tridiagonal matrix (implicit QL, Numerical Recipes 3rd ed. §11.4) ----
// d [n] diagonal (eigenvalues out), e [n]: e[i] couples i and i+1. Returns false when it does not converge.
bool tridiagonal_ql(double* d, double* e, int64_t n) {
  if (n > 0) e[n - 1] = 0;
  const double eps = 2.220446049250313e-16;  // DBL_EPSILON
  for (int64_t l = 0; l < n; ++l) {
    int iter = 0;
    for (;;) {
      int64_t m = l;
      for (; m < n - 1; ++m) {
        const double dd = std::fabs(d[m]) + std::fabs(d[m + 1]);
        if (std::fabs(e[m]) <= eps * dd) break;
      }
      if (m == l) break;
      if (++iter > 60) return false;
      double g = (d[l + 1] - d[l]) / (2 * e[l]);
      double r = hyp(g, 1.0);
      g = d[m] - d[l] + e[l] / (g + (g >= 0 ? r : -r));
      double s = 1, c = 1, p = 0;
      bool deflated = false;
      for (int64_t i = m - 1; i >= l; --i) {
        const double f = s * e[i], b = c * e[i];
        r = hyp(f, g);
        e[i + 1] = r;
        if (r == 0) {
          d[i + 1] -= p;
          e[m] = 0;
          deflated = true;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - p;
        r = (d[i] - g) * s + 2 * c * b;
        p = s * r;
        d[i + 1] = g + p;
        g = c * r - b;
      }
      if (deflated) continue;
      d[l] -= p;
      e[l] = g;
      e[m] = 0;
    }
  }
  return true;
}

// ---- tridiagonalization (lower triangle of a, destroyed) ----
constexpr int64_t kTridiagPanel = 32;  // LAPACK's dsytrd block size; 48 and 64 measured no faster here
// Row k (k = n−1 down to 1) holds column k of the upper triangle: the reflector H = I − τ·v·vᵀ with v supported
// on [0, k) and pivot k−1 annihilates A(k, 0..k−2). Within a panel of nb rows the trailing (leading) block is
// left untouched and the pending updates −V·Wᵀ − W·Vᵀ are applied to the next row and folded into A·v.
void sym_tridiag_f64(double* a, int64_t n, double* d, double* e) {
  const int64_t nb = kTridiagPanel;
#if SVDQ_X86
  const bool avx = isa_at_least(Isa::Avx2);
  auto axpy2 = avx ? axpy2_avx2 : axpy2_scalar;
#else
  auto axpy2 = axpy2_scalar;
#endif  // SVDQ_X86
  std::vector<double> V(nb * n), W(nb * n), VW(2 * nb * n), WV(2 * nb * n), y(n), scratch;
  int64_t k = n - 1;
  while (k >= 0) {
    const int64_t kend = std::max<int64_t>(0, k - nb + 1);
    std::fill(V.begin(), V.begin() + nb * n, 0.0);
    std::fill(W.begin(), W.begin() + nb * n, 0.0);
    int64_t jj = 0;
    bool done = false;
    for (; k >= kend; --k, ++jj) {
      double* row = a + k * n;  // A(k, 0..k)
      for (int64_t c = 0; c < jj; ++c) {
        const double* vc = V.data() + c * n;
        const double* wc = W.data() + c * n;
        const double vk = vc[k], wk = wc[k];
        if (vk == 0 && wk == 0) continue;
        axpy2(row, vk, wc, wk, vc, k + 1);
      }
      d[k] = row[k];
      if (k == 0) {
        done = true;
        break;
      }
      double* v = V.data() + jj * n;
      double* w = W.data() + jj * n;
      double sigma2 = 0;
      for (int64_t i = 0; i < k; ++i) sigma2 += row[i] * row[i];
      const double x0 = row[k - 1];
      const double tail = sigma2 - x0 * x0;
      if (tail == 0) {  // already reduced (always for k = 1): H = I, v = w = 0
        e[k - 1] = x0;
        continue;
      }
      const double sigma = std::sqrt(sigma2);
      const double alpha = x0 > 0 ? -sigma : sigma;
      e[k - 1] = alpha;
      std::memcpy(v, row, k * sizeof(double));
      v[k - 1] = x0 - alpha;
      const double tau = 1 / (sigma2 - x0 * alpha);  // = 2 / vᵀv
      symv_lower(a, n, k, v, y.data(), scratch);
      for (int64_t c = 0; c < jj; ++c) {  // (A − V·Wᵀ − W·Vᵀ)·v
        const double* vc = V.data() + c * n;
        const double* wc = W.data() + c * n;
        axpy2(y.data(), dot(wc, v, k), vc, dot(vc, v, k), wc, k);
      }
      double pv = 0;
      for (int64_t i = 0; i < k; ++i) {
        y[i] *= tau;
        pv += y[i] * v[i];
      }
      const double kk = 0.5 * tau * pv;
      for (int64_t i = 0; i < k; ++i) w[i] = y[i] - kk * v[i];  // w = τ·A·v − (τ²/2)(vᵀA v)·v
    }
    if (done) break;
    // Leading block [0, kend): A −= V·Wᵀ + W·Vᵀ = [V W]·[W V]ᵀ, lower triangle only.
    const int64_t kb = jj;
    for (int64_t c = 0; c < kb; ++c) {
      std::memcpy(VW.data() + c * n, V.data() + c * n, kend * sizeof(double));
      std::memcpy(VW.data() + (kb + c) * n, W.data() + c * n, kend * sizeof(double));
      std::memcpy(WV.data() + c * n, W.data() + c * n, kend * sizeof(double));
      std::memcpy(WV.data() + (kb + c) * n, V.data() + c * n, kend * sizeof(double));
    }
    gemm(Gemm{kend, kend, 2 * kb, -1.0, VW.data(), 1, n, WV.data(), n, 1, true, a, n, 1, 0});
    k = kend - 1;
  }
  if (n > 0) e[n - 1] = 0;
}

}  // namespace svdq
