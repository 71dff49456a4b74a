// Per-group maxima of the activation passes (act_quant.cc, act_quant_p2.cc) for 16 groups at once: the 16 lane-wise
// maxima vectors of 16 groups are reduced together by a tree of 15 lane shuffles and 15 maxima, instead of one
// _mm512_reduce_max_ps (4 dependent shuffle + max steps) per group, so the scales that follow are computed for 16
// groups by one vector division. Max is exact and order-free: the results equal the per-group reductions.
#pragma once
#include "x86.h"

#include "simd.h"

#if SVDQ_X86
namespace svdq {
namespace groupmax {

// Two vectors x, y -> one: 128-bit blocks (max(x0, x2), max(x1, x3), max(y0, y2), max(y1, y3)).
SVDQ_TARGET_AVX512 inline __m512 fold_blocks(__m512 x, __m512 y) {
  return _mm512_max_ps(_mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(1, 0, 1, 0)),
                       _mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(3, 2, 3, 2)));
}
SVDQ_TARGET_AVX512 inline __m512 fold_pairs(__m512 x, __m512 y) {
  return _mm512_max_ps(_mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(3, 1, 3, 1)));
}
SVDQ_TARGET_AVX512 inline __m512 fold_lanes2(__m512 x, __m512 y) {
  return _mm512_max_ps(_mm512_shuffle_ps(x, y, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(x, y, _MM_SHUFFLE(3, 2, 3, 2)));
}
SVDQ_TARGET_AVX512 inline __m512 fold_lanes1(__m512 x, __m512 y) {
  return _mm512_max_ps(_mm512_shuffle_ps(x, y, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(x, y, _MM_SHUFFLE(3, 1, 3, 1)));
}

// r[g] = max over the 16 lanes of v[g], g = 0..15.
SVDQ_TARGET_AVX512 inline __m512 reduce16(const __m512* v) {
  __m512 a[8], b[4], c[2];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) a[i] = fold_blocks(v[2 * i], v[2 * i + 1]);
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) b[i] = fold_pairs(a[2 * i], a[2 * i + 1]);
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i) c[i] = fold_lanes2(b[2 * i], b[2 * i + 1]);
  const __m512 r = fold_lanes1(c[0], c[1]);
  // lane l of r holds group 4·(l % 4) + l / 4 (traced through the four folds: a 4 × 4 transpose, its own inverse)
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, r);
}

// r[g] = the sum of the 16 lanes of v[g], g = 0..15, by the same tree with additions: every lane sum sees 4 levels
// of pairwise additions, as _mm512_reduce_add_ps (the order differs; callers need only the error bound).
SVDQ_TARGET_AVX512 inline __m512 sum16(const __m512* v) {
  __m512 a[8], b[4], c[2];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i)
    a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i)
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i)
    c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, r);
}

}  // namespace groupmax
}  // namespace svdq
#endif  // SVDQ_X86
