// The low-rank down-projection lact [rows, R] = x [rows, K] · L_downᵀ on AVX2 + FMA, shared by both activation
// passes: the INT4 one (act_quant.cc, x = X̂ with λ folded into L_down) and the int4p2 one (act_quant_p2.cc; its
// bf16 branch runs it on bf16-rounded x and L_down, every product exact in f32). The same outer-product GEMM as
// lowrank_down.h's AVX-512 one, on the same operand ldT [K][Rp] (L_downᵀ from lowrank::transpose_down or the
// layer's prepared copy; Rp = R rounded up to 16) and the same K blocking: tiles of kMR rows × 16 ranks (2 ymm), one
// K step = 2 vector loads of ldT, kMR broadcasts of x and 2·kMR FMAs (6 rows: 12 accumulators + 2 ldT vectors + 1
// broadcast of the 16 ymm; 12 independent FMA chains cover 4 cycles × 2 pipes on Zen 3). K runs in blocks of
// lowrank::kKC; each block's sums start from zero and are added to the partial sums afterwards, so every lane does
// the same f32 operations in the same order as the AVX-512 path.
//
//   | tensor | shape        | layout                                               |
//   | x      | [rows, K]    | row stride ldx                                       |
//   | ldT    | [K, Rp]      | 32-byte aligned, zero columns R..Rp                  |
//   | acc    | [rows, Rp]   | scratch, 32-byte aligned                             |
//   | lact   | [rows, R]    | row stride ldl                                       |
//
// Why not the INT4 pass's former kernel (x rows · L_down rows, 4 rows × 2 ranks per pass, horizontal sums): it
// re-read the 4 X̂ rows (48 KiB at K = 3072, more than L1) from L2 once per rank pair, ~47 bytes per cycle at the
// FMA rate, so it ran L2-bound at about half the FMA peak (4.0–4.6 ms per 1024 rows at K = 3072, R = 32 on one Zen 3
// core; this kernel 2.7–3.1 ms, the FMA floor 2.1 ms).
#pragma once
#include "x86.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "lowrank_down.h"

#define SVDQ_TARGET_DOWN2 __attribute__((target("avx2,fma")))

#if SVDQ_X86
namespace svdq {
namespace lowrank2 {

constexpr int kMR = 6;

// acc [MR][Rp] (+)= x rows [MR] (row stride ldx, from the block's first column) · the block's kc rows of ldT
// (from its row k0: lk), ranks [c0, c0 + 16).
template <int MR>
SVDQ_TARGET_DOWN2 inline void tile(const float* xr, int64_t ldx, const float* lk, int64_t Rp, int64_t kc, int64_t c0,
                                   float* acc_buf, bool first) {
  __m256 acc[MR][2];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  const float* lp = lk + c0;
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 w0 = _mm256_load_ps(lp + k * Rp), w1 = _mm256_load_ps(lp + k * Rp + 8);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = _mm256_broadcast_ss(xr + i * ldx + k);
      acc[i][0] = _mm256_fmadd_ps(xv, w0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(xv, w1, acc[i][1]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
    for (int h = 0; h < 2; ++h) {
      float* p = acc_buf + i * Rp + c0 + 8 * h;
      _mm256_store_ps(p, first ? acc[i][h] : _mm256_add_ps(_mm256_load_ps(p), acc[i][h]));
    }
}

// dst [rows][K] = bf16(x rows) as f32 values (p2_layer.h bf16_round: nearest even, subnormals kept; finite x; a
// NaN row fails the activation pass before its branch is used).
SVDQ_TARGET_DOWN2 inline void round_rows_bf16(const float* x, int64_t ldx, int64_t rows, int64_t K, float* dst) {
  const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
  const __m256i hi = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t k = 0; k < K; k += 8) {
      const __m256i b = _mm256_castps_si256(_mm256_loadu_ps(x + i * ldx + k));
      const __m256i r = _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(b, 16), one));
      _mm256_storeu_ps(dst + i * K + k, _mm256_castsi256_ps(_mm256_and_si256(_mm256_add_epi32(b, r), hi)));
    }
}

// lact rows [0, rows) (row stride ldl) = x rows (row stride ldx) · L_downᵀ, ldT [K][Rp] 32-byte aligned
// (lowrank::transpose_down or the layer's prepared one). acc_buf: rows·Rp floats of 32-byte aligned scratch. xblk
// (rows·kKC floats) or null: with it, each K block of the rows is first rounded to bf16 into xblk (in L1; the bf16
// branch: a separate pass over all of K read x from memory twice, 0.2–0.9 ms more than the f32 branch at M = 256 /
// 1024, K = 3072).
SVDQ_TARGET_DOWN2 inline void down_rows(const float* x, int64_t ldx, int64_t rows, int64_t K, const float* ldt,
                                        int64_t R, float* acc_buf, float* lact, int64_t ldl, float* xblk = nullptr) {
  const int64_t Rp = lowrank::rank_pad(R);
  for (int64_t k0 = 0; k0 < K; k0 += lowrank::kKC) {
    const int64_t kc = std::min(lowrank::kKC, K - k0);
    const bool first = k0 == 0;
    const float* xb = x + k0;
    int64_t ld = ldx;
    if (xblk) {
      round_rows_bf16(x + k0, ldx, rows, kc, xblk);
      xb = xblk;
      ld = kc;
    }
    const float* lk = ldt + k0 * Rp;
    for (int64_t i = 0; i < rows; i += kMR) {
      const float* xi = xb + i * ld;
      float* acc = acc_buf + i * Rp;
      for (int64_t c0 = 0; c0 < Rp; c0 += 16) switch (std::min<int64_t>(kMR, rows - i)) {
          case 6: tile<6>(xi, ld, lk, Rp, kc, c0, acc, first); break;
          case 5: tile<5>(xi, ld, lk, Rp, kc, c0, acc, first); break;
          case 4: tile<4>(xi, ld, lk, Rp, kc, c0, acc, first); break;
          case 3: tile<3>(xi, ld, lk, Rp, kc, c0, acc, first); break;
          case 2: tile<2>(xi, ld, lk, Rp, kc, c0, acc, first); break;
          default: tile<1>(xi, ld, lk, Rp, kc, c0, acc, first); break;
        }
    }
  }
  for (int64_t i = 0; i < rows; ++i) std::memcpy(lact + i * ldl, acc_buf + i * Rp, R * sizeof(float));
}

}  // namespace lowrank2
}  // namespace svdq
#endif  // SVDQ_X86
