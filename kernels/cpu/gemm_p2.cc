// The int4p2 layer's GEMM (p2_layer.h): Y = GELU?(sx[m]·sw[n]·Σ_k aop[m, k]·W'[n, k] + bias[n]) on bf16 operands
// with f32 sums kept over the whole Kt. Paths (gemm_path): AMX-BF16 tiles (gemm_p2_amx.cc); AVX-512, AVX2 and
// scalar f32 FMA on the same bf16 values widened to f32 in registers (every product is exact in f32, so the paths
// differ only in the order of their f32 additions). AVX512_BF16 vdpbf16ps was the first AVX-512 kernel: on the dev
// Xeon it ran 1.2x slower than this FMA one (58 vs 68 ms CPU, M = 256, K = N = 3072, 1 thread; its measured peak is
// about half the zmm FMA rate in multiply-adds, peak.cc).
#include "x86.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "p2_layer.h"
#include "simd.h"


namespace svdq {
namespace p2 {

namespace {

inline float widen(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

#if SVDQ_X86
// Task grid shared by the register-blocked paths: 96 rows × 128 columns (4 blocks of 32).
constexpr int64_t kTaskRows = 96, kTaskCols = 128;
#endif  // SVDQ_X86

void epilogue_scalar(const GemmArgs& a, int64_t m0, int rows, int64_t n0, int cols, const float* c, int64_t ldc) {
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      const int64_t n = n0 + j;
      float v = (c[i * ldc + j] * a.sx[m0 + i]) * a.sw[n] + (a.bias ? a.bias[n] : 0.f);  // no sx·sw underflow
      if (a.gelu) v = 0.5f * v * (1.0f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));  // GELU(tanh)
      a.y[(m0 + i) * a.N + n] = v;
    }
}

#if SVDQ_X86
SVDQ_TARGET_AVX512 void epilogue_avx512(const GemmArgs& a, int64_t m0, int rows, int64_t n0, int cols, const float* c,
                                        int64_t ldc) {
  for (int j = 0; j < cols; j += 16) {
    const __mmask16 mk = cols - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (cols - j)) - 1);
    const __m512 sw = _mm512_maskz_loadu_ps(mk, a.sw + n0 + j);
    const __m512 b = a.bias ? _mm512_maskz_loadu_ps(mk, a.bias + n0 + j) : _mm512_setzero_ps();
    for (int i = 0; i < rows; ++i) {
      // (sum·sx)·sw: sx·sw alone can fall below the f32 range for tiny rows where the output does not
      const __m512 cs = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, c + i * ldc + j), _mm512_set1_ps(a.sx[m0 + i]));
      __m512 v = _mm512_fmadd_ps(cs, sw, b);
      if (a.gelu) v = gelu512(v);
      _mm512_mask_storeu_ps(a.y + (m0 + i) * a.N + n0 + j, mk, v);
    }
  }
}
#endif  // SVDQ_X86

void gemm_scalar(const GemmArgs& a) {
  parallel_for((a.M + 15) / 16, [&](int64_t task, int) {
    const int64_t m0 = task * 16;
    const int rows = static_cast<int>(std::min<int64_t>(16, a.M - m0));
    float c[16 * 16];
    for (int64_t nb = 0; nb * 16 < a.N; ++nb) {
      std::fill(c, c + 256, 0.f);
      const uint16_t* w = a.wop + wop_block(nb, a.Kt);
      for (int i = 0; i < rows; ++i) {
        const uint16_t* x = a.aop + aop_row(m0 + i, a.Kt);
        for (int64_t k2 = 0; k2 < a.Kt / 2; ++k2) {
          const uint16_t* xp = x + (k2 >> 4) * 1024 + (k2 & 15) * 2;
          const float x0 = widen(xp[0]), x1 = widen(xp[1]);
          const uint16_t* wr = w + (k2 >> 4) * 1024 + (k2 & 15) * 32;
          for (int j = 0; j < 16; ++j) c[i * 16 + j] += x0 * widen(wr[2 * j]) + x1 * widen(wr[2 * j + 1]);
        }
      }
      epilogue_scalar(a, m0, rows, nb * 16, static_cast<int>(std::min<int64_t>(16, a.N - nb * 16)), c, 16);
    }
  });
}

#if SVDQ_X86
// AVX2: 6 rows × 16 columns of f32 sums; the 16 columns' pairs of row k2 are two 32-byte loads, split into the
// even-k and odd-k values by a shift and a mask.
__attribute__((target("avx2,fma"))) void avx2_task(const GemmArgs& a, int64_t task, int64_t tn) {
  {
    const int64_t mt0 = (task / tn) * kTaskRows, nt0 = (task % tn) * kTaskCols;
    const int64_t mt1 = std::min(a.M, mt0 + kTaskRows), nt1 = std::min(a.N, nt0 + kTaskCols);
    const __m256i himask = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
    alignas(32) float c[6 * 16];
    for (int64_t n0 = nt0; n0 < nt1; n0 += 16) {
      const uint16_t* w = a.wop + wop_block(n0 / 16, a.Kt);
      for (int64_t m0 = mt0; m0 < mt1; m0 += 6) {
        const int rows = static_cast<int>(std::min<int64_t>(6, mt1 - m0));
        __m256 acc[6][2];
        for (auto& r : acc) r[0] = r[1] = _mm256_setzero_ps();
        const uint32_t* xr[6];
        for (int i = 0; i < 6; ++i) xr[i] = reinterpret_cast<const uint32_t*>(a.aop + aop_row(m0 + std::min(i, rows - 1), a.Kt));
        for (int64_t k2 = 0; k2 < a.Kt / 2; ++k2) {
          const int64_t xo = (k2 >> 4) * 512 + (k2 & 15);  // the pair's 32-bit index in the tiled rows
          const uint16_t* wr = w + (k2 >> 4) * 1024 + (k2 & 15) * 32;
          const __m256i p0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr));
          const __m256i p1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + 16));
          const __m256 e0 = _mm256_castsi256_ps(_mm256_slli_epi32(p0, 16)), o0 = _mm256_castsi256_ps(_mm256_and_si256(p0, himask));
          const __m256 e1 = _mm256_castsi256_ps(_mm256_slli_epi32(p1, 16)), o1 = _mm256_castsi256_ps(_mm256_and_si256(p1, himask));
#pragma GCC unroll 6
          for (int i = 0; i < 6; ++i) {
            const uint32_t pr = xr[i][xo];
            const __m256 x0 = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(pr << 16)));
            const __m256 x1 = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(pr & 0xffff0000u)));
            acc[i][0] = _mm256_fmadd_ps(x1, o0, _mm256_fmadd_ps(x0, e0, acc[i][0]));
            acc[i][1] = _mm256_fmadd_ps(x1, o1, _mm256_fmadd_ps(x0, e1, acc[i][1]));
          }
        }
        for (int i = 0; i < rows; ++i) {
          _mm256_store_ps(c + i * 16, acc[i][0]);
          _mm256_store_ps(c + i * 16 + 8, acc[i][1]);
        }
        epilogue_scalar(a, m0, rows, n0, static_cast<int>(std::min<int64_t>(16, a.N - n0)), c, 16);
      }
    }
  }
}

// AVX-512 f32 FMA on the bf16 values widened in registers: 8 rows × 32 columns of f32 sums; per K pair two 64-byte
// weight loads split into even-k and odd-k values (shift, mask) and, per row, one 32-bit broadcast split likewise.
SVDQ_TARGET_AVX512 void avx512fma_task(const GemmArgs& a, int64_t task, int64_t tn) {
  const int64_t mt0 = (task / tn) * kTaskRows, nt0 = (task % tn) * kTaskCols;
  const int64_t mt1 = std::min(a.M, mt0 + kTaskRows), nt1 = std::min(a.N, nt0 + kTaskCols);
  const __m512i himask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  alignas(64) float c[8 * 32];
  for (int64_t n0 = nt0; n0 < nt1; n0 += 32) {
    const uint16_t* w0 = a.wop + wop_block(n0 / 16, a.Kt);
    const uint16_t* w1 = w0 + 512;  // the second 16 columns (the packed width is a multiple of 32)
    for (int64_t m0 = mt0; m0 < mt1; m0 += 8) {
      const int rows = static_cast<int>(std::min<int64_t>(8, mt1 - m0));
      __m512 acc[8][2];
      for (auto& r : acc) r[0] = r[1] = _mm512_setzero_ps();
      const uint32_t* xr[8];
      for (int i = 0; i < 8; ++i) xr[i] = reinterpret_cast<const uint32_t*>(a.aop + aop_row(m0 + std::min(i, rows - 1), a.Kt));
      for (int64_t k2 = 0; k2 < a.Kt / 2; ++k2) {
        const int64_t xo = (k2 >> 4) * 512 + (k2 & 15);  // the pair's 32-bit index in the tiled rows
        const int64_t wo = (k2 >> 4) * 1024 + (k2 & 15) * 32;
        const __m512i p0 = _mm512_loadu_si512(w0 + wo), p1 = _mm512_loadu_si512(w1 + wo);
        const __m512 e0 = _mm512_castsi512_ps(_mm512_slli_epi32(p0, 16));
        const __m512 o0 = _mm512_castsi512_ps(_mm512_and_si512(p0, himask));
        const __m512 e1 = _mm512_castsi512_ps(_mm512_slli_epi32(p1, 16));
        const __m512 o1 = _mm512_castsi512_ps(_mm512_and_si512(p1, himask));
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) {
          const __m512i pr = _mm512_set1_epi32(static_cast<int>(xr[i][xo]));
          const __m512 x0 = _mm512_castsi512_ps(_mm512_slli_epi32(pr, 16));
          const __m512 x1 = _mm512_castsi512_ps(_mm512_and_si512(pr, himask));
          acc[i][0] = _mm512_fmadd_ps(x1, o0, _mm512_fmadd_ps(x0, e0, acc[i][0]));
          acc[i][1] = _mm512_fmadd_ps(x1, o1, _mm512_fmadd_ps(x0, e1, acc[i][1]));
        }
      }
      for (int i = 0; i < rows; ++i) {
        _mm512_store_ps(c + i * 32, acc[i][0]);
        _mm512_store_ps(c + i * 32 + 16, acc[i][1]);
      }
      epilogue_avx512(a, m0, rows, n0, static_cast<int>(std::min<int64_t>(32, a.N - n0)), c, 32);
    }
  }
}

// The register-blocked paths over the task grid.
template <void (*F)(const GemmArgs&, int64_t, int64_t)>
void run_tasks(const GemmArgs& a) {
  const int64_t tm = (a.M + kTaskRows - 1) / kTaskRows, tn = (a.N + kTaskCols - 1) / kTaskCols;
  parallel_for(tm * tn, [&](int64_t task, int) { F(a, task, tn); });
}
#endif  // SVDQ_X86

}  // namespace

void epilogue_rows(const GemmArgs& a, int64_t m0, int rows, int64_t n0, int cols, const float* c, int64_t ldc) {
#if SVDQ_X86
  if (isa_at_least(Isa::Avx512))
    epilogue_avx512(a, m0, rows, n0, cols, c, ldc);
  else
#endif  // SVDQ_X86
    epilogue_scalar(a, m0, rows, n0, cols, c, ldc);
}

int gemm_path() {
  if (active_isa() == Isa::Amx && cpu_has_amx_bf16()) return 3;
  if (isa_at_least(Isa::Avx512)) return 2;
  if (isa_at_least(Isa::Avx2)) return 1;
  return 0;
}

void gemm(const GemmArgs& a) {
  if (a.M == 0) return;
  switch (gemm_path()) {
#if SVDQ_X86
    case 3: gemm_amx(a); break;
    case 2: run_tasks<avx512fma_task>(a); break;
    case 1: run_tasks<avx2_task>(a); break;
#endif  // SVDQ_X86
    default: gemm_scalar(a); break;
  }
}

}  // namespace p2
}  // namespace svdq
