// Microbenchmark behind the AMX W4A4 kernel's design (gemm_w4a4_amx.cc; numbers in docs/benchmarks.md, "AMX W4A4,
// third pass"): how long one 16×16×64 tdpbssd tile product takes with the work the W4A4 GEMM attaches to it.
// Per group of 4 products (2×2 C tiles, 32 tokens × 32 columns): tile zero, 4 tile loads, 4 tdpbssd, 4 tilestored
// ("tiles"), and the per-64-channel-group f32 rescale of the previous group's C tiles with AVX-512 (64 vectors of
// 16 outputs: load int32, convert, multiply the scales, FMA into the f32 sums; "rescale"). Compares each part
// alone, both together, and both with no data dependency between them (does the core overlap tile and AVX-512
// work?), plus the cost of tile rows that straddle cache lines.
//
// Build and run on a Linux x86-64 machine with AMX (not part of the addon or of CI):
//   g++ -O2 -Ikernels/cpu -mamx-tile -mamx-int8 -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma \
//       kernels/cpu/bench/amx_rescale_overlap.cc -o /tmp/amx_overlap && /tmp/amx_overlap
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "common.h"  // TileConfig, full_tiles

using svdq::full_tiles;
using svdq::TileConfig;

namespace {

double thread_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

alignas(64) int8_t g_a[4096 + 64];
alignas(64) int8_t g_b[4096 + 64];
alignas(64) int32_t g_other[4][256];  // a C buffer the tiles never write

enum Mode { kTiles, kTilesRescale, kRescale, kTilesRescaleIndependent, kTilesUnaligned };

template <Mode MODE>
__attribute__((noinline)) float run(int64_t groups) {
  alignas(64) int32_t cb[2][4][256] = {};
  alignas(64) float fa[32][32] = {};
  alignas(64) float sx[32];
  for (int i = 0; i < 32; ++i) sx[i] = 1.f + 1e-3f * static_cast<float>(i);
  const __m512 sw0 = _mm512_set1_ps(1.0001f), sw1 = _mm512_set1_ps(0.9999f);
  const int off = MODE == kTilesUnaligned ? 16 : 0;  // 16 bytes: where malloc'ed buffers usually start
  for (int64_t g = 0; g < groups; ++g) {
    if (MODE != kRescale) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      _tile_loadd(4, g_a + off, 64);
      _tile_loadd(5, g_a + off + 1024, 64);
      _tile_loadd(6, g_b + off, 64);
      _tile_loadd(7, g_b + off + 1024, 64);
      _tile_dpbssd(0, 4, 6);
      _tile_dpbssd(1, 4, 7);
      _tile_dpbssd(2, 5, 6);
      _tile_dpbssd(3, 5, 7);
      int32_t(*out)[256] = cb[g & 1];
      _tile_stored(0, out[0], 64);
      _tile_stored(1, out[1], 64);
      _tile_stored(2, out[2], 64);
      _tile_stored(3, out[3], 64);
    }
    if (MODE == kTilesRescale || MODE == kRescale || MODE == kTilesRescaleIndependent) {
      const int32_t(*pc)[256] = MODE == kTilesRescaleIndependent ? g_other : cb[(g + 1) & 1];
      for (int i = 0; i < 32; ++i) {
        const int t = (i >> 4) * 2, row = (i & 15) * 16;
        const __m512 x = _mm512_set1_ps(sx[i]);
        _mm512_store_ps(fa[i], _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(pc[t] + row)),
                                               _mm512_mul_ps(sw0, x), _mm512_load_ps(fa[i])));
        _mm512_store_ps(fa[i] + 16, _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(pc[t + 1] + row)),
                                                    _mm512_mul_ps(sw1, x), _mm512_load_ps(fa[i] + 16)));
      }
    }
    asm volatile("" : : "r"(cb), "r"(fa) : "memory");
  }
  return fa[3][3] + static_cast<float>(cb[0][1][2]);
}

}  // namespace

int main() {
  // Linux keeps the AMX tile state off until the process asks for it (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
  if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) {
    std::puts("no AMX tile state from the OS");
    return 1;
  }
  const TileConfig cfg = full_tiles();
  _tile_loadconfig(&cfg);
  std::memset(g_a, 1, sizeof g_a);
  std::memset(g_b, 1, sizeof g_b);
  struct Case {
    const char* name;
    float (*fn)(int64_t);
  } cases[] = {
      {"tiles (zero, 4 loads, 4 tdpbssd, 4 tilestored)", run<kTiles>},
      {"tiles, tile rows 16 bytes off a cache line", run<kTilesUnaligned>},
      {"f32 rescale of 4 C tiles alone", run<kRescale>},
      {"tiles + rescale of the previous group", run<kTilesRescale>},
      {"tiles + rescale of a buffer the tiles never write", run<kTilesRescaleIndependent>},
  };
  const int64_t groups = 200000;
  volatile float sink = 0;
  for (int round = 0; round < 2; ++round)
    for (const Case& c : cases) {
      const double t0 = thread_seconds();
      sink = sink + c.fn(groups);
      const double s = thread_seconds() - t0;
      std::printf("%-52s %6.2f ns per tile product\n", c.name, s / (4.0 * groups) * 1e9);
    }
  return 0;
}
