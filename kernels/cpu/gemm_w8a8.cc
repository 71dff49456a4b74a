// Operator 5: W8A8 GEMM (the INT8 baseline: per-token activation scales, per-channel weight scales).
//   Y [M,N] = (codes_x [M,K] · codes_wᵀ) · s_x[m] · s_w[n] + bias.
// AVX2: vpmaddubsw needs an unsigned operand, so |x| is multiplied with sign(x)·w (vpsignb); with codes in
// [-127, 127] a pair sum is ≤ 2·127·127 = 32258 < 2^15 (no saturation), widened to int32 by vpmaddwd.
#include "x86.h"

#include <algorithm>
#include <cstring>

#include "common.h"

namespace svdq {

namespace {

constexpr int kPanel = 8;
constexpr int64_t kMB = 64, kNBPanels = 8;

void tile_scalar(const W8A8Args& a, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const int64_t K = a.K;
  for (int64_t p = p0; p < p1; ++p) {
    const int8_t* wp = a.qweight + p * K * kPanel;
    for (int64_t m = m0; m < m1; ++m) {
      int32_t dot[kPanel] = {0};
      const int8_t* x = a.codes + m * K;
      for (int64_t k4 = 0; k4 < K / 4; ++k4)
        for (int c = 0; c < kPanel; ++c)
          for (int t = 0; t < 4; ++t) dot[c] += wp[(k4 * kPanel + c) * 4 + t] * x[k4 * 4 + t];
      for (int c = 0; c < kPanel; ++c) {
        const int64_t n = p * kPanel + c;
        if (n >= a.N) break;
        float v = static_cast<float>(dot[c]) * (a.wscales[n] * a.ascales[m]);
        if (a.bias) v += a.bias[n];
        a.y[m * a.N + n] = v;
      }
    }
  }
}

#if SVDQ_X86
template <int MR, int NP>
__attribute__((target("avx2,fma"))) void micro_avx2(const W8A8Args& a, int64_t m, int64_t p) {
  const int64_t K = a.K;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[MR][NP];
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
    #pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) acc[i][j] = _mm256_setzero_si256();
  for (int64_t k4 = 0; k4 < K / 4; ++k4) {
    __m256i w[NP];
    #pragma GCC unroll 8
    for (int j = 0; j < NP; ++j)
      w[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qweight + ((p + j) * K + k4 * 4) * kPanel));
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      int32_t d;
      std::memcpy(&d, a.codes + (m + i) * K + k4 * 4, 4);
      const __m256i x = _mm256_set1_epi32(d);
      const __m256i ax = _mm256_abs_epi8(x);
      #pragma GCC unroll 8
      for (int j = 0; j < NP; ++j)
        acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w[j], x)), ones));
    }
  }
  #pragma GCC unroll 8
  for (int j = 0; j < NP; ++j) {
    const int64_t n0 = (p + j) * kPanel;
    float ws[kPanel] = {0}, bs[kPanel] = {0};
    for (int c = 0; c < kPanel && n0 + c < a.N; ++c) {
      ws[c] = a.wscales[n0 + c];
      if (a.bias) bs[c] = a.bias[n0 + c];
    }
    const __m256 wsv = _mm256_loadu_ps(ws), bv = _mm256_loadu_ps(bs);
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[i][j]),
                                       _mm256_mul_ps(wsv, _mm256_set1_ps(a.ascales[m + i])), bv);
      if (n0 + kPanel <= a.N) {
        _mm256_storeu_ps(a.y + (m + i) * a.N + n0, v);
      } else {
        float tmp[kPanel];
        _mm256_storeu_ps(tmp, v);
        for (int c = 0; n0 + c < a.N; ++c) a.y[(m + i) * a.N + n0 + c] = tmp[c];
      }
    }
  }
}

template <int MR>
void rows_avx2(const W8A8Args& a, int64_t m, int64_t p0, int64_t p1) {
  int64_t p = p0;
  for (; p + 2 <= p1; p += 2) micro_avx2<MR, 2>(a, m, p);
  if (p < p1) micro_avx2<MR, 1>(a, m, p);
}
#endif  // SVDQ_X86

}  // namespace

#if SVDQ_X86
void gemm_w8a8_x86(const W8A8Args& a, bool amx);  // gemm_w8a8_x86.cc
#endif  // SVDQ_X86

void gemm_w8a8(const W8A8Args& a) {
  if (a.K % 4 != 0) throw KernelError("gemm_w8a8: K must be a multiple of 4");
#if SVDQ_X86
  if (isa_at_least(Isa::Avx512)) return gemm_w8a8_x86(a, active_isa() == Isa::Amx);
#endif  // SVDQ_X86
  const int64_t NP = (a.N + kPanel - 1) / kPanel;
  const bool avx = isa_at_least(Isa::Avx2);
  const int64_t mt = (a.M + kMB - 1) / kMB, nt = (NP + kNBPanels - 1) / kNBPanels;
  parallel_for(mt * nt, [&](int64_t t, int) {
    const int64_t nb = t / mt, mb = t % mt;
    const int64_t m0 = mb * kMB, m1 = std::min(a.M, m0 + kMB);
    const int64_t p0 = nb * kNBPanels, p1 = std::min(NP, p0 + kNBPanels);
    if (!avx) return tile_scalar(a, m0, m1, p0, p1);  // always taken off x86
#if SVDQ_X86
    int64_t m = m0;
    for (; m + 4 <= m1; m += 4) rows_avx2<4>(a, m, p0, p1);
    switch (m1 - m) {
      case 3: rows_avx2<3>(a, m, p0, p1); break;
      case 2: rows_avx2<2>(a, m, p0, p1); break;
      case 1: rows_avx2<1>(a, m, p0, p1); break;
      default: break;
    }
#endif  // SVDQ_X86
  });
}

}  // namespace svdq
