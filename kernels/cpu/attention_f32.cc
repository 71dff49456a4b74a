// Operator 7: multi-head scaled-dot-product attention with an online (streaming) softmax, f32.
//   q [B, Sq, H·Dh], k/v [B, Skv, H·Dh] (heads interleaved along the last axis), bias [B, Skv] additive key bias
//   or null, out [B, Sq, H·Dh]:  out = softmax(q·kᵀ/√Dh + bias)·v per (batch, head).
// Tasks: (batch, head, block of kQB queries). K (scaled, transposed per key block) and V of every head are
// gathered once per call into contiguous panels. Per block of kKB keys: S = Q·Kᵀ (a small GEMM with broadcasts of
// Q, 8 queries × 32 keys per register tile), the running max m and sum l per query are updated once per block
// (O ← O·e^{m_old − m_new} + e^{S − m_new}·V, 4 queries × 64 outputs per register tile), and O/l is written at the
// end (Milakov & Gimelshein 2018, "Online
// normalizer calculation for softmax"; the FlashAttention recurrence). Scores never leave the block: O(kQB·kKB).
// Paths: AVX-512 (Dh a multiple of 16), AVX2 + FMA (Dh a multiple of 8; same steps on 8 lanes, 6-query tiles),
// scalar otherwise; on a CPU with AMX-BF16, attention_f32_amx.cc's split path first.
#include "x86.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#include "gemm_f32_amx.h"
#include "simd.h"

namespace svdq {

namespace {

constexpr int kQB = 128;  // queries per task: K and V of a head stream from L3 once per kQB queries (4608 tokens: 233 → 201 ms CPU vs 32)
constexpr int kKB = 128;  // keys per block (one softmax step per query per kKB keys; a multiple of 64)

struct Scratch {
  // K of each (batch, head), scaled by 1/√Dh and transposed per block of kKB keys, once per call (AVX-512 path):
  // kt_all[(b·H + h)][j / kKB][t][j % kKB] = k[b, j, h·Dh + t]/√Dh (zero past Skv), so one key block is one
  // contiguous [Dh][kKB] panel (a strided [Dh][Skv] layout made the 128 rows of a block collide in L1 sets).
  const float* kt_all;
  // V likewise gathered per (batch, head): v_all[(b·H + h)][j][t] = v[b, j, h·Dh + t] (a key block of V is one
  // contiguous [kKB][Dh] panel instead of kKB rows H·Dh apart).
  const float* v_all;
  int64_t skvp;           // Skv rounded up to kKB (zero columns)
  std::vector<float> s;   // [kQB][kKB] scores → probabilities
  std::vector<float> o;   // [kQB][Dh] unnormalized output
};

void block_scalar(const AttentionArgs& a, int64_t b, int64_t h, int64_t q0, int64_t nq, Scratch& w) {
  const int64_t d = a.H * a.Dh, Dh = a.Dh;
  const float scale = 1.f / std::sqrt(static_cast<float>(Dh));
  float m[kQB], l[kQB];
  for (int i = 0; i < kQB; ++i) m[i] = -INFINITY, l[i] = 0.f;
  std::fill(w.o.begin(), w.o.end(), 0.f);
  for (int64_t j0 = 0; j0 < a.Skv; j0 += kKB) {
    const int64_t nk = std::min<int64_t>(kKB, a.Skv - j0);
    for (int64_t i = 0; i < nq; ++i) {
      const float* qi = a.q + ((b * a.Sq + q0 + i) * d + h * Dh);
      float* si = w.s.data() + i * kKB;
      float mx = m[i];
      for (int64_t j = 0; j < nk; ++j) {
        const float* kj = a.k + ((b * a.Skv + j0 + j) * d + h * Dh);
        float dot = 0.f;
        for (int64_t t = 0; t < Dh; ++t) dot += qi[t] * kj[t];
        float v = dot * scale + (a.bias ? a.bias[b * a.Skv + j0 + j] : 0.f);
        si[j] = v;
        mx = std::max(mx, v);
      }
      const float alpha = std::exp(m[i] - mx);  // 0 on the first block (m = −inf)
      float sum = 0.f;
      for (int64_t j = 0; j < nk; ++j) {
        si[j] = std::exp(si[j] - mx);
        sum += si[j];
      }
      l[i] = l[i] * alpha + sum;
      m[i] = mx;
      float* oi = w.o.data() + i * Dh;
      for (int64_t t = 0; t < Dh; ++t) oi[t] *= alpha;
      for (int64_t j = 0; j < nk; ++j) {
        const float* vj = a.v + ((b * a.Skv + j0 + j) * d + h * Dh);
        for (int64_t t = 0; t < Dh; ++t) oi[t] += si[j] * vj[t];
      }
    }
  }
  for (int64_t i = 0; i < nq; ++i) {
    float* dst = a.out + ((b * a.Sq + q0 + i) * d + h * Dh);
    const float inv = 1.f / l[i];
    for (int64_t t = 0; t < Dh; ++t) dst[t] = w.o[i * Dh + t] * inv;
  }
}

#if SVDQ_X86
// O[i] += Σ_j P[i, j]·V[j] for the block's nk keys, any Dh a multiple of 16 (through memory; the FLUX/PixArt head
// sizes 64 and 128 take pv_block_quads below).
SVDQ_TARGET_AVX512 void pv_block(const AttentionArgs& a, int64_t b, int64_t h, int64_t j0, int64_t nk, int64_t nq,
                                 Scratch& w) {
  const int64_t Dh = a.Dh;
  const float* vbase = w.v_all + ((b * a.H + h) * a.Skv + j0) * Dh;
  for (int64_t j = 0; j < nk; ++j)
    for (int64_t t = 0; t < Dh / 16; ++t) {
      const __m512 vv = _mm512_loadu_ps(vbase + j * Dh + 16 * t);
      for (int64_t i = 0; i < nq; ++i) {
        float* oi = w.o.data() + i * Dh + 16 * t;
        _mm512_storeu_ps(oi, _mm512_fmadd_ps(_mm512_set1_ps(w.s[i * kKB + j]), vv, _mm512_loadu_ps(oi)));
      }
    }
}

// O += P·V for Dh a multiple of 64: 4 queries × 64 outputs (16 ZMM accumulators) per pass over a chunk of 64 keys,
// so the chunk of V being read (64 keys × 64 floats = 16 KiB) stays in L1 for all the query quads (8 loads per 16
// FMAs; a whole 128-key block of V streamed from L2 for every query pair was the bottleneck).
SVDQ_TARGET_AVX512 void pv_block_quads(const AttentionArgs& a, int64_t b, int64_t h, int64_t j0, int64_t nk,
                                       int64_t nq, Scratch& w) {
  const int64_t Dh = a.Dh;
  const float* vbase = w.v_all + ((b * a.H + h) * a.Skv + j0) * Dh;
  for (int64_t jc = 0; jc < nk; jc += 64) {
    const int64_t je = std::min<int64_t>(nk, jc + 64);
    for (int64_t c0 = 0; c0 < Dh; c0 += 64) {
      for (int64_t i0 = 0; i0 < nq; i0 += 4) {
        const float* p[4];
        float* o[4];
        for (int r = 0; r < 4; ++r) {
          const int64_t i = std::min<int64_t>(i0 + r, nq - 1);  // rows past nq repeat the last one, not stored
          p[r] = w.s.data() + i * kKB;
          o[r] = w.o.data() + i * Dh + c0;
        }
        __m512 acc[4][4];
        for (int r = 0; r < 4; ++r)
          for (int t = 0; t < 4; ++t) acc[r][t] = _mm512_loadu_ps(o[r] + 16 * t);
        const float* vj = vbase + jc * Dh + c0;
        for (int64_t j = jc; j < je; ++j, vj += Dh) {
          const __m512 v0 = _mm512_loadu_ps(vj), v1 = _mm512_loadu_ps(vj + 16), v2 = _mm512_loadu_ps(vj + 32),
                       v3 = _mm512_loadu_ps(vj + 48);
#pragma GCC unroll 4
          for (int r = 0; r < 4; ++r) {
            const __m512 pr = _mm512_set1_ps(p[r][j]);
            acc[r][0] = _mm512_fmadd_ps(pr, v0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(pr, v1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(pr, v2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(pr, v3, acc[r][3]);
          }
        }
        for (int r = 0; r < 4 && i0 + r < nq; ++r)
          for (int t = 0; t < 4; ++t) _mm512_storeu_ps(o[r] + 16 * t, acc[r][t]);
      }
    }
  }
}

// Lanes of 16-key vector `c` (keys 16c .. 16c+15 of a block) that exist when the block holds nk keys.
SVDQ_TARGET_AVX512 static inline __mmask16 key_mask(int64_t nk, int c) {
  const int64_t r = nk - 16 * c;
  return static_cast<__mmask16>(r >= 16 ? 0xffff : r <= 0 ? 0 : (1u << r) - 1);
}

// AVX-512 path; Dh a multiple of 16 (64 and 128 in FLUX/PixArt), else the scalar block runs.
// Per key block of kKB keys: (1) raw scores S = Q·Kᵀ/√Dh + bias in chunks of 4 queries × 64 keys (16 ZMM
// accumulators over Dh), (2) per query one online-softmax step over the whole block (max, rescale of O, exp,
// sum: the per-row reductions and the scalar exp are paid once per kKB keys), (3) O += P·V.
SVDQ_TARGET_AVX512 void block_avx512(const AttentionArgs& a, int64_t b, int64_t h, int64_t q0, int64_t nq,
                                     Scratch& w) {
  const int64_t d = a.H * a.Dh, Dh = a.Dh, DV = Dh / 16;
  float m[kQB], l[kQB];
  for (int i = 0; i < kQB; ++i) m[i] = -INFINITY, l[i] = 0.f;
  std::fill(w.o.begin(), w.o.end(), 0.f);
  const float* ktbh = w.kt_all + (b * a.H + h) * Dh * w.skvp;
  const float* qrow[kQB];
  for (int64_t i = 0; i < kQB; ++i) qrow[i] = a.q + ((b * a.Sq + q0 + std::min<int64_t>(i, nq - 1)) * d + h * Dh);
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  for (int64_t j0 = 0; j0 < a.Skv; j0 += kKB) {
    const int64_t nk = std::min<int64_t>(kKB, a.Skv - j0);
    const float* kt = ktbh + j0 * Dh;  // kt[t·kKB + j] = k[j0 + j, t]/√Dh
    // (1) scores, 8 queries × 32 keys at a time (16 accumulators; 2 loads of K and 8 broadcasts of Q per 16 FMAs,
    // the 16 KiB of K of a 32-key chunk stay in L1 for all the query octets); keys past Skv get −inf
    for (int64_t c0 = 0; c0 < nk; c0 += 32) {
      const int64_t nc = nk - c0;
      const __mmask16 kmask[2] = {key_mask(nc, 0), key_mask(nc, 1)};
      __m512 bias[2];
      for (int c = 0; c < 2; ++c)
        bias[c] = a.bias ? _mm512_maskz_loadu_ps(kmask[c], a.bias + b * a.Skv + j0 + c0 + 16 * c) : _mm512_setzero_ps();
      for (int64_t i0 = 0; i0 < nq; i0 += 8) {
        __m512 acc[8][2];
        const float* qp[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; ++r) {
          acc[r][0] = bias[0], acc[r][1] = bias[1];
          qp[r] = qrow[std::min<int64_t>(i0 + r, kQB - 1)];
        }
        const float* kr = kt + c0;
        for (int64_t t = 0; t < Dh; ++t, kr += kKB) {
          const __m512 k0 = _mm512_loadu_ps(kr), k1 = _mm512_loadu_ps(kr + 16);
#pragma GCC unroll 8
          for (int r = 0; r < 8; ++r) {
            const __m512 qv = _mm512_set1_ps(qp[r][t]);
            acc[r][0] = _mm512_fmadd_ps(qv, k0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(qv, k1, acc[r][1]);
          }
        }
        for (int r = 0; r < 8 && i0 + r < nq; ++r)
          for (int c = 0; c < 2; ++c)
            _mm512_storeu_ps(w.s.data() + (i0 + r) * kKB + c0 + 16 * c, _mm512_mask_mov_ps(ninf, kmask[c], acc[r][c]));
      }
    }
    // (2) one online-softmax step per query over the block
    const int nv = static_cast<int>((nk + 15) / 16);
    for (int64_t i = 0; i < nq; ++i) {
      float* si = w.s.data() + i * kKB;
      __m512 mx = _mm512_set1_ps(m[i]);
      for (int c = 0; c < nv; ++c) mx = _mm512_max_ps(mx, _mm512_loadu_ps(si + 16 * c));
      const float mnew = _mm512_reduce_max_ps(mx);
      const float alpha = std::exp(m[i] - mnew);  // 0 on the first block (m = −inf)
      const __m512 mv = _mm512_set1_ps(mnew);
      __m512 sum = _mm512_setzero_ps();
      for (int c = 0; c < nv; ++c) {
        const __m512 e = _mm512_maskz_mov_ps(key_mask(nk, c), exp512(_mm512_sub_ps(_mm512_loadu_ps(si + 16 * c), mv)));
        _mm512_storeu_ps(si + 16 * c, e);
        sum = _mm512_add_ps(sum, e);
      }
      l[i] = l[i] * alpha + _mm512_reduce_add_ps(sum);
      m[i] = mnew;
      if (alpha != 1.f) {
        float* oi = w.o.data() + i * Dh;
        const __m512 av = _mm512_set1_ps(alpha);
        for (int64_t t = 0; t < DV; ++t) _mm512_storeu_ps(oi + 16 * t, _mm512_mul_ps(_mm512_loadu_ps(oi + 16 * t), av));
      }
    }
    // (3) O += P·V
    if (DV % 4 == 0)
      pv_block_quads(a, b, h, j0, nk, nq, w);
    else
      pv_block(a, b, h, j0, nk, nq, w);
  }
  for (int64_t i = 0; i < nq; ++i) {
    float* dst = a.out + ((b * a.Sq + q0 + i) * d + h * Dh);
    const __m512 inv = _mm512_set1_ps(1.f / l[i]);
    for (int64_t t = 0; t < DV; ++t)
      _mm512_storeu_ps(dst + 16 * t, _mm512_mul_ps(_mm512_loadu_ps(w.o.data() + i * Dh + 16 * t), inv));
  }
}

// K and V of (batch, head) bh into the Scratch layouts. K: per key block and dimension t, 16 keys per gather (rows
// H·Dh apart, the ones past Skv zero), scaled by 1/√Dh and stored in order; V: one row copy per key.
SVDQ_TARGET_AVX512 void gather_head(const AttentionArgs& a, int64_t bh, int64_t skvp, float* kt_all, float* v_all) {
  const int64_t b = bh / a.H, h = bh % a.H, Dh = a.Dh, d = a.H * Dh;
  const __m512 scale = _mm512_set1_ps(1.f / std::sqrt(static_cast<float>(Dh)));
  const float* kbase = a.k + b * a.Skv * d + h * Dh;
  float* dst = kt_all + bh * Dh * skvp;
  const __m512i lane = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(static_cast<int>(d)));
  for (int64_t j0 = 0; j0 < skvp; j0 += kKB)
    for (int c = 0; c < kKB / 16; ++c) {
      const int64_t j = j0 + 16 * c;
      const __mmask16 m = key_mask(a.Skv - j0, c);
      float* out = dst + j0 * Dh + 16 * c;
      if (m == 0) {
        for (int64_t t = 0; t < Dh; ++t) _mm512_storeu_ps(out + t * kKB, _mm512_setzero_ps());
        continue;
      }
      const float* src = kbase + j * d;  // key j's row; lanes step one row (d floats)
      for (int64_t t = 0; t < Dh; ++t)
        _mm512_storeu_ps(out + t * kKB,
                         _mm512_mul_ps(_mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, lane, src + t, 4), scale));
    }
  for (int64_t j = 0; j < a.Skv; ++j)
    std::memcpy(v_all + (bh * a.Skv + j) * Dh, a.v + (b * a.Skv + j) * d + h * Dh, Dh * sizeof(float));
}

// ---- AVX2 + FMA path (Dh a multiple of 8: FLUX 128, PixArt-Σ 72), the same three steps on 8 lanes -------------

#define SVDQ_TARGET_ATT2 __attribute__((target("avx2,fma")))

// K and V of (batch, head) bh into the Scratch layouts (as gather_head, in portable code: the AVX2 gather is no
// faster than the loads here), K scaled by 1/√Dh, keys past Skv zero.
void gather_head_portable(const AttentionArgs& a, int64_t bh, int64_t skvp, float* kt_all, float* v_all) {
  const int64_t b = bh / a.H, h = bh % a.H, Dh = a.Dh, d = a.H * Dh;
  const float scale = 1.f / std::sqrt(static_cast<float>(Dh));
  const float* kbase = a.k + b * a.Skv * d + h * Dh;
  float* dst = kt_all + bh * Dh * skvp;
  for (int64_t j0 = 0; j0 < skvp; j0 += kKB) {
    float* blk = dst + j0 * Dh;  // [Dh][kKB]
    for (int64_t jj = 0; jj < kKB; ++jj) {
      const int64_t j = j0 + jj;
      if (j < a.Skv) {
        const float* src = kbase + j * d;
        for (int64_t t = 0; t < Dh; ++t) blk[t * kKB + jj] = src[t] * scale;
      } else {
        for (int64_t t = 0; t < Dh; ++t) blk[t * kKB + jj] = 0.f;
      }
    }
  }
  for (int64_t j = 0; j < a.Skv; ++j)
    std::memcpy(v_all + (bh * a.Skv + j) * Dh, a.v + (b * a.Skv + j) * d + h * Dh, Dh * sizeof(float));
}

// lanes 0..7 of a 256-bit mask: all ones where lane < n
SVDQ_TARGET_ATT2 static inline __m256 lanes_below(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int c = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(8, n)));
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(c), idx));
}


// O += P·V over the block's nk keys for output columns [c0, c0 + 8·NV): 6 queries × 8·NV outputs per pass over a
// chunk of 64 keys (6·NV accumulators; NV loads of V and 6 broadcasts of P per 6·NV FMAs), the chunk of V (64 keys
// × 8·NV floats) staying in L1 for all the query sextets.
template <int NV>
SVDQ_TARGET_ATT2 void pv_cols_avx2(const float* vbase, int64_t Dh, int64_t c0, int64_t nk, int64_t nq, Scratch& w) {
  constexpr int kR = 6;
  for (int64_t jc = 0; jc < nk; jc += 64) {
    const int64_t je = std::min<int64_t>(nk, jc + 64);
    for (int64_t i0 = 0; i0 < nq; i0 += kR) {
      const float* p[kR];
      float* o[kR];
      for (int r = 0; r < kR; ++r) {
        const int64_t i = std::min<int64_t>(i0 + r, nq - 1);  // rows past nq repeat the last one, not stored
        p[r] = w.s.data() + i * kKB;
        o[r] = w.o.data() + i * Dh + c0;
      }
      __m256 acc[kR][NV];
      for (int r = 0; r < kR; ++r)
        for (int t = 0; t < NV; ++t) acc[r][t] = _mm256_loadu_ps(o[r] + 8 * t);
      const float* vj = vbase + jc * Dh + c0;
      for (int64_t j = jc; j < je; ++j, vj += Dh) {
        __m256 v[NV];
        for (int t = 0; t < NV; ++t) v[t] = _mm256_loadu_ps(vj + 8 * t);
#pragma GCC unroll 6
        for (int r = 0; r < kR; ++r) {
          const __m256 pr = _mm256_broadcast_ss(p[r] + j);
          for (int t = 0; t < NV; ++t) acc[r][t] = _mm256_fmadd_ps(pr, v[t], acc[r][t]);
        }
      }
      for (int r = 0; r < kR && i0 + r < nq; ++r)
        for (int t = 0; t < NV; ++t) _mm256_storeu_ps(o[r] + 8 * t, acc[r][t]);
    }
  }
}

// AVX2 path; Dh a multiple of 8. Per key block of kKB keys: (1) scores S = Q·Kᵀ/√Dh + bias, 6 queries × 16 keys at
// a time (12 YMM accumulators; 2 loads of K and 6 broadcasts of Q per 12 FMAs), keys past Skv −inf; (2) one
// online-softmax step per query over the block (exp256: relative error < 2e-7); (3) O += P·V.
SVDQ_TARGET_ATT2 void block_avx2(const AttentionArgs& a, int64_t b, int64_t h, int64_t q0, int64_t nq, Scratch& w) {
  constexpr int kR = 6;
  const int64_t d = a.H * a.Dh, Dh = a.Dh;
  float m[kQB], l[kQB];
  for (int i = 0; i < kQB; ++i) m[i] = -INFINITY, l[i] = 0.f;
  std::fill(w.o.begin(), w.o.end(), 0.f);
  const float* ktbh = w.kt_all + (b * a.H + h) * Dh * w.skvp;
  const float* vbh = w.v_all + (b * a.H + h) * a.Skv * Dh;
  const float* qrow[kQB];
  for (int64_t i = 0; i < kQB; ++i) qrow[i] = a.q + ((b * a.Sq + q0 + std::min<int64_t>(i, nq - 1)) * d + h * Dh);
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  for (int64_t j0 = 0; j0 < a.Skv; j0 += kKB) {
    const int64_t nk = std::min<int64_t>(kKB, a.Skv - j0);
    const float* kt = ktbh + j0 * Dh;  // kt[t·kKB + j] = k[j0 + j, t]/√Dh (zero past Skv, within skvp)
    // (1) scores
    for (int64_t c0 = 0; c0 < nk; c0 += 16) {
      const int64_t nc = nk - c0;
      const __m256 live[2] = {lanes_below(nc), lanes_below(nc - 8)};
      float bb[16] = {};
      if (a.bias)
        for (int64_t j = 0; j < std::min<int64_t>(16, nc); ++j) bb[j] = a.bias[b * a.Skv + j0 + c0 + j];
      const __m256 bias0 = _mm256_loadu_ps(bb), bias1 = _mm256_loadu_ps(bb + 8);
      for (int64_t i0 = 0; i0 < nq; i0 += kR) {
        __m256 acc[kR][2];
        const float* qp[kR];
#pragma GCC unroll 6
        for (int r = 0; r < kR; ++r) {
          acc[r][0] = bias0, acc[r][1] = bias1;
          qp[r] = qrow[std::min<int64_t>(i0 + r, kQB - 1)];
        }
        const float* kr = kt + c0;
        for (int64_t t = 0; t < Dh; ++t, kr += kKB) {
          const __m256 k0 = _mm256_loadu_ps(kr), k1 = _mm256_loadu_ps(kr + 8);
#pragma GCC unroll 6
          for (int r = 0; r < kR; ++r) {
            const __m256 qv = _mm256_broadcast_ss(qp[r] + t);
            acc[r][0] = _mm256_fmadd_ps(qv, k0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(qv, k1, acc[r][1]);
          }
        }
        for (int r = 0; r < kR && i0 + r < nq; ++r)
          for (int c = 0; c < 2; ++c)
            _mm256_storeu_ps(w.s.data() + (i0 + r) * kKB + c0 + 8 * c, _mm256_blendv_ps(ninf, acc[r][c], live[c]));
      }
    }
    // (2) one online-softmax step per query over the block (lanes past nk: −inf scores, zero probabilities)
    const int nv = static_cast<int>((nk + 7) / 8);
    for (int64_t i = 0; i < nq; ++i) {
      float* si = w.s.data() + i * kKB;
      __m256 mx = _mm256_set1_ps(m[i]);
      for (int c = 0; c < nv; ++c) mx = _mm256_max_ps(mx, _mm256_loadu_ps(si + 8 * c));
      const float mnew = hmax256(mx);
      const float alpha = std::exp(m[i] - mnew);  // 0 on the first block (m = −inf)
      const __m256 mv = _mm256_set1_ps(mnew);
      __m256 sum = _mm256_setzero_ps();
      for (int c = 0; c < nv; ++c) {
        const __m256 e =
            _mm256_and_ps(lanes_below(nk - 8 * c), exp256(_mm256_sub_ps(_mm256_loadu_ps(si + 8 * c), mv)));
        _mm256_storeu_ps(si + 8 * c, e);
        sum = _mm256_add_ps(sum, e);
      }
      l[i] = l[i] * alpha + hsum256(sum);
      m[i] = mnew;
      if (alpha != 1.f) {
        float* oi = w.o.data() + i * Dh;
        const __m256 av = _mm256_set1_ps(alpha);
        for (int64_t t = 0; t < Dh; t += 8) _mm256_storeu_ps(oi + t, _mm256_mul_ps(_mm256_loadu_ps(oi + t), av));
      }
    }
    // (3) O += P·V: 16 output columns at a time, an 8-column tail (Dh = 72)
    const float* vbase = vbh + j0 * Dh;
    int64_t c0 = 0;
    for (; c0 + 16 <= Dh; c0 += 16) pv_cols_avx2<2>(vbase, Dh, c0, nk, nq, w);
    if (c0 < Dh) pv_cols_avx2<1>(vbase, Dh, c0, nk, nq, w);
  }
  for (int64_t i = 0; i < nq; ++i) {
    float* dst = a.out + ((b * a.Sq + q0 + i) * d + h * Dh);
    const __m256 inv = _mm256_set1_ps(1.f / l[i]);
    for (int64_t t = 0; t < Dh; t += 8)
      _mm256_storeu_ps(dst + t, _mm256_mul_ps(_mm256_loadu_ps(w.o.data() + i * Dh + t), inv));
  }
}
#endif  // SVDQ_X86

}  // namespace

void attention_f32(const AttentionArgs& a) {
  if (a.B <= 0 || a.Sq <= 0 || a.Skv <= 0 || a.H <= 0 || a.Dh <= 0) return;
#if SVDQ_X86
  if (attention_f32_split(a)) return;  // the amx path on a CPU with AMX-BF16 (attention_f32_amx.cc)
  // AVX-512 path: Dh a multiple of 16, and 16 rows of K (16·H·Dh floats) addressable by the 32-bit gather offsets
  const bool avx512 = isa_at_least(Isa::Avx512) && a.Dh % 16 == 0 && 16 * a.H * a.Dh < (int64_t{1} << 31) / 4;
  // AVX2 path: Dh a multiple of 8 (also on AVX-512 machines for Dh = 8 mod 16, e.g. PixArt-Σ's 72)
  const bool avx2 = !avx512 && isa_at_least(Isa::Avx2) && a.Dh % 8 == 0;
#endif  // SVDQ_X86
  const int64_t qt = (a.Sq + kQB - 1) / kQB;
  const int threads = num_threads();
  const int64_t skvp = (a.Skv + kKB - 1) / kKB * kKB;
  // The calling thread's panels, kept between calls (fresh buffers cost a page fault per 4 KiB on every call).
  thread_local std::vector<float> kt_all, v_all;
#if SVDQ_X86
  if (avx512 || avx2) {
    // K of every (batch, head) transposed per key block and scaled, V gathered per head, once per call (each
    // query block reads them; layouts in Scratch)
    const size_t nkt = static_cast<size_t>(a.B * a.H * a.Dh * skvp), nv = static_cast<size_t>(a.B * a.H * a.Skv * a.Dh);
    if (kt_all.size() < nkt) kt_all.resize(nkt);
    if (v_all.size() < nv) v_all.resize(nv);
    // (pointers taken here: inside the tasks, a thread_local name would mean the worker's own copy)
    float* kt = kt_all.data();
    float* vv = v_all.data();
    if (avx512)
      parallel_for(a.B * a.H, [&](int64_t bh, int) { gather_head(a, bh, skvp, kt, vv); });
    else
      parallel_for(a.B * a.H, [&](int64_t bh, int) { gather_head_portable(a, bh, skvp, kt, vv); });
  }
#endif  // SVDQ_X86
  std::vector<Scratch> scratch(threads);
  const float* kt_data = kt_all.data();
  const float* v_data = v_all.data();
  for (auto& w : scratch) {
    w.kt_all = kt_data;
    w.v_all = v_data;
    w.skvp = skvp;
    w.s.resize(kQB * kKB + 16);
    w.o.resize(kQB * a.Dh + 16);
  }
  parallel_for(a.B * a.H * qt, [&](int64_t task, int th) {
    const int64_t bh = task / qt, q0 = (task % qt) * kQB;
    const int64_t b = bh / a.H, h = bh % a.H, nq = std::min<int64_t>(kQB, a.Sq - q0);
#if SVDQ_X86
    if (avx512)
      block_avx512(a, b, h, q0, nq, scratch[th]);
    else if (avx2)
      block_avx2(a, b, h, q0, nq, scratch[th]);
    else
#endif  // SVDQ_X86
      block_scalar(a, b, h, q0, nq, scratch[th]);
  });
  // Keep at most 64 MiB of panels between calls (the flux-small size is 8 MiB; a FLUX.1-size call, 4608 tokens ×
  // 24 heads, needs 113 MiB and amortizes the page faults over its 2.6·10¹¹ FLOP anyway).
  if ((kt_all.capacity() + v_all.capacity()) * sizeof(float) > (size_t{64} << 20)) {
    std::vector<float>().swap(kt_all);
    std::vector<float>().swap(v_all);
  }
}

}  // namespace svdq
