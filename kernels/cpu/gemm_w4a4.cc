// Operator 2: W4A4 GEMM with the fused epilogue.
//   Y [M,N] = Σ_g (codes_x[m,g·64:(g+1)·64] · codes_w[n, same]) · s_x[m,g] · s_w[n,g]
//             + lora_act [M,R] · L_upᵀ + bias,  then optional GELU(tanh).
// Weights are stored as unsigned nibbles u = w + 8 (see layout.ts "W4A4 weight panel"), so the AVX2 path
// multiplies them with the signed activation bytes by vpmaddubsw (unsigned × signed) and removes the offset
// per group exactly:  Σ (w+8)·x = Σ w·x + 8·Σ x.
// Pair sums of vpmaddubsw are ≤ 2·15·15 = 450 in magnitude, 16 of them (one group) ≤ 7200 < 2^15, so one
// group accumulates in int16 without saturation before a single vpmaddwd widens it to int32 (the AVX2 path starts
// each group's lanes at −8·Σx, which keeps them within int16 too: see micro_avx2).
#include "x86.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#include "simd.h"
#include "w4a4_internal.h"

namespace svdq {

namespace {

using w4a4::Ctx;
using w4a4::kPanel;
using w4a4::kPanelGroupBytes;
constexpr int64_t kMB = 48;        // rows per task (a multiple of the 4- and 8-row micro-tiles)
constexpr int64_t kAmxMB = 256;    // rows per AMX task (8 blocks of 32 tokens share one weight unpack)
constexpr int64_t kNBPanels = 8;   // panels per task (64 columns)
constexpr int64_t kAmxTileBudget = 768 * 1024;  // bytes of unpacked weight tiles per AMX task (2 MiB L2 per core)
static_assert(kNBPanels % 4 == 0, "the AVX-512 and AMX paths cover panels in pairs (and pairs of pairs)");

inline float gelu1(float x) {
  return 0.5f * x * (1.f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

// Epilogue shared by both paths for one row segment of up to 8 columns of panel p.
inline void store_row(const Ctx& c, int64_t m, int64_t p, float* v /* [8] with lora+bias already added */) {
  const W4A4Args& a = *c.a;
  const int64_t n0 = p * kPanel;
  const int64_t cnt = std::min<int64_t>(kPanel, a.N - n0);
  for (int64_t j = 0; j < cnt; ++j) a.y[m * a.N + n0 + j] = v[j];
}

// ---------------- scalar ----------------
void tile_scalar(const Ctx& c, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const W4A4Args& a = *c.a;
  const int64_t K = a.K, G = c.G;
  for (int64_t p = p0; p < p1; ++p) {
    const uint8_t* wp = a.qweight + p * G * kPanelGroupBytes;
    const float* sp = a.wscales + p * G * kPanel;
    for (int64_t m = m0; m < m1; ++m) {
      const int8_t* x = a.codes + m * K;
      float acc[kPanel] = {0};
      for (int64_t g = 0; g < G; ++g) {
        const uint8_t* wg = wp + g * kPanelGroupBytes;
        int32_t dot[kPanel] = {0};
        for (int q = 0; q < 8; ++q)
          for (int col = 0; col < kPanel; ++col)
            for (int t = 0; t < 4; ++t) {
              const uint8_t b = wg[q * 32 + col * 4 + t];
              dot[col] += (b & 15) * x[g * 64 + 8 * q + t] + (b >> 4) * x[g * 64 + 8 * q + 4 + t];
            }
        const float sx = a.ascales[m * G + g];
        const int32_t off = 8 * c.xsum[m * G + g];
        for (int col = 0; col < kPanel; ++col)
          acc[col] += static_cast<float>(dot[col] - off) * (sp[g * kPanel + col] * sx);
      }
      for (int col = 0; col < kPanel; ++col) {
        float v = acc[col];
        if (a.lup)
          for (int64_t r = 0; r < a.R; ++r) v += a.lora_act[m * a.R + r] * a.lup[(p * a.R + r) * kPanel + col];
        const int64_t n = p * kPanel + col;
        if (a.bias && n < a.N) v += a.bias[n];
        if (a.gelu) v = gelu1(v);
        acc[col] = v;
      }
      store_row(c, m, p, acc);
    }
  }
}

#if SVDQ_X86
// ---------------- AVX2 ----------------
template <int MR, int NP>
__attribute__((target("avx2,fma"))) void micro_avx2(const Ctx& c, int64_t m, int64_t p) {
  const W4A4Args& a = *c.a;
  const int64_t K = a.K, G = c.G;
  const __m256i nib = _mm256_set1_epi8(0x0f);
  const __m256i ones = _mm256_set1_epi16(1);
  // f32 accumulators live in L1 between groups (the barrier below keeps the compiler from holding them in
  // registers across the K loop, which would spill the int16 accumulators of the inner loop instead).
  alignas(32) float fbuf[MR][NP][kPanel] = {};
  const uint8_t* wp[NP];
  const float* sp[NP];
  #pragma GCC unroll 8
  for (int j = 0; j < NP; ++j) {
    wp[j] = a.qweight + (p + j) * G * kPanelGroupBytes;
    sp[j] = a.wscales + (p + j) * G * kPanel;
  }
  const int8_t* xr[MR];
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) xr[i] = a.codes + (m + i) * K;
  for (int64_t g = 0; g < G; ++g) {
    // Each int16 lane pair (one column) starts at (−8·Σx, 0), so vpmaddwd by ones gives Σ w·x directly (no
    // subtraction per group). Bounds: a pair sum of vpmaddubsw is in [−240, 450] (x in [−8, 15], u in [0, 15]), a
    // lane adds 16 of them to a start in [−7680, 4096]: every partial sum stays within [−11520, 11296] ⊂ int16.
    __m256i acc[MR][NP];
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256i start = _mm256_set1_epi32(static_cast<uint16_t>(-8 * c.xsum[(m + i) * G + g]));
      #pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) acc[i][j] = start;
    }
    #pragma GCC unroll 1
    for (int q = 0; q < 8; ++q) {
      __m256i lo[NP], hi[NP];
      #pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp[j] + g * kPanelGroupBytes + q * 32));
        lo[j] = _mm256_and_si256(v, nib);
        hi[j] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
      }
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        int32_t d0, d1;
        __builtin_memcpy(&d0, xr[i] + g * 64 + 8 * q, 4);
        __builtin_memcpy(&d1, xr[i] + g * 64 + 8 * q + 4, 4);
        const __m256i x0 = _mm256_set1_epi32(d0), x1 = _mm256_set1_epi32(d1);
        #pragma GCC unroll 8
        for (int j = 0; j < NP; ++j) {
          acc[i][j] = _mm256_add_epi16(acc[i][j], _mm256_maddubs_epi16(lo[j], x0));
          acc[i][j] = _mm256_add_epi16(acc[i][j], _mm256_maddubs_epi16(hi[j], x1));
        }
      }
      // Keeps the int16 accumulators in registers across q steps: without it GCC spilled 6 of the 8 to the stack
      // and copied the rest between registers every step (1.06-1.2x slower on a Zen 3 core, bit-identical).
      #pragma GCC unroll 8
      for (int i = 0; i < MR; ++i)
        #pragma GCC unroll 8
        for (int j = 0; j < NP; ++j) asm("" : "+x"(acc[i][j]));
    }
    #pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 sx = _mm256_set1_ps(a.ascales[(m + i) * G + g]);
      #pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) {
        const __m256i d = _mm256_madd_epi16(acc[i][j], ones);
        const __m256 s = _mm256_mul_ps(_mm256_loadu_ps(sp[j] + g * kPanel), sx);
        _mm256_store_ps(fbuf[i][j], _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), s, _mm256_load_ps(fbuf[i][j])));
      }
    }
    asm volatile("" ::: "memory");
  }
  __m256 facc[MR][NP];
  #pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
    #pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) facc[i][j] = _mm256_load_ps(fbuf[i][j]);
  // epilogue: low-rank up (r outer so the MR×NP accumulators form independent FMA chains), bias, GELU, store
  if (a.lup) {
    // Row and panel pointers hoisted and every loop over facc unrolled (also the stores below): with a runtime
    // index anywhere GCC kept facc in memory and stored all MR×NP accumulators after each rank step.
    const int64_t R = a.R;
    const float* lu[NP];
    const float* la[MR];
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) lu[j] = a.lup + (p + j) * R * kPanel;
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) la[i] = a.lora_act + (m + i) * R;
    for (int64_t r = 0; r < R; ++r) {
      __m256 u[NP];
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) u[j] = _mm256_loadu_ps(lu[j] + r * kPanel);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m256 l = _mm256_broadcast_ss(la[i] + r);
#pragma GCC unroll 8
        for (int j = 0; j < NP; ++j) facc[i][j] = _mm256_fmadd_ps(l, u[j], facc[i][j]);
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NP; ++j) {
    const int64_t pp = p + j;
    __m256 b = _mm256_setzero_ps();
    if (a.bias) {
      float tmp[kPanel] = {0};
      for (int col = 0; col < kPanel && pp * kPanel + col < a.N; ++col) tmp[col] = a.bias[pp * kPanel + col];
      b = _mm256_loadu_ps(tmp);
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      __m256 v = _mm256_add_ps(facc[i][j], b);
      if (a.gelu) v = gelu256(v);
      if ((pp + 1) * kPanel <= a.N) {
        _mm256_storeu_ps(a.y + (m + i) * a.N + pp * kPanel, v);
      } else {
        float tmp[kPanel];
        _mm256_storeu_ps(tmp, v);
        store_row(c, m + i, pp, tmp);
      }
    }
  }
}

// Micro-tile: kMR rows × kNP panels of 8 columns. 4 × 2: 8 int16 accumulators, 4 unpacked weight registers, the
// activation broadcast and the nibble mask fit the 16 YMM registers (f32 accumulators stay in L1); measured on
// the dev machine, 1 thread, M=480 K=N=3072: 6×1 ≈ 90, 4×2 ≈ 99, 5×2 ≈ 89, 3×2 ≈ 94 GMAC/s.
constexpr int kMR = 4;
constexpr int kNP = 2;

template <int MR>
__attribute__((target("avx2,fma"))) void rows_avx2(const Ctx& c, int64_t m, int64_t p0, int64_t p1) {
  int64_t p = p0;
  for (; p + kNP <= p1; p += kNP) micro_avx2<MR, kNP>(c, m, p);
  for (; p < p1; ++p) micro_avx2<MR, 1>(c, m, p);
}

void tile_avx2(const Ctx& c, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  int64_t m = m0;
  for (; m + kMR <= m1; m += kMR) rows_avx2<kMR>(c, m, p0, p1);
  switch (m1 - m) {
    case 7: rows_avx2<7>(c, m, p0, p1); break;
    case 6: rows_avx2<6>(c, m, p0, p1); break;
    case 5: rows_avx2<5>(c, m, p0, p1); break;
    case 4: rows_avx2<4>(c, m, p0, p1); break;
    case 3: rows_avx2<3>(c, m, p0, p1); break;
    case 2: rows_avx2<2>(c, m, p0, p1); break;
    case 1: rows_avx2<1>(c, m, p0, p1); break;
    default: break;
  }
}
#endif  // SVDQ_X86

}  // namespace

void gemm_w4a4(const W4A4Args& a) {
  if (a.K % kGroup != 0) throw KernelError("gemm_w4a4: K must be a multiple of 64");
  Ctx c;
  c.a = &a;
  c.G = a.K / kGroup;
  c.NP = (a.N + kPanel - 1) / kPanel;
  const Isa isa = active_isa();
  std::vector<int32_t> xsum;
  if (isa != Isa::Amx) {  // the AMX path multiplies signed weights: no +8 offset to remove
    xsum.resize(a.M * c.G);
    parallel_for((a.M + kMB - 1) / kMB, [&](int64_t t, int) {
      for (int64_t m = t * kMB; m < std::min(a.M, (t + 1) * kMB); ++m)
        for (int64_t g = 0; g < c.G; ++g) {
          int32_t s = 0;
          for (int i = 0; i < kGroup; ++i) s += a.codes[m * a.K + g * kGroup + i];
          xsum[m * c.G + g] = s;
        }
    });
  }
  c.xsum = xsum.data();
  // AMX tile rows of codes must not straddle cache lines (a straddling tile load runs at half rate; measured on
  // the dev Xeon: 2x per tile load): when the caller's codes are not 64-byte aligned, the tiles read an aligned
  // copy (K is a multiple of 64, so every row of it is aligned too).
  std::vector<int8_t> acopy;
  W4A4Args aligned_args;
  if (isa == Isa::Amx && (reinterpret_cast<uintptr_t>(a.codes) & 63) != 0) {
    int8_t* dst = align64(acopy, static_cast<size_t>(a.M * a.K));
    parallel_for((a.M + kMB - 1) / kMB, [&](int64_t t, int) {
      const int64_t r0 = t * kMB, r1 = std::min(a.M, r0 + kMB);
      std::memcpy(dst + r0 * a.K, a.codes + r0 * a.K, (r1 - r0) * a.K);
    });
    aligned_args = a;
    aligned_args.codes = dst;
    c.a = &aligned_args;
  }
  // Zero stand-in for the panel after the last one (AVX-512/AMX vectors span two panels).
  std::vector<float> zeros(std::max<int64_t>({c.G * kPanelGroupBytes / 4, c.G * kPanel, a.R * kPanel, 1}), 0.f);
  c.zeros = zeros.data();
  const int64_t mb = isa == Isa::Amx ? kAmxMB : kMB;
  // AMX tasks hold their unpacked weight tiles (K bytes per column) in L2: up to 256 columns when that stays
  // within kAmxTileBudget (fewer passes over the activations: measured 3-8 % faster at M = 1024-4096, K = 3072).
  const int64_t nbp = isa == Isa::Amx
                          ? std::max<int64_t>(kNBPanels, std::min<int64_t>(32, kAmxTileBudget / a.K / 64 * 8))
                          : kNBPanels;
  const int64_t mt = (a.M + mb - 1) / mb, nt = (c.NP + nbp - 1) / nbp;
  // n-blocks outer so consecutive tasks (and threads) share weight panels in L2.
  parallel_for(mt * nt, [&](int64_t t, int) {
    const int64_t nb = t / mt, mi = t % mt;
    const int64_t m0 = mi * mb, m1 = std::min(a.M, m0 + mb);
    const int64_t p0 = nb * nbp, p1 = std::min(c.NP, p0 + nbp);
    switch (isa) {
#if SVDQ_X86
      case Isa::Amx: w4a4::tile_amx(c, m0, m1, p0, p1); break;
      case Isa::Avx512: w4a4::tile_avx512(c, m0, m1, p0, p1); break;
      case Isa::Avx2: tile_avx2(c, m0, m1, p0, p1); break;
#endif  // SVDQ_X86
      default: tile_scalar(c, m0, m1, p0, p1); break;
    }
  });
}

}  // namespace svdq
