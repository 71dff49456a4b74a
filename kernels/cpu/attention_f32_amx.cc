// Operator 7 (multi-head attention, contract in common.h / attention_f32.cc) on AMX-BF16 tiles with split operands
// (split_bf16.h, 3 parts: f32-class products). Per task (batch, head, block of kQ queries), two passes over the keys
// instead of the online softmax of the AVX-512 path (the scores of a block, kQ × Skv f32, stay in L2):
//   (1) S = Q·Kᵀ/√Dh for all keys (tiles: Q parts × K parts, 6 products per 32 channels), + key bias;
//   (2) per query: max, P = e^{S − max} (keys past Skv: 0) split straight into A tiles, l = Σ P, in AVX-512;
//   (3) O = P·V (tiles: P parts × V parts over all keys), written as O/l.
// K (scaled by 1/√Dh) and V of every (batch, head) are split into B tiles once per call:
//   K tiles [key panel (16 keys)][Dh/32 chunks][3 parts][16 dh pairs][16 keys][2]  (B[dh, key] = K[key, dh]/√Dh)
//   V tiles [Dh panel (16 channels)][Skvp/32 chunks][3 parts][16 key pairs][16 channels][2]  (B[key, c] = V[key, c])
// Runs for Dh a multiple of 32 and Skv ≤ kMaxKeys on the amx path of a CPU with AMX-BF16; otherwise the caller
// (attention_f32) runs the AVX-512/scalar kernels.
#include "x86.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "split_bf16.h"
#include "common.h"
#include "gemm_f32_amx.h"
#include "simd.h"

// AMX and AVX-512 only: on other CPUs attention_f32 runs its portable kernel (attention_f32.cc).
#if SVDQ_X86
namespace svdq {

namespace {

using namespace splitbf16;

constexpr int S = 3;                 // parts per operand (6 part products: f32-class)
constexpr int64_t kQ = 64;           // queries per task: 2 row pairs share each K and V tile loaded into L1
constexpr int64_t kMaxKeys = 8192;   // scores of a task kQ × 8192 f32 = 2 MiB, their parts 3 MiB

// Splits two rows of 16 values (a: even k, b: odd k) into S parts and stores part s as 16 (a, b) bf16 pairs, one
// 64-byte B tile row, at dst + s·kTile.
SVDQ_TARGET_SPLIT_BF16 inline void store_pairs(__m512 a, __m512 b, uint16_t* dst) {
  const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
  const __m512i hi = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (int s = 0; s < S; ++s) {
    const __m512i ab = _mm512_castps_si512(a), bb = _mm512_castps_si512(b);
    const __m512i pa = _mm512_and_si512(
        _mm512_add_epi32(ab, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(ab, 16), one))), hi);
    const __m512i pb = _mm512_and_si512(
        _mm512_add_epi32(bb, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(bb, 16), one))), hi);
    _mm512_store_si512(dst + s * kTile, _mm512_or_si512(_mm512_srli_epi32(pa, 16), pb));
    a = _mm512_sub_ps(a, _mm512_castsi512_ps(pa));  // exact: the rest of a rounding
    b = _mm512_sub_ps(b, _mm512_castsi512_ps(pb));
  }
}

// K and V of (batch, head) bh into their tile layouts (above). kt: Skvp/16 panels × CHd chunks; vt: Dh/16 panels ×
// CHk chunks.
SVDQ_TARGET_SPLIT_BF16 void pack_head(const AttentionArgs& a, int64_t bh, uint16_t* kt, uint16_t* vt) {
  const int64_t b = bh / a.H, h = bh % a.H, Dh = a.Dh, d = a.H * Dh;
  const int64_t skp = round_up(a.Skv, 32), CHd = Dh / kChunk, CHk = skp / kChunk;
  const float* kb = a.k + b * a.Skv * d + h * Dh;
  const float* vb = a.v + b * a.Skv * d + h * Dh;
  const __m512 scale = _mm512_set1_ps(1.f / std::sqrt(static_cast<float>(Dh)));
  const __m512i lane = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(static_cast<int>(d)));
  // K: tile row kk of key panel p, chunk c = the 16 keys' channels (32c + 2kk, 32c + 2kk + 1), gathered (rows d apart)
  for (int64_t p = 0; p < skp / 16; ++p) {
    const int64_t j0 = 16 * p;
    const int64_t left = std::max<int64_t>(0, std::min<int64_t>(16, a.Skv - j0));
    const __mmask16 m = static_cast<__mmask16>((1u << left) - 1u);
    const float* src = kb + (left ? j0 : 0) * d;
    for (int64_t c = 0; c < CHd; ++c)
      for (int64_t kk = 0; kk < 16; ++kk) {
        const int64_t t = 32 * c + 2 * kk;
        const __m512 x0 = _mm512_mul_ps(_mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, lane, src + t, 4), scale);
        const __m512 x1 = _mm512_mul_ps(_mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, lane, src + t + 1, 4), scale);
        store_pairs(x0, x1, kt + ((p * CHd + c) * S) * kTile + kk * 32);
      }
  }
  // V: tile row kk of channel panel p, chunk c = channels 16p.. of keys 32c + 2kk and 32c + 2kk + 1 (zero past Skv)
  for (int64_t p = 0; p < Dh / 16; ++p)
    for (int64_t c = 0; c < CHk; ++c)
      for (int64_t kk = 0; kk < 16; ++kk) {
        const int64_t j = 32 * c + 2 * kk;
        const __m512 x0 = j < a.Skv ? _mm512_loadu_ps(vb + j * d + 16 * p) : _mm512_setzero_ps();
        const __m512 x1 = j + 1 < a.Skv ? _mm512_loadu_ps(vb + (j + 1) * d + 16 * p) : _mm512_setzero_ps();
        store_pairs(x0, x1, vt + ((p * CHk + c) * S) * kTile + kk * 32);
      }
}

struct Buffers {
  std::vector<uint16_t> q, p;  // A tiles of the block's queries and of its probabilities
  std::vector<float> s;        // scores → probabilities [kQ][Skvp]
};
thread_local Buffers t_buf;

// One task: queries [q0, q0 + nq) of (batch b, head h).
SVDQ_TARGET_SPLIT_BF16 void task(const AttentionArgs& a, int64_t b, int64_t h, int64_t q0, int64_t nq,
                               const uint16_t* kt, const uint16_t* vt) {
  const int64_t Dh = a.Dh, d = a.H * Dh, skp = round_up(a.Skv, 32), CHd = Dh / kChunk, CHk = skp / kChunk;
  Buffers& w = t_buf;
  uint16_t* qa = align64(w.q, kQ * Dh * S);
  uint16_t* pa = align64(w.p, kQ * skp * S);
  float* sc = align64(w.s, kQ * skp);
  const TileConfig cfg = full_tiles();
  _tile_loadconfig(&cfg);
  // Q rows (queries past Sq: zero) in A tiles
  split_a<S>(a.q + b * a.Sq * d + h * Dh, d, q0 + nq, Dh, q0, kQ, 0, CHd, qa);
  // (1) scores: per 32-key pair of panels, both 32-query row pairs (the K tiles of the pair stay in L1)
  const int64_t qstride = CHd * S * kTile, kstride = CHd * S * kTile;
  for (int64_t p = 0; p < skp / 16; p += 2) {
    const uint16_t* kp = kt + p * kstride;
    for (int64_t r = 0; r < kQ; r += 32) {
      const uint16_t* qp = qa + (r / 16) * qstride;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int64_t c = 0; c < CHd; ++c) {
        const bool more = c + 1 < CHd;
        chunk_products<S>(qp + c * S * kTile, qstride, kp + c * S * kTile, kstride,
                          more ? qp + (c + 1) * S * kTile : qp, more ? kp + (c + 1) * S * kTile : kp);
      }
      float* dst = sc + r * skp + 16 * p;
      _tile_stored(0, dst, skp * 4);
      _tile_stored(1, dst + 16, skp * 4);
      _tile_stored(2, dst + 16 * skp, skp * 4);
      _tile_stored(3, dst + 16 * skp + 16, skp * 4);
    }
  }
  __asm__ volatile("" : : : "memory");  // GCC's tile intrinsics declare no memory access: order the reads of sc
  // (2) softmax numerators and sums per query (all kQ rows: rows past nq hold zero queries, never stored)
  alignas(64) float inv_l[kQ];
  const int64_t nv = skp / 16;
  const float* kbias = a.bias ? a.bias + b * a.Skv : nullptr;
  for (int64_t i = 0; i < kQ; ++i) {
    float* si = sc + i * skp;
    uint16_t* prow = pa + (i / 16) * CHk * S * kTile + (i % 16) * 32;  // row i of the P A tiles
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t v = 0; v < nv; ++v) {
      const int64_t left = std::min<int64_t>(16, a.Skv - 16 * v);
      const __mmask16 m = static_cast<__mmask16>(left >= 16 ? 0xffff : left <= 0 ? 0 : (1u << left) - 1u);
      __m512 x = _mm512_loadu_ps(si + 16 * v);
      if (kbias) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, kbias + 16 * v));
      x = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), m, x);
      _mm512_storeu_ps(si + 16 * v, x);
      mx = _mm512_max_ps(mx, x);
    }
    const __m512 mv = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t v = 0; v < nv; ++v) {
      const int64_t left = std::min<int64_t>(16, a.Skv - 16 * v);
      const __mmask16 m = static_cast<__mmask16>(left >= 16 ? 0xffff : left <= 0 ? 0 : (1u << left) - 1u);
      const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_loadu_ps(si + 16 * v), mv)));
      split16<S>(e, prow + (v / 2) * S * kTile + 16 * (v % 2));  // P straight into its A tiles
      sum = _mm512_add_ps(sum, e);
    }
    inv_l[i] = 1.f / _mm512_reduce_add_ps(sum);
  }
  // (3) O = P·V: per 32-channel pair of panels, both row pairs; written as O/l
  const int64_t pstride = CHk * S * kTile, vstride = CHk * S * kTile;
  alignas(64) float cb[32 * 32];
  for (int64_t p = 0; p < Dh / 16; p += 2) {
    const uint16_t* vp = vt + p * vstride;
    for (int64_t r = 0; r < kQ && r < nq; r += 32) {
      const uint16_t* pp = pa + (r / 16) * pstride;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int64_t c = 0; c < CHk; ++c) {
        const bool more = c + 1 < CHk;
        chunk_products<S>(pp + c * S * kTile, pstride, vp + c * S * kTile, vstride,
                          more ? pp + (c + 1) * S * kTile : pp, more ? vp + (c + 1) * S * kTile : vp);
      }
      _tile_stored(0, cb, 128);
      _tile_stored(1, cb + 16, 128);
      _tile_stored(2, cb + 16 * 32, 128);
      _tile_stored(3, cb + 16 * 32 + 16, 128);
      __asm__ volatile("" : : : "memory");
      for (int64_t i = 0; i < 32 && r + i < nq; ++i) {
        const __m512 il = _mm512_set1_ps(inv_l[r + i]);
        float* o = a.out + (b * a.Sq + q0 + r + i) * d + h * Dh + 16 * p;
        _mm512_storeu_ps(o, _mm512_mul_ps(_mm512_load_ps(cb + i * 32), il));
        _mm512_storeu_ps(o + 16, _mm512_mul_ps(_mm512_load_ps(cb + i * 32 + 16), il));
      }
    }
  }
  _tile_release();
}

}  // namespace

bool attention_f32_split(const AttentionArgs& a) {
  if (!f32_split_uses_amx() || a.Dh % 32 != 0 || a.Skv > kMaxKeys) return false;
  // 16 rows of K (16·H·Dh floats) addressable by the 32-bit gather offsets
  if (16 * a.H * a.Dh >= (int64_t{1} << 31) / 4) return false;
  const int64_t skp = round_up(a.Skv, 32), BH = a.B * a.H;
  const int64_t per_head = skp * a.Dh * S;  // uint16 per head, for K and for V
  // The calling thread's tiles, kept between calls (fresh buffers cost a page fault per 4 KiB on every call).
  thread_local std::vector<uint16_t> kt_all, vt_all;
  uint16_t* kt = align64(kt_all, BH * per_head);
  uint16_t* vt = align64(vt_all, BH * per_head);
  parallel_for(BH, [&](int64_t bh, int) { pack_head(a, bh, kt + bh * per_head, vt + bh * per_head); });
  const int64_t qt = (a.Sq + kQ - 1) / kQ;
  parallel_for(BH * qt, [&](int64_t t, int) {
    const int64_t bh = t / qt, q0 = (t % qt) * kQ;
    task(a, bh / a.H, bh % a.H, q0, std::min<int64_t>(kQ, a.Sq - q0), kt + bh * per_head, vt + bh * per_head);
  });
  // Keep at most 64 MiB of tiles between calls (as attention_f32's panels)
  if ((kt_all.capacity() + vt_all.capacity()) * sizeof(uint16_t) > (size_t{64} << 20)) {
    std::vector<uint16_t>().swap(kt_all);
    std::vector<uint16_t>().swap(vt_all);
  }
  return true;
}

}  // namespace svdq
#endif  // SVDQ_X86
