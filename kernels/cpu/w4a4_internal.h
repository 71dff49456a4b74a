// Internals shared by the W4A4 GEMM paths (gemm_w4a4.cc: scalar/AVX2 and dispatch; gemm_w4a4_avx512.cc:
// AVX-512 VNNI; gemm_w4a4_amx.cc: AMX-INT8 tiles). Layouts: packages/kernels/src/layout.ts, "W4A4 weight panel".
#pragma once
#include <cstdint>

#include "common.h"

namespace svdq {
namespace w4a4 {

constexpr int kPanel = 8;                  // columns per weight panel
constexpr int64_t kPanelGroupBytes = 256;  // 8 columns × 64 codes / 2

struct Ctx {
  const W4A4Args* a;
  int64_t G, NP;
  const int32_t* xsum;  // [M, G] Σ codes of each activation group (AVX2/VNNI paths; null for AMX)
  // Zeros standing in for the panel after the last one when a 16-column vector covers one panel only:
  // at least max(G·256 bytes of qweight, G·8 scales, R·8 lup floats).
  const void* zeros;
};

// Panel p's 256·G bytes, or the zero stand-in when p is past the last panel.
inline const uint8_t* panel_q(const Ctx& c, int64_t p) {
  return p < c.NP ? c.a->qweight + p * c.G * kPanelGroupBytes : static_cast<const uint8_t*>(c.zeros);
}
inline const float* panel_s(const Ctx& c, int64_t p) {
  return p < c.NP ? c.a->wscales + p * c.G * kPanel : static_cast<const float*>(c.zeros);
}
inline const float* panel_lup(const Ctx& c, int64_t p) {
  return p < c.NP ? c.a->lup + p * c.a->R * kPanel : static_cast<const float*>(c.zeros);
}

// Rows [m0, m1) × panels [p0, p1) of Y.
void tile_avx512(const Ctx& c, int64_t m0, int64_t m1, int64_t p0, int64_t p1);
void tile_amx(const Ctx& c, int64_t m0, int64_t m1, int64_t p0, int64_t p1);

// AVX-512 epilogue for `rows` rows from m and the 16·NV columns from panel p: fa [rows][16·NV] (row stride ld)
// holds Σ_g dot·s_x·s_w; adds loraAct·L_upᵀ, bias, applies GELU and stores the columns < N. lup_t: those
// columns' L_up as [R][16·NV] from transpose_lup_avx512 (64-byte aligned), or null to build it here.
void epilogue_avx512(const Ctx& c, int64_t m, int rows, int64_t p, int nv, const float* fa, int64_t ld,
                     const float* lup_t = nullptr);
void transpose_lup_avx512(const Ctx& c, int64_t p, int nv, float* dst);

}  // namespace w4a4
}  // namespace svdq
