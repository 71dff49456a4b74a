// Host twins of the int4p2 ("p2") format for the CUDA harnesses (hopper_bench.cu, p2q_bench.cu): FP8 E4M3
// conversions (float64 references of the device conversions) and the float32-faithful twin of the activation
// quantizer svdq_p2_quantize_rows (kernels/cuda/p2_fp8.cu), whose bytes and row scale must match the device's
// exactly. Format definition: packages/int4/src/p2.ts; layout: kernels/cuda/p2_fp8.h.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../p2_fp8.h"

// G group size; E4M3 holds q·2^e exactly for q in [-8, 7] and e in [EMIN, EMAX] (p2_fp8.h); R the low-rank rank;
// KEMPTY the exponent of an all-zero group
constexpr int G = 64, EMIN = SVDQ_P2_EXP_MIN, EMAX = SVDQ_P2_EXP_MAX, R = 32, KEMPTY = -1000;

inline double rint_even(double v) { return std::nearbyint(v); }  // ties to even (the default rounding mode)

// E4M3 decode / encode (round to nearest even, saturate to ±448), the float64 reference of __nv_cvt_float_to_fp8.
inline double e4m3_dec(uint8_t b) {
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  double v = e == 0 ? std::ldexp(m, -9) : std::ldexp(8 + m, e - 10);
  if (e == 15 && m == 7) v = NAN;
  return s ? -v : v;
}
inline uint8_t e4m3_enc(double v) {
  if (std::isnan(v)) return 0x7F;
  const uint8_t s = v < 0 ? 0x80 : 0;
  double a = std::fabs(v);
  if (a >= 448) return s | 0x7E;
  // candidates: quantum 2^(E-3) for normal E >= -6, 2^-9 below
  int ex;
  std::frexp(a, &ex);  // a = f·2^ex, f in [0.5, 1)
  int E = ex - 1;
  if (E < -6) E = -6;
  const double q = std::ldexp(1.0, E - 3);
  double r = rint_even(a / q) * q;
  if (r >= 448) return s | 0x7E;
  if (r == 0) return s;
  int re;
  std::frexp(r, &re);
  int RE = re - 1;
  if (RE < -6) return s | uint8_t(std::lround(r / std::ldexp(1.0, -9)));
  const int m = int(std::lround(r / std::ldexp(1.0, RE - 3))) - 8;
  return s | uint8_t((RE + 7) << 3) | uint8_t(m);
}
// smallest integer k with 2^k >= t (t > 0)
inline int ceil_log2(double t) {
  int ex;
  const double f = std::frexp(t, &ex);
  return f == 0.5 ? ex - 1 : ex;
}

// The activation quantizer for one row: v = x·(1/λ) in f32 [K]; with `lowrank`, la = the device's f32 lora_act [R]
// (so the row exponent sees the same low-rank magnitudes) and cr [R] the per-rank power-of-two shifts, written as
// the 3R extra columns (hi, hi, lo E4M3 split). Writes out [K (+ 3R)] E4M3 bytes and the row scale *sxo = 2^E.
inline void ref_quant_row(const float* v, int K, const float* la, const int* cr, bool lowrank, uint8_t* out,
                          float* sxo) {
  const int ng = K / G;
  std::vector<int> kg(ng, KEMPTY), q(K, 0);
  int kmax = KEMPTY;
  for (int gi = 0; gi < ng; ++gi) {
    float a = 0;
    for (int j = 0; j < G; ++j) a = std::max(a, std::fabs(v[gi * G + j]));
    if (a == 0) continue;
    const int k = ceil_log2(a / 7.f);  // IEEE f32 division, as __fdiv_rn
    kmax = std::max(kmax, k);
    // squared errors of k and k − 1 as the kernel sums them: per lane (8 values) in order, then the butterfly
    float p0[8], p1[8];
    std::vector<int> c0(G), c1(G);
    for (int l = 0; l < 8; ++l) {
      float s0 = 0.f, s1 = 0.f;
      for (int j = 0; j < 8; ++j) {
        const int i = gi * G + 8 * l + j;
        c0[8 * l + j] = int(std::min(7.0, std::max(-8.0, rint_even(std::ldexp(double(v[i]), -k)))));
        c1[8 * l + j] = int(std::min(7.0, std::max(-8.0, rint_even(std::ldexp(double(v[i]), 1 - k)))));
        const float d0 = v[i] - std::ldexp(float(c0[8 * l + j]), k);
        const float d1 = v[i] - std::ldexp(float(c1[8 * l + j]), k - 1);
        const float e0 = d0 * d0, e1 = d1 * d1;  // rounded to f32 before the sum, as the kernel
        s0 = s0 + e0;
        s1 = s1 + e1;
      }
      p0[l] = s0;
      p1[l] = s1;
    }
    const float t0 = ((p0[0] + p0[1]) + (p0[2] + p0[3])) + ((p0[4] + p0[5]) + (p0[6] + p0[7]));
    const float t1 = ((p1[0] + p1[1]) + (p1[2] + p1[3])) + ((p1[4] + p1[5]) + (p1[6] + p1[7]));
    const bool finer = t1 < t0;
    kg[gi] = finer ? k - 1 : k;
    for (int j = 0; j < G; ++j) q[gi * G + j] = finer ? c1[j] : c0[j];
  }
  int E = kmax == KEMPTY ? 0 : kmax - EMAX;
  float lrmax = 0;
  if (lowrank)
    for (int r = 0; r < R; ++r) lrmax = std::max(lrmax, std::fabs(std::ldexp(la[r], -cr[r])));
  if (lrmax > 0) {
    const int elr = ceil_log2(lrmax / 256.f);
    if (kmax == KEMPTY || elr > E) E = elr;
  }
  *sxo = std::ldexp(1.f, E);
  for (int gi = 0; gi < ng; ++gi)
    for (int j = 0; j < G; ++j) {
      uint8_t b = 0;
      if (kg[gi] != KEMPTY) {
        int e = kg[gi] - E;
        const int shift = e < EMIN ? e - EMIN : 0;  // below the window: requantize the code, rint(q·2^shift)
        e = std::max(e, EMIN);
        double qq = q[gi * G + j];
        if (shift) qq = rint_even(std::ldexp(qq, shift));
        b = e4m3_enc(std::ldexp(qq, e));
      }
      out[gi * G + j] = b;
    }
  if (lowrank)
    for (int r = 0; r < R; ++r) {
      const float a = std::ldexp(la[r], -cr[r] - E);
      const uint8_t h = e4m3_enc(a);
      const uint8_t lo = e4m3_enc(double(a - float(e4m3_dec(h))));
      out[K + r] = h;
      out[K + R + r] = h;
      out[K + 2 * R + r] = lo;
    }
}
