// Fused element-wise ops of the PixArt-Σ step (kernels/cuda/engine/pixart_ops.cu), used by pixart.cpp in place of
// the separate passes of engine_ops.h (gated residual, residual load, LayerNorm + modulation, bias + GELU, head
// split, per-block modulation). Each computes exactly what the ops it replaces compute, in the same order (only
// LayerNorm's f32 sums are reduced in another order). Launchers validate their arguments and return NULL on success
// or a message naming the op and the failed check (valid until the next call on the same thread).
//
// Names as in engine_ops.h: B batch, n image tokens per item, M = B·n rows, D model width (D % 4 == 0), all
// activations bf16 row-major, the residual stream X f32 [M, D] (PixArt has no text segment in X).
//
// | tensor   | shape              | dtype | notes                                                               |
// |----------|--------------------|-------|---------------------------------------------------------------------|
// | X        | [M, D]             | f32   | residual stream; row r belongs to item r / n                        |
// | y        | [M, ld_y]          | bf16  | the update (a linear's output before its bias)                      |
// | add      | [n, D]             | bf16  | broadcast over the B items (the position table)                     |
// | gate, shift, scale | [B, mod_stride] | bf16 | rows of a modulation table; pointers at the vector's first column |
// | tables   | L pointers to [W]  | bf16  | device array of per-layer tables (scale_shift_table of each block)  |
// | mod_all  | [L, B, W]          | bf16  | mod_all[l, b, j] = t[b, j] + tables[l][j]                           |
#ifndef SVDQ_ENGINE_PIXART_OPS_H
#define SVDQ_ENGINE_PIXART_OPS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// One pass over rows of the residual stream: the update, then what the next op reads.
typedef struct {
  float* X;
  int M, n, D;
  // update (y == NULL: none): v = y[r, c] (+ bias[c], rounded to bf16, as the GEMM epilogue) (· gate[b, c])
  // (+ add[r % n, c]); X[r, c] = v when store, else X[r, c] += v (eng_residual_store / eng_gated_residual)
  const void* y;
  int ld_y;
  const void* bias;
  const void* gate;
  const void* add;
  int store;
  // output: 0 none, 1 out = bf16(X) (eng_residual_load), 2 out = LayerNorm(X) (no affine, eps) · (1 + scale) + shift
  // rounded as eng_layernorm_modulate (the AdaLN-single modulation)
  int out_mode;
  const void* shift;
  const void* scale;
  int mod_stride;  // of gate, shift and scale: item b's vector at + b·mod_stride
  float eps;
  void* out;  // bf16 [M, D]; may alias y (same ld)
} pix_rows_args;
const char* pix_rows(const pix_rows_args* a, void* stream);

// h[r, c] (ld) = gelu_tanh(h[r, c] + bias[c]) in place, the bias add rounded to bf16 first (eng_bias_act with
// ENG_ACT_GELU_TANH); 8 values per thread (cols % 8 == 0, ld % 8 == 0). bias may be NULL.
const char* pix_bias_gelu(void* h, int ld, const void* bias, int rows, int cols, void* stream);

// eng_split_heads (bias added and rounded to bf16, part p of row r = b·n + s → dst_p [B, H, n, Dh]) with 16-byte
// moves and 32-bit index math: Dh % 8 == 0, ld % 8 == 0, 16-byte aligned pointers.
const char* pix_split_heads(const void* src, int ld, const void* bias, int B, int n, int H, int Dh, int parts,
                            void* d0, void* d1, void* d2, void* stream);

// mod_all [L, B, W] = t [B, W] + tables[l] [W] (each sum rounded to bf16, as eng_bias_act): every block's AdaLN-single
// modulation vectors in one launch. tables: device array of L device pointers.
const char* pix_modulation_all(const void* t, const void* const* tables, int L, int B, int W, void* mod_all,
                               void* stream);

// out [M, N] = gelu_tanh(x [M, K] · w [N, K]ᵀ + bias [N]) through cuBLASLt (BF16, f32 accumulation, the
// GELU_BIAS epilogue: bias and GELU applied to the f32 accumulator, one rounding to bf16 at the end — the 16-bit
// path's separate pass rounds the product and the bias sum to bf16 first). bias may be NULL. One plan per shape
// (cached); workspace may be NULL (workspace_bytes then ignored). A message starting "pix_gemm_gelu_lt:
// unsupported" means cuBLASLt (or this shape's epilogue) is not available: use the GEMM + pix_bias_gelu instead.
const char* pix_gemm_gelu_lt(const void* x, const void* w, const void* bias, void* out, int M, int N, int K,
                             void* workspace, size_t workspace_bytes, void* stream);

#ifdef __cplusplus
}
#endif

#endif
