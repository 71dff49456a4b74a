// The int4p2 layer's AVX2 integer path ("avx2-int8", gemm_p2_avx2.cc): the int4p2 codes stay 4-bit integers and
// each 64-group's dot product is summed exactly in int16 / int32 by vpmaddubsw, as the INT4 AVX2 GEMM does
// (gemm_w4a4.cc micro_avx2): weights as unsigned nibbles u = q_w + 8 times the signed activation codes, the offset
// removed per group exactly (Σ u·q_x = Σ q_w·q_x + 8·Σ q_x); |pair sums| ≤ 2·15·8 = 240, 16 of them per int16 lane
// and group ≤ 3840 < 2^15. The group factor 2^(e_x − c_m)·2^(e_w − c_n) (p2_layer.h: c the branch's power of
// two, 0 unless the branch leaves 2^60 of the row scale) is applied per group in f32 (dot·factor is exact: |dot| ≤
// 64·64, a power of two), the group terms summed in f32; the rank-R branch runs in the epilogue as an f32 FMA sum
// Σ_r a[m, r]·b[n, r] of the values the bf16 operand's branch columns hold (f32 branch: a, b as f32, the three bf16
// parts of p2_layer.h sum to them exactly; bf16 branch: a, b rounded to bf16), then
//   y[m, n] = GELU?((acc·sx[m])·sw[n] + bias[n]),  acc = Σ_g dot_g·2^(e_x − c_m + e_w − c_n) + Σ_r a·b.
//
// Weight (packed once per layer, wbytes(N, K, R) bytes from a 64-byte aligned start), NP = ⌈N/8⌉ panels of 8
// columns, G = K/64:
// | part | shape             | dtype | element                                                                     |
// | ---- | ----------------- | ----- | --------------------------------------------------------------------------- |
// | q    | [NP][G][8][8][4]  | u8    | [p, g, s, j, t]: low nibble q_w[8p + j, 64g + 8s + t] + 8, high k + 4 (8 for n ≥ N) |
// | f    | [NP][G][8]        | f32   | 2^(e_w[n, g] − c_n) (1 for n ≥ N)                                           |
// | b    | [NP][R][8]        | f32   | b[n, r] = L_up[n, r] / sw[n] (bf16 branch: bf16 of it) (0 for n ≥ N)         |
// | sw   | [NP·8]            | f32   | S_w[n]·2^c_n (1 for an all-zero row or n ≥ N)                               |
// Activation operand (per call, abytes(M, K, R) bytes from a 64-byte aligned start):
// | part | shape   | dtype | element                                                               |
// | ---- | ------- | ----- | --------------------------------------------------------------------- |
// | q    | [M][K]  | i8    | activation codes q_x                                                  |
// | xs   | [M][G]  | i32   | Σ of the group's 64 codes                                             |
// | f    | [M][G]  | f32   | 2^(e_x[m, g] − c_m)                                                   |
// | a    | [M][R]  | f32   | a[m, r] = lora_act[m, r] / sx[m] (bf16 branch: bf16 of it)             |
// | sx   | [M]     | f32   | S_x[m]·2^c_m (1 for an all-zero row)                                  |
#pragma once
#include <cstdint>

#include "p2_layer.h"

namespace svdq {
namespace p2 {
namespace a2 {

constexpr int kPanel = 8;  // columns per weight panel

inline int64_t align_bytes(int64_t b) { return (b + 63) / 64 * 64; }

struct WeightLayout {
  int64_t NP, G, R;
  int64_t q, f, b, sw, bytes;  // byte offsets of the parts and the total
  WeightLayout(int64_t N, int64_t K, int64_t R_) : NP((N + kPanel - 1) / kPanel), G(K / kGroup), R(R_) {
    q = 0;
    f = align_bytes(q + NP * G * 256);
    b = align_bytes(f + NP * G * kPanel * 4);
    sw = align_bytes(b + NP * R * kPanel * 4);
    bytes = align_bytes(sw + NP * kPanel * 4);
  }
};
struct ActLayout {
  int64_t G, R;
  int64_t q, xs, f, a, sx, bytes;
  ActLayout(int64_t M, int64_t K, int64_t R_) : G(K / kGroup), R(R_) {
    q = 0;
    xs = align_bytes(M * K);
    f = align_bytes(xs + M * G * 4);
    a = align_bytes(f + M * G * 4);
    sx = align_bytes(a + M * R * 4);
    bytes = align_bytes(sx + M * 4);
  }
};

// Views of a packed weight / activation operand (base 64-byte aligned).
struct Weight {
  const uint8_t* q;
  const float *f, *b, *sw;
  int64_t N, K, R, NP, G;
};
inline Weight weight_view(const uint8_t* base, int64_t N, int64_t K, int64_t R) {
  const WeightLayout l(N, K, R);
  return {base + l.q, reinterpret_cast<const float*>(base + l.f), reinterpret_cast<const float*>(base + l.b),
          reinterpret_cast<const float*>(base + l.sw), N, K, R, l.NP, l.G};
}
struct Act {
  int8_t* q;
  int32_t* xs;
  float *f, *a, *sx;
  int64_t M, K, R, G;
};
inline Act act_view(uint8_t* base, int64_t M, int64_t K, int64_t R) {
  const ActLayout l(M, K, R);
  return {reinterpret_cast<int8_t*>(base + l.q), reinterpret_cast<int32_t*>(base + l.xs),
          reinterpret_cast<float*>(base + l.f), reinterpret_cast<float*>(base + l.a),
          reinterpret_cast<float*>(base + l.sx), M, K, R, l.G};
}

// Packs the weight (PackArgs as for pack_weight; a.wop, a.sw unused) into base (WeightLayout(N, K, R).bytes).
void pack_weight(const PackArgs& a, uint8_t* base);
// The activation operand of x (QuantArgs as for quantize with aop = null; codes, exponents, row_scales, lora_act
// may be given to receive those too). Returns quantize()'s status.
int64_t quantize(const QuantArgs& a, const Act& out);
// y [M, N] (row stride N) = the layer from an operand and a weight (bias [N] or null).
void gemm(const Act& x, const Weight& w, const float* bias, bool gelu, float* y);
// True where this path runs: the active ISA is AVX2 (not AVX-512 or AMX; p2-layer.ts packs its weight then).
bool available();

}  // namespace a2
}  // namespace p2
}  // namespace svdq
