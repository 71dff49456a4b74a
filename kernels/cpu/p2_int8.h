// The int4p2 layer on AMX-INT8 (issue 19; docs/benchmarks.md "int4p2 on AMX-INT8"): every value of an int4p2 row is
// q·2^e with q in [−8, 7] and e in [−9, 5] (p2_layer.h), and q·2^d is an int8 for d in [0, 4] (−128 … 112). So a row
// whose nonzero groups' exponents lie within 5 levels of its largest, top, is exactly the int8 row q·2^(e − top + 4)
// times 2^(top − 4): the GEMM runs on `tdpbssd` (twice the multiply-adds per instruction of `tdpbf16ps`, half the
// operand bytes) with exact int32 sums over the whole K (|sum| ≤ 128·128·K < 2^31 for K < 131072).
// A row whose exponents spread wider is cut into bands: the greedy windows of 5 levels over its group offsets
// d = top − e (band j starts at the smallest d not in an earlier band); band 0 stays in the row, band j ≥ 1 goes to a
// "shadow" row (zero outside its groups) appended after the main rows, with its own power-of-two factor. Shadow
// activation rows and shadow weight columns enlarge the GEMM; their outputs are added to their parents' before the
// bias and GELU. Measured (experiments/ablation-layer/bench/p2-bands.ts): the trained toy FLUX needs none; generated
// FLUX-width layers with outlier tokens 4–8 % of the 16-row activation tiles.
// The rank-R branch keeps the bf16 path's 6R columns (p2_layer.h): a short AMX-BF16 pass per output block after the
// int8 K loop, read from the bf16 operands' branch tiles.
//
// | operand | shape                              | dtype | meaning                                                       |
// | ------- | ---------------------------------- | ----- | ------------------------------------------------------------- |
// | a8      | [Ma/32][K/64][2][16][64]           | int8  | Ma = Mp + roundUp(Sa, 32), Mp = roundUp(M, 32); [mb, g, h, i, t] = A8[32mb + 16h + i, 64g + t]; rows Mp… shadows |
// | pa      | [Ma]                               | f32   | 2^(top − 4 − c − d_j): A8[m, k]·pa[m]·sx[parent m] = the row's value |
// | apar    | [Sa]                               | int32 | main row of shadow row Mp + s                                   |
// | w8      | [Na/32][K/64][2][16][16][4]        | int8  | Na = Np + roundUp(Sw, 32); [nb, g, h, k4, j, t] = W8[32nb + 16h + j, 64g + 4k4 + t] |
// | pw      | [Na]                               | f32   | as pa, with sw                                                 |
// | wpar    | [Sw]                               | int32 | main column of shadow column Np + s                            |
// | abr     | the bf16 aop of p2_layer.h         | bf16  | only its branch tiles (K columns on) are read                   |
// | wbr     | [Np/32][(Kt − K)/32][2][16][16][2] | bf16  | the bf16 wop's branch tiles (p2_layer.h), 32-column blocks      |
// c is the row's branch shift (sx = S·2^c, p2_layer.h), d_j the first offset of band j.
#pragma once
#include <cstdint>
#include <vector>

#include "p2_layer.h"

namespace svdq {
namespace p2i8 {

// Largest K with exact int32 sums: 128·128·K < 2^31 (the largest multiple of 64 below 131072).
constexpr int64_t kMaxK = 131008;

// Element (m, k) of a8 (and (n, k) of w8 up to the inner order) : block offsets.
inline int64_t a8_at(int64_t m, int64_t k, int64_t K) {
  return ((m / 32) * (K / 64) + k / 64) * 2048 + ((m / 16) & 1) * 1024 + (m % 16) * 64 + k % 64;
}
inline int64_t w8_at(int64_t n, int64_t k, int64_t K) {
  return ((n / 32) * (K / 64) + k / 64) * 2048 + ((n / 16) & 1) * 1024 + ((k % 64) / 4) * 64 + (n % 16) * 4 + k % 4;
}

// Bands of one int4p2 row: codes [K], exponents [K/64]. For each group: band[g] (255 for an all-zero group) and
// shift[g] = 4 − (d − d_band) in [0, 4]; start[j] = d_j. Returns the number of bands (0 for an all-zero row).
int row_bands(const int8_t* q, const int8_t* e, int64_t K, int& top, int start[3], uint8_t* band, uint8_t* shift);

// The weight operand (offline): from the int4p2 codes / exponents and the bf16 packer's sw and wop (its branch tiles
// are copied out; the caller may drop wop afterwards).
struct Weight {
  int64_t N = 0, K = 0, Kt = 0, Np = 0, Na = 0, Sw = 0;
  std::vector<int8_t> w8_store;
  int8_t* w8 = nullptr;  // 64-byte aligned in w8_store
  std::vector<float> pw;
  std::vector<int32_t> wpar;
  std::vector<uint16_t> wbr_store;
  uint16_t* wbr = nullptr;
  std::vector<float> sw;   // [Np] (p2_layer.h)
  std::vector<float> swa;  // [Na] sw of each column's main column (0 for padding)
};
void pack_weight(const p2::PackArgs& a, const uint16_t* wop, const float* sw, Weight& out);

// The activation operand of one call, from p2::quantize's codes, exponents, row scales and sx (its aop keeps the
// branch tiles). Buffers are reused across calls.
struct Act {
  int64_t M = 0, Mp = 0, Ma = 0, Sa = 0;
  std::vector<int8_t> a8_store;
  int8_t* a8 = nullptr;
  std::vector<float> pa;
  std::vector<int32_t> apar;
  std::vector<float> sxa;      // [Ma] sx of each row's main row (0 for padding)
  std::vector<int64_t> first;  // [M + 1] first shadow row of each row, minus Mp
};
void pack_act(const int8_t* codes, const int8_t* exponents, const float* row_scales, const float* sx, int64_t M,
              int64_t K, Act& out);

// p2::quantize of q (row_scales and sx required; codes and exponents are not written) with the band operand written
// from each row while its codes are in cache (no pass over codes in memory). Same operand as pack_act of
// quantize's codes, byte for byte. Returns quantize's status (out is complete only for −1).
int64_t quantize_act(p2::QuantArgs q, Act& out);

struct GemmArgs {
  const Act* act;
  const Weight* w;
  const uint16_t* abr;  // bf16 aop (branch tiles), or null when R = 0
  const float* sx;      // [M]
  const float* bias;    // [N] or null
  bool gelu;
  float* y;             // [M, N]
};
bool available();  // AMX-INT8 and AMX-BF16 with the tile state granted
void gemm(const GemmArgs& a);

}  // namespace p2i8
}  // namespace svdq
