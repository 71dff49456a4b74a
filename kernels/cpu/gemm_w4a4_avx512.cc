// W4A4 GEMM, AVX-512 VNNI path (Isa::Avx512). One 512-bit vector holds 16 output columns: the 32-byte rows
// [p, g, q] of two neighbouring 8-column panels side by side, so each 32-bit lane is one column's 4 codes of the
// same k = 64g + 8q + t (low nibbles; the high nibbles give k + 4). vpdpbusd multiplies those unsigned weight bytes
// (w + 8, in [0, 15]) with a broadcast of 4 signed activation codes and adds the 4 products into the int32 lane:
// no int16 stage, no saturation (|Σ| ≤ 64·15·15 per group). The +8 offset is removed exactly by starting each
// group's accumulator at −8·Σ_k x (Σ (w+8)·x = Σ w·x + 8·Σ x).
#include "x86.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "simd.h"
#include "w4a4_internal.h"

#if SVDQ_X86
namespace svdq {
namespace w4a4 {

namespace {

// MR rows × NV vectors (16 columns = panels p+2j, p+2j+1 each). 8 × 2: 16 int32 accumulators, 4 unpacked
// weight vectors, 2 activation broadcasts and the nibble mask use 23 of the 32 ZMM registers; the f32 sums
// stay in L1 between groups (as in the AVX2 path).
template <int MR, int NV>
SVDQ_TARGET_AVX512 void micro(const Ctx& c, int64_t m, int64_t p) {
  const W4A4Args& a = *c.a;
  const int64_t K = a.K, G = c.G;
  const __m512i nib = _mm512_set1_epi8(0x0f);
  alignas(64) float fa[MR][NV * 16] = {};
  const uint8_t* wq[2 * NV];
  const float* ws[2 * NV];
#pragma GCC unroll 8
  for (int j = 0; j < 2 * NV; ++j) {
    wq[j] = panel_q(c, p + j);
    ws[j] = panel_s(c, p + j);
  }
  const int8_t* xr[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) xr[i] = a.codes + (m + i) * K;
  for (int64_t g = 0; g < G; ++g) {
    __m512i acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512i init = _mm512_set1_epi32(-8 * c.xsum[(m + i) * G + g]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = init;
    }
#pragma GCC unroll 1
    for (int q = 0; q < 8; ++q) {
      __m512i lo[NV], hi[NV];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) {
        const int64_t off = g * kPanelGroupBytes + q * 32;
        const __m512i v = load_pair_epi8(wq[2 * j] + off, wq[2 * j + 1] + off);
        lo[j] = _mm512_and_si512(v, nib);
        hi[j] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
      }
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        int32_t d0, d1;
        std::memcpy(&d0, xr[i] + g * 64 + 8 * q, 4);
        std::memcpy(&d1, xr[i] + g * 64 + 8 * q + 4, 4);
        const __m512i x0 = _mm512_set1_epi32(d0), x1 = _mm512_set1_epi32(d1);
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) {
          acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], lo[j], x0);
          acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], hi[j], x1);
        }
      }
    }
    __m512 sw[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) sw[j] = load_pair_ps(ws[2 * j] + g * kPanel, ws[2 * j + 1] + g * kPanel);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 sx = _mm512_set1_ps(a.ascales[(m + i) * G + g]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j)
        _mm512_store_ps(fa[i] + 16 * j, _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][j]), _mm512_mul_ps(sw[j], sx),
                                                         _mm512_load_ps(fa[i] + 16 * j)));
    }
    asm volatile("" ::: "memory");
  }
  epilogue_avx512(c, m, MR, p, NV, &fa[0][0], NV * 16);
}

constexpr int kMR = 8;

template <int MR>
SVDQ_TARGET_AVX512 void rows(const Ctx& c, int64_t m, int64_t p0, int64_t p1) {
  int64_t p = p0;
  for (; p + 4 <= p1; p += 4) micro<MR, 2>(c, m, p);
  for (; p < p1; p += 2) micro<MR, 1>(c, m, p);  // a lone last panel pairs with the zero stand-in
}

// L_up of the 16·nv columns from panel p as [R][16·nv] (row r: the columns' rank-r weights), 64-byte aligned dst.
SVDQ_TARGET_AVX512 void transpose_lup(const Ctx& c, int64_t p, int nv, float* dst) {
  const W4A4Args& a = *c.a;
  for (int j = 0; j < nv; ++j)
    for (int64_t r = 0; r < a.R; ++r)
      _mm512_store_ps(dst + r * nv * 16 + 16 * j,
                      load_pair_ps(panel_lup(c, p + 2 * j) + r * kPanel, panel_lup(c, p + 2 * j + 1) + r * kPanel));
}

// Rows [i0, i0 + RB) of the epilogue with NV vectors: RB·NV independent FMA chains over r (one chain per row would
// wait on the 4-cycle FMA latency at every step).
template <int RB, int NV>
SVDQ_TARGET_AVX512 void epilogue_rows(const Ctx& c, int64_t m, int i0, int64_t n0, const float* fa, int64_t ld,
                                      const float* lupT, const __m512* bias, const __mmask16* mask) {
  const W4A4Args& a = *c.a;
  __m512 v[RB][NV];
#pragma GCC unroll 8
  for (int i = 0; i < RB; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) v[i][j] = _mm512_add_ps(_mm512_loadu_ps(fa + (i0 + i) * ld + 16 * j), bias[j]);
  if (lupT) {
    const float* la = a.lora_act + (m + i0) * a.R;
    for (int64_t r = 0; r < a.R; ++r) {
      __m512 u[NV];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) u[j] = _mm512_load_ps(lupT + r * NV * 16 + 16 * j);
#pragma GCC unroll 8
      for (int i = 0; i < RB; ++i) {
        const __m512 l = _mm512_set1_ps(la[i * a.R + r]);
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) v[i][j] = _mm512_fmadd_ps(l, u[j], v[i][j]);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < RB; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      if (!mask[j]) continue;
      __m512 y = v[i][j];
      if (a.gelu) y = gelu512(y);
      _mm512_mask_storeu_ps(a.y + (m + i0 + i) * a.N + n0 + 16 * j, mask[j], y);
    }
}

template <int NV>
SVDQ_TARGET_AVX512 void epilogue_nv(const Ctx& c, int64_t m, int rows_, int64_t p, const float* fa, int64_t ld,
                                    const float* lup_t) {
  const W4A4Args& a = *c.a;
  std::vector<float> lup_heap;
  alignas(64) float lup_stack[32 * NV * 16];  // [R][16·NV], on the stack for R ≤ 32 (SVDQuant's default rank)
  const float* lupT = nullptr;
  if (a.lup && lup_t) {
    lupT = lup_t;
  } else if (a.lup) {
    float* t = lup_stack;
    if (a.R > 32) {
      t = align64(lup_heap, static_cast<size_t>(a.R * NV * 16));
    }
    transpose_lup(c, p, NV, t);
    lupT = t;
  }
  const int64_t n0 = p * kPanel;
  __m512 bias[NV];
  __mmask16 mask[NV];
  for (int j = 0; j < NV; ++j) {
    const int64_t nj = n0 + 16 * j;
    const int64_t cnt = std::max<int64_t>(0, std::min<int64_t>(16, a.N - nj));
    mask[j] = static_cast<__mmask16>((1u << cnt) - 1u);
    bias[j] = a.bias && cnt ? _mm512_maskz_loadu_ps(mask[j], a.bias + nj) : _mm512_setzero_ps();
  }
  // 8 rows × NV vectors: 16 independent FMA chains over r (4 rows gave 8, no more than the 4-cycle FMA latency
  // times 2 ports covers, and loaded each L_up vector for 4 rows only).
  int i = 0;
  for (; i + 8 <= rows_; i += 8) epilogue_rows<8, NV>(c, m, i, n0, fa, ld, lupT, bias, mask);
  for (; i + 4 <= rows_; i += 4) epilogue_rows<4, NV>(c, m, i, n0, fa, ld, lupT, bias, mask);
  for (; i < rows_; ++i) epilogue_rows<1, NV>(c, m, i, n0, fa, ld, lupT, bias, mask);
}

}  // namespace

SVDQ_TARGET_AVX512 void epilogue_avx512(const Ctx& c, int64_t m, int rows_, int64_t p, int nv, const float* fa,
                                        int64_t ld, const float* lup_t) {
  if (nv == 2)
    epilogue_nv<2>(c, m, rows_, p, fa, ld, lup_t);
  else
    epilogue_nv<1>(c, m, rows_, p, fa, ld, lup_t);
}

SVDQ_TARGET_AVX512 void transpose_lup_avx512(const Ctx& c, int64_t p, int nv, float* dst) {
  transpose_lup(c, p, nv, dst);
}

SVDQ_TARGET_AVX512 void tile_avx512(const Ctx& c, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  int64_t m = m0;
  for (; m + kMR <= m1; m += kMR) rows<kMR>(c, m, p0, p1);
  switch (m1 - m) {
    case 7: rows<7>(c, m, p0, p1); break;
    case 6: rows<6>(c, m, p0, p1); break;
    case 5: rows<5>(c, m, p0, p1); break;
    case 4: rows<4>(c, m, p0, p1); break;
    case 3: rows<3>(c, m, p0, p1); break;
    case 2: rows<2>(c, m, p0, p1); break;
    case 1: rows<1>(c, m, p0, p1); break;
    default: break;
  }
}

}  // namespace w4a4
}  // namespace svdq
#endif  // SVDQ_X86
