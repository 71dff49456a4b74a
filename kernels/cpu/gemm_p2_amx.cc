// The int4p2 layer's GEMM on AMX-BF16 tiles (p2_layer.h). One tdpbf16ps adds a 16×32 bf16 activation tile times a
// 16(K pairs)×16(columns)×2 bf16 weight tile (the packed layout is exactly this tile, 1 KiB contiguous) into a 16×16
// f32 C tile. Blocks of 32 rows × 32 columns (tiles 0-3 C, 4-5 A, 6-7 B: 4 products per 2 A + 2 B loads); the C
// tiles stay in the tile unit over a K chunk of up to kChunk columns, so no per-group rescale exists (the int4p2
// scales are per row × per column, applied once in the epilogue).
// Cache blocking: a task is kTaskRows rows × kTaskCols columns; for each K chunk it runs its column blocks (outer)
// over its row blocks (inner), so a column block's weight chunk (32 × kChunk bf16) is reused from L2 by all row
// blocks and the task's activation chunk from L2/L3 by all column blocks. On the dev Xeon this loop runs at ≈ 30 %
// of the tdpbf16ps peak (docs/benchmarks.md "int4p2 layer on the CPU"): tile loads streamed from L2 for both
// operands, not the tile products, bound it.
// Partial sums of all but the last chunk go to an f32 buffer (tilestored / tileloadd, 4 KiB per block and chunk).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "p2_layer.h"
#include "simd.h"

#define SVDQ_TARGET_AMXBF \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,amx-tile,amx-bf16")))

namespace svdq {
namespace p2 {

namespace {


constexpr int64_t kTaskRows = 128, kTaskCols = 256;
// K columns per chunk (a multiple of 32); Kt up to 1.5 chunks runs in one. Measured on the dev Xeon (1 thread,
// M = 1024, K = N = 3072): chunks of 384, 1536 and the whole K within 10 % of each other (≈ 420–460 GMAC/s).
constexpr int64_t kChunk = 4096;

struct Scratch {
  std::vector<float> c;  // partial sums [row blocks][column blocks][4][256]
};
thread_local Scratch t_scratch;

}  // namespace

namespace {

// One task of gemm_amx (a lambda does not inherit the target attribute, so the tile code lives here).
SVDQ_TARGET_AMXBF void amx_task(const GemmArgs& a, int64_t task, int64_t tn, int64_t chunks, int64_t csteps) {
  const int64_t Kt = a.Kt, KC32 = Kt / 32;
  const int64_t Mp = round_up(a.M, 32), Np = round_up(a.N, 32);
  {
    const int64_t mt0 = (task / tn) * kTaskRows, nt0 = (task % tn) * kTaskCols;
    const int64_t mt1 = std::min(Mp, mt0 + kTaskRows), nt1 = std::min(Np, nt0 + kTaskCols);
    const int64_t ib_n = (mt1 - mt0) / 32, jb_n = (nt1 - nt0) / 32;
    float* cbuf = nullptr;
    if (chunks > 1) {
      std::vector<float>& v = t_scratch.c;
      const size_t need = static_cast<size_t>(ib_n * jb_n * 1024 + 16);
      if (v.size() < need) v.resize(need);
      cbuf = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(v.data()) + 63) & ~uintptr_t{63});
    }
    TileConfig cfg;
    for (int t = 0; t < 8; ++t) {
      cfg.colsb[t] = 64;
      cfg.rows[t] = 16;
    }
    _tile_loadconfig(&cfg);
    alignas(64) float out[32 * 32];
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int64_t s0 = ch * csteps, s1 = std::min(KC32, s0 + csteps);
      if (s0 >= s1) break;
      const bool first = ch == 0, last = s1 == KC32;
      for (int64_t jb = 0; jb < jb_n; ++jb) {
        const int64_t n0 = nt0 + 32 * jb;
        const uint16_t* b0 = a.wop + ((n0 / 32) * KC32 + s0) * 1024;  // columns n0..n0+15; n0+16..n0+31 follow
        const uint16_t* b1 = b0 + 512;
        for (int64_t ib = 0; ib < ib_n; ++ib) {
          const int64_t m0 = mt0 + 32 * ib;
          float* cb = cbuf ? cbuf + (ib * jb_n + jb) * 1024 : nullptr;
          if (first) {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
          } else {
            _tile_loadd(0, cb, 64);
            _tile_loadd(1, cb + 256, 64);
            _tile_loadd(2, cb + 512, 64);
            _tile_loadd(3, cb + 768, 64);
          }
          const uint16_t* a0 = a.aop + ((m0 / 32) * KC32 + s0) * 1024;  // rows m0..m0+15; m0+16..m0+31 follow
          const uint16_t* a1 = a0 + 512;
          for (int64_t s = 0; s < s1 - s0; ++s) {
            _tile_loadd(4, a0 + 1024 * s, 64);
            _tile_loadd(6, b0 + 1024 * s, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_loadd(7, b1 + 1024 * s, 64);
            _tile_dpbf16ps(1, 4, 7);
            _tile_loadd(5, a1 + 1024 * s, 64);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
          }
          if (!last) {
            _tile_stored(0, cb, 64);
            _tile_stored(1, cb + 256, 64);
            _tile_stored(2, cb + 512, 64);
            _tile_stored(3, cb + 768, 64);
            continue;
          }
          _tile_stored(0, out, 128);
          _tile_stored(1, out + 16, 128);
          _tile_stored(2, out + 16 * 32, 128);
          _tile_stored(3, out + 16 * 32 + 16, 128);
          if (m0 >= a.M || n0 >= a.N) continue;
          epilogue_rows(a, m0, static_cast<int>(std::min<int64_t>(32, a.M - m0)), n0,
                        static_cast<int>(std::min<int64_t>(32, a.N - n0)), out, 32);
        }
      }
    }
    _tile_release();
  }
}

}  // namespace

void gemm_amx(const GemmArgs& a) {
  const int64_t KC32 = a.Kt / 32;
  const int64_t Mp = round_up(a.M, 32), Np = round_up(a.N, 32);
  const int64_t tm = (Mp + kTaskRows - 1) / kTaskRows, tn = (Np + kTaskCols - 1) / kTaskCols;
  // chunk boundaries (multiples of 32 columns): one chunk when Kt ≤ 1.5·kChunk
  const int64_t chunks = a.Kt <= kChunk * 3 / 2 ? 1 : (a.Kt + kChunk - 1) / kChunk;
  const int64_t csteps = (KC32 + chunks - 1) / chunks;  // 32-column steps per chunk
  parallel_for(tm * tn, [&](int64_t task, int) { amx_task(a, task, tn, chunks, csteps); });
}

}  // namespace p2
}  // namespace svdq
