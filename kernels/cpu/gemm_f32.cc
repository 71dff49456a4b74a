// Operators 3 and 4: f32 GEMM on packed 16-column weight panels, and W4A16 GEMM (4-bit codes through a
// 16-entry codebook: INT4 or NF4) that dequantizes one K-block of a panel into the same f32 panel form.
//   Y [M,N] = X [M,K] · Wᵀ (+ bias) (optional GELU), W [N,K].
// AVX2/scalar: Goto-style blocking: KC rows of a 16-column panel (16 KiB) stay in L1 while MC rows of X (L2) stream
// through a 6×16 FMA micro-kernel (12 accumulators + 2 panel vectors + 1 broadcast of the 16 YMM registers).
// AVX-512: 8×48 micro-kernel on copied row blocks of X, partial sums in a per-thread buffer (run_plan_avx512).
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

// ---- AVX-512 path ----
// Micro-tile: kMR512 rows × kNV512 panels (16 columns = one ZMM each): 24 accumulators + 3 panel vectors + 1
// broadcast of the 32 ZMM registers.
// Measured (1 thread, CPU time, M = 448, K = N = 3072): 8×48 and 14×32 tiles and K blocks of 128–512 all within
// the machine's noise (±5 %) once the partial sums left Y (below); 8×48 reads each broadcast for 3 FMAs.
constexpr int kMR512 = 8, kNV512 = 3;
constexpr int64_t kKC512 = 192;  // K block: a [kc][16·3] panel group is 36 KiB (L1: 48 KiB)

// One micro-tile over one K block. A comes from the packed block ap (row i at ap[i·kKC512 + k]: X copied row by
// row with a fixed row stride, so the broadcasts address one pointer with immediate offsets; read in place, with
// the run-time row stride K, the compiler ran out of general registers for the row pointers and reloaded some
// inside the k loop). The sums start from cin (row stride ldi) or, when cin is null, from the bias (or zero);
// they go to cout (row stride ldo): the task's accumulation buffer (all 16 lanes) or, for the last K block, Y
// (columns past N masked off, GELU applied when asked).
template <int MR, int NV>
SVDQ_TARGET_AVX512 void micro512(const float* ap, const float* const* b, int64_t kc, const float* cin, int64_t ldi,
                                 float* cout, int64_t ldo, bool to_y, const float* bias, bool gelu,
                                 const __mmask16* mask) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      acc[i][j] = cin ? _mm512_load_ps(cin + i * ldi + 16 * j)
                      : (bias ? _mm512_loadu_ps(bias + 16 * j) : _mm512_setzero_ps());
  const float* bp[NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) bp[j] = b[j];
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = _mm512_loadu_ps(bp[j] + k * kNR);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(ap[i * kKC512 + k]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  if (to_y) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j)
        _mm512_mask_storeu_ps(cout + i * ldo + 16 * j, mask[j], gelu ? gelu512(acc[i][j]) : acc[i][j]);
  } else {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) _mm512_store_ps(cout + i * ldo + 16 * j, acc[i][j]);
  }
}

template <int NV>
SVDQ_TARGET_AVX512 void rows512(int mr, const float* ap, const float* const* b, int64_t kc, const float* cin,
                                int64_t ldi, float* cout, int64_t ldo, bool to_y, const float* bias, bool gelu,
                                const __mmask16* mask) {
  switch (mr) {
    case 8: micro512<8, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
    case 7: micro512<7, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
    case 6: micro512<6, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
    case 5: micro512<5, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
    case 4: micro512<4, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
    case 3: micro512<3, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
    case 2: micro512<2, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
    default: micro512<1, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
  }
}
static_assert(kMR512 <= 8, "rows512 dispatches up to 8 rows");

// Tasks: up to kMT512 rows × kNC512 panels. For each K block, the task runs its rows in blocks of kMC512: each row
// block of X is copied once into ap [rows][kKC512] (L2) and runs against every panel group of the task's columns
// (a [kc][48] group stays in L1 for the block's 14 micro-tiles); the task's [kc][16·kNC512] slice of W (288 KiB)
// stays in L2 for all its row blocks. The partial sums live in a per-thread buffer [kMT512][16·kNC512] (1.6 KiB
// rows, L2) until the last K block writes Y: kept in Y between K blocks they were 18 % slower on the dev Xeon
// (1 thread, M = 448, K = N = 3072), because Y's row stride (N·4 bytes, a multiple of 4 KiB for FLUX widths) maps
// the rows of a block onto few L2 sets, and the block fell out to L3.
constexpr int64_t kMC512 = 112;  // 14 micro-tiles of 8 rows
constexpr int64_t kMT512 = 448;  // rows per task (4 row blocks)
constexpr int64_t kNC512 = 24;   // panels per task (384 columns): a multiple of kNV512

void run_plan_avx512(const Plan& P) {
  const int64_t NP = (P.N + kNR - 1) / kNR;
  const int threads = num_threads();
  // Narrow the tasks until the pool has 8 per thread (they are handed out one by one, runtime.cc, so on a shared
  // machine a thread that lost its core for a while leaves little behind): columns first down to 192 (fewer rows
  // per task read the task's W slice from memory once more per row block; fewer columns copy X once more per
  // column block: 96 was 15-20 % slower at N = 768), then rows, then columns; the rows are split evenly (M = 256 as
  // 224 + 32 rows read W twice for a 32-row task).
  int64_t mtr = kMT512, nc = kNC512;
  const auto tasks = [&] { return ((P.M + mtr - 1) / mtr) * ((NP + nc - 1) / nc); };
  while (tasks() < 8 * threads && nc > 4 * kNV512) nc /= 2;
  while (tasks() < 8 * threads && mtr > kMC512) mtr /= 2;
  while (tasks() < 8 * threads && nc > kNV512) nc /= 2;
  const int64_t mt = (P.M + mtr - 1) / mtr, nt = (NP + nc - 1) / nc;
  mtr = ((P.M + mt - 1) / mt + kMR512 - 1) / kMR512 * kMR512;
  const int64_t ldc = nc * kNR;  // row stride of the accumulation buffer
  struct Buf {
    std::vector<float> b, a, c;
  };
  std::vector<Buf> scratch(threads);
  parallel_for(mt * nt, [&](int64_t t, int th) {
    const int64_t nb = t / mt, mb = t % mt;
    const int64_t r0 = mb * mtr, r1 = std::min(P.M, r0 + mtr);
    const int64_t p0 = nb * nc, p1 = std::min(NP, p0 + nc);
    Buf& s = scratch[th];
    float* buf = align64(s.b, kNV512 * kKC512 * kNR);
    float* apk = align64(s.a, kMC512 * kKC512);
    float* cb = P.K > kKC512 ? align64(s.c, mtr * ldc) : nullptr;
    for (int64_t k0 = 0; k0 < P.K; k0 += kKC512) {
      const int64_t kc = std::min(kKC512, P.K - k0);
      const bool first = k0 == 0, last = k0 + kc == P.K;
      for (int64_t m0 = r0; m0 < r1; m0 += kMC512) {
        const int64_t m1 = std::min(r1, m0 + kMC512);
        for (int64_t m = m0; m < m1; ++m)
          std::memcpy(apk + (m - m0) * kKC512, P.x + m * P.K + k0, kc * sizeof(float));
        for (int64_t p = p0; p < p1; p += kNV512) {
          const int nv = static_cast<int>(std::min<int64_t>(kNV512, p1 - p));
          const float* b[kNV512] = {};
          __mmask16 mask[kNV512];
          for (int j = 0; j < nv; ++j) b[j] = P.panel(P.ctx, p + j, k0, kc, buf + j * kKC512 * kNR);
          for (int j = 0; j < kNV512; ++j) {
            const int64_t cnt = std::max<int64_t>(0, std::min<int64_t>(kNR, P.N - (p + j) * kNR));
            mask[j] = static_cast<__mmask16>((1u << cnt) - 1u);
          }
          const float* bias = P.bias_padded ? P.bias_padded + p * kNR : nullptr;
          for (int64_t m = m0; m < m1; m += kMR512) {
            const int mr = static_cast<int>(std::min<int64_t>(kMR512, m1 - m));
            const float* ap = apk + (m - m0) * kKC512;
            float* cbt = cb ? cb + (m - r0) * ldc + (p - p0) * kNR : nullptr;
            const float* cin = first ? nullptr : cbt;
            float* cout = last ? P.y + m * P.N + p * kNR : cbt;
            const int64_t ldo = last ? P.N : ldc;
            if (nv == 3)
              rows512<3>(mr, ap, b, kc, cin, ldc, cout, ldo, last, bias, P.gelu, mask);
            else if (nv == 2)
              rows512<2>(mr, ap, b, kc, cin, ldc, cout, ldo, last, bias, P.gelu, mask);
            else
              rows512<1>(mr, ap, b, kc, cin, ldc, cout, ldo, last, bias, P.gelu, mask);
          }
        }
      }
    }
  });
}
static_assert(kNV512 == 3 && kNC512 % kNV512 == 0, "run_plan_avx512 dispatches groups of up to 3 panels");

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
