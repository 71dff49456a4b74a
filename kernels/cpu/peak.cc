// Peak-throughput microbenchmarks of this machine, for the "fraction of peak" column of the benchmarks:
// f32 FMA (vfmadd231ps ymm: 8 lanes × 2 flops; zmm: 16 lanes), int8 vpmaddubsw ymm (32 u8×s8 products per
// instruction), vpdpbusd zmm (64 products), AMX tdpbssd (16×16×64 = 16384 products per tile instruction), and the
// bf16 peaks of the int4p2 layer (p2_layer.h): AMX tdpbf16ps (16×16×32 = 8192 multiply-adds per tile instruction)
// and AVX512_BF16 vdpbf16ps zmm (32 multiply-adds per instruction).
// Each pool thread runs independent dependency chains (enough to cover latency × ports) for `iters` steps.
#include "x86.h"

#include <atomic>
#include <chrono>
#include <cstring>

#include "common.h"
#include "p2_layer.h"

namespace svdq {

#if SVDQ_X86
__attribute__((target("avx2,fma"))) static float fma_loop(int64_t iters, float seed) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(seed + i);
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], b, c);
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  return _mm256_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) static int maddubs_loop(int64_t iters, int seed) {
  __m256i a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_epi8(static_cast<char>(seed + i));
  const __m256i b = _mm256_set1_epi8(1);
  // vpmaddubsw(b, a) feeds back into a: a chain per register, 12 chains.
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) a[i] = _mm256_maddubs_epi16(b, a[i]);
  __m256i s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_epi16(s, a[i]);
  return _mm256_extract_epi32(s, 0);
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static float fma512_loop(int64_t iters, float seed) {
  __m512 a[16];
  for (int i = 0; i < 16; ++i) a[i] = _mm512_set1_ps(seed + i);
  const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) a[i] = _mm512_fmadd_ps(a[i], b, c);
  __m512 s = a[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static int dpbusd_loop(int64_t iters, int seed) {
  __m512i a[16];
  for (int i = 0; i < 16; ++i) a[i] = _mm512_set1_epi32(seed + i);
  const __m512i b = _mm512_set1_epi8(1), c = _mm512_set1_epi8(-1);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) a[i] = _mm512_dpbusd_epi32(a[i], b, c);
  __m512i s = a[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_epi32(s, a[i]);
  return _mm512_reduce_add_epi32(s);
}

// 4 independent C tiles (0-3) from 2 A (4, 5) and 2 B (6, 7) tiles held in registers (the GEMMs' 2×2 blocking):
// each step is 4 tdpbf16ps (Bf16, A/B ≈ 1.0 in bf16) or 4 tdpbssd (int8 in [-3, 3]).
template <bool Bf16>
__attribute__((target("amx-tile,amx-int8,amx-bf16,avx512f"))) static int64_t tile_loop(int64_t iters, int seed) {
  alignas(64) int8_t i8[1024];
  alignas(64) uint16_t bf16[512];
  if (Bf16)
    for (int i = 0; i < 512; ++i) bf16[i] = static_cast<uint16_t>(0x3f80 + ((i + seed) % 5));
  else
    for (int i = 0; i < 1024; ++i) i8[i] = static_cast<int8_t>((i + seed) % 7 - 3);
  const void* buf = Bf16 ? static_cast<const void*>(bf16) : static_cast<const void*>(i8);
  const TileConfig cfg = full_tiles();
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, buf, 64);
  _tile_loadd(5, buf, 64);
  _tile_loadd(6, buf, 64);
  _tile_loadd(7, buf, 64);
  for (int64_t it = 0; it < iters; ++it) {
    if (Bf16) {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    } else {
      _tile_dpbssd(0, 4, 6);
      _tile_dpbssd(1, 4, 7);
      _tile_dpbssd(2, 5, 6);
      _tile_dpbssd(3, 5, 7);
    }
  }
  alignas(64) int32_t out[256];
  _tile_stored(0, out, 64);
  _tile_release();
  if (!Bf16) return out[0];
  float f;
  std::memcpy(&f, out, sizeof f);
  return static_cast<int64_t>(f);
}

__attribute__((target("avx512f,avx512bw,avx512bf16"))) static float vdpbf16ps_loop(int64_t iters, int seed) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(seed + i));
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), w = (__m512bh)_mm512_set1_epi16(0x3380);  // 1, 2^-24
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], x, w);
  __m512 s = acc[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}
#endif  // SVDQ_X86

// Returns operations per second over all pool threads: kind 0 → f32 flops (AVX2 FMA), 1 → int8 multiply-adds
// (MACs) of vpmaddubsw ymm, 2 → f32 flops (AVX-512 FMA), 3 → MACs of vpdpbusd zmm, 4 → MACs of AMX tdpbssd,
// 5 → bf16 multiply-adds of AMX tdpbf16ps, 6 → bf16 multiply-adds of vdpbf16ps zmm.
double peak_ops(int kind, int64_t iters) {
  if (kind < 0 || kind > 6) throw KernelError("peak: kind must be 0 to 6");
  if (!cpu_has_avx2_fma()) throw KernelError("peak microbenchmarks need AVX2+FMA");
  if ((kind == 2 || kind == 3) && !cpu_has_avx512_vnni()) throw KernelError("this CPU has no AVX-512 VNNI");
  if (kind == 4 && !cpu_has_amx_int8()) throw KernelError("this CPU (or OS) has no AMX-INT8");
  if (kind == 5 && !cpu_has_amx_bf16()) throw KernelError("this CPU (or OS) has no AMX-BF16");
  if (kind == 6 && !p2::cpu_has_avx512_bf16()) throw KernelError("this CPU has no AVX512_BF16");
#if SVDQ_X86
  if (kind == 4 || kind == 5) iters /= 16;  // one step is 4 tile products of 16K (int8) or 8K (bf16) MACs
  const int threads = num_threads();
  std::atomic<int64_t> sink{0};
  const auto t0 = std::chrono::steady_clock::now();
  parallel_for(threads, [&](int64_t t, int) {
    switch (kind) {
      case 0: sink += static_cast<int64_t>(fma_loop(iters, 1.f + t)); break;
      case 1: sink += maddubs_loop(iters, static_cast<int>(t)); break;
      case 2: sink += static_cast<int64_t>(fma512_loop(iters, 1.f + t)); break;
      case 3: sink += dpbusd_loop(iters, static_cast<int>(t)); break;
      case 4: sink += tile_loop<false>(iters, static_cast<int>(t)); break;
      case 5: sink += tile_loop<true>(iters, static_cast<int>(t)); break;
      default: sink += static_cast<int64_t>(vdpbf16ps_loop(iters, static_cast<int>(t))); break;
    }
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  static constexpr double kPerIter[7] = {12.0 * 16, 12.0 * 32, 16.0 * 32, 16.0 * 64, 4.0 * 16 * 16 * 64,
                                         4.0 * 16 * 16 * 32, 16.0 * 32};
  return threads * iters * kPerIter[kind] / s + (sink.load() == 42 ? 1e-9 : 0);
#else
  throw KernelError("peak microbenchmarks need AVX2+FMA");  // cpu_has_avx2_fma() is false off x86
#endif  // SVDQ_X86
}

// The int4p2 layer's bf16 peaks (its binding's peakBf16): kind 0 tdpbf16ps, 1 vdpbf16ps = peak_ops kinds 5, 6.
double p2::peak_bf16(int kind, int64_t iters) {
  if (kind < 0 || kind > 1) throw KernelError("peakBf16: kind must be 0 (tdpbf16ps) or 1 (vdpbf16ps)");
  return peak_ops(5 + kind, iters);
}

}  // namespace svdq
