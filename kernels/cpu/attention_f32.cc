// Operator 7: multi-head scaled-dot-product attention with an online (streaming) softmax, f32.
//   q [B, Sq, H·Dh], k/v [B, Skv, H·Dh] (heads interleaved along the last axis), bias [B, Skv] additive key bias
//   or null, out [B, Sq, H·Dh]:  out = softmax(q·kᵀ/√Dh + bias)·v per (batch, head).
// Tasks: (batch, head, block of kQB queries). Per block of kKB keys: S = Q·Kᵀ (K block transposed to [Dh][kKB] so
// the product is a small GEMM with broadcasts of Q), the running max m and sum l per query are updated
// (O ← O·e^{m_old − m_new} + e^{S − m_new}·V), and O/l is written at the end (Milakov & Gimelshein 2018, "Online
// normalizer calculation for softmax"; the FlashAttention recurrence). Scores never leave the block: O(kQB·kKB).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#include "simd.h"

namespace svdq {

namespace {

constexpr int kQB = 16;  // queries per task
constexpr int kKB = 64;  // keys per block (4 ZMM of scores per query)

struct Scratch {
  const float* kt_all;    // [B·H][Dh][Skvp] K transposed and scaled by 1/√Dh once per call (AVX-512 path)
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

// O[i] += Σ_j P[i, j]·V[j] for the block's nk keys; DV = Dh/16 vectors (0: any, through memory).
template <int DV>
SVDQ_TARGET_AVX512 void pv_block(const AttentionArgs& a, int64_t b, int64_t h, int64_t j0, int64_t nk, int64_t nq,
                                 Scratch& w) {
  const int64_t d = a.H * a.Dh, Dh = a.Dh;
  const float* vbase = a.v + (b * a.Skv + j0) * d + h * Dh;
  if constexpr (DV == 0) {
    for (int64_t j = 0; j < nk; ++j)
      for (int64_t t = 0; t < Dh / 16; ++t) {
        const __m512 vv = _mm512_loadu_ps(vbase + j * d + 16 * t);
        for (int64_t i = 0; i < nq; ++i) {
          float* oi = w.o.data() + i * Dh + 16 * t;
          _mm512_storeu_ps(oi, _mm512_fmadd_ps(_mm512_set1_ps(w.s[i * kKB + j]), vv, _mm512_loadu_ps(oi)));
        }
      }
  } else {
    for (int64_t i = 0; i < nq; i += 2) {
      const bool two = i + 1 < nq;
      float* o0 = w.o.data() + i * Dh;
      float* o1 = two ? o0 + Dh : o0;
      const float* p0 = w.s.data() + i * kKB;
      const float* p1 = two ? p0 + kKB : p0;
      __m512 acc0[DV], acc1[DV];
#pragma GCC unroll 8
      for (int t = 0; t < DV; ++t) acc0[t] = _mm512_loadu_ps(o0 + 16 * t), acc1[t] = _mm512_loadu_ps(o1 + 16 * t);
      for (int64_t j = 0; j < nk; ++j) {
        const float* vj = vbase + j * d;
        const __m512 b0 = _mm512_set1_ps(p0[j]), b1 = _mm512_set1_ps(p1[j]);
#pragma GCC unroll 8
        for (int t = 0; t < DV; ++t) {
          const __m512 vv = _mm512_loadu_ps(vj + 16 * t);
          acc0[t] = _mm512_fmadd_ps(b0, vv, acc0[t]);
          acc1[t] = _mm512_fmadd_ps(b1, vv, acc1[t]);
        }
      }
#pragma GCC unroll 8
      for (int t = 0; t < DV; ++t) {
        if (two) _mm512_storeu_ps(o1 + 16 * t, acc1[t]);
        _mm512_storeu_ps(o0 + 16 * t, acc0[t]);
      }
    }
  }
}

// AVX-512 path; Dh a multiple of 16 (64 and 128 in FLUX/PixArt), else the scalar block runs.
SVDQ_TARGET_AVX512 void block_avx512(const AttentionArgs& a, int64_t b, int64_t h, int64_t q0, int64_t nq,
                                     Scratch& w) {
  const int64_t d = a.H * a.Dh, Dh = a.Dh, DV = Dh / 16;
  const float scale = 1.f / std::sqrt(static_cast<float>(Dh));
  float m[kQB], l[kQB];
  for (int i = 0; i < kQB; ++i) m[i] = -INFINITY, l[i] = 0.f;
  std::fill(w.o.begin(), w.o.end(), 0.f);
  const float* ktbh = w.kt_all + (b * a.H + h) * Dh * w.skvp;
  const float* qrow[kQB];
  for (int64_t i = 0; i < kQB; ++i) qrow[i] = a.q + ((b * a.Sq + q0 + std::min<int64_t>(i, nq - 1)) * d + h * Dh);
  for (int64_t j0 = 0; j0 < a.Skv; j0 += kKB) {
    const int64_t nk = std::min<int64_t>(kKB, a.Skv - j0);
    const float* kt = ktbh + j0;  // kt[t·skvp + j] = k[j0 + j, t]/√Dh
    const __mmask16 kmask[4] = {
        static_cast<__mmask16>(nk >= 16 ? 0xffff : (1u << std::max<int64_t>(nk, 0)) - 1),
        static_cast<__mmask16>(nk >= 32 ? 0xffff : nk <= 16 ? 0 : (1u << (nk - 16)) - 1),
        static_cast<__mmask16>(nk >= 48 ? 0xffff : nk <= 32 ? 0 : (1u << (nk - 32)) - 1),
        static_cast<__mmask16>(nk >= 64 ? 0xffff : nk <= 48 ? 0 : (1u << (nk - 48)) - 1)};
    __m512 bias[4];
    for (int c = 0; c < 4; ++c)
      bias[c] = a.bias ? _mm512_maskz_loadu_ps(kmask[c], a.bias + b * a.Skv + j0 + 16 * c) : _mm512_setzero_ps();
    // scores: 4 queries × 64 keys per pass (16 accumulators)
    for (int64_t i0 = 0; i0 < nq; i0 += 4) {
      __m512 acc[4][4];
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) acc[r][c] = bias[c];
      for (int64_t t = 0; t < Dh; ++t) {
        const float* kr = kt + t * w.skvp;
        const __m512 k0 = _mm512_loadu_ps(kr), k1 = _mm512_loadu_ps(kr + 16), k2 = _mm512_loadu_ps(kr + 32),
                     k3 = _mm512_loadu_ps(kr + 48);
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r) {
          const __m512 qv = _mm512_set1_ps(qrow[std::min<int64_t>(i0 + r, kQB - 1)][t]);
          acc[r][0] = _mm512_fmadd_ps(qv, k0, acc[r][0]);
          acc[r][1] = _mm512_fmadd_ps(qv, k1, acc[r][1]);
          acc[r][2] = _mm512_fmadd_ps(qv, k2, acc[r][2]);
          acc[r][3] = _mm512_fmadd_ps(qv, k3, acc[r][3]);
        }
      }
      for (int r = 0; r < 4 && i0 + r < nq; ++r) {
        const int64_t i = i0 + r;
        __m512 mx = _mm512_set1_ps(m[i]);
        for (int c = 0; c < 4; ++c) mx = _mm512_mask_max_ps(mx, kmask[c], mx, acc[r][c]);
        const float mnew = _mm512_reduce_max_ps(mx);
        const float alpha = std::exp(m[i] - mnew);
        const __m512 mv = _mm512_set1_ps(mnew);
        __m512 sum = _mm512_setzero_ps();
        for (int c = 0; c < 4; ++c) {
          const __m512 e = _mm512_maskz_mov_ps(kmask[c], exp512(_mm512_sub_ps(acc[r][c], mv)));
          _mm512_storeu_ps(w.s.data() + i * kKB + 16 * c, e);
          sum = _mm512_add_ps(sum, e);
        }
        l[i] = l[i] * alpha + _mm512_reduce_add_ps(sum);
        m[i] = mnew;
        float* oi = w.o.data() + i * Dh;
        const __m512 av = _mm512_set1_ps(alpha);
        for (int64_t t = 0; t < DV; ++t) _mm512_storeu_ps(oi + 16 * t, _mm512_mul_ps(_mm512_loadu_ps(oi + 16 * t), av));
      }
    }
    // O += P·V: two queries at a time, their Dh outputs in registers over the block's keys
    if (DV == 8)
      pv_block<8>(a, b, h, j0, nk, nq, w);
    else if (DV == 4)
      pv_block<4>(a, b, h, j0, nk, nq, w);
    else
      pv_block<0>(a, b, h, j0, nk, nq, w);
  }
  for (int64_t i = 0; i < nq; ++i) {
    float* dst = a.out + ((b * a.Sq + q0 + i) * d + h * Dh);
    const __m512 inv = _mm512_set1_ps(1.f / l[i]);
    for (int64_t t = 0; t < DV; ++t)
      _mm512_storeu_ps(dst + 16 * t, _mm512_mul_ps(_mm512_loadu_ps(w.o.data() + i * Dh + 16 * t), inv));
  }
}

}  // namespace

void attention_f32(const AttentionArgs& a) {
  if (a.B <= 0 || a.Sq <= 0 || a.Skv <= 0 || a.H <= 0 || a.Dh <= 0) return;
  const bool avx512 = isa_at_least(Isa::Avx512) && a.Dh % 16 == 0;
  const int64_t qt = (a.Sq + kQB - 1) / kQB;
  const int threads = num_threads();
  const int64_t skvp = (a.Skv + kKB - 1) / kKB * kKB;
  std::vector<float> kt_all;
  if (avx512) {
    // K of every (batch, head) transposed to [Dh][Skvp] and scaled once (each query block reads it)
    kt_all.assign(a.B * a.H * a.Dh * skvp, 0.f);
    const float scale = 1.f / std::sqrt(static_cast<float>(a.Dh));
    const int64_t d = a.H * a.Dh;
    parallel_for(a.B * a.H, [&](int64_t bh, int) {
      const int64_t b = bh / a.H, h = bh % a.H;
      float* dst = kt_all.data() + bh * a.Dh * skvp;
      for (int64_t j = 0; j < a.Skv; ++j) {
        const float* kj = a.k + (b * a.Skv + j) * d + h * a.Dh;
        for (int64_t t = 0; t < a.Dh; ++t) dst[t * skvp + j] = kj[t] * scale;
      }
    });
  }
  std::vector<Scratch> scratch(threads);
  for (auto& w : scratch) {
    w.kt_all = kt_all.data();
    w.skvp = skvp;
    w.s.resize(kQB * kKB + 16);
    w.o.resize(kQB * a.Dh + 16);
  }
  parallel_for(a.B * a.H * qt, [&](int64_t task, int th) {
    const int64_t bh = task / qt, q0 = (task % qt) * kQB;
    const int64_t b = bh / a.H, h = bh % a.H, nq = std::min<int64_t>(kQB, a.Sq - q0);
    if (avx512)
      block_avx512(a, b, h, q0, nq, scratch[th]);
    else
      block_scalar(a, b, h, q0, nq, scratch[th]);
  });
}

}  // namespace svdq
