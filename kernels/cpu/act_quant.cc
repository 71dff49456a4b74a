// Operator 1: fused activation quantize + low-rank down.
//   X [M,K] (f32 or bf16)  ->  X̂ = (X [+ shift]) / λ,   lora_act [M,R] = X̂ · L_downᵀ (f32; the TypeScript side
//   passes L_down·diag(λ) and removes the shift term, so callers get X·L_downᵀ in the checkpoint convention),
//   codes [M,K] int8 (one 4-bit code per byte) and scales [M,K/64] f32 of X̂ per token per 64 channels.
// INT4: scale = amax/7, code = clamp(rne(x̂·7/amax), -8, 7).  UINT4: x̂ = (x + shift)/λ (shift before the
// smoothing division, as Nunchaku's EpilogueQuantize does after GELU), scale = max/15, code in [0, 15].
#include "x86.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#include "group_max.h"
#include "lowrank_down.h"
#include "lowrank_down_avx2.h"
#include "simd.h"

namespace svdq {

static inline float bf16_to_f32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Quantizes one group of 64 smoothed values (scalar path; also used by the AVX2 path's tail-free groups).
static void quant_group_scalar(const float* xh, int format, float shift, int8_t* codes, float* scale) {
  if (format == kActInt4) {
    float amax = 0.f;
    for (int i = 0; i < kGroup; ++i) amax = std::fmax(amax, std::fabs(xh[i]));
    *scale = amax / 7.f;
    const float inv = amax > 0.f ? 7.f / amax : 0.f;
    for (int i = 0; i < kGroup; ++i) {
      float q = round_even(xh[i] * inv);
      codes[i] = static_cast<int8_t>(q > 7.f ? 7.f : (q < -8.f ? -8.f : q));
    }
  } else {
    float vmax = 0.f;  // xh already holds (x + shift)/λ; `shift` here is 0 (kept for the signature)
    for (int i = 0; i < kGroup; ++i) vmax = std::fmax(vmax, xh[i] + shift);
    *scale = vmax / 15.f;
    const float inv = vmax > 0.f ? 15.f / vmax : 0.f;
    for (int i = 0; i < kGroup; ++i) {
      float q = round_even((xh[i] + shift) * inv);
      codes[i] = static_cast<int8_t>(q > 15.f ? 15.f : (q < 0.f ? 0.f : q));
    }
  }
}

static bool load_row_scalar(const ActQuantArgs& a, int64_t m, float* xh) {
  const int64_t K = a.K;
  bool bad = false;
  for (int64_t k = 0; k < K; ++k) {
    float v = a.x_f32 ? a.x_f32[m * K + k] : bf16_to_f32(a.x_bf16[m * K + k]);
    if (a.format == kActUint4) v += a.shift;
    xh[k] = a.smooth ? v / a.smooth[k] : v;
    bad |= !std::isfinite(xh[k]);
  }
  return bad;
}

static bool row_scalar(const ActQuantArgs& a, int64_t m, float* xh) {
  const int64_t K = a.K, G = K / kGroup;
  if (load_row_scalar(a, m, xh)) return true;
  for (int64_t g = 0; g < G; ++g)
    quant_group_scalar(xh + g * kGroup, a.format, 0.f, a.codes + m * K + g * kGroup, a.scales + m * G + g);
  for (int64_t r = 0; r < a.R; ++r) {
    const float* l = a.ldown + r * K;
    float s = 0.f;
    for (int64_t k = 0; k < K; ++k) s += xh[k] * l[k];
    a.lora_act[m * a.R + r] = s;
  }
  return false;
}

#if SVDQ_X86
__attribute__((target("avx2,fma"))) static bool row_avx2(const ActQuantArgs& a, int64_t m, float* xh) {
  const int64_t K = a.K, G = K / kGroup;
  const __m256 zero = _mm256_setzero_ps();
  __m256 bad = zero;  // lanes where x̂·0 != 0, i.e. x̂ is NaN or ±Inf
  // X̂ = X / λ: one division per element like the scalar path, so both paths give identical codes.
  for (int64_t k = 0; k < K; k += 8) {
    __m256 v;
    if (a.x_f32) {
      v = _mm256_loadu_ps(a.x_f32 + m * K + k);
    } else {
      __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.x_bf16 + m * K + k));
      v = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    if (a.format == kActUint4) v = _mm256_add_ps(v, _mm256_set1_ps(a.shift));
    if (a.smooth) v = _mm256_div_ps(v, _mm256_loadu_ps(a.smooth + k));
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_mul_ps(v, zero), zero, _CMP_NEQ_UQ));
    _mm256_storeu_ps(xh + k, v);
  }
  if (_mm256_movemask_ps(bad)) return true;
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const bool s4 = a.format == kActInt4;
  const __m256 lo = _mm256_set1_ps(s4 ? -8.f : 0.f), hi = _mm256_set1_ps(s4 ? 7.f : 15.f);
  const __m256 sh = _mm256_setzero_ps();  // the shift was added before the λ division above
  for (int64_t g = 0; g < G; ++g) {
    const float* p = xh + g * kGroup;
    __m256 mx = _mm256_setzero_ps();
    __m256 v[8];
    for (int j = 0; j < 8; ++j) {
      v[j] = _mm256_add_ps(_mm256_loadu_ps(p + 8 * j), sh);
      mx = _mm256_max_ps(mx, s4 ? _mm256_and_ps(v[j], absmask) : v[j]);
    }
    const float amax = hmax256(mx);
    const float qmax = s4 ? 7.f : 15.f;
    a.scales[m * G + g] = amax / qmax;
    const __m256 inv = _mm256_set1_ps(amax > 0.f ? qmax / amax : 0.f);
    int8_t* c = a.codes + m * K + g * kGroup;
    for (int j = 0; j < 8; j += 4) {
      __m256i q[4];
      for (int t = 0; t < 4; ++t) {
        __m256 r = _mm256_round_ps(_mm256_mul_ps(v[j + t], inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q[t] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
      }
      // pack 32 int32 -> 32 int8 keeping order
      __m256i p01 = _mm256_packs_epi32(q[0], q[1]);  // lanes interleaved by 128-bit halves
      __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
      __m256i b = _mm256_packs_epi16(p01, p23);
      b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + 8 * j), b);
    }
  }
  return false;
}

// ---------------- AVX-512 (Isa::Avx512 and Isa::Amx) ----------------
// X̂ = (X [+ shift])·(1/λ) with the reciprocal computed once per call (a 16-lane division per element would cost
// more than the rest of the pass); x·(1/λ) and x/λ differ by at most one ulp, which moves a code only at a
// rounding tie (the tests allow exactly that).
SVDQ_TARGET_AVX512 static bool row_avx512(const ActQuantArgs& a, const float* inv_smooth, int64_t m, float* xh) {
  const int64_t K = a.K, G = K / kGroup;
  const __m512 zero = _mm512_setzero_ps();
  const __m512 shift = _mm512_set1_ps(a.format == kActUint4 ? a.shift : 0.f);
  __mmask16 bad = 0;  // lanes where x̂·0 != 0, i.e. x̂ is NaN or ±Inf
  for (int64_t k = 0; k < K; k += 16) {
    __m512 v;
    if (a.x_f32) {
      v = _mm512_loadu_ps(a.x_f32 + m * K + k);
    } else {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.x_bf16 + m * K + k));
      v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    v = _mm512_add_ps(v, shift);
    if (inv_smooth) v = _mm512_mul_ps(v, _mm512_loadu_ps(inv_smooth + k));
    bad |= _mm512_cmp_ps_mask(_mm512_mul_ps(v, zero), zero, _CMP_NEQ_UQ);
    _mm512_storeu_ps(xh + k, v);
  }
  if (bad) return true;
  const bool s4 = a.format == kActInt4;
  const float qmax = s4 ? 7.f : 15.f;
  const __m512 lo = _mm512_set1_ps(s4 ? -8.f : 0.f), hi = _mm512_set1_ps(qmax), qv = _mm512_set1_ps(qmax);
  // 16 groups at a time: their maxima in one reduction tree, scale = amax/qmax and 1/scale = qmax/amax (0 for an
  // all-zero group) by vector divisions (IEEE, the same values as the scalar ones).
  for (int64_t g0 = 0; g0 < G; g0 += 16) {
    const int ng = static_cast<int>(std::min<int64_t>(16, G - g0));
    __m512 mx[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
      mx[i] = zero;
      if (i < ng) {
        const float* p = xh + (g0 + i) * kGroup;
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          const __m512 v = _mm512_loadu_ps(p + 16 * j);
          mx[i] = _mm512_max_ps(mx[i], s4 ? _mm512_abs_ps(v) : v);
        }
      }
    }
    const __m512 amax = groupmax::reduce16(mx);
    const __mmask16 live = static_cast<__mmask16>((1u << ng) - 1u);
    _mm512_mask_storeu_ps(a.scales + m * G + g0, live, _mm512_div_ps(amax, qv));
    alignas(64) float inv[16];
    _mm512_store_ps(inv, _mm512_maskz_div_ps(_mm512_cmp_ps_mask(amax, zero, _CMP_GT_OQ), qv, amax));
    for (int i = 0; i < ng; ++i) {
      const float* p = xh + (g0 + i) * kGroup;
      const __m512 iv = _mm512_set1_ps(inv[i]);
      int8_t* c = a.codes + m * K + (g0 + i) * kGroup;
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(p + 16 * j), iv),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m512i q = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(r, lo), hi));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(c + 16 * j), _mm512_cvtepi32_epi8(q));
      }
    }
  }
  return false;
}

constexpr int64_t kRowsLr = 3 * lowrank::kMR;  // rows per task with a branch: 3 row tiles of the down-projection
// AVX2: 2 row tiles (M = 256 still gives 22 tasks for the threads to share); 12, 18, 24 and 36 rows measured
// within the noise (1 thread, M = 1024, K = 3072, R = 32, EPYC Zen 3, 2026-12-07).
constexpr int64_t kRowsLr8 = 2 * lowrank2::kMR;
#endif  // SVDQ_X86

// Buffers kept across calls, per thread: X̂ rows and the branch's partial sums of a task (pool threads), L_downᵀ
// (the calling thread). Allocated per call (432 + 393 KiB at K = 3072, R = 32: above glibc's mmap threshold, so
// fresh pages every call) they cost 0.37 ms of the 1.6 ms pass without its FMAs (dev Xeon, 1 thread, M = 1024).
struct ActScratch {
  std::vector<float> xh, acc;
};
thread_local ActScratch t_act;
thread_local std::vector<float> t_ldt;

int64_t act_quant(const ActQuantArgs& a) {
  if (a.K % kGroup != 0) throw KernelError("act_quant: K must be a multiple of 64");
#if SVDQ_X86
  const bool avx512 = isa_at_least(Isa::Avx512);
  const bool avx = isa_at_least(Isa::Avx2);
  std::vector<float> inv_smooth;
  if (avx512 && a.smooth) {
    inv_smooth.resize(a.K);
    for (int64_t k = 0; k < a.K; ++k) inv_smooth[k] = 1.f / a.smooth[k];
  }
  // AVX2 / AVX-512: L_downᵀ [K][Rp] (lowrank_down.h), the prepared layer's or transposed once per call into a
  // buffer of the calling thread.
  const int64_t Rp = lowrank::rank_pad(a.R);
  const float* ldt = !(avx && a.R > 0) ? nullptr
                     : a.ldown_t     ? a.ldown_t
                                     : lowrank::transpose_down(a.ldown, a.R, a.K, t_ldt);
  // Rows per task with a branch: kRowsLr on AVX-512, kRowsLr8 on AVX2 (the down-projection's row tiles share each
  // block of L_downᵀ); else 8.
  const int64_t rows_per_task = a.R == 0 ? 8 : avx512 ? kRowsLr : avx ? kRowsLr8 : 8;
#else
  const int64_t rows_per_task = 8;
#endif  // SVDQ_X86
  std::atomic<int64_t> first_bad{a.M};
  parallel_for((a.M + rows_per_task - 1) / rows_per_task, [&](int64_t t, int) {
    ActScratch& s = t_act;
    if (s.xh.size() < static_cast<size_t>(a.K * rows_per_task)) s.xh.resize(a.K * rows_per_task);
    float* xh = s.xh.data();
    const int64_t m0 = t * rows_per_task, m1 = std::min(a.M, (t + 1) * rows_per_task);
    bool any_bad = false;
    for (int64_t m = m0; m < m1; ++m) {
      float* row = xh + (m - m0) * a.K;
#if SVDQ_X86
      const bool bad = avx512 ? row_avx512(a, a.smooth ? inv_smooth.data() : nullptr, m, row)
                       : avx  ? row_avx2(a, m, row)
                              : row_scalar(a, m, row);
#else
      const bool bad = row_scalar(a, m, row);
#endif  // SVDQ_X86
      any_bad |= bad;
      if (bad) {
        int64_t cur = first_bad.load();
        while (m < cur && !first_bad.compare_exchange_weak(cur, m)) {
        }
      }
    }
#if SVDQ_X86
    if (avx512 && !any_bad && a.R > 0) {
      float* acc = align64(s.acc, rows_per_task * Rp);
      lowrank::down_rows(xh, a.K, m1 - m0, a.K, ldt, a.R, acc, a.lora_act + m0 * a.R, a.R);
    } else if (avx && !any_bad && a.R > 0) {
      float* acc = align64(s.acc, rows_per_task * Rp);
      lowrank2::down_rows(xh, a.K, m1 - m0, a.K, ldt, a.R, acc, a.lora_act + m0 * a.R, a.R);
    }
#endif  // SVDQ_X86
  });
  const int64_t fb = first_bad.load();
  return fb == a.M ? -1 : fb;
}

}  // namespace svdq
