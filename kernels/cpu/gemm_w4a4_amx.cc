// W4A4 GEMM, AMX-INT8 path (Isa::Amx). One tdpbssd multiplies a 16×64 tile of signed activation codes
// (16 tokens × one 64-channel group, read straight from codes [M,K] with row stride K) with a 16×64-byte tile of
// signed weight codes in the VNNI layout [k/4][16 columns][4] and adds the 16×16 int32 dot products of that
// group into C. Because every 64-channel group has its own activation and weight scales, each group's C tiles are
// stored and scaled into f32 sums (AVX-512) before the next group; 2×2 C tiles (32 tokens × 32 columns) per group.
// The 4-bit weights of a task's 64 columns are unpacked once per task (layout below) and reused for all its rows.
//
// Unpacked weight tile (per task, per column pair j = panels p0+2j, p0+2j+1, per group g): int8 [16][16][4],
//   [r, n, t] = W[8(p0+2j) + n, 64g + 4r + t]  (r = 2q: low nibbles of row q; r = 2q+1: high nibbles).
// Tile registers: 0-3 C (int32 16×16), 4-5 A (activation rows 0-15, 16-31), 6-7 B (columns 0-15, 16-31).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "simd.h"
#include "w4a4_internal.h"

#define SVDQ_TARGET_AMX \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,amx-tile,amx-int8")))

namespace svdq {
namespace w4a4 {

namespace {

// LDTILECFG operand (Intel SDM vol. 2A, LDTILECFG): palette 1, bytes per row and rows of each tile register.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

constexpr int64_t kTileBytes = 1024;  // 16 rows × 64 bytes

// Unpacks panels (pa, pb) of group g into the 1 KiB B tile at dst, as signed codes w = u − 8.
SVDQ_TARGET_AMX void unpack_pair(const Ctx& c, int64_t pa, int64_t g, int8_t* dst) {
  const __m512i nib = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
  const uint8_t* qa = panel_q(c, pa) + g * kPanelGroupBytes;
  const uint8_t* qb = panel_q(c, pa + 1) + g * kPanelGroupBytes;
  for (int q = 0; q < 8; ++q) {
    const __m512i v = load_pair_epi8(qa + 32 * q, qb + 32 * q);
    _mm512_storeu_si512(dst + (2 * q) * 64, _mm512_sub_epi8(_mm512_and_si512(v, nib), eight));
    _mm512_storeu_si512(dst + (2 * q + 1) * 64,
                        _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), nib), eight));
  }
}

// fa [rows][32] += (C tiles of group g, int32) · s_x[m + i, g] · s_w[columns of panels pj..pj+3, g].
template <int ROWS>
SVDQ_TARGET_AMX inline void rescale_rows(const float* sx, int64_t G, __m512 sw0, __m512 sw1, const int32_t (*cb)[256],
                                         float (*fa)[32], int rows_) {
  const int n = ROWS > 0 ? ROWS : rows_;
#pragma GCC unroll 32
  for (int i = 0; i < n; ++i) {
    const __m512 s = _mm512_set1_ps(sx[i * G]);
    const int32_t* r0 = cb[(i >> 4) * 2] + (i & 15) * 16;
    const int32_t* r1 = cb[(i >> 4) * 2 + 1] + (i & 15) * 16;
    _mm512_store_ps(fa[i], _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(r0)), _mm512_mul_ps(sw0, s),
                                           _mm512_load_ps(fa[i])));
    _mm512_store_ps(fa[i] + 16, _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(r1)), _mm512_mul_ps(sw1, s),
                                                _mm512_load_ps(fa[i] + 16)));
  }
}

SVDQ_TARGET_AMX void rescale_group(const Ctx& c, int64_t m, int rows_, int64_t pj, int64_t g, const int32_t (*cb)[256],
                                   float (*fa)[32]) {
  const __m512 sw0 = load_pair_ps(panel_s(c, pj) + g * kPanel, panel_s(c, pj + 1) + g * kPanel);
  const __m512 sw1 = load_pair_ps(panel_s(c, pj + 2) + g * kPanel, panel_s(c, pj + 3) + g * kPanel);
  const float* sx = c.a->ascales + m * c.G + g;
  if (rows_ == 32)
    rescale_rows<32>(sx, c.G, sw0, sw1, cb, fa, 32);
  else
    rescale_rows<0>(sx, c.G, sw0, sw1, cb, fa, rows_);
}

struct Scratch {
  std::vector<int8_t> bw;    // [pairs][G][1024]
  std::vector<int8_t> apad;  // [32][K] last rows, zero-padded
};
thread_local Scratch t_scratch;

}  // namespace

SVDQ_TARGET_AMX void tile_amx(const Ctx& c, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const W4A4Args& a = *c.a;
  const int64_t K = a.K, G = c.G;
  // Even number of column pairs: a missing last pair unpacks from the zero stand-in (its columns are not stored).
  const int64_t pairs = ((p1 - p0 + 1) / 2 + 1) / 2 * 2;
  Scratch& s = t_scratch;
  if (static_cast<int64_t>(s.bw.size()) < pairs * G * kTileBytes) s.bw.resize(pairs * G * kTileBytes);
  for (int64_t j = 0; j < pairs; ++j)
    for (int64_t g = 0; g < G; ++g) unpack_pair(c, p0 + 2 * j, g, s.bw.data() + (j * G + g) * kTileBytes);

  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
  alignas(64) int32_t cb[2][4][256];  // two groups of C tiles (double buffer)
  alignas(64) float fa[32][32];
  for (int64_t m = m0; m < m1; m += 32) {
    const int rows_ = static_cast<int>(std::min<int64_t>(32, m1 - m));
    const int8_t* abase = a.codes + m * K;
    if (m + 32 > a.M) {  // the tiles read 32 rows: copy the last rows into a zero-padded buffer
      if (static_cast<int64_t>(s.apad.size()) < 32 * K) s.apad.resize(32 * K);
      std::memset(s.apad.data(), 0, 32 * K);
      std::memcpy(s.apad.data(), abase, (a.M - m) * K);
      abase = s.apad.data();
    }
    for (int64_t j = 0; j < pairs; j += 2) {
      const int64_t pj = p0 + 2 * j;
      if (pj >= p1) break;
      const int8_t* b0 = s.bw.data() + j * G * kTileBytes;
      const int8_t* b1 = b0 + G * kTileBytes;
      std::memset(fa, 0, sizeof fa);
      // Software-pipelined over groups: the f32 rescale of group g − 1 (AVX-512, from the other cb buffer) runs
      // while the tile unit computes group g, instead of waiting on each group's tile products.
      for (int64_t g = 0; g < G; ++g) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        _tile_loadd(4, abase + g * 64, K);
        _tile_loadd(5, abase + 16 * K + g * 64, K);
        _tile_loadd(6, b0 + g * kTileBytes, 64);
        _tile_loadd(7, b1 + g * kTileBytes, 64);
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
        if (g > 0) rescale_group(c, m, rows_, pj, g - 1, cb[(g - 1) & 1], fa);
        int32_t(*out)[256] = cb[g & 1];
        _tile_stored(0, out[0], 64);
        _tile_stored(1, out[1], 64);
        _tile_stored(2, out[2], 64);
        _tile_stored(3, out[3], 64);
      }
      rescale_group(c, m, rows_, pj, G - 1, cb[(G - 1) & 1], fa);
      epilogue_avx512(c, m, rows_, pj, pj + 2 < p1 ? 2 : 1, &fa[0][0], 32);
    }
  }
  _tile_release();
}

}  // namespace w4a4
}  // namespace svdq
