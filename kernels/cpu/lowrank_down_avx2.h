// The low-rank down-projection lact [rows, R] = x [rows, K] · L_downᵀ on AVX2+FMA (the INT4 activation pass,
// act_quant.cc, x = X̂ with λ folded into L_down). The same outer-product GEMM as lowrank_down.h's AVX-512 one,
// on ldT [K][Rp] (L_downᵀ from lowrank::transpose_down or the caller's prepared copy; Rp = R rounded up to 16):
// tiles of kMR8 rows × 16 ranks (2 ymm), one K step = 2 vector loads of ldT, kMR8 broadcasts of x and 2·kMR8 FMAs.
// K runs in blocks of kKC with the AVX-512 path's summation order (each block's sums start from zero, then are
// added to the partial sums), so every lane does the same f32 operations in the same order as there.
//
//   | tensor | shape        | layout                                     |
//   | x      | [rows, K]    | row stride ldx (the pass's X̂ scratch)      |
//   | ldT    | [K, Rp]      | 64-byte aligned, zero columns R..Rp        |
//   | acc    | [rows₆, Rp]  | scratch, rows rounded up to kMR8, aligned  |
//   | lact   | [rows, R]    | row stride ldl                             |
//
// Why not the former kernel (x rows · L_down rows, 4 rows × 2 ranks per pass, horizontal sums): it re-read the
// 4 X̂ rows (48 KiB at K = 3072, more than L1) once per rank pair from L2, ~47 bytes per cycle at the FMA rate,
// so it ran L2-bound at about half the FMA peak (4.0–4.6 ms per 1024 rows at K = 3072, R = 32 on one Zen 3 core).
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "lowrank_down.h"

namespace svdq {
namespace lowrank {

// Rows per tile: 6 × 2 accumulators + 2 ldT vectors + 1 broadcast of the 16 ymm; 12 independent FMA chains cover
// the FMA latency (4 cycles × 2 pipes on Zen 3).
constexpr int kMR8 = 6;

// acc [MR][Rp] (row stride Rp) (+)= x rows [MR] · ldT over k [k0, k0 + kc), ranks [c0, c0 + 16).
template <int MR>
__attribute__((target("avx2,fma"))) inline void down_tile_avx2(const float* x, int64_t ldx, const float* ldt,
                                                               int64_t Rp, int64_t k0, int64_t kc, int64_t c0,
                                                               float* acc_buf, bool first) {
  __m256 a0[MR], a1[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) a0[i] = a1[i] = _mm256_setzero_ps();
  const float* xr = x + k0;
  const float* lp = ldt + k0 * Rp + c0;
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 w0 = _mm256_load_ps(lp + k * Rp), w1 = _mm256_load_ps(lp + k * Rp + 8);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = _mm256_broadcast_ss(xr + i * ldx + k);
      a0[i] = _mm256_fmadd_ps(xv, w0, a0[i]);
      a1[i] = _mm256_fmadd_ps(xv, w1, a1[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    float* p = acc_buf + i * Rp + c0;
    _mm256_store_ps(p, first ? a0[i] : _mm256_add_ps(_mm256_load_ps(p), a0[i]));
    _mm256_store_ps(p + 8, first ? a1[i] : _mm256_add_ps(_mm256_load_ps(p + 8), a1[i]));
  }
}

template <int MR>
__attribute__((target("avx2,fma"))) inline void down_tile_ranks_avx2(const float* x, int64_t ldx, const float* ldt,
                                                                     int64_t Rp, int64_t k0, int64_t kc, float* acc,
                                                                     bool first) {
  for (int64_t c0 = 0; c0 < Rp; c0 += 16) down_tile_avx2<MR>(x, ldx, ldt, Rp, k0, kc, c0, acc, first);
}

// lact rows [0, rows) (row stride ldl) = x rows (row stride ldx) · L_downᵀ. acc_buf: rows rounded up to kMR8, × Rp
// floats of 32-byte aligned scratch.
__attribute__((target("avx2,fma"))) inline void down_rows_avx2(const float* x, int64_t ldx, int64_t rows, int64_t K,
                                                               const float* ldt, int64_t R, float* acc_buf,
                                                               float* lact, int64_t ldl) {
  const int64_t Rp = rank_pad(R);
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    const bool first = k0 == 0;
    for (int64_t i = 0; i < rows; i += kMR8) {
      const float* xi = x + i * ldx;
      float* acc = acc_buf + i * Rp;
      switch (std::min<int64_t>(kMR8, rows - i)) {
        case 6: down_tile_ranks_avx2<6>(xi, ldx, ldt, Rp, k0, kc, acc, first); break;
        case 5: down_tile_ranks_avx2<5>(xi, ldx, ldt, Rp, k0, kc, acc, first); break;
        case 4: down_tile_ranks_avx2<4>(xi, ldx, ldt, Rp, k0, kc, acc, first); break;
        case 3: down_tile_ranks_avx2<3>(xi, ldx, ldt, Rp, k0, kc, acc, first); break;
        case 2: down_tile_ranks_avx2<2>(xi, ldx, ldt, Rp, k0, kc, acc, first); break;
        default: down_tile_ranks_avx2<1>(xi, ldx, ldt, Rp, k0, kc, acc, first); break;
      }
    }
  }
  for (int64_t i = 0; i < rows; ++i) std::memcpy(lact + i * ldl, acc_buf + i * Rp, R * sizeof(float));
}

}  // namespace lowrank
}  // namespace svdq
