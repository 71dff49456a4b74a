// Peak-throughput microbenchmarks of this machine, for the "fraction of peak" column of the benchmarks:
// f32 FMA (vfmadd231ps ymm: 8 lanes × 2 flops) and int8 vpmaddubsw (32 u8×s8 products per instruction).
// Each pool thread runs independent dependency chains (enough to cover latency × ports) for `iters` steps.
#include <immintrin.h>

#include <atomic>
#include <chrono>

#include "common.h"

namespace svdq {

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

// Returns operations per second over all pool threads: kind 0 → f32 flops, kind 1 → int8 multiply-adds (MACs).
double peak_ops(int kind, int64_t iters) {
  if (!cpu_has_avx2_fma()) throw KernelError("peak microbenchmarks need AVX2+FMA");
  const int threads = num_threads();
  std::atomic<int64_t> sink{0};
  const auto t0 = std::chrono::steady_clock::now();
  parallel_for(threads, [&](int64_t t, int) {
    if (kind == 0)
      sink += static_cast<int64_t>(fma_loop(iters, 1.f + t));
    else
      sink += maddubs_loop(iters, static_cast<int>(t));
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double per_iter = kind == 0 ? 12.0 * 16 : 12.0 * 32;
  return threads * iters * per_iter / s + (sink.load() == 42 ? 1e-9 : 0);
}

}  // namespace svdq
