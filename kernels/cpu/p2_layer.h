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
// Branch precision Branch::Bf16 (SVDQuant §4 keeps the branch in 16 bit; p2-layer.ts P2BranchPrecision "bf16"):
// x and L_down rounded to bf16 (nearest even), their products summed in f32 (p2_branch_bf16.cc: AMX-BF16 tiles
// fused into the activation pass), and ONE bf16 part per side: R branch columns a = bf16(lora_act[m, r] / sx[m]),
// b = bf16(L_up[n, r] / sw[n]); Kt = K + roundUp(R, 32).
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
#include "x86.h"

#include <cstdint>
#include <vector>

#include "common.h"

namespace svdq {
namespace p2 {

constexpr int kExpMin = -9;  // p2.ts P2_EXP_MIN
constexpr int kExpMax = 5;   // p2.ts P2_EXP_MAX

inline int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }
// The branch precision (p2-layer.ts P2BranchPrecision; the binding's `branch` 0 / 1).
enum class Branch : int { F32 = 0, Bf16 = 1 };
// Branch columns of the GEMM: 6R (three bf16 parts, six products) or R (one part).
inline int64_t branch_cols(int64_t R, Branch b) { return b == Branch::Bf16 ? R : 6 * R; }
// Columns of the GEMM: K codes + the branch columns, padded to the 32-column tile depth of tdpbf16ps.
inline int64_t kt_of(int64_t K, int64_t R, Branch b) { return K + round_up(branch_cols(R, b), 32); }
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
  Branch branch = Branch::F32;
};
void pack_weight(const PackArgs& a);

// The power of two c taken out of a row's branch values (0 unless amax = max |branch value| / S > 2^60;
// act_quant_p2.cc): the operand holds them divided by 2^c, the row scale times it.
int branch_shift(double amax);
// branch_shift of one row: amax = max_r |v[r]| / s1 over its R branch values (s1 the row's scale S', 1 for a zero row)
int branch_shift_row(const float* v, int64_t R, double s1);

// Receives each quantized row while its codes are in cache (the AMX-INT8 path writes its band operand from it,
// pack_p2_int8.cc, instead of a pass over codes written to memory). q [K], e [K/64] are scratch valid during the
// call; S the row's S_x (0 for an all-zero row). Called from pool threads, once or twice per row (same values).
struct RowSink {
  virtual void row(int64_t m, const int8_t* q, const int8_t* e, float S) = 0;
};

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
  Branch branch = Branch::F32;
  const uint16_t* ldown_bf16 = nullptr;  // Branch::Bf16: pack_down_bf16 of ldown (64-byte aligned), or null: per call
  // Branch::Bf16: bf16(L_down)ᵀ as f32 values in the ldown_t layout (the f32 FMA down-projections' operand, prepared
  // once per layer), or null: from ldown_bf16 per call (ldt_of_ldb)
  const float* ldown_t_bf16 = nullptr;
  bool aop_branch_only = false;    // aop: write only the branch tiles (columns K on; the AMX-INT8 path, p2_int8.h)
  RowSink* sink = nullptr;         // or null
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

// ---- the bf16 branch (p2_branch_bf16.cc) ----
// bf16(L_down) as the B tiles of tdpbf16ps, Rp = roundUp(R, 16):
// | ldb | [K/32][Rp/16][16 kk][16 r][2 t] | bf16 | [kc, rb, kk, r, t] = bf16(L_down[16rb + r, 32kc + 2kk + t]), 0 for r ≥ R |
inline int64_t down_bf16_len(int64_t K, int64_t R) { return K * round_up(R, 16); }
void pack_down_bf16(const float* ldown, int64_t R, int64_t K, uint16_t* ldb);  // ldb 64-byte aligned
// bf16 bits of a finite f32, rounded to nearest even (subnormals kept), and the value of bf16 bits.
uint16_t bf16_round(float f);
float bf16_widen(uint16_t b);
#if SVDQ_X86
// 16 f32 lanes rounded as bf16_round, as 16 × uint16 (AVX-512 callers).
__attribute__((target("avx512f,avx512bw"))) inline __m256i bf16_round16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}
#endif  // SVDQ_X86
// lact [rows][R] (row stride ldl) = Σ_k bf16(x[i, k])·bf16(L_down[r, k]) for rows ≤ 32 of x (row stride ldx): every
// product exact in f32, the sums f32 (tdpbf16ps on AMX: each row pre-scaled by a power of two so that no product
// falls below the normal range, which tdpbf16ps flushes to zero), float64 on the portable path.
void down_bf16_amx(const float* x, int64_t ldx, int rows, int64_t K, const uint16_t* ldb, int64_t R, float* lact,
                   int64_t ldl);
// The same from x already converted (unscaled) into A tiles xa [K/32][2][16][32] (rows ≥ `rows` zero): the
// activation pass's fused path, for row blocks without a row of max |x| < 2^-40.
void down_bf16_amx_tiles(const uint16_t* xa, int rows, int64_t K, const uint16_t* ldb, int64_t R, float* lact,
                         int64_t ldl);
void down_bf16_scalar(const float* x, int64_t ldx, int rows, int64_t K, const uint16_t* ldb, int64_t R, float* lact,
                      int64_t ldl);
// ldT [K][Rp] f32 (lowrank_down.h layout) holding bf16(L_down): the AVX-512 path's down-projection operand.
const float* ldt_of_ldb(const uint16_t* ldb, int64_t R, int64_t K, std::vector<float>& buf);
// x rows rounded to bf16 (as f32 values) into dst [rows][K].
void round_rows_bf16(const float* x, int64_t ldx, int rows, int64_t K, float* dst);

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
