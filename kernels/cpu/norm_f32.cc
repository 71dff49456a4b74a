// The normalizations around the GEMMs of the FLUX/PixArt blocks, with the numerics of @svdquant/models' TypeScript
// ops (packages/models/src/ops.ts: statistics and products in float64, each stored value rounded to f32 where the
// TypeScript rounds it), so a forward gives the same result on either (within one f32 ulp: the float64 sums run in
// 8 lanes here, in order there).
//   layer_norm_modulate: out[b, t, :] = f32(f32((x − mean)·inv)·(1 + scale[b]) + shift[b]), inv = 1/√(var + eps)
//     (biased variance, torch.nn.LayerNorm), x/out [B, S, D], scale/shift rows of stride `stride` at offsets.
//   rms_norm_rope (in place): per token and head, y = f32(x·inv·w), inv = 1/√(mean x² + eps), then the interleaved
//     rotary pairs (y₂ᵢ, y₂ᵢ₊₁) → (y₂ᵢ·cos₂ᵢ − y₂ᵢ₊₁·sin₂ᵢ, y₂ᵢ₊₁·cos₂ᵢ₊₁ + y₂ᵢ·sin₂ᵢ₊₁) with cos/sin row ropeRow0 + t.
// Exposed as layerNormModulateF32 / rmsNormRopeHeadsF32 (TypeScript: packages/kernels/src/norm.ts validates first).
#include "x86.h"
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "common.h"
#include "napi_args.h"
#include "simd.h"

namespace svdq {
namespace {

struct LnArgs {
  const float* x;
  int64_t B, S, D;
  double eps;
  const float* scale;
  int64_t scale_off;
  const float* shift;
  int64_t shift_off, stride;
  float* out;
};

struct RopeArgs {
  float* x;
  int64_t B, S, H, Dh;
  const float* w;
  double eps;
  const float* cos;
  const float* sin;
  int64_t row0;
};

void ln_row_scalar(const LnArgs& a, const float* x, const float* sc, const float* sh, float* out) {
  double mean = 0;
  for (int64_t i = 0; i < a.D; ++i) mean += x[i];
  mean /= static_cast<double>(a.D);
  double v = 0;
  for (int64_t i = 0; i < a.D; ++i) {
    const double u = x[i] - mean;
    v += u * u;
  }
  const double inv = 1.0 / std::sqrt(v / static_cast<double>(a.D) + a.eps);
  for (int64_t i = 0; i < a.D; ++i)
    out[i] = static_cast<float>(static_cast<double>(static_cast<float>((x[i] - mean) * inv)) *
                                    (1.0 + static_cast<double>(sc[i])) +
                                static_cast<double>(sh[i]));
}

#if SVDQ_X86
// D a multiple of 8.
SVDQ_TARGET_AVX512 void ln_row_avx512(const LnArgs& a, const float* x, const float* sc, const float* sh, float* out) {
  __m512d s = _mm512_setzero_pd();
  for (int64_t i = 0; i < a.D; i += 8) s = _mm512_add_pd(s, _mm512_cvtps_pd(_mm256_loadu_ps(x + i)));
  const double mean = _mm512_reduce_add_pd(s) / static_cast<double>(a.D);
  const __m512d mv = _mm512_set1_pd(mean);
  __m512d v = _mm512_setzero_pd();
  for (int64_t i = 0; i < a.D; i += 8) {
    const __m512d u = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), mv);
    v = _mm512_add_pd(v, _mm512_mul_pd(u, u));
  }
  const __m512d inv = _mm512_set1_pd(1.0 / std::sqrt(_mm512_reduce_add_pd(v) / static_cast<double>(a.D) + a.eps));
  const __m512d one = _mm512_set1_pd(1.0);
  for (int64_t i = 0; i < a.D; i += 8) {
    const __m512d n = _mm512_cvtps_pd(_mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), mv), inv)));
    const __m512d m = _mm512_mul_pd(n, _mm512_add_pd(one, _mm512_cvtps_pd(_mm256_loadu_ps(sc + i))));
    _mm256_storeu_ps(out + i, _mm512_cvtpd_ps(_mm512_add_pd(m, _mm512_cvtps_pd(_mm256_loadu_ps(sh + i)))));
  }
}
#endif  // SVDQ_X86

void layer_norm_modulate(const LnArgs& a) {
#if SVDQ_X86
  const bool avx = isa_at_least(Isa::Avx512) && a.D % 8 == 0;
#endif  // SVDQ_X86
  const int64_t rows = a.B * a.S, per = 64;
  parallel_for((rows + per - 1) / per, [&](int64_t t, int) {
    for (int64_t r = t * per; r < std::min(rows, (t + 1) * per); ++r) {
      const int64_t b = r / a.S;
      const float* sc = a.scale + b * a.stride + a.scale_off;
      const float* sh = a.shift + b * a.stride + a.shift_off;
#if SVDQ_X86
      if (avx)
        ln_row_avx512(a, a.x + r * a.D, sc, sh, a.out + r * a.D);
      else
#endif  // SVDQ_X86
        ln_row_scalar(a, a.x + r * a.D, sc, sh, a.out + r * a.D);
    }
  });
}

void rope_head_scalar(const RopeArgs& a, float* x, const float* c, const float* s) {
  double ss = 0;
  for (int64_t i = 0; i < a.Dh; ++i) ss += static_cast<double>(x[i]) * x[i];
  const double inv = 1.0 / std::sqrt(ss / static_cast<double>(a.Dh) + a.eps);
  for (int64_t i = 0; i < a.Dh; i += 2) {
    const double p = static_cast<float>(x[i] * inv * a.w[i]);
    const double q = static_cast<float>(x[i + 1] * inv * a.w[i + 1]);
    x[i] = static_cast<float>(p * c[i] - q * s[i]);
    x[i + 1] = static_cast<float>(q * c[i + 1] + p * s[i + 1]);
  }
}

#if SVDQ_X86
// Dh a multiple of 8.
SVDQ_TARGET_AVX512 void rope_head_avx512(const RopeArgs& a, float* x, const float* c, const float* s) {
  __m512d acc = _mm512_setzero_pd();
  for (int64_t i = 0; i < a.Dh; i += 8) {
    const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
    acc = _mm512_add_pd(acc, _mm512_mul_pd(v, v));
  }
  const __m512d inv = _mm512_set1_pd(1.0 / std::sqrt(_mm512_reduce_add_pd(acc) / static_cast<double>(a.Dh) + a.eps));
  // even lanes: y₂ᵢ·cos − y₂ᵢ₊₁·sin; odd lanes: y₂ᵢ₊₁·cos + y₂ᵢ·sin
  const __m512d sign = _mm512_setr_pd(-1, 1, -1, 1, -1, 1, -1, 1);
  for (int64_t i = 0; i < a.Dh; i += 8) {
    const __m512d xv = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
    const __m512d y = _mm512_cvtps_pd(
        _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_mul_pd(xv, inv), _mm512_cvtps_pd(_mm256_loadu_ps(a.w + i)))));
    const __m512d ysw = _mm512_permute_pd(y, 0x55);  // swap the two lanes of each pair
    const __m512d u = _mm512_mul_pd(y, _mm512_cvtps_pd(_mm256_loadu_ps(c + i)));
    const __m512d w = _mm512_mul_pd(_mm512_mul_pd(ysw, _mm512_cvtps_pd(_mm256_loadu_ps(s + i))), sign);
    _mm256_storeu_ps(x + i, _mm512_cvtpd_ps(_mm512_add_pd(u, w)));
  }
}
#endif  // SVDQ_X86

void rms_norm_rope(const RopeArgs& a) {
#if SVDQ_X86
  const bool avx = isa_at_least(Isa::Avx512) && a.Dh % 8 == 0;
#endif  // SVDQ_X86
  const int64_t tokens = a.B * a.S, per = 16;
  parallel_for((tokens + per - 1) / per, [&](int64_t t, int) {
    for (int64_t r = t * per; r < std::min(tokens, (t + 1) * per); ++r) {
      const int64_t tok = r % a.S;
      const float* c = a.cos + (a.row0 + tok) * a.Dh;
      const float* s = a.sin + (a.row0 + tok) * a.Dh;
      for (int64_t h = 0; h < a.H; ++h) {
        float* x = a.x + (r * a.H + h) * a.Dh;
#if SVDQ_X86
        if (avx)
          rope_head_avx512(a, x, c, s);
        else
#endif  // SVDQ_X86
          rope_head_scalar(a, x, c, s);
      }
    }
  });
}

// ---- N-API ----

using namespace napi_args;  // num, fnum, arr<T>, guarded, obj0

Napi::Value LayerNormModulate(const Napi::CallbackInfo& info) {
  constexpr const char* who = "layerNormModulateF32";
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    const Napi::Object o = obj0(info, who);
    LnArgs a{};
    a.B = num(o, "B", who);
    a.S = num(o, "S", who);
    a.D = num(o, "D", who);
    a.scale_off = num(o, "scaleOff", who);
    a.shift_off = num(o, "shiftOff", who);
    a.stride = num(o, "stride", who);
    if (a.B < 0 || a.S < 0 || a.D <= 0 || a.scale_off < 0 || a.shift_off < 0 || a.stride < 0)
      throw KernelError("layerNormModulateF32: bad B/S/D/offsets/stride");
    a.eps = fnum(o, "eps", who);
    const int64_t n = a.B * a.S * a.D, rows = a.B > 0 ? (a.B - 1) * a.stride : 0;
    a.x = arr<float>(o, "x", n, false, who);
    a.scale = arr<float>(o, "scale", rows + a.scale_off + a.D, false, who);
    a.shift = arr<float>(o, "shift", rows + a.shift_off + a.D, false, who);
    a.out = arr<float>(o, "out", n, false, who);
    if (n) layer_norm_modulate(a);
    return env.Undefined();
  });
}

Napi::Value RmsNormRope(const Napi::CallbackInfo& info) {
  constexpr const char* who = "rmsNormRopeHeadsF32";
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    const Napi::Object o = obj0(info, who);
    RopeArgs a{};
    a.B = num(o, "B", who);
    a.S = num(o, "S", who);
    a.H = num(o, "H", who);
    a.Dh = num(o, "Dh", who);
    a.row0 = num(o, "ropeRow0", who);
    if (a.B < 0 || a.S < 0 || a.H <= 0 || a.Dh <= 0 || a.Dh % 2 || a.row0 < 0)
      throw KernelError("rmsNormRopeHeadsF32: bad B/S/H/Dh/ropeRow0");
    a.eps = fnum(o, "eps", who);
    a.x = arr<float>(o, "x", a.B * a.S * a.H * a.Dh, false, who);
    a.w = arr<float>(o, "weight", a.Dh, false, who);
    a.cos = arr<float>(o, "cos", (a.row0 + a.S) * a.Dh, false, who);
    a.sin = arr<float>(o, "sin", (a.row0 + a.S) * a.Dh, false, who);
    if (a.B * a.S > 0) rms_norm_rope(a);
    return env.Undefined();
  });
}

}  // namespace

void register_norm_f32(Napi::Env env, Napi::Object exports) {
  exports.Set("layerNormModulateF32", Napi::Function::New(env, LayerNormModulate));
  exports.Set("rmsNormRopeHeadsF32", Napi::Function::New(env, RmsNormRope));
}

}  // namespace svdq
