// Force-included (g++ -include) by tools/avx512-emu/check.sh into every kernels/cpu source: the AVX-512 intrinsics
// through SIMDe (Debian libsimde-dev; portable code, built on AVX2 halves here), the AMX tiles as a software model
// (below), and a CPU that reports AVX-512 F/BW/DQ/VL/VNNI/BF16 and AMX-INT8/BF16 when it has AVX2 + FMA — so the
// `avx512` and `amx` paths of @svdquant/kernels run, and its tests check them, on a machine that has neither.
// A test build only: never shipped, and no timing from it means anything.
#pragma once
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

// ---- CPU detection: AVX-512 where the machine has AVX2 + FMA (AMX: SVDQ_EMU_AMX at the end of this header)
static inline bool svdq_emu_cpu_supports(const char* f) {
  if (std::strcmp(f, "avx2") == 0) return __builtin_cpu_supports("avx2");
  if (std::strcmp(f, "fma") == 0) return __builtin_cpu_supports("fma");
  if (std::strncmp(f, "avx512", 6) == 0) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return false;
}
#define __builtin_cpu_supports(f) svdq_emu_cpu_supports(f)

// ---- intrinsics SIMDe 0.7.4 lacks, lane by lane as the Intel SDM defines them (default MXCSR: round to nearest
// even; out-of-range float → int gives the "integer indefinite" 0x80000000); reductions in GCC 12's tree order
// (avx512fintrin.h __MM512_REDUCE_OP), so sums round as in a real AVX-512 build
namespace svdq_emu {
struct Ps { float v[16]; };
struct Pd { double v[8]; };
struct Pi { int32_t v[16]; };
inline Ps ps(simde__m512 a) { Ps r; simde_mm512_storeu_ps(r.v, a); return r; }
inline Pd pd(simde__m512d a) { Pd r; simde_mm512_storeu_pd(r.v, a); return r; }
inline Pi pi(simde__m512i a) { Pi r; simde_mm512_storeu_si512(r.v, a); return r; }
inline simde__m512 ps(const Ps& r) { return simde_mm512_loadu_ps(r.v); }
inline simde__m512d pd(const Pd& r) { return simde_mm512_loadu_pd(r.v); }
inline simde__m512i pi(const Pi& r) { return simde_mm512_loadu_si512(r.v); }
inline int32_t cvt_i32(double x) {  // cvtps2dq / cvtpd2dq with the default rounding
  const double r = std::nearbyint(x);
  return r >= -2147483648.0 && r <= 2147483647.0 ? int32_t(r) : INT32_MIN;
}
}  // namespace svdq_emu

inline simde__m512 svdq_emu_cvtepi32_ps(simde__m512i a) {
  const auto i = svdq_emu::pi(a);
  svdq_emu::Ps o;
  for (int k = 0; k < 16; ++k) o.v[k] = float(i.v[k]);
  return svdq_emu::ps(o);
}
inline simde__m512i svdq_emu_cvtps_epi32(simde__m512 a) {
  const auto f = svdq_emu::ps(a);
  svdq_emu::Pi o;
  for (int k = 0; k < 16; ++k) o.v[k] = svdq_emu::cvt_i32(f.v[k]);
  return svdq_emu::pi(o);
}
inline __m256i svdq_emu_cvtpd_epi32(simde__m512d a) {
  const auto d = svdq_emu::pd(a);
  int32_t o[8];
  for (int k = 0; k < 8; ++k) o[k] = svdq_emu::cvt_i32(d.v[k]);
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(o));
}
inline simde__m512d svdq_emu_cvtps_pd(__m256 a) {
  float f[8];
  _mm256_storeu_ps(f, a);
  svdq_emu::Pd o;
  for (int k = 0; k < 8; ++k) o.v[k] = double(f[k]);
  return svdq_emu::pd(o);
}
inline __m256 svdq_emu_cvtpd_ps(simde__m512d a) {
  const auto d = svdq_emu::pd(a);
  float f[8];
  for (int k = 0; k < 8; ++k) f[k] = float(d.v[k]);
  return _mm256_loadu_ps(f);
}
inline simde__m512 svdq_emu_maskz_loadu_ps(uint16_t m, const void* p) {  // masked-off lanes are not read
  svdq_emu::Ps o;
  for (int k = 0; k < 16; ++k) o.v[k] = (m >> k) & 1 ? static_cast<const float*>(p)[k] : 0.f;
  return svdq_emu::ps(o);
}
inline simde__m512i svdq_emu_maskz_loadu_epi32(uint16_t m, const void* p) {  // masked-off lanes are not read
  svdq_emu::Pi o;
  for (int k = 0; k < 16; ++k) o.v[k] = (m >> k) & 1 ? static_cast<const int32_t*>(p)[k] : 0;
  return svdq_emu::pi(o);
}
inline void svdq_emu_mask_storeu_ps(void* p, uint16_t m, simde__m512 a) {  // masked-off lanes are not written
  const auto f = svdq_emu::ps(a);
  for (int k = 0; k < 16; ++k)
    if ((m >> k) & 1) static_cast<float*>(p)[k] = f.v[k];
}
inline simde__m512 svdq_emu_shuffle_f32x4(simde__m512 a, simde__m512 b, int imm) {
  const auto x = svdq_emu::ps(a), y = svdq_emu::ps(b);
  svdq_emu::Ps o;
  for (int l = 0; l < 4; ++l)
    for (int k = 0; k < 4; ++k) o.v[4 * l + k] = (l < 2 ? x : y).v[4 * ((imm >> (2 * l)) & 3) + k];
  return svdq_emu::ps(o);
}
inline simde__m512d svdq_emu_permute_pd(simde__m512d a, int imm) {
  const auto d = svdq_emu::pd(a);
  svdq_emu::Pd o;
  for (int k = 0; k < 8; ++k) o.v[k] = d.v[(k & ~1) | ((imm >> k) & 1)];
  return svdq_emu::pd(o);
}
inline float svdq_emu_reduce_add_ps(simde__m512 a) {
  const auto f = svdq_emu::ps(a);
  float t3[8], t6[4];
  for (int k = 0; k < 8; ++k) t3[k] = f.v[8 + k] + f.v[k];
  for (int k = 0; k < 4; ++k) t6[k] = t3[4 + k] + t3[k];
  const float t80 = t6[0] + t6[2], t81 = t6[1] + t6[3];
  return t80 + t81;
}
inline float svdq_emu_max(float a, float b) { return a > b ? a : b; }  // maxps: the second operand unless a > b
inline double svdq_emu_max(double a, double b) { return a > b ? a : b; }
inline float svdq_emu_reduce_max_ps(simde__m512 a) {
  const auto f = svdq_emu::ps(a);
  float t3[8], t6[4], t8[4];
  for (int k = 0; k < 8; ++k) t3[k] = svdq_emu_max(f.v[8 + k], f.v[k]);
  for (int k = 0; k < 4; ++k) t6[k] = svdq_emu_max(t3[4 + k], t3[k]);
  for (int k = 0; k < 4; ++k) t8[k] = svdq_emu_max(t6[k], t6[k ^ 2]);
  return svdq_emu_max(t8[0], t8[1]);
}
inline double svdq_emu_reduce_add_pd(simde__m512d a) {
  const auto d = svdq_emu::pd(a);
  double t3[4];
  for (int k = 0; k < 4; ++k) t3[k] = d.v[4 + k] + d.v[k];
  const double t60 = t3[2] + t3[0], t61 = t3[3] + t3[1];
  return t60 + t61;
}
inline double svdq_emu_reduce_max_pd(simde__m512d a) {
  const auto d = svdq_emu::pd(a);
  double t3[4];
  for (int k = 0; k < 4; ++k) t3[k] = svdq_emu_max(d.v[4 + k], d.v[k]);
  const double t60 = svdq_emu_max(t3[2], t3[0]), t61 = svdq_emu_max(t3[3], t3[1]);
  return svdq_emu_max(t60, t61);
}
inline __m256i svdq_emu_cvtepi32_epi16(simde__m512i a) {  // vpmovdw: truncation
  const auto i = svdq_emu::pi(a);
  int16_t o[16];
  for (int k = 0; k < 16; ++k) o[k] = int16_t(uint16_t(uint32_t(i.v[k])));
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(o));
}
inline __m128i svdq_emu_cvtepi32_epi8(simde__m512i a) {  // vpmovdb: truncation
  const auto i = svdq_emu::pi(a);
  int8_t o[16];
  for (int k = 0; k < 16; ++k) o[k] = int8_t(uint8_t(uint32_t(i.v[k])));
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(o));
}
inline __m128i svdq_emu_cvtepi32_epi8_256(__m256i a) {  // vpmovdb ymm → xmm: 8 bytes, the upper 8 zero
  int32_t i[8];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(i), a);
  int8_t o[16] = {};
  for (int k = 0; k < 8; ++k) o[k] = int8_t(uint8_t(uint32_t(i[k])));
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(o));
}
inline simde__m512i svdq_emu_cvtepu16_epi32(__m256i a) {  // vpmovzxwd
  uint16_t h[16];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(h), a);
  svdq_emu::Pi o;
  for (int k = 0; k < 16; ++k) o.v[k] = int32_t(h[k]);
  return svdq_emu::pi(o);
}
// vfpclassps (SDM vol. 2A): imm8 bits QNaN, +0, −0, +Inf, −Inf, denormal, finite negative, SNaN
inline uint16_t svdq_emu_fpclass_ps_mask(simde__m512 a, int imm) {
  uint32_t u[16];
  simde_mm512_storeu_ps(reinterpret_cast<float*>(u), a);
  uint16_t m = 0;
  for (int k = 0; k < 16; ++k) {
    const uint32_t s = u[k] >> 31, e = (u[k] >> 23) & 0xFF, f = u[k] & 0x7FFFFF;
    const bool nan = e == 0xFF && f, zero = !e && !f, inf = e == 0xFF && !f;
    const bool hit = ((imm & 0x01) && nan && (f >> 22)) || ((imm & 0x02) && zero && !s) || ((imm & 0x04) && zero && s) ||
                     ((imm & 0x08) && inf && !s) || ((imm & 0x10) && inf && s) || ((imm & 0x20) && !e && f) ||
                     ((imm & 0x40) && s && e != 0xFF && !zero) || ((imm & 0x80) && nan && !(f >> 22));
    m |= uint16_t(hit) << k;
  }
  return m;
}
inline simde__m512 svdq_emu_mask_i32gather_ps(simde__m512 src, uint16_t m, simde__m512i idx, const void* base, int scale) {
  auto o = svdq_emu::ps(src);
  const auto i = svdq_emu::pi(idx);
  for (int k = 0; k < 16; ++k)
    if ((m >> k) & 1) o.v[k] = *reinterpret_cast<const float*>(static_cast<const char*>(base) + int64_t(i.v[k]) * scale);
  return svdq_emu::ps(o);
}
inline int svdq_emu_reduce_add_epi32(simde__m512i a) {
  const auto i = svdq_emu::pi(a);
  uint32_t s = 0;
  for (int k = 0; k < 16; ++k) s += uint32_t(i.v[k]);
  return int(s);
}
inline void svdq_emu_stream_si512(void* p, simde__m512i a) { simde_mm512_store_si512(p, a); }

// ---- AMX (Intel SDM vol. 2A, LDTILECFG / TILELOADD / TILESTORED / TILEZERO / TDPBSSD / TDPBF16PS): 8 tile registers
// per thread (the tile state is per thread), rows and bytes per row from the loaded configuration, bytes past them
// zero. TDPBF16PS as the SDM's pseudocode: per k the two bf16 products (exact in f32) added in turn, rounded to
// nearest even, bf16 subnormal inputs read as zero (DAZ) and subnormal results flushed to zero (FTZ).
namespace svdq_emu {
struct Tiles {
  bool on = false;
  uint8_t rows[8] = {};
  uint16_t colsb[8] = {};
  alignas(64) uint8_t t[8][16][64] = {};
};
inline Tiles& tiles() {
  static thread_local Tiles s;
  return s;
}
inline Tiles& live() {
  Tiles& s = tiles();
  if (!s.on) std::abort();  // a tile instruction without LDTILECFG raises #UD
  return s;
}
inline float ftz(float x) { return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.f, x) : x; }
inline float bf16_daz(const uint8_t* p) {
  uint32_t u = uint32_t(p[0] | p[1] << 8) << 16;
  if (!(u & 0x7F800000u)) u &= 0x80000000u;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
}  // namespace svdq_emu
inline void svdq_emu_tile_loadconfig(const void* p) {
  const uint8_t* c = static_cast<const uint8_t*>(p);
  svdq_emu::Tiles& s = svdq_emu::tiles();
  if (c[0] != 1) std::abort();  // palette 1 is the only one
  s = svdq_emu::Tiles{};
  s.on = true;
  for (int i = 0; i < 8; ++i) {
    s.colsb[i] = uint16_t(c[16 + 2 * i] | c[17 + 2 * i] << 8);
    s.rows[i] = c[48 + i];
    if (s.colsb[i] > 64 || s.rows[i] > 16) std::abort();
  }
}
inline void svdq_emu_tile_release() { svdq_emu::tiles() = svdq_emu::Tiles{}; }
inline void svdq_emu_tile_loadd(int d, const void* base, long stride) {
  svdq_emu::Tiles& s = svdq_emu::live();
  std::memset(s.t[d], 0, sizeof s.t[d]);
  for (int r = 0; r < s.rows[d]; ++r) std::memcpy(s.t[d][r], static_cast<const char*>(base) + r * stride, s.colsb[d]);
}
inline void svdq_emu_tile_stored(int d, void* base, long stride) {
  svdq_emu::Tiles& s = svdq_emu::live();
  for (int r = 0; r < s.rows[d]; ++r) std::memcpy(static_cast<char*>(base) + r * stride, s.t[d][r], s.colsb[d]);
}
inline void svdq_emu_tile_zero(int d) {
  svdq_emu::Tiles& s = svdq_emu::live();
  std::memset(s.t[d], 0, sizeof s.t[d]);
}
inline void svdq_emu_tile_dpbssd(int d, int a, int b) {  // int32 sums of signed byte products, wrapping
  svdq_emu::Tiles& s = svdq_emu::live();
  for (int m = 0; m < s.rows[d]; ++m)
    for (int n = 0; n < s.colsb[d] / 4; ++n) {
      uint32_t acc;
      std::memcpy(&acc, &s.t[d][m][4 * n], 4);
      for (int k = 0; k < s.colsb[a] / 4; ++k)
        for (int i = 0; i < 4; ++i)
          acc += uint32_t(int32_t(int8_t(s.t[a][m][4 * k + i])) * int32_t(int8_t(s.t[b][k][4 * n + i])));
      std::memcpy(&s.t[d][m][4 * n], &acc, 4);
    }
}
inline void svdq_emu_tile_dpbf16ps(int d, int a, int b) {
  svdq_emu::Tiles& s = svdq_emu::live();
  for (int m = 0; m < s.rows[d]; ++m)
    for (int n = 0; n < s.colsb[d] / 4; ++n) {
      float acc;
      std::memcpy(&acc, &s.t[d][m][4 * n], 4);
      for (int k = 0; k < s.colsb[a] / 4; ++k)
        for (int i = 0; i < 2; ++i) {
          const float p = svdq_emu::ftz(svdq_emu::bf16_daz(&s.t[a][m][4 * k + 2 * i]) *
                                        svdq_emu::bf16_daz(&s.t[b][k][4 * n + 2 * i]));
          acc = svdq_emu::ftz(acc + p);
        }
      std::memcpy(&s.t[d][m][4 * n], &acc, 4);
    }
}

#define _mm512_cvtepi32_ps svdq_emu_cvtepi32_ps
#define _mm512_cvtps_epi32 svdq_emu_cvtps_epi32
#define _mm512_cvtpd_epi32 svdq_emu_cvtpd_epi32
#define _mm512_cvtps_pd svdq_emu_cvtps_pd
#define _mm512_cvtpd_ps svdq_emu_cvtpd_ps
#define _mm512_maskz_loadu_ps svdq_emu_maskz_loadu_ps
#define _mm512_maskz_loadu_epi32 svdq_emu_maskz_loadu_epi32
#define _mm512_mask_storeu_ps svdq_emu_mask_storeu_ps
#define _mm512_shuffle_f32x4 svdq_emu_shuffle_f32x4
#define _mm512_permute_pd svdq_emu_permute_pd
#define _mm512_reduce_add_ps svdq_emu_reduce_add_ps
#define _mm512_reduce_max_ps svdq_emu_reduce_max_ps
#define _mm512_reduce_add_pd svdq_emu_reduce_add_pd
#define _mm512_reduce_max_pd svdq_emu_reduce_max_pd
#define _mm512_cvtepi32_epi16 svdq_emu_cvtepi32_epi16
#define _mm512_cvtepi32_epi8 svdq_emu_cvtepi32_epi8
#define _mm256_cvtepi32_epi8 svdq_emu_cvtepi32_epi8_256
#define _mm512_stream_si512 svdq_emu_stream_si512
#define _mm512_cvtepu16_epi32 svdq_emu_cvtepu16_epi32
#define _mm512_fpclass_ps_mask svdq_emu_fpclass_ps_mask
#define _mm512_mask_i32gather_ps svdq_emu_mask_i32gather_ps
#define _mm512_reduce_add_epi32 svdq_emu_reduce_add_epi32
#define _tile_loadconfig svdq_emu_tile_loadconfig
#define _tile_release svdq_emu_tile_release
#undef _tile_loadd
#define _tile_loadd svdq_emu_tile_loadd
#undef _tile_stored
#define _tile_stored svdq_emu_tile_stored
#undef _tile_zero
#define _tile_zero svdq_emu_tile_zero
#undef _tile_dpbssd
#define _tile_dpbssd svdq_emu_tile_dpbssd
#undef _tile_dpbf16ps
#define _tile_dpbf16ps svdq_emu_tile_dpbf16ps
// AMX availability: kernels/cpu/runtime.cc reads the CPUID bits and asks Linux for the tile state unless
// SVDQ_EMU_AMX is defined (this header only)
#define SVDQ_EMU_AMX 1
