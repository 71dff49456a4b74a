// Shared pieces of the split-bf16 AMX kernels (gemm_f32_amx.cc, attention_f32_amx.cc): a value is split into S bf16
// parts, each the bf16 rounding (to nearest even) of what the parts before it left, and products of parts are
// summed in f32 by tdpbf16ps (the reasoning and measurements: gemm_f32_amx.cc). Internal to kernels/cpu.
//
// Tile layouts (uint16 bf16 bits, 512 per 1 KiB tile), part s of chunk c (32 k):
//   A (left operand, 16 rows × 32 k):       [16 i][32 t]       = part s of A[row i, k 32c + t]
//   B (right operand, 32 k × 16 columns):   [16 kk][16 j][2 t] = part s of B[k 32c + 2kk + t, column j]
// Tile registers in chunk_products: 0-3 C (0 = rows 0-15 × columns 0-15, 1 = rows 0-15 × 16-31, 2 = rows 16-31 ×
// 0-15, 3 = rows 16-31 × 16-31), 4/5 the A tiles of rows 0-15 / 16-31, 6/7 the B tiles of columns 0-15 / 16-31.
#pragma once
#include "x86.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.h"

#define SVDQ_TARGET_SPLIT_BF16 \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,amx-tile,amx-bf16")))

namespace svdq {
namespace splitbf16 {

constexpr int64_t kChunk = 32;      // k per tile (16 rows of bf16 pairs)
constexpr int64_t kTile = 512;      // uint16 per tile (16 × 32)

inline int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// bf16 bits of f (round to nearest even; finite inputs) and the f32 value they stand for.
inline uint16_t bf16_bits(float f, float* value) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(value, &b, 4);
  return static_cast<uint16_t>(b >> 16);
}

#if SVDQ_X86
// Splits 16 floats into S parts and stores part s (16 bf16, 32 bytes) at dst + s·kTile (dst 32-byte aligned).
template <int S>
SVDQ_TARGET_SPLIT_BF16 inline void split16(__m512 v, uint16_t* dst) {
  const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
  const __m512i hi = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
#pragma GCC unroll 3
  for (int s = 0; s < S; ++s) {
    const __m512i b = _mm512_castps_si512(v);
    const __m512i rnd = _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(b, 16), one));
    const __m512i p = _mm512_and_si512(_mm512_add_epi32(b, rnd), hi);
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst + s * kTile), _mm512_cvtepi32_epi16(_mm512_srli_epi32(p, 16)));
    if (s + 1 < S) v = _mm512_sub_ps(v, _mm512_castsi512_ps(p));  // exact: the rest of a rounding
  }
}

// Splits rows [r0, r0 + rows) (rows a multiple of 16; rows ≥ M read as zero) × k [k0, k0 + 32·nch) (k ≥ K zero)
// of X (row stride ldx) into S parts, A tile layout:
//   ap[((rb·nch + c)·S + s)·512 + i·32 + t] = part s of X[r0 + 16rb + i, k0 + 32c + t].
template <int S>
SVDQ_TARGET_SPLIT_BF16 inline void split_a(const float* x, int64_t ldx, int64_t M, int64_t K, int64_t r0,
                                         int64_t rows, int64_t k0, int64_t nch, uint16_t* ap) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t m = r0 + r;
    const float* xr = m < M ? x + m * ldx : x;
    uint16_t* dst = ap + (r / 16) * nch * S * kTile + (r % 16) * 32;
    for (int64_t c = 0; c < nch; ++c)
      for (int h = 0; h < 2; ++h) {
        const int64_t k = k0 + c * kChunk + 16 * h;
        const int64_t left = m < M ? std::max<int64_t>(0, std::min<int64_t>(16, K - k)) : 0;
        const __mmask16 mask = static_cast<__mmask16>((1u << left) - 1u);
        split16<S>(_mm512_maskz_loadu_ps(mask, xr + (left ? k : 0)), dst + c * S * kTile + 16 * h);
      }
  }
}

#endif  // SVDQ_X86
// Packs B[k, j] = src[j·sj + k·sk]·scale, columns j < N (zero up to N rounded up to 32), k < K (zero up to
// Kp = K rounded up to 32), into S parts in the B tile layout, 16-column panel by panel:
//   out[((p·CH + c)·S + s)·512 + kk·32 + j·2 + t] = part s of B[32c + 2kk + t, 16p + j],  CH = Kp/32.
// Panels [p0, p1) only, so callers can spread panels over threads.
inline void pack_b(const float* src, int64_t sj, int64_t sk, float scale, int64_t N, int64_t K, int S, int64_t p0,
                   int64_t p1, uint16_t* out) {
  const int64_t CH = round_up(K, kChunk) / kChunk;
  for (int64_t p = p0; p < p1; ++p) {
    uint16_t* dst = out + p * CH * S * kTile;
    std::fill(dst, dst + CH * S * kTile, uint16_t{0});
    for (int64_t j = 0; j < 16; ++j) {
      const int64_t n = p * 16 + j;
      if (n >= N) break;
      for (int64_t k = 0; k < K; ++k) {
        float v = src[n * sj + k * sk] * scale, part;
        const int64_t c = k / kChunk, kk = (k % kChunk) / 2, tt = k % 2;
        for (int s = 0; s < S; ++s) {
          dst[(c * S + s) * kTile + kk * 32 + j * 2 + tt] = bf16_bits(v, &part);
          v -= part;  // exact: the rest of a rounding
        }
      }
    }
  }
}

#if SVDQ_X86
// Prefetches tiles 2q and 2q + 1 of the next chunk into L1: 0..2S-1 the A tiles (part t % S, rows 0-15 then
// 16-31), 2S..4S-1 the B tiles (panel p then p + 1).
template <int S>
SVDQ_TARGET_SPLIT_BF16 inline void fetch_tiles(int q, const uint16_t* pa, int64_t a1off, const uint16_t* pb,
                                             int64_t b1off) {
  for (int h = 0; h < 2; ++h) {
    const int t = 2 * q + h;
    const uint16_t* base = t < 2 * S ? pa + (t % S) * kTile + (t / S) * a1off
                                     : pb + ((t - 2 * S) % S) * kTile + ((t - 2 * S) / S) * b1off;
    const char* c = reinterpret_cast<const char*>(base);
    // inline asm: GCC 12 dropped the _mm_prefetch calls of this function (none left in the object code)
    for (int l = 0; l < 16; ++l) __asm__ volatile("prefetcht0 %0" : : "m"(c[64 * l]));
  }
}

// The tile products of one 32-k chunk for parts a[s] (A tiles of rows 0-15 at a[s], rows 16-31 at a[s] + a1off)
// and b[s] (panel p at b[s], p+1 at b[s] + b1off): every (i, j) with i + j < S, ordered so that tiles already
// loaded are reused (S = 3: 14 tile loads for 24 products; S = 2: 8 for 12).
// pa/pb: the A and B tiles of the next chunk (same layouts), prefetched into L1 between the products: the tiles
// stream from L2, and a tile load that misses L1 stalls the tile unit (microbenchmark, one core: 16.5 cycles per
// tdpbf16ps with A and B in L1, 22.5 with 768 KiB of A streaming from L2, 18.4 with that A prefetched).
template <int S>
SVDQ_TARGET_SPLIT_BF16 inline void chunk_products(const uint16_t* a, int64_t a1off, const uint16_t* b, int64_t b1off,
                                                const uint16_t* pa, const uint16_t* pb) {
  // The 4·S KiB of next tiles, two 1 KiB tiles after each group of 4 products (2·S groups).
#define SVDQ_FETCH(q) fetch_tiles<S>(q, pa, a1off, pb, b1off)
#define SVDQ_LOAD_A(s) \
  _tile_loadd(4, a + (s) * kTile, 64); \
  _tile_loadd(5, a + (s) * kTile + a1off, 64)
#define SVDQ_LOAD_B(s) \
  _tile_loadd(6, b + (s) * kTile, 64); \
  _tile_loadd(7, b + (s) * kTile + b1off, 64)
#define SVDQ_DP4 \
  _tile_dpbf16ps(0, 4, 6); \
  _tile_dpbf16ps(1, 4, 7); \
  _tile_dpbf16ps(2, 5, 6); \
  _tile_dpbf16ps(3, 5, 7)
  if constexpr (S == 3) {
    // small products first: (0,2) (0,1) (0,0) (2,0) (1,0) (1,1)
    SVDQ_LOAD_A(0);
    SVDQ_LOAD_B(2);
    SVDQ_DP4;
    SVDQ_FETCH(0);
    SVDQ_LOAD_B(1);
    SVDQ_DP4;
    SVDQ_FETCH(1);
    SVDQ_LOAD_B(0);
    SVDQ_DP4;
    SVDQ_FETCH(2);
    SVDQ_LOAD_A(2);
    SVDQ_DP4;
    SVDQ_FETCH(3);
    SVDQ_LOAD_A(1);
    SVDQ_DP4;
    SVDQ_FETCH(4);
    SVDQ_LOAD_B(1);
    SVDQ_DP4;
    SVDQ_FETCH(5);
  } else {
    // (0,1) (0,0) (1,0)
    SVDQ_LOAD_A(0);
    SVDQ_LOAD_B(1);
    SVDQ_DP4;
    SVDQ_FETCH(0);
    SVDQ_LOAD_B(0);
    SVDQ_DP4;
    SVDQ_FETCH(1);
    SVDQ_LOAD_A(1);
    SVDQ_DP4;
    SVDQ_FETCH(2);
    SVDQ_FETCH(3);
  }
#undef SVDQ_LOAD_A
#undef SVDQ_LOAD_B
#undef SVDQ_DP4
#undef SVDQ_FETCH
}

#endif  // SVDQ_X86

}  // namespace splitbf16
}  // namespace svdq
