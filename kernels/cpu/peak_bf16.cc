// bf16 peaks for the "of peak" column of the int4p2 layer (p2_layer.h): AMX tdpbf16ps (16×16×32 = 8192
// multiply-adds per tile instruction, 4 independent C tiles as the GEMM's 2×2 blocking) and AVX512_BF16 vdpbf16ps
// zmm (32 multiply-adds per instruction, 16 independent chains). Each pool thread runs its own loop.
#include <immintrin.h>

#include <atomic>
#include <chrono>

#include "p2_layer.h"

namespace svdq {
namespace p2 {

namespace {


__attribute__((target("amx-tile,amx-bf16,avx512f"))) float tdpbf16ps_loop(int64_t iters, int seed) {
  alignas(64) uint16_t buf[512];
  for (int i = 0; i < 512; ++i) buf[i] = static_cast<uint16_t>(0x3f80 + ((i + seed) % 5));  // ≈ 1.0
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
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
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  alignas(64) float out[256];
  _tile_stored(0, out, 64);
  _tile_release();
  return out[0];
}

__attribute__((target("avx512f,avx512bw,avx512bf16"))) float vdpbf16ps_loop(int64_t iters, int seed) {
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(seed + i));
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), w = (__m512bh)_mm512_set1_epi16(0x3380);  // 1, 2^-24
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], x, w);
  __m512 s = acc[0];
  for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

}  // namespace

// kind 0: AMX tdpbf16ps, 1: vdpbf16ps zmm. Returns bf16 multiply-adds per second over all pool threads.
double peak_bf16(int kind, int64_t iters) {
  if (kind < 0 || kind > 1) throw KernelError("peakBf16: kind must be 0 (tdpbf16ps) or 1 (vdpbf16ps)");
  if (kind == 0 && !cpu_has_amx_bf16()) throw KernelError("this CPU (or OS) has no AMX-BF16");
  if (kind == 1 && !cpu_has_avx512_bf16()) throw KernelError("this CPU has no AVX512_BF16");
  if (kind == 0) iters /= 16;  // one step is 4 tile products of 8192 multiply-adds
  const int threads = num_threads();
  std::atomic<int64_t> sink{0};
  const auto t0 = std::chrono::steady_clock::now();
  parallel_for(threads, [&](int64_t t, int) {
    const float r = kind == 0 ? tdpbf16ps_loop(iters, static_cast<int>(t)) : vdpbf16ps_loop(iters, static_cast<int>(t));
    sink += static_cast<int64_t>(r);
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double per_iter = kind == 0 ? 4.0 * 16 * 16 * 32 : 16.0 * 32;
  return threads * iters * per_iter / s + (sink.load() == 42 ? 1e-9 : 0);
}

}  // namespace p2
}  // namespace svdq
