// Operators 3 and 4: f32 GEMM on packed 16-column weight panels, and W4A16 GEMM (4-bit codes through a
// 16-entry codebook: INT4 or NF4) that dequantizes one K-block of a panel into the same f32 panel form.
//   Y [M,N] = X [M,K] · Wᵀ (+ bias) (optional GELU), W [N,K].
// Goto-style blocking: KC rows of a 16-column panel (16 KiB) stay in L1 while MC rows of X (L2) stream
// through a 6×16 FMA micro-kernel (12 accumulators + 2 panel vectors + 1 broadcast of the 16 YMM registers).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#include "simd.h"

namespace svdq {

namespace {

constexpr int kNR = 16;       // panel width (columns)
constexpr int64_t kKC = 256;  // K block
constexpr int64_t kMC = 96;   // rows per task (multiple of 6)
constexpr int64_t kNBPanels = 4;

inline float gelu1(float x) {
  return 0.5f * x * (1.f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

// C tile [MR][16] at c (row stride ldc). first: overwrite with bias (else accumulate); last: apply GELU.
template <int MR>
__attribute__((target("avx2,fma"))) void micro_f32(const float* a, int64_t lda, const float* b, int64_t kc, float* c,
                                                   int64_t ldc, bool first, bool last, const float* bias16,
                                                   bool gelu) {
  __m256 acc[MR][2];
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    if (first) {
      acc[i][0] = bias16 ? _mm256_loadu_ps(bias16) : _mm256_setzero_ps();
      acc[i][1] = bias16 ? _mm256_loadu_ps(bias16 + 8) : _mm256_setzero_ps();
    } else {
      acc[i][0] = _mm256_loadu_ps(c + i * ldc);
      acc[i][1] = _mm256_loadu_ps(c + i * ldc + 8);
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b + k * kNR), b1 = _mm256_loadu_ps(b + k * kNR + 8);
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 av = _mm256_broadcast_ss(a + i * lda + k);
      acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
    }
  }
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    if (last && gelu) {
      acc[i][0] = gelu256(acc[i][0]);
      acc[i][1] = gelu256(acc[i][1]);
    }
    _mm256_storeu_ps(c + i * ldc, acc[i][0]);
    _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
  }
}

void micro_scalar(int mr, const float* a, int64_t lda, const float* b, int64_t kc, float* c, int64_t ldc, bool first,
                  bool last, const float* bias16, bool gelu) {
  for (int i = 0; i < mr; ++i) {
    float acc[kNR];
    for (int j = 0; j < kNR; ++j) acc[j] = first ? (bias16 ? bias16[j] : 0.f) : c[i * ldc + j];
    for (int64_t k = 0; k < kc; ++k) {
      const float av = a[i * lda + k];
      for (int j = 0; j < kNR; ++j) acc[j] += av * b[k * kNR + j];
    }
    for (int j = 0; j < kNR; ++j) c[i * ldc + j] = (last && gelu) ? gelu1(acc[j]) : acc[j];
  }
}

struct Plan {
  const float* x;
  int64_t M, K, N;
  const float* bias_padded;  // [Np] or null
  bool gelu;
  float* y;
  // Returns a pointer to the [kc][16] panel block; may fill dst (thread scratch) and return it.
  const float* (*panel)(const void* ctx, int64_t p, int64_t k0, int64_t kc, float* dst);
  const void* ctx;
};

// 14 rows × 2 panels: 28 accumulators + 2 panel vectors + 1 broadcast of the 32 ZMM registers. Measured on the
// Xeon dev machine (1 thread, M = 512, K = N = 3072, CPU time): 14×2 130, 12×2 126, 8×3 125, 6×4 123 GFLOP/s;
// packing X into [kc][rows] tiles was slower (the transposing copy costs more than the strided broadcasts).
constexpr int kMR512 = 14, kNV512 = 2;

// ---- AVX-512: MR rows × NV panels (16 columns = one ZMM each). Columns past N are masked (no staging copy).
template <int MR, int NV>
SVDQ_TARGET_AVX512 void micro512(const float* a, int64_t lda, const float* const* b, int64_t kc, float* c,
                                 int64_t ldc, bool first, bool last, const float* bias, bool gelu,
                                 const __mmask16* mask) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      acc[i][j] = first ? (bias ? _mm512_loadu_ps(bias + 16 * j) : _mm512_setzero_ps())
                        : _mm512_maskz_loadu_ps(mask[j], c + i * ldc + 16 * j);
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = _mm512_loadu_ps(b[j] + k * kNR);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[i * lda + k]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      __m512 v = acc[i][j];
      if (last && gelu) v = gelu512(v);
      _mm512_mask_storeu_ps(c + i * ldc + 16 * j, mask[j], v);
    }
}

template <int NV>
SVDQ_TARGET_AVX512 void rows512(int mr, const float* a, int64_t lda, const float* const* b, int64_t kc, float* c,
                                int64_t ldc, bool first, bool last, const float* bias, bool gelu,
                                const __mmask16* mask) {
  switch (mr) {
    case 14: micro512<14, NV>(a, lda, b, kc, c, ldc, first, last, bias, gelu, mask); break;
    case 13: micro512<13, NV>(a, lda, b, kc, c, ldc, first, last, bias, gelu, mask); break;
    case 12: micro512<12, NV>(a, lda, b, kc, c, ldc, first, last, bias, gelu, mask); break;
    case 11: micro512<11, NV>(a, lda, b, kc, c, ldc, first, last, bias, gelu, mask); break;
    case 10: micro512<10, NV>(a, lda, b, kc, c, ldc, first, last, bias, gelu, mask); break;
    case 9: micro512<9, NV>(a, lda, b, kc, c, ldc, first, last, bias, gelu, mask); break;
    case 8: micro512<8, NV>(a, lda, b, kc, c, ldc, first, last, bias, gelu, mask); break;
    case 7: micro512<7, NV>(a, lda, b, kc, c, ldc, first, last, bias, gelu, mask); break;
    case 6: micro512<6, NV>(a, lda, b, kc, c, ldc, first, last, bias, gelu, mask); break;
    case 5: micro512<5, NV>(a, lda, b, kc, c, ldc, first, last, bias, gelu, mask); break;
    case 4: micro512<4, NV>(a, lda, b, kc, c, ldc, first, last, bias, gelu, mask); break;
    case 3: micro512<3, NV>(a, lda, b, kc, c, ldc, first, last, bias, gelu, mask); break;
    case 2: micro512<2, NV>(a, lda, b, kc, c, ldc, first, last, bias, gelu, mask); break;
    default: micro512<1, NV>(a, lda, b, kc, c, ldc, first, last, bias, gelu, mask); break;
  }
}

void run_plan_avx512(const Plan& P) {
  const int64_t NP = (P.N + kNR - 1) / kNR;
  constexpr int64_t kMC512 = 112;  // 8 micro-tiles of 14 rows
  const int64_t mt = (P.M + kMC512 - 1) / kMC512, nt = (NP + kNBPanels - 1) / kNBPanels;
  const int threads = num_threads();
  std::vector<std::vector<float>> scratch(threads, std::vector<float>(kNV512 * kKC * kNR));
  parallel_for(mt * nt, [&](int64_t t, int th) {
    const int64_t nb = t / mt, mb = t % mt;
    const int64_t m0 = mb * kMC512, m1 = std::min(P.M, m0 + kMC512);
    const int64_t p0 = nb * kNBPanels, p1 = std::min(NP, p0 + kNBPanels);
    float* buf = scratch[th].data();
    for (int64_t k0 = 0; k0 < P.K; k0 += kKC) {
      const int64_t kc = std::min(kKC, P.K - k0);
      const bool first = k0 == 0, last = k0 + kc == P.K;
      for (int64_t p = p0; p < p1; p += kNV512) {
        const int nv = static_cast<int>(std::min<int64_t>(kNV512, p1 - p));
        const float* b[kNV512] = {};
        __mmask16 mask[kNV512];
        for (int j = 0; j < nv; ++j) b[j] = P.panel(P.ctx, p + j, k0, kc, buf + j * kKC * kNR);
        for (int j = 0; j < kNV512; ++j) {
          const int64_t cnt = std::max<int64_t>(0, std::min<int64_t>(kNR, P.N - (p + j) * kNR));
          mask[j] = static_cast<__mmask16>((1u << cnt) - 1u);
        }
        const float* bias = P.bias_padded ? P.bias_padded + p * kNR : nullptr;
        for (int64_t m = m0; m < m1; m += kMR512) {
          const int mr = static_cast<int>(std::min<int64_t>(kMR512, m1 - m));
          const float* a = P.x + m * P.K + k0;
          float* c = P.y + m * P.N + p * kNR;
          static_assert(kNV512 == 2, "one or two panels per micro-tile");
          if (nv == 2)
            rows512<2>(mr, a, P.K, b, kc, c, P.N, first, last, bias, P.gelu, mask);
          else
            rows512<1>(mr, a, P.K, b, kc, c, P.N, first, last, bias, P.gelu, mask);
        }
      }
    }
  });
}

void run_plan(const Plan& P) {
  if (isa_at_least(Isa::Avx512)) return run_plan_avx512(P);
  const bool avx = isa_at_least(Isa::Avx2);
  const int64_t NP = (P.N + kNR - 1) / kNR;
  const int64_t mt = (P.M + kMC - 1) / kMC, nt = (NP + kNBPanels - 1) / kNBPanels;
  const int threads = num_threads();
  std::vector<std::vector<float>> scratch(threads, std::vector<float>(kKC * kNR + 6 * kNR));
  parallel_for(mt * nt, [&](int64_t t, int th) {
    const int64_t nb = t / mt, mb = t % mt;
    const int64_t m0 = mb * kMC, m1 = std::min(P.M, m0 + kMC);
    const int64_t p0 = nb * kNBPanels, p1 = std::min(NP, p0 + kNBPanels);
    float* buf = scratch[th].data();
    float* edge = buf + kKC * kNR;  // [6][16] staging for the last, partial panel
    for (int64_t k0 = 0; k0 < P.K; k0 += kKC) {
      const int64_t kc = std::min(kKC, P.K - k0);
      const bool first = k0 == 0, last = k0 + kc == P.K;
      for (int64_t p = p0; p < p1; ++p) {
        const float* b = P.panel(P.ctx, p, k0, kc, buf);
        const float* bias16 = P.bias_padded ? P.bias_padded + p * kNR : nullptr;
        const int64_t n0 = p * kNR;
        const bool full = n0 + kNR <= P.N;
        const int64_t ncol = std::min<int64_t>(kNR, P.N - n0);
        for (int64_t m = m0; m < m1; m += 6) {
          const int mr = static_cast<int>(std::min<int64_t>(6, m1 - m));
          const float* a = P.x + m * P.K + k0;
          float* c = P.y + m * P.N + n0;
          int64_t ldc = P.N;
          if (!full) {
            if (!first)
              for (int i = 0; i < mr; ++i) std::memcpy(edge + i * kNR, c + i * P.N, ncol * sizeof(float));
            c = edge;
            ldc = kNR;
          }
          if (avx) {
            switch (mr) {
              case 6: micro_f32<6>(a, P.K, b, kc, c, ldc, first, last, bias16, P.gelu); break;
              case 5: micro_f32<5>(a, P.K, b, kc, c, ldc, first, last, bias16, P.gelu); break;
              case 4: micro_f32<4>(a, P.K, b, kc, c, ldc, first, last, bias16, P.gelu); break;
              case 3: micro_f32<3>(a, P.K, b, kc, c, ldc, first, last, bias16, P.gelu); break;
              case 2: micro_f32<2>(a, P.K, b, kc, c, ldc, first, last, bias16, P.gelu); break;
              default: micro_f32<1>(a, P.K, b, kc, c, ldc, first, last, bias16, P.gelu); break;
            }
          } else {
            micro_scalar(mr, a, P.K, b, kc, c, ldc, first, last, bias16, P.gelu);
          }
          if (!full)
            for (int i = 0; i < mr; ++i) std::memcpy(P.y + (m + i) * P.N + n0, edge + i * kNR, ncol * sizeof(float));
        }
      }
    }
  });
}

std::vector<float> pad_bias(const float* bias, int64_t N) {
  if (!bias) return {};
  std::vector<float> b(((N + kNR - 1) / kNR) * kNR, 0.f);
  std::copy(bias, bias + N, b.begin());
  return b;
}

const float* f32_panel(const void* ctx, int64_t p, int64_t k0, int64_t, float*) {
  const F32Args* a = static_cast<const F32Args*>(ctx);
  return a->wpanel + (p * a->K + k0) * kNR;
}

// ---- W4A16 dequantization of one [kc][16] block ----
void deq_scalar(const W4A16Args* a, int64_t p, int64_t k0, int64_t kc, float* dst) {
  const int64_t KG = a->K / a->G;
  for (int64_t k = k0; k < k0 + kc; ++k) {
    const uint32_t* w = a->qweight + (p * a->K + k) * 2;
    const float* s = a->wscales + (p * KG + k / a->G) * kNR;
    for (int j = 0; j < kNR; ++j) dst[(k - k0) * kNR + j] = a->lut[(w[j >> 3] >> (4 * (j & 7))) & 15] * s[j];
  }
}

__attribute__((target("avx2,fma"))) void deq_avx2(const W4A16Args* a, int64_t p, int64_t k0, int64_t kc, float* dst) {
  const int64_t KG = a->K / a->G;
  const __m256 lut_lo = _mm256_loadu_ps(a->lut), lut_hi = _mm256_loadu_ps(a->lut + 8);
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i mask = _mm256_set1_epi32(15);
  for (int64_t k = k0; k < k0 + kc; ++k) {
    const uint32_t* w = a->qweight + (p * a->K + k) * 2;
    const float* s = a->wscales + (p * KG + k / a->G) * kNR;
    for (int h = 0; h < 2; ++h) {
      const __m256i idx =
          _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(w[h])), shifts), mask);
      const __m256 lo = _mm256_permutevar8x32_ps(lut_lo, idx), hi = _mm256_permutevar8x32_ps(lut_hi, idx);
      const __m256 v = _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
      _mm256_storeu_ps(dst + (k - k0) * kNR + 8 * h, _mm256_mul_ps(v, _mm256_loadu_ps(s + 8 * h)));
    }
  }
}

const float* w4a16_panel(const void* ctx, int64_t p, int64_t k0, int64_t kc, float* dst) {
  const W4A16Args* a = static_cast<const W4A16Args*>(ctx);
  if (isa_at_least(Isa::Avx2))
    deq_avx2(a, p, k0, kc, dst);
  else
    deq_scalar(a, p, k0, kc, dst);
  return dst;
}

}  // namespace

void gemm_f32(const F32Args& a) {
  std::vector<float> bias = pad_bias(a.bias, a.N);
  Plan P{a.x, a.M, a.K, a.N, a.bias ? bias.data() : nullptr, a.gelu, a.y, f32_panel, &a};
  run_plan(P);
}

void gemm_w4a16(const W4A16Args& a) {
  if (a.G <= 0 || a.K % a.G != 0) throw KernelError("gemm_w4a16: K must be a multiple of the group size");
  std::vector<float> bias = pad_bias(a.bias, a.N);
  Plan P{a.x, a.M, a.K, a.N, a.bias ? bias.data() : nullptr, false, a.y, w4a16_panel, &a};
  run_plan(P);
}

}  // namespace svdq
