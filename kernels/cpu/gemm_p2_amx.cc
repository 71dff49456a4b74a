// The int4p2 layer's GEMM on AMX-BF16 tiles (p2_layer.h). One tdpbf16ps adds a 16×32 bf16 activation tile times a
// 16(K pairs)×16(columns)×2 bf16 weight tile (the packed layout is exactly this tile, 1 KiB contiguous) into a 16×16
// f32 C tile. Blocks of 32 rows × 32 columns (tiles 0-3 C, 4-5 A, 6-7 B: 4 products per 2 A + 2 B loads); no
// per-group rescale exists (the int4p2 scales are per row × per column, applied once in the epilogue).
//
// Cache blocking (GotoBLAS-style, sized for the dev Xeon: L1d 48 KiB, L2 2 MiB per core, and an L3 that feeds one
// core only ≈ 9–10 GB/s — kernels/cpu/bench/kernel_times.cc `p2loop`, docs/benchmarks.md "int4p2 GEMM blocking"):
// a task is up to kAmxTaskRows × kAmxTaskCols outputs over the whole K, cut into K chunks of kAmxChunkSteps 32-column
// steps (amx_plan.h).
// Per chunk the task runs its row blocks (outer) over its column blocks (inner): the row block's activation chunk
// (32 × 256 bf16 = 16 KiB) stays in L1 for all column blocks, the task's weight chunk (kAmxTaskCols × 256 bf16) is read
// from L2, the partial sums (kAmxTaskRows × kAmxTaskCols f32, tilestored / tileloadd per block and chunk) stay in L2, and
// the next chunk's activation and weight rows are prefetched into L2 a few lines per K step, so their L3 traffic
// overlaps the tile products. Each task reads its activations and weights from L3 once: 2·K·(rows + cols) bytes
// for rows·cols·K multiply-adds (96 per byte at 384 × 384), where the previous 128 × 256 tasks with whole-K blocks
// re-read them (≈ 43 per byte) and were bound by L3 at ≈ 30 % of the tile peak.
#include "x86.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "amx_partial.h"
#include "amx_plan.h"
#include "p2_layer.h"
#include "simd.h"

#if SVDQ_X86  // AMX only: the portable GEMM is gemm_p2.cc gemm_scalar
#define SVDQ_TARGET_AMXBF \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,amx-tile,amx-bf16")))

namespace svdq {
namespace p2 {

namespace {

// 8-step (256-column) chunks (amx_plan.h): 12-step chunks measured 436 GMAC/s, 16-step 401 (the 32 KiB activation
// chunk no longer stays in L1 beside the streamed weights), 4-step 481, against 542–545.
constexpr int64_t kSkinnyChunkSteps = 128;
using Plan = AmxPlan;

struct Scratch {
  std::vector<float> c;  // partial sums [row blocks][column blocks][4][256]
};
thread_local Scratch t_scratch;

#ifdef SVDQ_P2_TUNE
// Tuning hook for the timing harness only (never in the addon): P2_TR, P2_TC (task rows/columns), P2_KC (K columns
// per chunk).
int64_t env_or(const char* n, int64_t d) {
  const char* v = std::getenv(n);
  return v ? std::atoll(v) : d;
}
#endif

// One 32×32 block over K steps [s0, s1): C tiles zeroed (first chunk) or loaded from cb, 2×2 tile products per step,
// then stored to cb or (last chunk) through the epilogue.
SVDQ_TARGET_AMXBF inline void block32(const GemmArgs& a, int64_t m0, int64_t n0, int64_t s0, int64_t s1, bool first,
                                      bool last, float* cb, ChunkPrefetch& pf) {
  const int64_t KC32 = a.Kt / 32;
  c_tiles_resume(cb, first);
  const uint16_t* ap = a.aop + ((m0 / 32) * KC32 + s0) * 1024;  // rows m0..m0+15; m0+16..m0+31 follow (+512)
  const uint16_t* bp = a.wop + ((n0 / 32) * KC32 + s0) * 1024;  // columns n0..n0+15; n0+16..n0+31 follow
  for (int64_t s = s0; s < s1; ++s) {
    pf.step();
    _tile_loadd(4, ap, 64);
    _tile_loadd(6, bp, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_loadd(7, bp + 512, 64);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(5, ap + 512, 64);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
    ap += 1024;
    bp += 1024;
  }
  if (!last) {
    c_tiles_park(cb);
    return;
  }
  alignas(64) float out[32 * 32];
  _tile_stored(0, out, 128);
  _tile_stored(1, out + 16, 128);
  _tile_stored(2, out + 16 * 32, 128);
  _tile_stored(3, out + 16 * 32 + 16, 128);
  if (m0 >= a.M || n0 >= a.N) return;
  epilogue_rows(a, m0, static_cast<int>(std::min<int64_t>(32, a.M - m0)), n0,
                static_cast<int>(std::min<int64_t>(32, a.N - n0)), out, 32);
}

// One task of gemm_amx (a lambda does not inherit the target attribute, so the tile code lives here).
SVDQ_TARGET_AMXBF void amx_task(const GemmArgs& a, const Plan& p, int64_t task, int64_t tn) {
  const int64_t KC32 = a.Kt / 32;
  const int64_t Mp = round_up(a.M, 32), Np = round_up(a.N, 32);
  const int64_t mt0 = (task / tn) * p.task_rows, nt0 = (task % tn) * p.task_cols;
  const int64_t mt1 = std::min(Mp, mt0 + p.task_rows), nt1 = std::min(Np, nt0 + p.task_cols);
  const int64_t ib_n = (mt1 - mt0) / 32, jb_n = (nt1 - nt0) / 32;
  float* cbuf = nullptr;
  if (p.chunks > 1) cbuf = align64(t_scratch.c, static_cast<size_t>(ib_n * jb_n * 1024));
  const TileConfig cfg = full_tiles();
  _tile_loadconfig(&cfg);
  for (int64_t ch = 0; ch < p.chunks; ++ch) {
    const int64_t s0 = ch * p.csteps, s1 = ch + 1 == p.chunks ? KC32 : std::min(KC32, s0 + p.csteps);
    if (s0 >= s1) break;
    const bool first = ch == 0, last = s1 == KC32;
    ChunkPrefetch pf;  // the next chunk of the task's row blocks and column blocks (each steps · 2 KiB)
    if (p.prefetch && !last) {
      const int64_t n0s = s1, n1s = ch + 2 == p.chunks ? KC32 : std::min(KC32, s1 + p.csteps);
      pf.list[0] = {reinterpret_cast<const char*>(a.aop + ((mt0 / 32) * KC32 + n0s) * 1024), (n1s - n0s) * 2048,
                    KC32 * 2048, ib_n};
      pf.list[1] = {reinterpret_cast<const char*>(a.wop + ((nt0 / 32) * KC32 + n0s) * 1024), (n1s - n0s) * 2048,
                    KC32 * 2048, jb_n};
      pf.plan(ib_n * jb_n * (s1 - s0));
    }
    const int64_t outer_n = p.rows_outer ? ib_n : jb_n, inner_n = p.rows_outer ? jb_n : ib_n;
    for (int64_t o = 0; o < outer_n; ++o)
      for (int64_t i = 0; i < inner_n; ++i) {
        const int64_t ib = p.rows_outer ? o : i, jb = p.rows_outer ? i : o;
        block32(a, mt0 + 32 * ib, nt0 + 32 * jb, s0, s1, first, last, cbuf ? cbuf + (ib * jb_n + jb) * 1024 : nullptr,
                pf);
      }
  }
  _tile_release();
}

}  // namespace

void gemm_amx(const GemmArgs& a) {
  const int64_t KC32 = a.Kt / 32;
  const int64_t Mp = round_up(a.M, 32), Np = round_up(a.N, 32);
  Plan p = amx_plan(Mp, Np, kSkinnyChunkSteps);
#ifdef SVDQ_P2_TUNE
  p.task_rows = env_or("P2_TR", p.task_rows);
  p.task_cols = env_or("P2_TC", p.task_cols);
  p.csteps = env_or("P2_KC", p.csteps * 32) / 32;
  p.rows_outer = env_or("P2_ROWS_OUTER", p.rows_outer) != 0;
  p.prefetch = env_or("P2_L2PF", p.prefetch) != 0;
#endif
  amx_plan_split(p, Mp, Np, KC32, num_threads());
  const int64_t tm = (Mp + p.task_rows - 1) / p.task_rows, tn = (Np + p.task_cols - 1) / p.task_cols;
  parallel_for(tm * tn, [&](int64_t task, int) { amx_task(a, p, task, tn); });
}

}  // namespace p2
}  // namespace svdq
#endif  // SVDQ_X86
