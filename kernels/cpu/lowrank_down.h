// The low-rank down-projection lact [rows, R] = x [rows, K] · L_downᵀ (L_down [R, K]) on AVX-512, shared by the INT4
// activation pass (act_quant.cc, x = X̂ with λ folded into L_down) and the int4p2 one (act_quant_p2.cc, raw x).
// An outer-product GEMM: L_downᵀ transposed once per call into ldT [K][Rp] (Rp = R rounded up to 16, zero columns,
// 64-byte aligned), then tiles of MR rows × 16·NV ranks: one K step is NV vector loads of ldT, MR broadcasts of x and
// MR·NV FMAs. K runs in blocks of kKC; each block's sums start from zero in registers and are added to the partial
// sums afterwards, so every output is a sum of ⌈K/kKC⌉ block sums of ≤ kKC sequential f32 products (error ≈
// u·√kKC of Σ|x·l| for same-sign products instead of u·√K).
#pragma once
#include "x86.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.h"
#include "simd.h"

namespace svdq {
namespace lowrank {

// K per block (a [256][32] block of ldT, 32 KiB) and rows per tile (12 × 2 accumulators + 2 ldT vectors + 1
// broadcast of the 32 zmm). Measured on the dev Xeon (1 thread, CPU time, M = 1024, K = 3072, R = 32; the throwaway
// harness kernel_times.cc): K blocks of 128, 256 and 512 and tasks of 12–96 rows all within the load noise
// (±10 %); the kernel alone reaches 83 GFMA/s with its rows in L2 (zmm FMA peak 101–106 GFMA/s), 68 with them
// streaming from L3.
constexpr int64_t kKC = 256;
constexpr int kMR = 12;

inline int64_t rank_pad(int64_t R) { return (R + 15) / 16 * 16; }

// The first 64-byte aligned element of a caller's prepared ldT (Float32Array of K·Rp + 16 elements).
inline const float* aligned_ldt(const float* p) {
  if (p == nullptr) return nullptr;
  if (reinterpret_cast<uintptr_t>(p) % 4) throw KernelError("lowRankDownT: a Float32Array that is not 4-byte aligned");
  return p + (64 - reinterpret_cast<uintptr_t>(p) % 64) % 64 / 4;
}

// ldT [K][Rp] = L_downᵀ (zero columns R..Rp), in a 64-byte aligned slice of `buf` (kept by the caller across
// calls); parallel over K blocks, k outer so each ldT row is written once, contiguously (R read streams stay in L1).
// The r-outer loop with a zero-filled buffer before took 0.12 ms at K = 3072, R = 32 (1 thread).
inline const float* transpose_down(const float* ldown, int64_t R, int64_t K, std::vector<float>& buf) {
  const int64_t Rp = rank_pad(R);
  float* t = align64(buf, static_cast<size_t>(K * Rp));
  parallel_for((K + 255) / 256, [&](int64_t b, int) {
    for (int64_t k = b * 256; k < std::min(K, (b + 1) * 256); ++k) {
      float* dst = t + k * Rp;
      for (int64_t r = 0; r < R; ++r) dst[r] = ldown[r * K + k];
      for (int64_t r = R; r < Rp; ++r) dst[r] = 0.f;
    }
  });
  return t;
}

#if SVDQ_X86
// acc [MR][Rp] (row stride Rp) (+)= x rows [MR] (row stride ldx) · ldT over k [k0, k0 + kc), ranks [c0, c0 + 16·NV).
template <int MR, int NV>
SVDQ_TARGET_AVX512 inline void down_tile(const float* x, int64_t ldx, const float* ldt, int64_t Rp, int64_t k0,
                                         int64_t kc, int64_t c0, float* acc_buf, bool first) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();
  const float* xr = x + k0;
  const float* lp = ldt + k0 * Rp + c0;
  for (int64_t k = 0; k < kc; ++k) {
    __m512 w[NV];
#pragma GCC unroll 2
    for (int j = 0; j < NV; ++j) w[j] = _mm512_load_ps(lp + k * Rp + 16 * j);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 xv = _mm512_set1_ps(xr[i * ldx + k]);
#pragma GCC unroll 2
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(xv, w[j], acc[i][j]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < NV; ++j) {
      float* p = acc_buf + i * Rp + c0 + 16 * j;
      _mm512_store_ps(p, first ? acc[i][j] : _mm512_add_ps(_mm512_load_ps(p), acc[i][j]));
    }
}

template <int MR>
SVDQ_TARGET_AVX512 inline void down_tile_ranks(const float* x, int64_t ldx, const float* ldt, int64_t Rp, int64_t k0,
                                               int64_t kc, float* acc, bool first) {
  int64_t c0 = 0;
  for (; c0 + 32 <= Rp; c0 += 32) down_tile<MR, 2>(x, ldx, ldt, Rp, k0, kc, c0, acc, first);
  if (c0 < Rp) down_tile<MR, 1>(x, ldx, ldt, Rp, k0, kc, c0, acc, first);
}

// lact rows [0, rows) (row stride ldl) = x rows (row stride ldx) · L_downᵀ, ldT from transpose_down. acc_buf:
// rows_rounded·Rp floats of 64-byte aligned scratch (rows rounded up to kMR).
SVDQ_TARGET_AVX512 inline void down_rows(const float* x, int64_t ldx, int64_t rows, int64_t K, const float* ldt,
                                         int64_t R, float* acc_buf, float* lact, int64_t ldl) {
  const int64_t Rp = rank_pad(R);
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    const bool first = k0 == 0;
    for (int64_t i = 0; i < rows; i += kMR) {
      const float* xi = x + i * ldx;
      float* acc = acc_buf + i * Rp;
      switch (std::min<int64_t>(kMR, rows - i)) {
#define SVDQ_DOWN_CASE(MR) \
  case MR: down_tile_ranks<MR>(xi, ldx, ldt, Rp, k0, kc, acc, first); break;
        SVDQ_DOWN_CASE(12)
        SVDQ_DOWN_CASE(11)
        SVDQ_DOWN_CASE(10)
        SVDQ_DOWN_CASE(9)
        SVDQ_DOWN_CASE(8)
        SVDQ_DOWN_CASE(7)
        SVDQ_DOWN_CASE(6)
        SVDQ_DOWN_CASE(5)
        SVDQ_DOWN_CASE(4)
        SVDQ_DOWN_CASE(3)
        SVDQ_DOWN_CASE(2)
        default: down_tile_ranks<1>(xi, ldx, ldt, Rp, k0, kc, acc, first); break;
#undef SVDQ_DOWN_CASE
      }
    }
  }
  for (int64_t i = 0; i < rows; ++i) std::memcpy(lact + i * ldl, acc_buf + i * Rp, R * sizeof(float));
}

#endif  // SVDQ_X86

}  // namespace lowrank
}  // namespace svdq
