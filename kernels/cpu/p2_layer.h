// The int4p2 W4A4 layer on the CPU (act_quant_p2.cc, gemm_p2.cc, gemm_p2_amx.cc): every 64-group scale of an int4p2
// tensor is a per-row f32 scale S times 2^e (e in [-9, 5], packages/int4/src/p2.ts), so every q·2^e is exact in
// bf16 and every product of two of them exact in f32. The layer is then ONE GEMM over K with f32 accumulation
// (AMX-BF16 tdpbf16ps, or f32 FMA on the same bf16 values) and S_x[m]·S_w[n] applied once in
// the epilogue. The rank-R low-rank branch rides in the same GEMM as 6R extra K columns: each f32 value is split into
// three bf16 parts, v = v1 + v2 + v3 exactly (8 + 8 + 8 significant bits; kernels/cuda/p2_fp8.h does the same with
// two E4M3 parts), and the six products of parts down to 2^-16 of the leading one are summed:
//   activation column groups K + [jR, (j+1)R), j = 0..5: a1, a1, a2, a1, a2, a3   with a = lora_act[m, r] / sx[m]
//   weight     column groups                           : b1, b2, b1, b3, b2, b1   with b = L_up[n, r] / sw[n]
// a1b1 + a1b2 + a2b1 + a1b3 + a2b2 + a3b1 = a·b to ≈ 2^-23 relative (the dropped terms are below 2^-24·|a·b|), as
// accurate as an f32 epilogue. Kt = K + roundUp(6R, 32) (zero columns pad it).
//
// | operand | shape                         | dtype | meaning                                                       |
// | ------- | ----------------------------- | ----- | ------------------------------------------------------------- |
// | aop     | [Mp/32][Kt/32][2][16][32]     | bf16  | Mp = roundUp(M, 32); [mb, kc, h, i, t] = A'[32mb + 16h + i, 32kc + t] |
// | sx      | [M]                           | f32   | S_x[m]·2^c_m (1 for an all-zero row)                           |
// | wop     | [Np/32][Kt/32][2][16][16][2]  | bf16  | Np = roundUp(N, 32); [nb, kc, h, kk, j, t] = W'[32nb + 16h + j, 32kc + 2kk + t] |
// | sw      | [Np]                          | f32   | S_w[n]·2^c_n (1 for an all-zero row or a pad column)           |
// A' is q_x·2^(e_x − c_m) | branch columns (rows ≥ M zero), W' is q_w·2^(e_w − c_n) | branch columns: both are
// stored as the 1 KiB tiles the AMX path loads, the two tiles of one 32-row (32-column) block and K step side by
// side, so each operand of the 2×2 tile block is one sequential stream. c_m, c_n are 0 unless the branch would leave the f32 range (see the .cc).
#pragma once
#include <cstdint>

#include "common.h"

namespace svdq {
namespace p2 {

constexpr int kExpMin = -9;  // p2.ts P2_EXP_MIN
constexpr int kExpMax = 5;   // p2.ts P2_EXP_MAX

inline int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }
// Columns of the GEMM: K codes + the branch's 6R columns, padded to the 32-column tile depth of tdpbf16ps.
inline int64_t kt_of(int64_t K, int64_t R) { return K + round_up(6 * R, 32); }
// The bf16 part (0, 1, 2) of a branch value in each of the six column groups (the table above).
constexpr int kActPart[6] = {0, 0, 1, 0, 1, 2};
constexpr int kWeightPart[6] = {0, 1, 0, 2, 1, 0};
// Element (m, 0) of the tiled activation operand; element (m, k) is at aop_row + (k/32)·1024 + k%32.
inline int64_t aop_row(int64_t m, int64_t Kt) { return (m / 32) * (Kt / 32) * 1024 + ((m / 16) & 1) * 512 + (m % 16) * 32; }
// The 16-column block nb of the weight operand: its K pair k2 (16 columns × 2) at wop_block + (k2/16)·1024 + (k2%16)·32.
inline int64_t wop_block(int64_t nb, int64_t Kt) { return (nb / 2) * (Kt / 32) * 1024 + (nb & 1) * 512; }

struct PackArgs {
  const int8_t* codes;       // [N, K] q in [-8, 7]
  const int8_t* exponents;   // [N, K/64] e in [-9, 5]
  const float* row_scales;   // [N] S_w
  const float* lup;          // [N, R] or null (R = 0)
  int64_t N, K, R;
  uint16_t* wop;             // out, 64-byte aligned, Np·Kt elements
  float* sw;                 // out [Np]
};
void pack_weight(const PackArgs& a);

struct QuantArgs {
  const float* x;            // [M, K] raw input
  int64_t M, K;
  const float* inv_smooth;   // [K] f32(1/λ), or null
  const float* ldown;        // [R, K] or null
  int64_t R;
  uint16_t* aop;             // out, 64-byte aligned, Mp·Kt elements (tiled, see the table), or null (codes only)
  float* sx;                 // out [M] epilogue row scales (with aop)
  float* row_scales;         // out [M] S_x as p2.ts gives it (0 for an all-zero row), or null
  int8_t* codes;             // out [M, K], or null
  int8_t* exponents;         // out [M, K/64], or null
  float* lora_act;           // out [M, R], or null
  const float* ldown_t = nullptr;  // L_downᵀ [K][Rp] (lowrank_down.h, 64-byte aligned), or null: transposed per call
  bool aop_branch_only = false;    // aop: write only the branch tiles (columns K on; the AMX-INT8 path, p2_int8.h)
};
// Returns -1, or the first failing row r: r ≥ 0 when x/λ holds a NaN/Inf there, −2 − r when its row scale
// leaves float32 (p2.ts E_RANGE). Rows before it are written.
int64_t quantize(const QuantArgs& a);

struct GemmArgs {
  const uint16_t* aop;  // tiled, see the table
  const float* sx;      // [M]
  const uint16_t* wop;  // packed
  const float* sw;      // [Np]
  const float* bias;    // [N] or null
  int64_t M, N, Kt;
  bool gelu;
  float* y;             // [M, N]
};
void gemm(const GemmArgs& a);

bool cpu_has_avx512_bf16();
// Paths of this operator: 3 AMX-BF16 tiles, 2 AVX-512 f32 FMA, 1 AVX2 f32 FMA, 0 scalar.
int gemm_path();
void gemm_amx(const GemmArgs& a);
void epilogue_rows(const GemmArgs& a, int64_t m0, int rows, int64_t n0, int cols, const float* c, int64_t ldc);

// tdpbf16ps / vdpbf16ps peaks (peak.cc, peak_ops kinds 5 and 6): bf16 multiply-adds per second over all pool
// threads; kind 0 tdpbf16ps, 1 vdpbf16ps.
double peak_bf16(int kind, int64_t iters);

}  // namespace p2
}  // namespace svdq
