// The int4p2 layer's AVX2 integer path (p2_avx2.h): weight packer, activation operand and the vpmaddubsw GEMM.
// Measured on an AMD EPYC (Zen 3 class, AVX2 + FMA, 1 thread, CPU time, M = 256, K = N = 3072, R = 32;
// docs/benchmarks.md "int4p2 on AVX2"): the f32 FMA GEMM on the bf16 operand (gemm_p2.cc avx2_task) ran at
// 42 GFLOP/s, 115 ms; this one at 192 GFLOP/s, 25.1 ms (the INT4 W4A4 GEMM: 25.9 ms).
#include "x86.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#include "p2_avx2.h"
#include "simd.h"

#define SVDQ_TARGET_A2 __attribute__((target("avx2,fma")))

namespace svdq {
namespace p2 {
namespace a2 {

#if SVDQ_X86
namespace {

constexpr int64_t kMB = 48;        // rows per task (a multiple of the 4-row micro-tile), as gemm_w4a4.cc
constexpr int64_t kNBPanels = 8;   // panels per task (64 columns)
constexpr int kMR = 4;             // micro-tile: 4 rows × 2 panels (gemm_w4a4.cc: the best of 6×1 … 5×2 on AVX2)
constexpr int kNP = 2;

// Σ of the 64 codes of a group: vpsadbw of the codes + 128 (unsigned) against zero, minus 64·128.
SVDQ_TARGET_A2 inline int32_t group_sum(const int8_t* q) {
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80)), zero = _mm256_setzero_si256();
  const __m256i s0 = _mm256_sad_epu8(_mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)), flip), zero);
  const __m256i s1 =
      _mm256_sad_epu8(_mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32)), flip), zero);
  const __m256i s = _mm256_add_epi64(s0, s1);
  const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  return static_cast<int32_t>(_mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1)) - 64 * 128;
}

// Row m's operand from quantize()'s outputs: c, sx, the group factors and code sums, the branch values.
SVDQ_TARGET_A2 void finish_row(const int8_t* q, const int8_t* e, float S, const float* lr, int64_t K, int64_t R, bool bf,
                int32_t* xs, float* f, float* a, float* sx) {
  const int64_t G = K / kGroup;
  const double s1 = S > 0 ? static_cast<double>(S) : 1.0;  // quantize's S' (1 for an all-zero row)
  const int c = branch_shift_row(lr, R, s1);
  const double sxm = std::ldexp(s1, c);
  *sx = static_cast<float>(sxm);
  for (int64_t g = 0; g < G; ++g) {
    f[g] = std::ldexp(1.f, e[g] - c);  // e − c ≥ −109: a normal f32
    xs[g] = group_sum(q + g * kGroup);
  }
  for (int64_t r = 0; r < R; ++r) {  // the values the bf16 operand's branch columns hold (act_quant_p2.cc branch_out)
    const float v = static_cast<float>(lr[r] / sxm);
    a[r] = bf ? bf16_widen(bf16_round(v)) : v;
  }
}

thread_local std::vector<int8_t> t_e;
thread_local std::vector<float> t_s, t_la;

template <int MR, int NP>
SVDQ_TARGET_A2 void micro(const Act& x, const Weight& w, const float* bias, bool gelu, float* y, int64_t m,
                          int64_t p) {
  const int64_t K = x.K, G = x.G, N = w.N, R = w.R;
  const __m256i nib = _mm256_set1_epi8(0x0f);
  const __m256i ones = _mm256_set1_epi16(1);
  // f32 sums in L1 between groups (the barrier below keeps them out of the registers the int16 sums need), as
  // gemm_w4a4.cc micro_avx2
  alignas(32) float fbuf[MR][NP][kPanel] = {};
  const uint8_t* wp[NP];
  const float* fp[NP];
#pragma GCC unroll 8
  for (int j = 0; j < NP; ++j) {
    wp[j] = w.q + (p + j) * G * 256;
    fp[j] = w.f + (p + j) * G * kPanel;
  }
  const int8_t* xr[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) xr[i] = x.q + (m + i) * K;
  for (int64_t g = 0; g < G; ++g) {
    __m256i acc[MR][NP];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) acc[i][j] = _mm256_setzero_si256();
#pragma GCC unroll 1
    for (int s = 0; s < 8; ++s) {
      __m256i lo[NP], hi[NP];
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp[j] + g * 256 + s * 32));
        lo[j] = _mm256_and_si256(v, nib);
        hi[j] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
      }
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        int32_t d0, d1;
        std::memcpy(&d0, xr[i] + g * 64 + 8 * s, 4);
        std::memcpy(&d1, xr[i] + g * 64 + 8 * s + 4, 4);
        const __m256i x0 = _mm256_set1_epi32(d0), x1 = _mm256_set1_epi32(d1);
#pragma GCC unroll 8
        for (int j = 0; j < NP; ++j) {
          acc[i][j] = _mm256_add_epi16(acc[i][j], _mm256_maddubs_epi16(lo[j], x0));
          acc[i][j] = _mm256_add_epi16(acc[i][j], _mm256_maddubs_epi16(hi[j], x1));
        }
      }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256i off = _mm256_set1_epi32(8 * x.xs[(m + i) * G + g]);
      const __m256 xf = _mm256_set1_ps(x.f[(m + i) * G + g]);
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) {
        const __m256i d = _mm256_sub_epi32(_mm256_madd_epi16(acc[i][j], ones), off);  // Σ q_w·q_x, exact
        const __m256 s = _mm256_mul_ps(_mm256_loadu_ps(fp[j] + g * kPanel), xf);   // 2^(e_x − c_m + e_w − c_n)
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
  // the branch: r outer, so the MR×NP sums are independent FMA chains (in registers: the epilogue below reads them
  // back from fbuf; indexed there by a loop, GCC kept them in memory and stored all 8 every step, 2.2 ms of 25 at
  // M = 256, K = N = 3072 against 0.9 ms now)
  for (int64_t r = 0; r < R; ++r) {
    __m256 u[NP];
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) u[j] = _mm256_loadu_ps(w.b + ((p + j) * R + r) * kPanel);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 la = _mm256_broadcast_ss(x.a + (m + i) * R + r);
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) facc[i][j] = _mm256_fmadd_ps(la, u[j], facc[i][j]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) _mm256_store_ps(fbuf[i][j], facc[i][j]);
  for (int j = 0; j < NP; ++j) {
    const int64_t n0 = (p + j) * kPanel;
    const int cols = static_cast<int>(std::min<int64_t>(kPanel, N - n0));
    alignas(32) float bt[kPanel] = {};
    if (bias)
      for (int c = 0; c < cols; ++c) bt[c] = bias[n0 + c];
    const __m256 b = _mm256_load_ps(bt), sw = _mm256_loadu_ps(w.sw + n0);
    for (int i = 0; i < MR; ++i) {
      // (acc·sx)·sw + bias: sx·sw alone can fall below the f32 range for tiny rows (gemm_p2.cc epilogue)
      __m256 v = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_load_ps(fbuf[i][j]), _mm256_set1_ps(x.sx[m + i])), sw, b);
      if (gelu) v = gelu256(v);
      float* dst = y + (m + i) * N + n0;
      if (cols == kPanel) {
        _mm256_storeu_ps(dst, v);
      } else {
        alignas(32) float t[kPanel];
        _mm256_store_ps(t, v);
        std::memcpy(dst, t, cols * sizeof(float));
      }
    }
  }
}

template <int MR>
void rows(const Act& x, const Weight& w, const float* bias, bool gelu, float* y, int64_t m, int64_t p0, int64_t p1) {
  int64_t p = p0;
  for (; p + kNP <= p1; p += kNP) micro<MR, kNP>(x, w, bias, gelu, y, m, p);
  for (; p < p1; ++p) micro<MR, 1>(x, w, bias, gelu, y, m, p);
}

}  // namespace
#endif  // SVDQ_X86

bool available() { return active_isa() == Isa::Avx2; }

void pack_weight(const PackArgs& a, uint8_t* base) {
  const int64_t N = a.N, K = a.K, R = a.R;
  const WeightLayout l(N, K, R);
  const int64_t G = l.G;
  uint8_t* wq = base + l.q;
  float* wf = reinterpret_cast<float*>(base + l.f);
  float* wb = reinterpret_cast<float*>(base + l.b);
  float* sw = reinterpret_cast<float*>(base + l.sw);
  const bool bf = a.branch == Branch::Bf16;
  parallel_for(l.NP, [&](int64_t p, int) {
    for (int j = 0; j < kPanel; ++j) {
      const int64_t n = p * kPanel + j;
      if (n >= N) {  // pad column: codes 0 (nibble 8), factor 1, no branch
        for (int64_t g = 0; g < G; ++g) {
          for (int s = 0; s < 8; ++s) std::memset(wq + (p * G + g) * 256 + s * 32 + j * 4, 0x88, 4);
          wf[(p * G + g) * kPanel + j] = 1.f;
        }
        for (int64_t r = 0; r < R; ++r) wb[(p * R + r) * kPanel + j] = 0.f;
        sw[n] = 1.f;
        continue;
      }
      // S_w·2^c and c as pack_weight (act_quant_p2.cc) takes them
      const float S = a.row_scales[n];
      const double s1 = S > 0 ? static_cast<double>(S) : 1.0;
      const int c = branch_shift_row(a.lup + n * R, R, s1);
      sw[n] = static_cast<float>(std::ldexp(s1, c));
      const double inv = 1.0 / std::ldexp(s1, c);
      for (int64_t r = 0; r < R; ++r) {
        const float v = static_cast<float>(a.lup[n * R + r] * inv);
        wb[(p * R + r) * kPanel + j] = bf ? bf16_widen(bf16_round(v)) : v;
      }
      const int8_t* qn = a.codes + n * K;
      for (int64_t g = 0; g < G; ++g) {
        wf[(p * G + g) * kPanel + j] = std::ldexp(1.f, a.exponents[n * G + g] - c);
        for (int s = 0; s < 8; ++s)
          for (int t = 0; t < 4; ++t) {
            const int lo = qn[g * kGroup + 8 * s + t] + 8, hi = qn[g * kGroup + 8 * s + 4 + t] + 8;
            wq[(p * G + g) * 256 + s * 32 + j * 4 + t] = static_cast<uint8_t>(lo | (hi << 4));
          }
      }
    }
  });
}

#if SVDQ_X86
int64_t quantize(const QuantArgs& in, const Act& out) {
  const int64_t M = in.M, K = in.K, R = in.R, G = K / kGroup;
  QuantArgs q = in;
  q.aop = nullptr;
  q.sx = nullptr;
  q.codes = out.q;
  q.exponents = in.exponents ? in.exponents : align64(t_e, static_cast<size_t>(M * G));
  q.row_scales = in.row_scales ? in.row_scales : align64(t_s, static_cast<size_t>(M));
  q.lora_act = R == 0 ? nullptr : in.lora_act ? in.lora_act : align64(t_la, static_cast<size_t>(M * R));
  q.sink = nullptr;
  const int64_t st = p2::quantize(q);
  if (st != -1) return st;
  const bool bf = in.branch == Branch::Bf16;
  parallel_for((M + 63) / 64, [&](int64_t t, int) {
    for (int64_t m = t * 64; m < std::min(M, t * 64 + 64); ++m)
      finish_row(out.q + m * K, q.exponents + m * G, q.row_scales[m], R ? q.lora_act + m * R : nullptr, K, R, bf,
                 out.xs + m * G, out.f + m * G, out.a + m * R, out.sx + m);
  });
  if (in.codes) std::memcpy(in.codes, out.q, static_cast<size_t>(M * K));
  return -1;
}

void gemm(const Act& x, const Weight& w, const float* bias, bool gelu, float* y) {
  const int64_t M = x.M, NP = w.NP;
  const int64_t mt = (M + kMB - 1) / kMB, nt = (NP + kNBPanels - 1) / kNBPanels;
  // n-blocks outer so consecutive tasks (and threads) share weight panels in L2 (gemm_w4a4.cc)
  parallel_for(mt * nt, [&](int64_t t, int) {
    const int64_t nb = t / mt, mi = t % mt;
    const int64_t m0 = mi * kMB, m1 = std::min(M, m0 + kMB);
    const int64_t p0 = nb * kNBPanels, p1 = std::min(NP, p0 + kNBPanels);
    int64_t m = m0;
    for (; m + kMR <= m1; m += kMR) rows<kMR>(x, w, bias, gelu, y, m, p0, p1);
    switch (m1 - m) {
      case 3: rows<3>(x, w, bias, gelu, y, m, p0, p1); break;
      case 2: rows<2>(x, w, bias, gelu, y, m, p0, p1); break;
      case 1: rows<1>(x, w, bias, gelu, y, m, p0, p1); break;
      default: break;
    }
  });
}
#endif  // SVDQ_X86

}  // namespace a2
}  // namespace p2
}  // namespace svdq
