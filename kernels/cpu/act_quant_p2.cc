// int4p2 activation quantization (the "pow2" row scale with the e / e − 1 search of packages/int4/src/p2.ts
// quantizeRowP2, codes and exponents byte for byte), the low-rank down-projection x·L_downᵀ, and the bf16 GEMM
// operand of p2_layer.h; plus the weight packer. Per row of v = x·f32(1/λ) (f32 product, as the engine's kernel):
//   t_g = f32(amax_g / 7), k = ⌈log2 max_g t_g⌉, S = 2^(k − 5), e_g = clamp(⌈log2 t_g⌉ − (k − 5), −9, 5),
//   then e_g − 1 replaces e_g (e_g > −9) when its squared error, summed in float64 in element order, is smaller;
//   q = clamp(rint(v / (S·2^e)), −8, 7).
// The AVX-512 row first sums the two squared errors in f32 (in units of the coarser scale; decides when they differ
// by more than 2^-18 of their sum, 8x the f32 sums' error bound), then in float64 in another order and decides
// directly only when they differ by more than 2^-40 of their sum (each order's float64 sum of 64 non-negative exact squares is within 64·2^-53 of the
// true sum, so the decision is the sequential one); otherwise it recomputes them in element order. Every
// d = v − q·s is exact in f32 (q·s and v share the ulp of the larger, |d| < 2^24 ulps), so d² is exact in float64.
#include "x86.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "group_max.h"
#include "lowrank_down.h"
#include "lowrank_down_avx2.h"
#include "p2_layer.h"
#include "simd.h"

#define SVDQ_TARGET_P2Q __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")))

namespace svdq {
namespace p2 {

namespace {

// ⌈log2 t⌉ for a positive finite t (p2.ts ceilLog2): t = m·2^x, m in [0.5, 1).
int ceil_log2(double t) {
  int x = 0;
  const double m = std::frexp(t, &x);
  return m == 0.5 ? x - 1 : x;
}

// ⌈log2 t⌉ of a positive finite f32 from its bits (subnormals through ceil_log2), and 2^n for n in [-126, 127].
inline int ceil_log2f(float t) {
  uint32_t u;
  std::memcpy(&u, &t, 4);
  const int ex = static_cast<int>((u >> 23) & 255u);
  if (ex == 0) return ceil_log2(t);
  return ex - 127 + ((u & 0x7fffffu) != 0);
}
inline float pow2f(int n) {
  const uint32_t u = static_cast<uint32_t>(n + 127) << 23;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline double clamp_code(double q) { return q < -8 ? -8 : (q > 7 ? 7 : q); }

// bf16 bits of a value exact in bf16 (q·2^e); any finite float: bf16_round (p2_layer.h).
inline uint16_t bf16_exact(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>(u >> 16);
}
// v = p[0] + p[1] + p[2] exactly for a finite f32 (each difference is exact in f32; 3 × 8 bits cover its 24).
inline void split3(float v, uint16_t* p) {
  p[0] = bf16_round(v);
  const float r1 = v - bf16_widen(p[0]);
  p[1] = bf16_round(r1);
  p[2] = bf16_round(r1 - bf16_widen(p[1]));
}

// Largest |a| the branch may put in a bf16 column before its row's power of two moves into the scale: 2^60, so
// that a·b (|b| ≤ 2^60 likewise) and K such sums stay far inside f32.
constexpr double kBranchMax = 0x1p60;

// Sequential float64 squared errors of one group at scales s0 and s1 = s0/2 (p2.ts quantizeRowP2's loop): true
// when s1 is the better choice.
bool pick_finer(const float* v, double s0, double s1) {
  double err0 = 0, err1 = 0;
  for (int i = 0; i < kGroup; ++i) {
    const double x = v[i];
    const double d0 = x - clamp_code(std::nearbyint(x / s0)) * s0;
    const double d1 = x - clamp_code(std::nearbyint(x / s1)) * s1;
    err0 += d0 * d0;  // exact square (d0 is exact in f32), so a fused multiply-add gives the same sum
    err1 += d1 * d1;
  }
  return err1 < err0;
}

// Row statistics shared by both paths. Returns 0, 1 (non-finite v), 2 (S leaves float32).
struct RowStats {
  int kS = 0;      // log2 S
  bool zero = false;
};

// The portable row: v [K] already computed and checked; writes q [K], e [G]. Mirrors p2.ts in float64.
int row_scalar(const float* v, int64_t K, int8_t* q, int8_t* e, RowStats& st) {
  const int64_t G = K / kGroup;
  std::vector<float> t(G);
  float tmax = 0;
  for (int64_t g = 0; g < G; ++g) {
    float amax = 0;
    for (int i = 0; i < kGroup; ++i) amax = std::max(amax, std::fabs(v[g * kGroup + i]));
    t[g] = static_cast<float>(static_cast<double>(amax) / 7.0);  // SVDQuant §3: int4 scale absmax/7
    tmax = std::max(tmax, t[g]);
  }
  st.zero = tmax == 0;
  if (st.zero) {
    std::memset(q, 0, K);
    std::fill(e, e + G, static_cast<int8_t>(kExpMin));
    return 0;
  }
  st.kS = ceil_log2(tmax) - kExpMax;
  if (st.kS < -149) return 2;
  for (int64_t g = 0; g < G; ++g) {
    const float* vg = v + g * kGroup;
    if (t[g] == 0) {
      std::memset(q + g * kGroup, 0, kGroup);
      e[g] = kExpMin;
      continue;
    }
    int eg = std::clamp(ceil_log2(t[g]) - st.kS, kExpMin, kExpMax);
    if (eg > kExpMin && pick_finer(vg, std::ldexp(1.0, st.kS + eg), std::ldexp(1.0, st.kS + eg - 1))) --eg;
    e[g] = static_cast<int8_t>(eg);
    const double sc = std::ldexp(1.0, st.kS + eg);
    for (int i = 0; i < kGroup; ++i)
      q[g * kGroup + i] = static_cast<int8_t>(clamp_code(std::nearbyint(static_cast<double>(vg[i]) / sc)));
  }
  return 0;
}

#if SVDQ_X86
// clamp(rint(v / s), −8, 7) for a power of two s given as its inverse (v·inv_s exact).
SVDQ_TARGET_P2Q inline __m512 codes_at(__m512 v, __m512 inv_s) {
  constexpr int kRne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  return _mm512_min_ps(_mm512_max_ps(_mm512_roundscale_ps(_mm512_mul_ps(v, inv_s), kRne), _mm512_set1_ps(-8.f)),
                       _mm512_set1_ps(7.f));
}

// The AVX-512 row (same q, e as row_scalar) in two passes over x: v = x·inv with the group maxima, then the codes.
// Writes v [K] (scratch), q [K] when non-null, e [G], and with `tiled` (the row's first element in the tiled
// operand) the bf16 values q·2^(e − c), c = branch_shift(max |lr| / S'). Returns 0, 1 (non-finite v), 2 (S leaves
// float32), or 3 when S is outside [2^-100, 2^100] (the f32 arithmetic below needs every scale 2^(kS+e) and its
// inverse normal): the caller runs row_scalar then (v is written). Conv (the bf16 branch on AMX): the first pass
// also writes bf16(x) into the row's place `xconv` of the block's A tiles (element k at (k/32)·1024 + k%32) and
// max |x| into *xmax, for every row that gets past the first pass (all but rc 1).
template <bool Conv>
SVDQ_TARGET_P2Q int row_avx512(const float* x, const float* inv, int64_t K, float* v, const float* lr, int64_t R,
                               int8_t* q, int8_t* e, uint16_t* tiled, RowStats& st, int& c, uint16_t* xconv = nullptr,
                               float* xmax = nullptr, const float* xnext = nullptr) {
  const int64_t G = K / kGroup;
  const __m512 absm = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  float tmax = 0;
  alignas(64) float tbuf[512];
  std::vector<float> theap;
  float* t = G <= 512 ? tbuf : (theap.resize(G), theap.data());
  __mmask16 bad = 0;
  __m512 xm = _mm512_setzero_ps();
  // 16 groups at a time: their |max| in one reduction tree (group_max.h), t = f32(amax / 7.0) in float64 lanes.
  __m512 tm = _mm512_setzero_ps();
  for (int64_t g0 = 0; g0 < G; g0 += 16) {
    const int ng = static_cast<int>(std::min<int64_t>(16, G - g0));
    __m512 mx[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
      mx[i] = _mm512_setzero_ps();
      if (i < ng) {
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          const int64_t k = (g0 + i) * kGroup + 16 * j;
          __m512 a = _mm512_loadu_ps(x + k);
          if constexpr (Conv) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(xconv + (k / 32) * 1024 + k % 32), bf16_round16(a));
            xm = _mm512_max_ps(xm, _mm512_and_ps(a, absm));
          }
          if (inv) a = _mm512_mul_ps(a, _mm512_loadu_ps(inv + k));
          bad |= _mm512_fpclass_ps_mask(a, 0x99);  // QNaN | +Inf | −Inf | SNaN
          _mm512_storeu_ps(v + k, a);
          mx[i] = _mm512_max_ps(mx[i], _mm512_and_ps(a, absm));
        }
      }
    }
    const __m512 amax = groupmax::reduce16(mx);
    const __m512d seven = _mm512_set1_pd(7.0);  // SVDQuant §3: absmax/7
    const __m256 tlo = _mm512_cvtpd_ps(_mm512_div_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(amax)), seven));
    const __m256 thi = _mm512_cvtpd_ps(
        _mm512_div_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(amax), 1))), seven));
    const __m512 tv = _mm512_insertf32x8(_mm512_castps256_ps512(tlo), thi, 1);
    const __mmask16 live = static_cast<__mmask16>((1u << ng) - 1u);
    _mm512_mask_storeu_ps(t + g0, live, tv);
    tm = _mm512_mask_max_ps(tm, live, tm, tv);
  }
  tmax = _mm512_reduce_max_ps(tm);
  if constexpr (Conv) *xmax = _mm512_reduce_max_ps(xm);
  if (bad) return 1;
  st.zero = tmax == 0;
  if (!st.zero) {
    st.kS = ceil_log2f(tmax) - kExpMax;
    if (st.kS < -149) return 2;
    if (st.kS < -100 || st.kS > 100) return 3;
  }
  c = branch_shift_row(lr, R, st.zero ? 1.0 : std::ldexp(1.0, st.kS));
  const __m512 half = _mm512_set1_ps(0.5f);
  // 16 groups at a time: first each group's f32 squared errors at e and e − 1 (lane-wise), reduced for the 16 groups
  // together (group_max.h sum16: no per-group horizontal sum), then per group the decision and its codes.
  alignas(64) float f0s[16], f1s[16];
  __m512 F0[16], F1[16];
  int egs[16];
  for (int64_t gb = 0; gb < G; gb += 16) {
    const int ng = static_cast<int>(std::min<int64_t>(16, G - gb));
    for (int i = 0; i < 16; ++i) {
      F0[i] = _mm512_setzero_ps();
      F1[i] = _mm512_setzero_ps();
      if (i >= ng || t[gb + i] == 0) continue;
      const int eg = std::clamp(ceil_log2f(t[gb + i]) - st.kS, kExpMin, kExpMax);
      egs[i] = eg;
      if (eg == kExpMin) continue;
      // In f32 and in units of s0: w = v/s0 (exact, a power of two), d0 = w − q0 and d1 = w − q1/2 (exact, as
      // v − q·s), sums of d² by FMA (each square exact inside the FMA): every term sees ≤ 8 roundings (4 lane steps,
      // 4 of the lane reduction), so each sum is within 2^-21 of its true value and a gap above 2^-18 of their sum
      // decides (sums above 2^-100 only: there the absolute errors of subnormal w, d² (< 2^-140) do not count).
      const float* vg = v + (gb + i) * kGroup;
      const float i0 = pow2f(-(st.kS + eg));
      const __m512 i0v = _mm512_set1_ps(i0), i1v = _mm512_set1_ps(i0 * 2.f);
      for (int j = 0; j < 4; ++j) {
        const __m512 vv = _mm512_loadu_ps(vg + 16 * j);
        const __m512 w = _mm512_mul_ps(vv, i0v);
        const __m512 d0 = _mm512_sub_ps(w, codes_at(vv, i0v));
        const __m512 d1 = _mm512_fnmadd_ps(codes_at(vv, i1v), half, w);
        F0[i] = _mm512_fmadd_ps(d0, d0, F0[i]);
        F1[i] = _mm512_fmadd_ps(d1, d1, F1[i]);
      }
    }
    _mm512_store_ps(f0s, groupmax::sum16(F0));
    _mm512_store_ps(f1s, groupmax::sum16(F1));
    for (int i = 0; i < ng; ++i) {
      const int64_t g = gb + i;
      const float* vg = v + g * kGroup;
      if (xnext)  // the next row's x into L2 while this one computes (the first pass reads x at memory speed)
        for (int j = 0; j < 4; ++j) _mm_prefetch(reinterpret_cast<const char*>(xnext + g * kGroup + 16 * j), _MM_HINT_T1);
      uint16_t* tg = tiled ? tiled + (g * kGroup / 32) * 1024 : nullptr;  // groups start on a 32-column tile edge
      if (t[g] == 0) {
        if (q) std::memset(q + g * kGroup, 0, kGroup);
        e[g] = kExpMin;
        if (tg) {
          std::memset(tg, 0, 64);
          std::memset(tg + 1024, 0, 64);
        }
        continue;
      }
      int eg = egs[i];
      __m512 vv[4];
      for (int j = 0; j < 4; ++j) vv[j] = _mm512_loadu_ps(vg + 16 * j);
      if (eg > kExpMin) {
        const float g0 = f0s[i], g1 = f1s[i];
        bool finer;
        if (g0 + g1 > 0x1p-100f && std::fabs(g0 - g1) > 0x1p-18f * (g0 + g1)) {
          finer = g1 < g0;
        } else {  // the float64 sums (and, for a near tie, the element-order ones) decide
          const float s0 = pow2f(st.kS + eg), i0 = pow2f(-(st.kS + eg));
          const __m512 s0v = _mm512_set1_ps(s0), s1v = _mm512_set1_ps(s0 * 0.5f);
          const __m512 i0v = _mm512_set1_ps(i0), i1v = _mm512_set1_ps(i0 * 2.f);
          __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd(), b0 = _mm512_setzero_pd(), b1 = _mm512_setzero_pd();
          for (int j = 0; j < 4; ++j) {
            const __m512 d0 = _mm512_fnmadd_ps(codes_at(vv[j], i0v), s0v, vv[j]);  // exact
            const __m512 d1 = _mm512_fnmadd_ps(codes_at(vv[j], i1v), s1v, vv[j]);
            const __m512d d0l = _mm512_cvtps_pd(_mm512_castps512_ps256(d0));
            const __m512d d0h = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d0), 1)));
            const __m512d d1l = _mm512_cvtps_pd(_mm512_castps512_ps256(d1));
            const __m512d d1h = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d1), 1)));
            a0 = _mm512_fmadd_pd(d0l, d0l, a0);
            b0 = _mm512_fmadd_pd(d0h, d0h, b0);
            a1 = _mm512_fmadd_pd(d1l, d1l, a1);
            b1 = _mm512_fmadd_pd(d1h, d1h, b1);
          }
          const double e0 = _mm512_reduce_add_pd(_mm512_add_pd(a0, b0));
          const double e1 = _mm512_reduce_add_pd(_mm512_add_pd(a1, b1));
          if (std::fabs(e0 - e1) > 0x1p-40 * (e0 + e1))
            finer = e1 < e0;
          else
            finer = pick_finer(vg, static_cast<double>(s0), static_cast<double>(s0) * 0.5);
        }
        if (finer) --eg;
      }
      e[g] = static_cast<int8_t>(eg);
      const __m512 iv = _mm512_set1_ps(pow2f(-(st.kS + eg)));
      const __m512 p = _mm512_set1_ps(pow2f(eg - c));  // c ≤ 100, e − c ≥ −110: a normal f32
      for (int j = 0; j < 4; ++j) {
        const __m512 qj = codes_at(vv[j], iv);
        if (q)
          _mm_storeu_si128(reinterpret_cast<__m128i*>(q + g * kGroup + 16 * j),
                           _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(qj)));
        if (tg)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(tg + (j >> 1) * 1024 + (j & 1) * 16),
                              _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(_mm512_mul_ps(qj, p)), 16)));
      }
    }
  }
  return 0;
}

#define SVDQ_TARGET_P2Q2 __attribute__((target("avx2,fma")))

SVDQ_TARGET_P2Q2 inline __m256 codes_at8(__m256 v, __m256 inv_s) {
  constexpr int kRne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  return _mm256_min_ps(_mm256_max_ps(_mm256_round_ps(_mm256_mul_ps(v, inv_s), kRne), _mm256_set1_ps(-8.f)),
                       _mm256_set1_ps(7.f));
}
// 16 int32 lanes (a, b) in order as 16 int16 (signed saturation: the values fit).
SVDQ_TARGET_P2Q2 inline __m256i pack16(__m256i a, __m256i b) {
  return _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
}

// The AVX2 row: row_avx512's arithmetic on 8 lanes (same q, e as row_scalar; same returns, v written in the first
// pass). The f32 squared-error sums run in two accumulators of 4 steps each, added, then a 3-level lane reduction:
// 8 roundings per term as on AVX-512, so the same 2^-18 gap decides; otherwise pick_finer (the sequential float64
// sums of p2.ts) does.
SVDQ_TARGET_P2Q2 int row_avx2(const float* x, const float* inv, int64_t K, float* v, const float* lr, int64_t R,
                              int8_t* q, int8_t* e, uint16_t* tiled, RowStats& st, int& c) {
  const int64_t G = K / kGroup;
  const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 fmax = _mm256_set1_ps(3.40282347e38f);
  alignas(32) float tbuf[512];
  std::vector<float> theap;
  float* t = G <= 512 ? tbuf : (theap.resize(G), theap.data());
  __m256 ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  float tmax = 0;
  for (int64_t g = 0; g < G; ++g) {
    __m256 mx = _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const int64_t k = g * kGroup + 8 * j;
      __m256 a = _mm256_loadu_ps(x + k);
      if (inv) a = _mm256_mul_ps(a, _mm256_loadu_ps(inv + k));
      _mm256_storeu_ps(v + k, a);
      const __m256 ab = _mm256_and_ps(a, absm);
      ok = _mm256_and_ps(ok, _mm256_cmp_ps(ab, fmax, _CMP_LE_OQ));  // false for NaN and ±Inf
      mx = _mm256_max_ps(mx, ab);
    }
    t[g] = static_cast<float>(static_cast<double>(hmax256(mx)) / 7.0);  // SVDQuant §3: absmax/7
    tmax = std::max(tmax, t[g]);
  }
  if (_mm256_movemask_ps(ok) != 0xff) return 1;
  st.zero = tmax == 0;
  if (!st.zero) {
    st.kS = ceil_log2f(tmax) - kExpMax;
    if (st.kS < -149) return 2;
    if (st.kS < -100 || st.kS > 100) return 3;
  }
  c = branch_shift_row(lr, R, st.zero ? 1.0 : std::ldexp(1.0, st.kS));
  const __m256 half = _mm256_set1_ps(0.5f);
  for (int64_t g = 0; g < G; ++g) {
    const float* vg = v + g * kGroup;
    uint16_t* tg = tiled ? tiled + (g * kGroup / 32) * 1024 : nullptr;  // groups start on a 32-column tile edge
    if (t[g] == 0) {
      if (q) std::memset(q + g * kGroup, 0, kGroup);
      e[g] = kExpMin;
      if (tg) {
        std::memset(tg, 0, 64);
        std::memset(tg + 1024, 0, 64);
      }
      continue;
    }
    int eg = std::clamp(ceil_log2f(t[g]) - st.kS, kExpMin, kExpMax);
    __m256 vv[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) vv[j] = _mm256_loadu_ps(vg + 8 * j);
    if (eg > kExpMin) {
      // row_avx512's f32 pre-decision: in units of s0, d0 = w − q0, d1 = w − q1/2 (exact), sums of d² by FMA
      const float i0 = pow2f(-(st.kS + eg));
      const __m256 i0v = _mm256_set1_ps(i0), i1v = _mm256_set1_ps(i0 * 2.f);
      __m256 F0[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, F1[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        const __m256 w = _mm256_mul_ps(vv[j], i0v);
        const __m256 d0 = _mm256_sub_ps(w, codes_at8(vv[j], i0v));
        const __m256 d1 = _mm256_fnmadd_ps(codes_at8(vv[j], i1v), half, w);
        F0[j & 1] = _mm256_fmadd_ps(d0, d0, F0[j & 1]);
        F1[j & 1] = _mm256_fmadd_ps(d1, d1, F1[j & 1]);
      }
      const float g0 = hsum256(_mm256_add_ps(F0[0], F0[1])), g1 = hsum256(_mm256_add_ps(F1[0], F1[1]));
      bool finer;
      if (g0 + g1 > 0x1p-100f && std::fabs(g0 - g1) > 0x1p-18f * (g0 + g1))
        finer = g1 < g0;
      else
        finer = pick_finer(vg, std::ldexp(1.0, st.kS + eg), std::ldexp(1.0, st.kS + eg - 1));
      if (finer) --eg;
    }
    e[g] = static_cast<int8_t>(eg);
    const __m256 iv = _mm256_set1_ps(pow2f(-(st.kS + eg)));
    const __m256 p = _mm256_set1_ps(pow2f(eg - c));  // c ≤ 100, e − c ≥ −110: a normal f32
    __m256 qj[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) qj[j] = codes_at8(vv[j], iv);
    if (q)
      for (int h = 0; h < 2; ++h) {
        const __m256i a = pack16(_mm256_cvtps_epi32(qj[4 * h]), _mm256_cvtps_epi32(qj[4 * h + 1]));
        const __m256i b = pack16(_mm256_cvtps_epi32(qj[4 * h + 2]), _mm256_cvtps_epi32(qj[4 * h + 3]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + g * kGroup + 32 * h),
                            _mm256_permute4x64_epi64(_mm256_packs_epi16(a, b), 0xD8));
      }
    if (tg)
      for (int h = 0; h < 4; ++h) {  // 16 values: bf16 bits of q·2^(e − c) (exact), columns 16h.. of the group
        const __m256i a = _mm256_srli_epi32(_mm256_castps_si256(_mm256_mul_ps(qj[2 * h], p)), 16);
        const __m256i b = _mm256_srli_epi32(_mm256_castps_si256(_mm256_mul_ps(qj[2 * h + 1], p)), 16);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(tg + (h >> 1) * 1024 + (h & 1) * 16),
                            _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8));
      }
  }
  return 0;
}
#endif  // SVDQ_X86

// v = x·inv (f32 products); false when one is not finite.
bool scaled_row_scalar(const float* x, const float* inv, int64_t K, float* v) {
  bool ok = true;
  for (int64_t k = 0; k < K; ++k) {
    v[k] = inv ? x[k] * inv[k] : x[k];
    ok &= std::isfinite(v[k]);
  }
  return ok;
}
// lact [rows][R] = x[rows]·L_downᵀ in float64 sums (the portable paths; AVX-512: lowrank_down.h).
void down_scalar(const float* x, int64_t K, int rows, const float* ld, int64_t R, float* lact) {
  for (int i = 0; i < rows; ++i)
    for (int64_t r = 0; r < R; ++r) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += static_cast<double>(x[i * K + k]) * ld[r * K + k];
      lact[i * R + r] = static_cast<float>(s);
    }
}
// lact [rows][R] = x[rows]·L_downᵀ from ldT [K][Rp] (lowrank_down.h layout) in float64 sums in k order: with
// bf16-rounded x and ldT holding bf16(L_down), down_bf16_scalar's sums bit for bit (exact products, same order).
void down_scalar_t(const float* x, int64_t K, int rows, const float* ldt, int64_t R, float* lact) {
  const int64_t Rp = lowrank::rank_pad(R);
  std::vector<double> acc(static_cast<size_t>(R));
  for (int i = 0; i < rows; ++i) {
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t k = 0; k < K; ++k) {
      const double xv = x[i * K + k];
      const float* l = ldt + k * Rp;
      for (int64_t r = 0; r < R; ++r) acc[r] += xv * l[r];
    }
    for (int64_t r = 0; r < R; ++r) lact[i * R + r] = static_cast<float>(acc[r]);
  }
}
// The bf16 operand row: q·2^(e − c) for the K code columns (exact), then the branch columns, zeros to Kt.
void operand_row_scalar(const int8_t* q, const int8_t* e, int64_t K, int c, uint16_t* dst) {
  for (int64_t k = 0; k < K; ++k)
    dst[k] = bf16_exact(std::ldexp(static_cast<float>(q[k]), e[k / kGroup] - c));
}
struct Scratch {
  std::vector<float> v, lact, acc, xb;
  std::vector<int8_t> q, e;
  std::vector<uint16_t> row, xa;  // xa: the bf16 A tiles of a 32-row block, [K/32][2][16][32]
};
thread_local Scratch t_scratch;
thread_local std::vector<float> t_ldt;  // L_downᵀ of the calling thread, kept across calls (no fresh pages per call)
thread_local std::vector<uint16_t> t_ldb;  // Branch::Bf16: bf16(L_down) packed per call when the layer has none

}  // namespace

// The power of two c (0 unless amax > 2^60; then max |a|·2^-c ≈ 2^30) taken out of a row's branch values.
int branch_shift(double amax) { return amax > kBranchMax ? std::min(100, ceil_log2(amax) - 30) : 0; }
int branch_shift_row(const float* v, int64_t R, double s1) {
  double amax = 0;
  for (int64_t r = 0; r < R; ++r) amax = std::max(amax, std::fabs(static_cast<double>(v[r])) / s1);
  return branch_shift(amax);
}

bool cpu_has_avx512_bf16() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return cpu_has_avx512_vnni() && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

constexpr int64_t kRowsLr = 3 * lowrank::kMR;  // rows per task with a branch: 3 row tiles of the down-projection

int64_t quantize(const QuantArgs& a) {
  const int64_t M = a.M, K = a.K, R = a.R, G = K / kGroup;
  const bool bf = a.branch == Branch::Bf16 && R > 0;
  const int64_t Kt = kt_of(K, R, a.branch);
  const bool vec = isa_at_least(Isa::Avx512);
  const bool avx2 = !vec && isa_at_least(Isa::Avx2);  // row_avx2, lowrank_down_avx2.h
  // Branch::Bf16: bf16(L_down) as B tiles; the down-projection on AMX-BF16 tiles (32-row tasks) where the GEMM has them
  const uint16_t* ldb = nullptr;
  if (bf) {
    ldb = a.ldown_bf16;
    if (!ldb) {
      uint16_t* p = align64(t_ldb, static_cast<size_t>(down_bf16_len(K, R)));
      pack_down_bf16(a.ldown, R, K, p);
      ldb = p;
    }
  }
  const bool amx_down = bf && gemm_path() == 3;
  // Rows per task: the AVX-512 down-projection's row tiles (lowrank_down.h) share each block of L_downᵀ; the AMX one
  // works on 32-row blocks (2 A tiles).
  // AVX2: 4 row tiles of its down-projection (lowrank_down_avx2.h) share each block of L_downᵀ.
#if SVDQ_X86
  const int64_t TR = amx_down ? 32 : vec && R > 0 ? kRowsLr : avx2 && R > 0 ? 4 * lowrank2::kMR : 4;
#else
  const int64_t TR = amx_down ? 32 : 4;
#endif  // SVDQ_X86
  const float* ldt = !((vec || avx2 || bf) && R > 0) || amx_down ? nullptr
                     : bf && a.ldown_t_bf16               ? a.ldown_t_bf16
                     : bf                                 ? ldt_of_ldb(ldb, R, K, t_ldt)
                     : a.ldown_t                          ? a.ldown_t
                                                          : lowrank::transpose_down(a.ldown, R, K, t_ldt);
  std::vector<int64_t> fail(static_cast<size_t>((M + TR - 1) / TR), -1);
  parallel_for((M + TR - 1) / TR, [&](int64_t task, int) {
    const int64_t m0 = task * TR;
    const int rows = static_cast<int>(std::min<int64_t>(TR, M - m0));
    Scratch& s = t_scratch;
    s.v.resize(K);
    s.q.resize(K);
    s.e.resize(G);
    s.row.resize(Kt);
    s.lact.resize(TR * R);
    float* la = s.lact.data();
    if (R > 0 && !amx_down) {  // the AMX bf16 branch comes after the rows (below)
#if SVDQ_X86
      if (vec) {
        float* acc = align64(s.acc, TR * lowrank::rank_pad(R));
        const float* xs = a.x + m0 * K;
        if (bf) {  // exact bf16 products in the f32 kernel
          s.xb.resize(TR * K);
          lowrank2::round_rows_bf16(xs, K, rows, K, s.xb.data());  // round_rows_bf16's bits, 8 lanes at a time
          xs = s.xb.data();
        }
        lowrank::down_rows(xs, K, rows, K, ldt, R, acc, la, R);
      } else if (avx2) {  // f32 FMA; bf16: on bf16(x), bf16(L_down) (exact products)
        float* acc = align64(s.acc, TR * lowrank::rank_pad(R));
        float* xblk = bf ? align64(s.xb, static_cast<size_t>(TR * lowrank::kKC)) : nullptr;  // bf16(x) per K block
        lowrank2::down_rows(a.x + m0 * K, K, rows, K, ldt, R, acc, la, R, xblk);
      } else
#endif  // SVDQ_X86
      if (bf) {  // down_bf16_scalar's sums (bf16 x rounded once per row, not once per rank)
        s.xb.resize(TR * K);
        round_rows_bf16(a.x + m0 * K, K, rows, K, s.xb.data());
        down_scalar_t(s.xb.data(), K, rows, ldt, R, la);
      } else {
        down_scalar(a.x + m0 * K, K, rows, a.ldown, R, la);
      }
    }
    // One row's codes (and tiled operand) with the branch values lr (c from them) or, lr null, c = 0; exponents in
    // s.e. Returns 0 or the failing rc (1 non-finite, 2 scale out of f32).
    auto row_pass = [&](int i, const float* lr, RowStats& st, int& c, uint16_t* xconv, float* xmax) {
      const int64_t m = m0 + i;
      const float* xr = a.x + m * K;
#if SVDQ_X86
      const float* xnext = i + 1 < rows ? xr + K : nullptr;  // the task's next row
#endif  // SVDQ_X86
      uint16_t* tiled = a.aop ? a.aop + aop_row(m, Kt) : nullptr;
      const int64_t Rl = lr ? R : 0;
      c = 0;
      int rc = 3;
      int8_t* qd = a.codes ? a.codes + m * K : a.sink ? s.q.data() : nullptr;
#if SVDQ_X86
      if (vec)
        rc = xconv ? row_avx512<true>(xr, a.inv_smooth, K, s.v.data(), lr, Rl, qd, s.e.data(),
                                      a.aop_branch_only ? nullptr : tiled, st, c, xconv, xmax, xnext)
                   : row_avx512<false>(xr, a.inv_smooth, K, s.v.data(), lr, Rl, qd, s.e.data(),
                                       a.aop_branch_only ? nullptr : tiled, st, c, nullptr, nullptr, xnext);
      else if (avx2)
        rc = row_avx2(xr, a.inv_smooth, K, s.v.data(), lr, Rl, qd, s.e.data(), a.aop_branch_only ? nullptr : tiled, st,
                      c);
      else
#endif  // SVDQ_X86
      if (!scaled_row_scalar(xr, a.inv_smooth, K, s.v.data()))
        rc = 1;
      if (rc == 3) {  // the portable row (v is in s.v)
        rc = row_scalar(s.v.data(), K, s.q.data(), s.e.data(), st);
        if (rc == 0) {
          if (a.codes) std::memcpy(a.codes + m * K, s.q.data(), K);
          qd = s.q.data();
          c = branch_shift_row(lr, Rl, st.zero ? 1.0 : std::ldexp(1.0, st.kS));
          if (tiled && !a.aop_branch_only) {
            uint16_t* dst = s.row.data();
            operand_row_scalar(s.q.data(), s.e.data(), K, c, dst);
            for (int64_t kc = 0; kc < K / 32; ++kc) std::memcpy(tiled + kc * 1024, dst + kc * 32, 64);
          }
        }
      }
      if (rc == 1 || rc == 2) fail[task] = rc == 1 ? m : -2 - m;
      if (rc == 0 && a.sink) a.sink->row(m, qd, s.e.data(), st.zero ? 0.f : std::ldexp(1.f, st.kS));
      return rc == 1 || rc == 2 ? rc : 0;
    };
    // Row scale and exponents (from s.e) of a passed row.
    auto row_out = [&](int i, const RowStats& st) {
      const int64_t m = m0 + i;
      if (a.row_scales) a.row_scales[m] = st.zero ? 0.f : std::ldexp(1.f, st.kS);
      if (a.exponents) std::memcpy(a.exponents + m * G, s.e.data(), G);
    };
    // lora_act and the branch columns: a = lact / (S'·2^c), S' = S (1 for an all-zero row), then zeros to Kt.
    auto branch_out = [&](int i, const RowStats& st, int c, const float* lr) {
      const int64_t m = m0 + i;
      if (a.lora_act) std::memcpy(a.lora_act + m * R, lr, R * sizeof(float));
      if (!a.aop) return;
      uint16_t* tiled = a.aop + aop_row(m, Kt);
      const double sxm = std::ldexp(st.zero ? 1.0 : std::ldexp(1.0, st.kS), c);
      a.sx[m] = static_cast<float>(sxm);
      uint16_t* dst = s.row.data();
      if (bf) {  // one part: bf16(lact / sx) (sx a power of two: = bf16(lact) / sx unless below the normal range)
        for (int64_t r = 0; r < R; ++r) dst[r] = bf16_round(static_cast<float>(lr[r] / sxm));
      } else {
        for (int64_t r = 0; r < R; ++r) {
          uint16_t p[3];
          split3(static_cast<float>(lr[r] / sxm), p);
          for (int j = 0; j < 6; ++j) dst[j * R + r] = p[kActPart[j]];
        }
      }
      std::fill(dst + branch_cols(R, a.branch), dst + (Kt - K), uint16_t{0});
      for (int64_t kc = K / 32; kc < Kt / 32; ++kc) std::memcpy(tiled + kc * 1024, dst + (kc - K / 32) * 32, 64);
    };
    if (!amx_down) {  // the branch first (above), then each row with its c
      for (int i = 0; i < rows; ++i) {
        RowStats st;
        int c = 0;
        const float* lr = la + i * R;
        if (row_pass(i, lr, st, c, nullptr, nullptr)) return;
        row_out(i, st);
        branch_out(i, st, c, lr);
      }
      return;
    }
#if SVDQ_X86
    // bf16 branch on AMX: the rows first (c = 0), their first pass writing bf16(x) into the block's A tiles (x is
    // read from memory once, as without a branch), then the tile products, then per row the branch columns (and, in
    // the rare row whose branch needs c ≠ 0, its codes again with that c).
    uint16_t* xa = align64(s.xa, static_cast<size_t>(32 * K));
    if (rows < 32) std::memset(xa, 0, static_cast<size_t>(32 * K) * sizeof(uint16_t));  // pad rows of the tiles
    RowStats sts[32];
    float xmax[32];
    bool tiny = false;
    for (int i = 0; i < rows; ++i) {
      int c = 0;
      if (row_pass(i, nullptr, sts[i], c, xa + (i / 16) * 512 + (i % 16) * 32, &xmax[i])) return;
      row_out(i, sts[i]);
      tiny |= xmax[i] > 0.f && xmax[i] < 0x1p-40f;
    }
    if (tiny)  // a row whose products may fall below 2^-126 (p2_branch_bf16.cc): the block again, rows pre-scaled
      down_bf16_amx(a.x + m0 * K, K, rows, K, ldb, R, la, R);
    else
      down_bf16_amx_tiles(xa, rows, K, ldb, R, la, R);
    for (int i = 0; i < rows; ++i) {
      const float* lr = la + i * R;
      const int c = branch_shift_row(lr, R, sts[i].zero ? 1.0 : std::ldexp(1.0, sts[i].kS));
      if (c != 0) {
        int c2 = 0;
        row_pass(i, lr, sts[i], c2, nullptr, nullptr);  // passed before: the same codes, tiled with c2 = c
      }
      branch_out(i, sts[i], c, lr);
    }
#endif  // SVDQ_X86
  });
  for (const int64_t f : fail)
    if (f != -1) return f;
  if (a.aop) {  // pad rows of the last 32-row tile block
    for (int64_t m = M; m < round_up(M, 32); ++m)
      for (int64_t kc = 0; kc < Kt / 32; ++kc) std::memset(a.aop + aop_row(m, Kt) + kc * 1024, 0, 64);
  }
  return -1;
}

void pack_weight(const PackArgs& a) {
  const int64_t N = a.N, K = a.K, R = a.R, G = K / kGroup;
  const int64_t Kt = kt_of(K, R, a.branch), Np = round_up(N, 32), KC = Kt / 32;
  // wop index of W'[n, k]
  auto at = [&](int64_t n, int64_t k) { return wop_block(n / 16, Kt) + (k / 32) * 1024 + (k % 32) / 2 * 32 + (n % 16) * 2 + k % 2; };
  parallel_for(Np / 32, [&](int64_t nb, int) {
    std::memset(a.wop + nb * KC * 1024, 0, KC * 1024 * sizeof(uint16_t));
    for (int64_t n = nb * 32; n < nb * 32 + 32; ++n) {
      if (n >= N) {
        a.sw[n] = 1.f;
        continue;
      }
      const float S = a.row_scales[n];
      const double s1 = S > 0 ? static_cast<double>(S) : 1.0;
      const int c = branch_shift_row(a.lup + n * R, R, s1);
      a.sw[n] = static_cast<float>(std::ldexp(s1, c));
      for (int64_t k = 0; k < K; ++k)
        a.wop[at(n, k)] = bf16_exact(std::ldexp(static_cast<float>(a.codes[n * K + k]), a.exponents[n * G + k / kGroup] - c));
      const double inv = 1.0 / std::ldexp(s1, c);
      if (a.branch == Branch::Bf16) {  // one part: bf16(L_up / sw)
        for (int64_t r = 0; r < R; ++r) a.wop[at(n, K + r)] = bf16_round(static_cast<float>(a.lup[n * R + r] * inv));
        continue;
      }
      for (int64_t r = 0; r < R; ++r) {
        uint16_t p[3];
        split3(static_cast<float>(a.lup[n * R + r] * inv), p);
        for (int j = 0; j < 6; ++j) a.wop[at(n, K + j * R + r)] = p[kWeightPart[j]];
      }
    }
  });
}

}  // namespace p2
}  // namespace svdq
