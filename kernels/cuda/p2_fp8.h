// C API of the int4p2 ("p2") FP8 path for Hopper (kernels/cuda/p2_fp8.cu; issue 16). The format is defined in
// @svdquant/int4 (packages/int4/src/p2.ts): every 64-group scale is a per-row f32 scale S times 2^e, e in [-9, 5],
// so q·2^e (q the INT4 code) is exact in FP8 E4M3 and a layer is one FP8 GEMM with per-row x per-column scales:
//   out[m, n] = S_x[m] · S_w[n] · Σ_k a8[m, k] · b8[n, k]      (k < Kx; cuBLASLt, f32 accumulation, bf16 out)
// The rank-R low-rank branch rides in the same GEMM as 3R extra K columns (Kx = K + 3R): a = lora_act·2^-(c_r+E) and
// b = lora_up/S_w·2^c_r split into E4M3 hi + lo parts, columns (a_hi, a_hi, a_lo) x (b_hi, b_lo, b_hi), so the products
// give hi·hi + hi·lo + lo·hi (relative error about 2^-8, like bf16). c_r is a per-rank power-of-two shift chosen
// with the weights (max |b| in (32, 64]); the activation kernel raises the row exponent E when a low-rank value
// would pass 256 (then the row's groups below the window are requantized; see the kernel).
//
// M tokens, K in-features, N out-features, G = 64, R rank (0 or 32), Kx = K + 3R (K without the branch):
// | tensor    | shape     | dtype | layout / meaning                                                        |
// |-----------|-----------|-------|-------------------------------------------------------------------------|
// | x         | [M, K]    | bf16  | row-major activations                                                   |
// | smooth    | [K]       | bf16  | λ (codes are of x·(1/λ) in f32), or NULL                                 |
// | lora_down | [R, K]    | bf16  | row-major, applied to the raw x (by the caller: lora_act = x·lora_downᵀ) |
// | lr_shift  | [R]       | int32 | c_r of the weights (see above), or NULL: no low-rank columns (Kx = K)    |
// | a8        | [M, Kx]   | e4m3  | row-major: q·2^e of the codes, then the 3R low-rank columns             |
// | sx        | [M]       | f32   | S_x = 2^E per token (power-of-two group scales: p2RowScale "pow2")      |
// | lora_act  | [M, R]    | f32   | x · lora_downᵀ (input of svdq_p2_quantize_rows with lr_shift)            |
// | b8        | [N, Kx]   | e4m3  | weights' q·2^e (p2RowScale "max"), then the 3R low-rank columns          |
// | sw        | [N]       | f32   | S_w per output channel                                                  |
// | out       | [M, N]    | bf16  | row-major                                                               |
// The activation codes are those of @svdquant/int4 quantize(x/λ, { format: "int4p2", p2RowScale: "pow2" })
// (each group the better of two exponents by f32 squared error), except for groups more than 2^14 below the row's
// largest, which are requantized from their codes (double rounding) and groups of rows whose exponent the low-rank
// columns raised.
#ifndef SVDQ_P2_FP8_H
#define SVDQ_P2_FP8_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SVDQ_P2_EXP_MIN (-9)  /* 2^-9: E4M3's subnormal quantum */
#define SVDQ_P2_EXP_MAX 5     /* 8·2^5 = 256 <= 448, E4M3's largest */

// The activation quantizer, for callers that compute lora_act = x·lora_downᵀ themselves (one cuBLAS GEMM, as the
// engine and @svdquant/kernels-cuda quantizeActP2 do): one read of x, one write of a8 and sx; lora_act [M, 32] f32 is
// an input (needed when lr_shift is given). x and a8 16-byte aligned. `reference` runs the reference kernel (every
// value through the conversion instructions): the same bytes, slower.
typedef struct {
  const void* x;            // [M, K] bf16
  const void* smooth;       // [K] bf16 or NULL
  const float* lora_act;    // [M, 32] f32 or NULL (no low-rank columns)
  const int32_t* lr_shift;  // [32] or NULL (no low-rank columns)
  int M, K;                 // K in svdq_p2_supported_k
  void* a8;                 // [M, Kx] e4m3, Kx = K + 96 with lr_shift, else K
  float* sx;                // [M]
  int reference;            // 1: the conversion-instruction path (same bytes, slower; tests), 0: default
} svdq_p2_rows_args;

// The GEMM with an output stride and a cuBLASLt epilogue: out[m, n] (row stride ldo, 0 = N) =
// gelu?(S_x S_w (a8 · b8ᵀ) + bias[n]) in f32, rounded once to bf16 (bias bf16 [N] or NULL; GELU in its tanh form).
typedef struct {
  const void* a8;
  const float* sx;
  const void* b8;
  const float* sw;
  void* out;
  int ldo;
  const void* bias;
  int gelu;
  int M, N, Kx;
  int fast_accum;
  // 0: on the first call of a shape outside stream capture, time cuBLASLt's cluster shapes and custom options of the
  // heuristic's algorithm and keep the fastest (same kernel family; its output measured bit-identical); 1: keep the
  // heuristic's first answer
  int heuristic_only;
} svdq_p2_gemm_args;

// 1 if svdq_p2_quantize_rows takes this K (1024, 1152, 3072, 4608, 12288, 15360: the tested ones), else 0.
int svdq_p2_supported_k(int K);
const char* svdq_p2_quantize_rows(const svdq_p2_rows_args* a, void* stream);
const char* svdq_p2_gemm_ex(const svdq_p2_gemm_args* g, void* stream);
// out = S_x S_w (a8 · b8ᵀ) through cuBLASLt (loaded at run time: libcublasLt.so.13); FP8 E4M3 operands, outer-vector
// scales, f32 accumulation without fast accumulation unless fast_accum; sm_89+ (cuBLASLt FP8).
const char* svdq_p2_gemm(const void* a8, const float* sx, const void* b8, const float* sw, void* out, int M, int N,
                         int Kx, int fast_accum, void* stream);
const char* svdq_cublaslt_available(void);  // NULL if cuBLASLt could be loaded, else why not

#ifdef __cplusplus
}
#endif

#endif
