// Residual quantization of the SVDQuant layer quantizer (@svdquant/quantizer's kernel path), one native pass:
//
//   R = W·diag(λ) − L_up·(L_down·diag(λ))      (the residual after the rank-R branch, SVDQuant §4.3)
//   codes, scales = Q(R) per group of G along K (INT4: absmax/7, codes in [-8, 7]; UINT4: max/15, [0, 15])
//
// plus what the quantizer needs of it in the same pass: the W4A4 weight panel of the codes (so the candidate's
// output runs on the W4A4 GEMM), Q(R) dequantized, A = Ŵ − Q(R) row-major and Aᵀ as f32 GEMM panels (the next
// refinement SVD's operator: A·Z with A as the GEMM's streamed operand, Qᵀ·A against the Aᵀ panels), Σ_j Q(R)[i, j]/λ_j per row (the GELU-shift bias correction), ‖R‖² and ‖R − Q(R)‖².
//
// Numerics are @svdquant/int4's `quantize` on the float64 R: R[i, j] = double(W[i, j])·λ_j − double(L[i, j]) with
// L accumulated in float32 (r = 0..R-1 in order); raw scale = float32(float32(absmax)/7) (or max/15), rounded to
// the scale dtype (round to nearest even); code = the float64 quotient R/scale rounded half to even, clamped;
// dequantized value = float32(code·scale). Sums run in 8 fixed lanes per row and rows are added in order, so
// results do not depend on the thread count or the ISA path.
//
// | tensor     | shape                 | dtype   |                                                         |
// | ---------- | --------------------- | ------- | ------------------------------------------------------- |
// | w          | [N, K]                | float32 | W                                                       |
// | lambda     | [K]                   | float64 | λ                                                       |
// | up         | [N, R]                | float32 | L_up                                                    |
// | dl         | [R, K]                | float32 | L_down·diag(λ)                                          |
// | codes      | [N, K]                | int8    | out                                                     |
// | scales     | [N, K/G]              | float32 | out                                                     |
// | qweight    | [Np/8, K/64, 8, 8, 4] | uint8   | out, W4A4 panel (packages/kernels/src/layout.ts), G = 64 |
// | wscales    | [Np/8, K/64, 8]       | float32 | out                                                     |
// | dq         | [N, K]                | float32 | out, Q(R)                                               |
// | diff       | [N, K]                | float32 | out, A = float32(W·λ − Q(R))                            |
// | diffTPanel | [Kp/16, N, 16]        | float32 | out, Aᵀ as packF32 panels ([k/16, n, k mod 16] = A[n, k]) |
// | rowInv     | [N]                   | float64 | out, Σ_j Q(R)[i, j]/λ_j                                 |
// | stats      | [4]                   | float64 | out: ‖R‖², ‖R − Q(R)‖², first bad row (−1: none), why  |
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"
#include "simd.h"

// Products and sums stay separately rounded (no FMA contraction), so the pass matches its TypeScript twin bit
// for bit and does not depend on the ISA path.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace svdq {
namespace {

struct ResidualQuantArgs {
  const float* w;
  const double* lambda;
  const float* up;
  const float* dl;
  int64_t N, K, R, G;
  bool is_unsigned;
  int scale_dtype;  // 0 float32, 1 bfloat16, 2 float16
  int8_t* codes;
  float* scales;
  uint8_t* qweight;
  float* wscales;
  float* dq;
  float* diff;
  float* difft_panel;
  double* row_inv;
};

// A task's rows: one f32 panel of A (packF32's panel width), its L rows stay in L2 (16·K floats, 192 KiB at K = 3072)
constexpr int64_t kRowsPerTask = 16;
constexpr int kLanes = 8;             // fixed summation lanes (see the header comment)
// 1.5·2^52: (q + kRhe) − kRhe rounds q half to even in float64 for |q| < 2^51 (as @svdquant/int4 does).
constexpr double kRhe = 6755399441055744.0;

enum BadReason { kNone = 0, kOverflow = 1, kNonFinite = 2 };

inline float bf16_round(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;  // round to nearest even; past max → Inf
  float r;
  std::memcpy(&r, &b, 4);
  return r;
}

// float32 → binary16 → float32, round to nearest even, overflow → Inf, subnormals kept (x is finite, ≥ 0).
inline float f16_round(float x) {
  if (!(x < 65520.f)) return INFINITY;  // 65504 + half an ulp ties to even = Inf
  int e = 0;
  std::frexp(x, &e);                    // x = f·2^e, f in [0.5, 1)
  const int q = std::max(e - 11, -24);  // ulp: 2^(e-1-10) for normals, 2^-24 below 2^-14
  const double u = std::ldexp(1.0, q);
  return static_cast<float>(((static_cast<double>(x) / u + kRhe) - kRhe) * u);
}

inline float round_scale(float raw, int dtype) {
  return dtype == 1 ? bf16_round(raw) : dtype == 2 ? f16_round(raw) : raw;
}

// The task's rows of A (rows [B, K], B ≤ 16, i0 a multiple of 16) into the panels of Aᵀ: 16-float chunks.
inline void write_panels(const ResidualQuantArgs& a, int64_t i0, int64_t B, const float* dbuf) {
  const int64_t K = a.K, N = a.N;
  if (a.difft_panel)
    for (int64_t ii = 0; ii < B; ++ii)
      for (int64_t j0 = 0; j0 < K; j0 += 16)
        std::memcpy(a.difft_panel + ((j0 / 16) * N + i0 + ii) * 16, dbuf + ii * K + j0,
                    sizeof(float) * static_cast<size_t>(std::min<int64_t>(16, K - j0)));
}

struct RowResult {
  double norm2, err2;
  int bad;
};

// Rows [i0, i1) (padding rows of the W4A4 panel, N ≤ n < Np, are not written: fill them with 0x88, code 0): lbuf holds (i1 − i0)·K floats of scratch, vbuf G doubles, dbuf (i1 − i0)·K floats when the
// Aᵀ panels are asked without A.
__attribute__((always_inline)) inline void rows_body(const ResidualQuantArgs& a, int64_t i0, int64_t i1, float* lbuf,
                                                     double* vbuf, float* dbuf, RowResult* out) {
  const int64_t K = a.K, R = a.R, G = a.G, groups = K / G, B = i1 - i0;
  if (R > 0) {
    std::fill(lbuf, lbuf + B * K, 0.f);
    for (int64_t ii = 0; ii < B; ++ii) {
      float* lr = lbuf + ii * K;
      const float* u = a.up + (i0 + ii) * R;
      for (int64_t r = 0; r < R; ++r) {
        const float c = u[r];
        const float* d = a.dl + r * K;
        for (int64_t j = 0; j < K; ++j) lr[j] += c * d[j];
      }
    }
  }
  const double lo = a.is_unsigned ? 0.0 : -8.0, hi = a.is_unsigned ? 15.0 : 7.0;
  const int64_t G8 = G / kLanes * kLanes;
  for (int64_t ii = 0; ii < B; ++ii) {
    const int64_t i = i0 + ii;
    const float* wr = a.w + i * K;
    const float* lr = lbuf + ii * K;
    float* drow = a.diff ? a.diff + i * K : dbuf ? dbuf + ii * K : nullptr;
    double n2l[kLanes] = {}, e2l[kLanes] = {}, invl[kLanes] = {};
    int bad = kNone;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t j0 = g * G;
      double amaxl[kLanes] = {}, vmaxl[kLanes] = {};
      for (int64_t t = 0; t < G8; t += kLanes)
        for (int l = 0; l < kLanes; ++l) {
          const int64_t j = j0 + t + l;
          const double v = static_cast<double>(wr[j]) * a.lambda[j] - (R > 0 ? static_cast<double>(lr[j]) : 0.0);
          vbuf[t + l] = v;
          n2l[l] += v * v;
          vmaxl[l] = v > vmaxl[l] ? v : vmaxl[l];
          const double av = std::fabs(v);
          amaxl[l] = av > amaxl[l] ? av : amaxl[l];
        }
      for (int64_t t = G8; t < G; ++t) {
        const int64_t j = j0 + t;
        const double v = static_cast<double>(wr[j]) * a.lambda[j] - (R > 0 ? static_cast<double>(lr[j]) : 0.0);
        vbuf[t] = v;
        n2l[0] += v * v;
        vmaxl[0] = v > vmaxl[0] ? v : vmaxl[0];
        amaxl[0] = std::fabs(v) > amaxl[0] ? std::fabs(v) : amaxl[0];
      }
      double amax = 0, vmax = 0;
      for (int l = 0; l < kLanes; ++l) {
        amax = std::max(amax, amaxl[l]);
        vmax = std::max(vmax, vmaxl[l]);
      }
      // SVDQuant §3: symmetric INT4, scale = absmax/7; unsigned: max/15 (float32, as @svdquant/int4)
      const float raw =
          a.is_unsigned ? static_cast<float>(vmax) / 15.f : static_cast<float>(amax) / 7.f;
      const float scale = round_scale(raw, a.scale_dtype);
      if (!std::isfinite(amax)) {
        bad = kNonFinite;
        break;
      }
      if (!std::isfinite(scale)) {
        bad = kOverflow;
        break;
      }
      if (a.scales) a.scales[i * groups + g] = scale;
      const double s = scale;
      int8_t* cr = a.codes ? a.codes + i * K + j0 : nullptr;
      int8_t cbuf[kGroup];
      int8_t* cw = cr ? cr : cbuf;  // codes of this group (without `codes`, only for the panel: G = 64)
      for (int64_t t = 0; t < G; ++t) {
        const int l = static_cast<int>(t & (kLanes - 1));
        const double v = vbuf[t];
        double q = 0;
        if (s != 0) {
          q = (v / s + kRhe) - kRhe;
          q = q < lo ? lo : std::min(q, hi);
        }
        const float d = static_cast<float>(q * s);
        const double e = v - d;
        e2l[l] += e * e;
        if (cr || a.qweight) cw[t] = static_cast<int8_t>(q);
        if (a.dq) a.dq[i * K + j0 + t] = d;
        if (drow) {
          const int64_t j = j0 + t;
          drow[j] = static_cast<float>(static_cast<double>(wr[j]) * a.lambda[j] - d);
        }
        if (a.row_inv) invl[l] += d / a.lambda[j0 + t];
      }
      if (a.qweight) {  // G = 64 (checked by the caller): the W4A4 panel, layout.ts
        const int64_t p = i >> 3, c = i & 7;
        uint8_t* base = a.qweight + (p * groups + g) * 256 + c * 4;
        for (int q8 = 0; q8 < 8; ++q8)
          for (int t = 0; t < 4; ++t)
            base[q8 * 32 + t] = static_cast<uint8_t>(((cw[8 * q8 + t] + 8) & 15) | (((cw[8 * q8 + 4 + t] + 8) & 15) << 4));
        a.wscales[(p * groups + g) * 8 + c] = scale;
      }
    }
    double n2 = 0, e2 = 0, inv = 0;
    for (int l = 0; l < kLanes; ++l) {
      n2 += n2l[l];
      e2 += e2l[l];
      inv += invl[l];
    }
    if (bad == kNone && !std::isfinite(n2)) bad = kNonFinite;  // a NaN passes the max tests above
    out[ii] = {n2, e2, bad};
    if (a.row_inv) a.row_inv[i] = inv;
  }
  if (a.difft_panel) write_panels(a, i0, B, a.diff ? a.diff + i0 * K : dbuf);
}

#if SVDQ_X86
// L rows i..i+3 (K % 64 == 0): 4 rows × 64 columns of accumulators, so the r-sums of one output are a chain of
// dependent adds but 16 chains run side by side (the same sums, in the same r order, as rows_body's).
SVDQ_TARGET_AVX512 void branch_rows4_avx512(const ResidualQuantArgs& a, int64_t i, float* lr) {
  const int64_t K = a.K, R = a.R;
  const float* u = a.up + i * R;
  for (int64_t j = 0; j < K; j += 64) {
    __m512 acc[4][4];
    for (int x = 0; x < 4; ++x)
      for (int y = 0; y < 4; ++y) acc[x][y] = _mm512_setzero_ps();
    for (int64_t r = 0; r < R; ++r) {
      const float* d = a.dl + r * K + j;
      const __m512 d0 = _mm512_loadu_ps(d), d1 = _mm512_loadu_ps(d + 16), d2 = _mm512_loadu_ps(d + 32),
                   d3 = _mm512_loadu_ps(d + 48);
      for (int x = 0; x < 4; ++x) {
        const __m512 c = _mm512_set1_ps(u[x * R + r]);
        acc[x][0] = _mm512_add_ps(acc[x][0], _mm512_mul_ps(c, d0));
        acc[x][1] = _mm512_add_ps(acc[x][1], _mm512_mul_ps(c, d1));
        acc[x][2] = _mm512_add_ps(acc[x][2], _mm512_mul_ps(c, d2));
        acc[x][3] = _mm512_add_ps(acc[x][3], _mm512_mul_ps(c, d3));
      }
    }
    for (int x = 0; x < 4; ++x)
      for (int y = 0; y < 4; ++y) _mm512_storeu_ps(lr + x * K + j + 16 * y, acc[x][y]);
  }
}

// The AVX-512 path of rows_body for G % 8 == 0: the same operations on 8 float64 lanes (lane l = k mod 8, as
// the scalar lanes), so its results are bit-identical to rows_body's.
SVDQ_TARGET_AVX512 void rows_avx512_g8(const ResidualQuantArgs& a, int64_t i0, int64_t i1, float* lbuf, double* vbuf,
                                       float* dbuf, RowResult* out) {
  const int64_t K = a.K, R = a.R, G = a.G, groups = K / G, B = i1 - i0;
  if (R > 0) {
    int64_t ii = 0;
    if (K % 64 == 0)
      for (; ii + 4 <= B; ii += 4) branch_rows4_avx512(a, i0 + ii, lbuf + ii * K);
    for (; ii < B; ++ii) {
      float* lr = lbuf + ii * K;
      const float* u = a.up + (i0 + ii) * R;
      for (int64_t j = 0; j < K; ++j) {
        float acc = 0.f;
        for (int64_t r = 0; r < R; ++r) acc += u[r] * a.dl[r * K + j];
        lr[j] = acc;
      }
    }
  }
  const __m512d lo = _mm512_set1_pd(a.is_unsigned ? 0.0 : -8.0), hi = _mm512_set1_pd(a.is_unsigned ? 15.0 : 7.0);
  const __m512d sign = _mm512_set1_pd(-0.0), rhe = _mm512_set1_pd(kRhe);
  for (int64_t ii = 0; ii < B; ++ii) {
    const int64_t i = i0 + ii;
    const float* wr = a.w + i * K;
    const float* lr = lbuf + ii * K;
    float* drow = a.diff ? a.diff + i * K : dbuf ? dbuf + ii * K : nullptr;
    __m512d n2v = _mm512_setzero_pd(), e2v = _mm512_setzero_pd(), invv = _mm512_setzero_pd();
    int bad = kNone;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t j0 = g * G;
      __m512d amaxv = _mm512_setzero_pd(), vmaxv = _mm512_setzero_pd();
      for (int64_t t = 0; t < G; t += 8) {
        const int64_t j = j0 + t;
        __m512d v = _mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(wr + j)), _mm512_loadu_pd(a.lambda + j));
        if (R > 0) v = _mm512_sub_pd(v, _mm512_cvtps_pd(_mm256_loadu_ps(lr + j)));
        _mm512_storeu_pd(vbuf + t, v);
        n2v = _mm512_add_pd(n2v, _mm512_mul_pd(v, v));
        vmaxv = _mm512_max_pd(v, vmaxv);
        amaxv = _mm512_max_pd(_mm512_andnot_pd(sign, v), amaxv);
      }
      const double amax = _mm512_reduce_max_pd(amaxv), vmax = _mm512_reduce_max_pd(vmaxv);
      const float raw = a.is_unsigned ? static_cast<float>(vmax) / 15.f : static_cast<float>(amax) / 7.f;
      const float scale = round_scale(raw, a.scale_dtype);
      if (!std::isfinite(amax)) {
        bad = kNonFinite;
        break;
      }
      if (!std::isfinite(scale)) {
        bad = kOverflow;
        break;
      }
      if (a.scales) a.scales[i * groups + g] = scale;
      const __m512d s = _mm512_set1_pd(scale);
      const bool zero = scale == 0.f;
      int8_t cbuf[kGroup];
      int8_t* cw = a.codes ? a.codes + i * K + j0 : cbuf;
      for (int64_t t = 0; t < G; t += 8) {
        const int64_t j = j0 + t;
        const __m512d v = _mm512_loadu_pd(vbuf + t);
        __m512d q = _mm512_setzero_pd();
        if (!zero) {
          q = _mm512_sub_pd(_mm512_add_pd(_mm512_div_pd(v, s), rhe), rhe);  // half to even; −0.5 < x < 0 → +0
          q = _mm512_max_pd(_mm512_min_pd(q, hi), lo);
        }
        const __m256 d = _mm512_cvtpd_ps(_mm512_mul_pd(q, s));
        const __m512d dd = _mm512_cvtps_pd(d);
        const __m512d e = _mm512_sub_pd(v, dd);
        e2v = _mm512_add_pd(e2v, _mm512_mul_pd(e, e));
        if (a.codes || a.qweight)
          _mm_storel_epi64(reinterpret_cast<__m128i*>(cw + t), _mm256_cvtepi32_epi8(_mm512_cvtpd_epi32(q)));
        if (a.dq) _mm256_storeu_ps(a.dq + i * K + j, d);
        if (drow || a.row_inv) {
          const __m512d lam = _mm512_loadu_pd(a.lambda + j);
          if (drow)
            _mm256_storeu_ps(drow + j, _mm512_cvtpd_ps(_mm512_sub_pd(
                                           _mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(wr + j)), lam), dd)));
          if (a.row_inv) invv = _mm512_add_pd(invv, _mm512_div_pd(dd, lam));
        }
      }
      if (a.qweight) {
        const int64_t p = i >> 3, c = i & 7;
        uint8_t* base = a.qweight + (p * groups + g) * 256 + c * 4;
        for (int q8 = 0; q8 < 8; ++q8)
          for (int t = 0; t < 4; ++t)
            base[q8 * 32 + t] =
                static_cast<uint8_t>(((cw[8 * q8 + t] + 8) & 15) | (((cw[8 * q8 + 4 + t] + 8) & 15) << 4));
        a.wscales[(p * groups + g) * 8 + c] = scale;
      }
    }
    alignas(64) double n2l[kLanes], e2l[kLanes], invl[kLanes];
    _mm512_store_pd(n2l, n2v);
    _mm512_store_pd(e2l, e2v);
    _mm512_store_pd(invl, invv);
    double n2 = 0, e2 = 0, inv = 0;
    for (int l = 0; l < kLanes; ++l) {
      n2 += n2l[l];
      e2 += e2l[l];
      inv += invl[l];
    }
    if (bad == kNone && !std::isfinite(n2)) bad = kNonFinite;
    out[ii] = {n2, e2, bad};
    if (a.row_inv) a.row_inv[i] = inv;
  }
  if (a.difft_panel) write_panels(a, i0, B, a.diff ? a.diff + i0 * K : dbuf);
}

#endif  // SVDQ_X86

void rows_scalar(const ResidualQuantArgs& a, int64_t i0, int64_t i1, float* l, double* v, float* d, RowResult* o) {
  rows_body(a, i0, i1, l, v, d, o);
}
#if SVDQ_X86
__attribute__((target("avx2,fma"))) void rows_avx2(const ResidualQuantArgs& a, int64_t i0, int64_t i1, float* l,
                                                   double* v, float* d, RowResult* o) {
  rows_body(a, i0, i1, l, v, d, o);
}
SVDQ_TARGET_AVX512 void rows_avx512(const ResidualQuantArgs& a, int64_t i0, int64_t i1, float* l, double* v, float* d,
                                    RowResult* o) {
  rows_body(a, i0, i1, l, v, d, o);
}
#endif  // SVDQ_X86

// Runs the pass over all rows; returns ‖R‖², ‖R − Q(R)‖² and the first bad row with its reason.
void residual_quant(const ResidualQuantArgs& a, double* stats) {
  const int64_t tasks = (a.N + kRowsPerTask - 1) / kRowsPerTask;
  const int threads = std::max(1, num_threads());
  std::vector<float> lbuf(static_cast<size_t>(threads) * kRowsPerTask * a.K);
  std::vector<double> vbuf(static_cast<size_t>(threads) * a.G);
  const bool need_d = a.difft_panel && !a.diff;
  std::vector<float> dbuf(need_d ? static_cast<size_t>(threads) * kRowsPerTask * a.K : 0);
  std::vector<RowResult> rows(a.N);
#if SVDQ_X86
  auto body = isa_at_least(Isa::Avx512) ? (a.G % kLanes == 0 ? rows_avx512_g8 : rows_avx512)
               : isa_at_least(Isa::Avx2)  ? rows_avx2
                                          : rows_scalar;
#else
  auto body = rows_scalar;
#endif  // SVDQ_X86
  parallel_for(tasks, [&](int64_t t, int th) {
    const int64_t i0 = t * kRowsPerTask, i1 = std::min(a.N, i0 + kRowsPerTask);
    body(a, i0, i1, lbuf.data() + static_cast<size_t>(th) * kRowsPerTask * a.K, vbuf.data() + th * a.G,
         need_d ? dbuf.data() + static_cast<size_t>(th) * kRowsPerTask * a.K : nullptr, rows.data() + i0);
  });
  double n2 = 0, e2 = 0;
  stats[2] = -1;
  stats[3] = 0;
  for (int64_t i = 0; i < a.N; ++i) {
    if (rows[i].bad != kNone) {
      stats[2] = static_cast<double>(i);
      stats[3] = rows[i].bad;
      break;
    }
    n2 += rows[i].norm2;
    e2 += rows[i].err2;
  }
  stats[0] = n2;
  stats[1] = e2;
}

// ---- N-API ----

int64_t num(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw KernelError(std::string("quantizeResidual: argument '") + key + "' must be a number");
  return v.As<Napi::Number>().Int64Value();
}

template <typename T>
T* typed(const Napi::Object& o, const char* key, napi_typedarray_type type, int64_t len, bool optional) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return nullptr;
    throw KernelError(std::string("quantizeResidual: argument '") + key + "' is required");
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw KernelError(std::string("quantizeResidual: argument '") + key + "' has the wrong typed-array type");
  auto ta = v.As<Napi::TypedArray>();
  if (static_cast<int64_t>(ta.ElementLength()) < len)
    throw KernelError(std::string("quantizeResidual: argument '") + key + "' holds " +
                      std::to_string(ta.ElementLength()) + " elements, expected " + std::to_string(len));
  return reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

Napi::Value QuantizeResidual(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    if (info.Length() < 1 || !info[0].IsObject()) throw KernelError("quantizeResidual: expected one argument object");
    auto o = info[0].As<Napi::Object>();
    ResidualQuantArgs a{};
    a.N = num(o, "N");
    a.K = num(o, "K");
    a.R = num(o, "R");
    a.G = num(o, "G");
    if (a.N <= 0 || a.K <= 0 || a.R < 0 || a.G <= 0 || a.K % a.G) throw KernelError("quantizeResidual: bad N/K/R/G");
    a.is_unsigned = num(o, "format") == 1;
    a.scale_dtype = static_cast<int>(num(o, "scaleDtype"));
    if (a.scale_dtype < 0 || a.scale_dtype > 2) throw KernelError("quantizeResidual: bad scaleDtype");
    const int64_t NK = a.N * a.K, Np = (a.N + 7) / 8 * 8;
    a.w = typed<float>(o, "w", napi_float32_array, NK, false);
    a.lambda = typed<double>(o, "lambda", napi_float64_array, a.K, false);
    if (a.R > 0) {
      a.up = typed<float>(o, "up", napi_float32_array, a.N * a.R, false);
      a.dl = typed<float>(o, "dl", napi_float32_array, a.R * a.K, false);
    }
    a.codes = typed<int8_t>(o, "codes", napi_int8_array, NK, true);
    a.scales = typed<float>(o, "scales", napi_float32_array, a.N * (a.K / a.G), true);
    a.qweight = typed<uint8_t>(o, "qweight", napi_uint8_array, Np * a.K / 2, true);
    if (a.qweight) {
      if (a.G != kGroup || a.is_unsigned) throw KernelError("quantizeResidual: the W4A4 panel needs INT4 groups of 64");
      a.wscales = typed<float>(o, "wscales", napi_float32_array, Np * (a.K / kGroup), false);
    }
    a.dq = typed<float>(o, "dq", napi_float32_array, NK, true);
    a.diff = typed<float>(o, "diff", napi_float32_array, NK, true);
    a.difft_panel = typed<float>(o, "diffTPanel", napi_float32_array, (a.K + 15) / 16 * 16 * a.N, true);
    a.row_inv = typed<double>(o, "rowInv", napi_float64_array, a.N, true);
    double* stats = typed<double>(o, "stats", napi_float64_array, 4, false);
    residual_quant(a, stats);
    return env.Undefined();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("@svdquant/kernels native: ") + e.what());
  }
}

}  // namespace

void register_residual_quant(Napi::Env env, Napi::Object exports) {
  exports.Set("quantizeResidual", Napi::Function::New(env, QuantizeResidual));
}

}  // namespace svdq
