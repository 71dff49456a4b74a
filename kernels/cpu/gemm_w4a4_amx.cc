// W4A4 GEMM, AMX-INT8 path (Isa::Amx). One tdpbssd multiplies a 16×64 tile of signed activation codes
// (16 tokens × one 64-channel group, read straight from codes [M,K] with row stride K; gemm_w4a4 hands this path a
// 64-byte aligned copy when the caller's codes are not: a tile row that straddles two cache lines halves the tile
// load rate) with a 16×64-byte tile of signed weight codes in the VNNI layout [k/4][16 columns][4] and adds the
// 16×16 int32 dot products of that group into C. Every 64-channel group has its own activation and weight scales,
// so each group's C tiles leave the tile unit (tilestored to an L1 buffer) and are scaled into f32 sums by AVX-512.
//
// Block: 32 tokens × 64 columns per group = 8 tile products (2 A tiles loaded once, 4 B tiles, C tiles 0-3 used
// twice). The f32 rescale of group g − 2 (fa += C·s_x·s_w, 8 chunks of 4 rows) is interleaved with group g's tile
// products; on the dev Xeon the tile unit and the AVX-512 rescale do not overlap (their times add up:
// kernels/cpu/bench/amx_rescale_overlap.cc, numbers in docs/benchmarks.md "AMX W4A4 GEMM, third pass"), which
// bounds this design at ≈ 30 ns per 16×16×64 tile product.
// The 4-bit weights of a task's columns (up to 256, gemm_w4a4.cc) are unpacked once per task (layout below), 64-byte
// aligned, and reused for all its rows.
//
// Unpacked weight tile (per task, per column pair j = panels p0+2j, p0+2j+1, per group g): int8 [16][16][4],
//   [r, n, t] = W[8(p0+2j) + n, 64g + 4r + t]  (r = 2q: low nibbles of row q; r = 2q+1: high nibbles).
// Tile registers: 0-3 C (int32 16×16), 4-5 A (activation rows 0-15, 16-31), 6-7 B (two 16-column pairs).
#include "x86.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "simd.h"
#include "w4a4_internal.h"

#if SVDQ_X86
#define SVDQ_TARGET_AMX \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,amx-tile,amx-int8")))

namespace svdq {
namespace w4a4 {

namespace {

// LDTILECFG operand (Intel SDM vol. 2A, LDTILECFG): palette 1, bytes per row and rows of each tile register.

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

// Rows 4q..4q+3 of the 32×(32·NB) block: fa += C·(s_x·s_w) for one group (FIRST: fa = C·(s_x·s_w)).
// cb [8][256]: C tile jb·4 + t of the group (t = 0: rows 0-15 × cols 0-15, 1: rows 0-15 × cols 16-31, 2/3: rows
// 16-31); sx: the group's activation scale of row 0 (row stride G); sw [2·NB]: the group's 16 weight scales of
// each 16-column pair.
template <int NB, bool FIRST>
SVDQ_TARGET_AMX inline void rescale4(const int32_t (*cb)[256], int q, const float* sx, int64_t G, const __m512* sw,
                                     float (*fa)[64]) {
#pragma GCC unroll 4
  for (int i = 4 * q; i < 4 * q + 4; ++i) {
    const int t = (i >> 4) * 2, row = (i & 15) * 16;
    const __m512 x = _mm512_set1_ps(sx[i * G]);
#pragma GCC unroll 4
    for (int v = 0; v < 2 * NB; ++v) {
      const __m512 d = _mm512_cvtepi32_ps(_mm512_load_si512(cb[(v >> 1) * 4 + t + (v & 1)] + row));
      const __m512 sc = _mm512_mul_ps(sw[v], x);
      _mm512_store_ps(fa[i] + 16 * v,
                      FIRST ? _mm512_mul_ps(d, sc) : _mm512_fmadd_ps(d, sc, _mm512_load_ps(fa[i] + 16 * v)));
    }
  }
}

// The rescale of one group, handed out in 8 chunks of 4 rows between the next group's tile products.
struct Rescale {
  const int32_t (*cb)[256] = nullptr;  // null: nothing pending
  const float* sx = nullptr;
  int64_t G = 0;
  __m512 sw[4];
  bool first = false;
};
template <int NB>
SVDQ_TARGET_AMX inline void chunk(const Rescale& r, int q, float (*fa)[64]) {
  if (!r.cb) return;
  if (r.first)
    rescale4<NB, true>(r.cb, q, r.sx, r.G, r.sw, fa);
  else
    rescale4<NB, false>(r.cb, q, r.sx, r.G, r.sw, fa);
}

// Tile products of group g for column block jb (C tiles 0-3 → out [4][256]), with rescale chunks q0..q0+3.
template <int NB>
SVDQ_TARGET_AMX inline void products(const int8_t* b0, const int8_t* b1, int32_t (*out)[256], const Rescale& r,
                                     int q0, float (*fa)[64]) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(6, b0, 64);
  _tile_loadd(7, b1, 64);
  _tile_dpbssd(0, 4, 6);
  chunk<NB>(r, q0, fa);
  _tile_dpbssd(1, 4, 7);
  chunk<NB>(r, q0 + 1, fa);
  _tile_dpbssd(2, 5, 6);
  chunk<NB>(r, q0 + 2, fa);
  _tile_dpbssd(3, 5, 7);
  chunk<NB>(r, q0 + 3, fa);
  _tile_stored(0, out[0], 64);
  _tile_stored(1, out[1], 64);
  _tile_stored(2, out[2], 64);
  _tile_stored(3, out[3], 64);
}

// The rescale runs this many groups behind the tile products (1 and 3 measured no faster on the dev Xeon).
constexpr int kLag = 2;

struct Scratch {
  std::vector<int8_t> bw;    // [pairs][G][1024] unpacked weight tiles (+64 for alignment)
  std::vector<float> sw;     // [pairs][G][16] weight scales of each pair's 16 columns (+16 for alignment)
  std::vector<float> sxp;    // [32][G] activation scales of a partial 32-row block, zero-padded
  std::vector<int8_t> apad;  // [32][K] activation codes of a partial 32-row block, zero-padded (+64)
  std::vector<float> lup;    // [pairs/2][R][32] L_up of each 32-column block, transposed for the epilogue (+16)
};
thread_local Scratch t_scratch;

// One 32-row block × NB column blocks of 32 (NB·4 panels from p).
template <int NB>
SVDQ_TARGET_AMX void block(const Ctx& c, int64_t m, int rows_, const int8_t* abase, const float* sxb, int64_t p,
                           int64_t p1, const int8_t* bw, const float* swv, const float* lupw) {
  const int64_t K = c.a->K, G = c.G;
  // C tiles of the last kLag + 1 groups: group g's products are stored while the tile stores of g − 1 may still be
  // in flight, so the rescale runs kLag groups behind (its loads would otherwise wait for the tile stores).
  alignas(64) int32_t cb[kLag + 1][8][256];  // [group mod (kLag + 1)][C tile jb·4 + t]
  alignas(64) float fa[32][64];
  Rescale pend[kLag];  // pend[0]: the group rescaled next
  for (auto& r : pend) r.G = G;
  int slot = 0;
  for (int64_t g = 0; g < G; ++g) {
    _tile_loadd(4, abase + g * 64, K);
    _tile_loadd(5, abase + 16 * K + g * 64, K);
    int32_t(*out)[256] = cb[slot];
    products<NB>(bw + g * kTileBytes, bw + (G + g) * kTileBytes, out, pend[0], 0, fa);
    if (NB == 2)
      products<NB>(bw + (2 * G + g) * kTileBytes, bw + (3 * G + g) * kTileBytes, out + 4, pend[0], 4, fa);
    else
      for (int q = 4; q < 8; ++q) chunk<NB>(pend[0], q, fa);
    for (int l = 0; l + 1 < kLag; ++l) pend[l] = pend[l + 1];
    Rescale& r = pend[kLag - 1];
    r.cb = out;
    r.sx = sxb + g;
    r.first = g == 0;
    for (int v = 0; v < 2 * NB; ++v) r.sw[v] = _mm512_load_ps(swv + (v * G + g) * 16);
    slot = slot == kLag ? 0 : slot + 1;
  }
  for (int l = 0; l < kLag; ++l)
    for (int q = 0; q < 8; ++q) chunk<NB>(pend[l], q, fa);
  for (int jb = 0; jb < NB; ++jb) {
    const int64_t pj = p + 4 * jb;
    if (pj >= p1) break;
    epilogue_avx512(c, m, rows_, pj, pj + 2 < p1 ? 2 : 1, &fa[0][32 * jb], 64,
                    lupw ? lupw + jb * c.a->R * 32 : nullptr);
  }
}

}  // namespace

SVDQ_TARGET_AMX void tile_amx(const Ctx& c, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const W4A4Args& a = *c.a;
  const int64_t K = a.K, G = c.G;
  // Even number of column pairs: a missing last pair unpacks from the zero stand-in (its columns are not stored).
  const int64_t pairs = ((p1 - p0 + 1) / 2 + 1) / 2 * 2;
  Scratch& s = t_scratch;
  int8_t* bw = align64(s.bw, pairs * G * kTileBytes);
  float* swv = align64(s.sw, pairs * G * 16);
  for (int64_t j = 0; j < pairs; ++j)
    for (int64_t g = 0; g < G; ++g) {
      unpack_pair(c, p0 + 2 * j, g, bw + (j * G + g) * kTileBytes);
      _mm512_store_ps(swv + (j * G + g) * 16,
                      load_pair_ps(panel_s(c, p0 + 2 * j) + g * kPanel, panel_s(c, p0 + 2 * j + 1) + g * kPanel));
    }

  // L_up of each 32-column block (4 panels), transposed once per task instead of once per 32-row block.
  float* lupw = nullptr;
  if (a.lup) {
    lupw = align64(s.lup, pairs / 2 * a.R * 32);
    for (int64_t j = 0; j < pairs; j += 2) {
      const int64_t pj = p0 + 2 * j;
      if (pj >= p1) break;
      transpose_lup_avx512(c, pj, pj + 2 < p1 ? 2 : 1, lupw + j / 2 * a.R * 32);
    }
  }

  const TileConfig cfg = full_tiles();
  _tile_loadconfig(&cfg);
  for (int64_t m = m0; m < m1; m += 32) {
    const int rows_ = static_cast<int>(std::min<int64_t>(32, m1 - m));
    const int8_t* abase = a.codes + m * K;
    const float* sxb = a.ascales + m * G;
    if (m + 32 > a.M) {  // the tiles read 32 rows: the last rows and their scales, zero-padded
      int8_t* ap = align64(s.apad, 32 * K);
      std::memset(ap, 0, 32 * K);
      std::memcpy(ap, abase, (a.M - m) * K);
      abase = ap;
      if (static_cast<int64_t>(s.sxp.size()) < 32 * G) s.sxp.resize(32 * G);
      std::fill(s.sxp.begin(), s.sxp.end(), 0.f);
      std::memcpy(s.sxp.data(), sxb, (a.M - m) * G * sizeof(float));
      sxb = s.sxp.data();
    }
    for (int64_t j = 0; j < pairs; j += 4) {
      const int64_t pj = p0 + 2 * j;
      if (pairs - j >= 4 && pj + 4 < p1)
        block<2>(c, m, rows_, abase, sxb, pj, p1, bw + j * G * kTileBytes, swv + j * G * 16,
                 lupw ? lupw + j / 2 * a.R * 32 : nullptr);
      else
        block<1>(c, m, rows_, abase, sxb, pj, p1, bw + j * G * kTileBytes, swv + j * G * 16,
                 lupw ? lupw + j / 2 * a.R * 32 : nullptr);
    }
  }
  _tile_release();
}

}  // namespace w4a4
}  // namespace svdq
#endif  // SVDQ_X86
