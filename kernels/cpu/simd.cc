#include "simd.h"

#include <cmath>
#include <cstdint>

#if SVDQ_X86
namespace svdq {

__attribute__((target("avx2,fma"))) void gelu_avx2(float* v, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, gelu256(_mm256_loadu_ps(v + i)));
  if (i < n) {
    float tmp[8] = {0};
    for (int64_t j = i; j < n; ++j) tmp[j - i] = v[j];
    _mm256_storeu_ps(tmp, gelu256(_mm256_loadu_ps(tmp)));
    for (int64_t j = i; j < n; ++j) v[j] = tmp[j - i];
  }
}

}  // namespace svdq
#endif  // SVDQ_X86
