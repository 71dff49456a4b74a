// Device ops of the FLUX / PixArt engine (kernels/cuda/engine/*.cu). Every launcher validates its arguments and
// returns NULL on success or a message naming the op and the check or CUDA call that failed (valid until the next
// call on the same thread). Pointers are device pointers; `stream` is a cudaStream_t (0 = legacy default stream).
//
// Names: B batch, S = St + Si joint tokens (text first), D = H·Dh model width, H heads, Dh head dim, M rows.
// Activations are bf16 row-major; the residual stream is f32 row-major [B·S, D].
//
// Row maps. Ops that touch the residual stream work on "segment rows": row r in [0, B·n) of a contiguous
// [B·n, ·] operand is residual row (r / n)·S + off + r % n, so one op serves the text segment (off 0, n = St),
// the image segment (off St, n = Si) and the whole joint sequence (off 0, n = S).
//
// | tensor   | shape                | dtype | notes                                                          |
// |----------|----------------------|-------|----------------------------------------------------------------|
// | X        | [B·S, D]             | f32   | residual stream, text tokens first in each batch item           |
// | mod      | [B, mod_stride]      | bf16  | AdaNorm linear output; shift/scale/gate vectors at offsets      |
// | qkv      | [B·n, ld] (+q,k,v at col 0, D, 2D) | bf16 | fused projection output                          |
// | Q, K, V  | [B, H, S, Dh]        | bf16  | attention operands, head-major                                  |
// | rope     | [S, Dh/2] x 2        | f32   | cos and sin of each rotated pair                                |
// | Qc       | [B, H, Sq, Dh]       | bf16  | cross-attention queries (image tokens)                          |
// | Kc, Vc   | [B, H, Skv, Dh]      | bf16  | cross-attention keys / values (text tokens, padded to Skv)      |
// | kv_len   | [B]                  | i32   | device; keys j >= kv_len[b] of item b are masked (NULL: all Skv) |
// | w4a16    | codes [N, K/2] u8, scales/zeros [N, K/64] bf16 | | w = q·scale + zero, q in 0..15: element k of row n in the low nibble of byte (n·K + k)/2 when k is even, the high nibble when odd |
#ifndef SVDQ_ENGINE_OPS_H
#define SVDQ_ENGINE_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { ENG_ACT_NONE = 0, ENG_ACT_GELU_TANH = 1, ENG_ACT_SILU = 2 } eng_act;

// out[b, :] (bf16 [B, dim]) = sinusoidal embedding of t[b]·mult (flip_sin_to_cos: [cos | sin], max period 10000).
const char* eng_timestep_embedding(const float* t, int B, float mult, int dim, void* out, void* stream);
// out[r, c] (ld_out) = act(in[r, c] (ld_in) + bias[c]); in and out may alias with equal ld. bias may be NULL.
const char* eng_bias_act(const void* in, int ld_in, void* out, int ld_out, const void* bias, int rows, int cols,
                         int act, void* stream);
// out[i] = silu(a[i] + b[i] + c[i]) over n bf16 values (b, c may be NULL): the FLUX conditioning vector.
const char* eng_sum_silu(const void* a, const void* b, const void* c, int n, void* out, void* stream);
// out (bf16 [B·n, D]) = LayerNorm(X[segment row]) (no affine, eps) · (1 + mod[b, scale_off..]) + mod[b, shift_off..]
const char* eng_layernorm_modulate(const float* X, int S, int off, int n, int B, int D, float eps, const void* mod,
                                   int mod_stride, int shift_off, int scale_off, void* out, void* stream);
// X[segment row] += mod[b, gate_off..] ⊙ (y[r] + bias) (gate_off < 0: no gate); y bf16 [B·n, D] at ld_y.
const char* eng_gated_residual(float* X, int S, int off, int n, int B, int D, const void* y, int ld_y,
                               const void* bias, const void* mod, int mod_stride, int gate_off, void* stream);
// X [B·S, D] f32 ← rows of src (bf16 [B·n, D]) + bias at segment rows (embedders write the residual stream).
const char* eng_residual_store(float* X, int S, int off, int n, int B, int D, const void* src, const void* bias,
                               void* stream);
// out bf16 [B·n, D] ← X segment rows (f32 → bf16).
const char* eng_residual_load(const float* X, int S, int off, int n, int B, int D, void* out, void* stream);
// FLUX RoPE tables from ids [S, 3] f32 (text ids first): per token and axis a, pairs i of axis width d_a get angle
// pos_a / 10000^(2i/d_a). cos, sin [S, Dh/2] f32.
const char* eng_rope_table(const float* ids, int S, int axes0, int axes1, int axes2, float* cos_t, float* sin_t,
                           void* stream);
// From qkv rows (segment of n tokens at joint offset off): + bias[3D] (optional), RMSNorm of q and k per head
// (weights [Dh] bf16, eps), rotary pairs (x2i, x2i+1) → (x2i c − x2i+1 s, x2i+1 c + x2i s) when cos_t != NULL,
// then scatter into Q, K, V [B, H, S, Dh].
const char* eng_qk_norm_rope(const void* qkv, int ld, const void* bias, int B, int n, int off, int S, int H, int Dh,
                             const void* wq, const void* wk, float eps, const float* cos_t, const float* sin_t,
                             void* Q, void* K, void* V, void* stream);
// Head split (no norm, no rotation: PixArt's attention operands): for part p < parts (1..3), row r = b·n + s of
// src (bf16 [B·n, ld], columns p·D + h·Dh + d, D = H·Dh) plus bias[p·D + h·Dh + d] (optional) → dst_p [B, H, n, Dh].
const char* eng_split_heads(const void* src, int ld, const void* bias, int B, int n, int H, int Dh, int parts, void* d0,
                            void* d1, void* d2, void* stream);
// Fused attention (flash style, online softmax, no [S, S] buffer): O = softmax(Q Kᵀ / √Dh) V per (b, h), Q, K, V
// [B, H, S, Dh] bf16. Output token s of item b goes to out_txt[(b·split + s)·ld + h·Dh] when s < split, else to
// out_img[(b·(S − split) + s − split)·ld + h·Dh]. Dh ∈ {16, 32, 64, 72, 128}. Kernel per device (attention.cu):
// wgmma on sm_90 when the sm_90a build is present (Dh 128 / 72), mma.sync otherwise; Dh 72 runs Q·Kᵀ over k = 80
// (zero pad inside the kernel). Timings vs torch SDPA: kernels/cuda/bench/attn-bench.sh, docs/benchmarks.md.
const char* eng_attention(const void* Q, const void* K, const void* V, int B, int H, int S, int Dh, int split,
                          void* out_txt, void* out_img, int ld, void* stream);
// Fused cross attention (same kernel): O = softmax(Qc Kcᵀ / √Dh + mask) Vc per (b, h), keys j >= kv_len[b] masked
// out (T5 padding masks are prefixes); a row of an item with kv_len[b] = 0 gets zeros. Output token s of item b goes
// to out[(b·Sq + s)·ld + h·Dh]. Dh ∈ {16, 32, 64, 72, 128}; kv_len values are clamped to [0, Skv].
const char* eng_attention_cross(const void* Q, const void* K, const void* V, int B, int H, int Sq, int Skv, int Dh,
                                const int* kv_len, void* out, int ld, void* stream);
// out[m, n] (bf16 [M, N]) = Σ_k x[m, k]·(q[n, k]·scale[n, k/64] + zero[n, k/64]) + bias[n]: the 4-bit weight-only
// GEMV of the AdaNorm linears (layout in the table above). M <= 8, K % 64 == 0, x and codes 16-byte aligned.
const char* eng_gemv_w4a16(const void* x, int M, int K, const uint8_t* codes, const void* scales, const void* zeros,
                           const void* bias, int N, void* out, void* stream);
// The same with the kernel chosen: 0 automatic (3 where it applies, else 1 below M = 4 and 2 from there), 1 CUDA
// cores (f32 FMAs), 2 tensor cores (mma.sync bf16 with the codes as 1 + q/16, exact products, f32 accumulation;
// K·8·4 bytes of shared memory, K <= 24576), 3 the streaming kernel (gemv_stream.cuh: per-warp cp.async ring, codes
// as 128 + q on mma.sync bf16, exact products, f32 accumulation; needs K % 128 == 0 and scales and zeros 4-byte
// aligned, else an error; env SVDQ_GEMV_TPW = 1 / 2 / 4 forces its rows per block to 16 / 32 / 64).
const char* eng_gemv_w4a16_variant(const void* x, int M, int K, const uint8_t* codes, const void* scales,
                                   const void* zeros, const void* bias, int N, void* out, int variant, void* stream);
// Fills n values with a deterministic hash-based uniform draw: v = center + scale·(u − 0.5), u = hash(seed, i)/2³²
// (the same formula as tools/engine/flux_diffusers.py). dtype 0: bf16, 1: f32, 2: FP8 E4M3 (saturating at ±448);
// bytes fills raw random bytes.
const char* eng_fill_random(void* p, size_t n, int dtype, uint32_t seed, float center, float scale, void* stream);
const char* eng_fill_random_bytes(void* p, size_t n, uint32_t seed, void* stream);
// Calibration observer (observe.cu). absmax_bits [K] u32 holds f32 bit patterns: bits[k] = max(bits[k], bits of
// |x[m, k]|) over the M rows of x bf16 [M, K] (NaN and inf stay visible: their bits sort above every finite value).
const char* eng_observe_absmax(const void* x, int M, int K, unsigned* absmax_bits, void* stream);
// plan int32 [1 + 2·capacity] = count, then (slot, row) pairs with distinct slots: reservoir f32 [capacity, K] row
// slot ← x[row, :] for the first `count` pairs (count is read on the device, so a captured graph replays new plans).
const char* eng_observe_gather(const void* x, int M, int K, const int* plan, int capacity, float* reservoir,
                               void* stream);
// int4p2 weights stored 4-bit (p2_expand.cu): out e4m3 [N, Kx] = the FP8 GEMM operand b8 of p2_fp8.h, built from
// | tensor  | shape     | dtype | meaning                                                                    |
// | codes   | [N, K/2]  | u8    | INT4 codes q in [-8, 7], two per byte, low nibble first (int4 nibbles.ts)  |
// | exps    | [N, K/64] | i8    | group exponents e in [-9, 5]: out[n, k] = E4M3(q[n, k]·2^e[n, k/64]), exact |
// | lowrank | [N, 96]   | e4m3  | the 3R low-rank columns (R = 32), copied to out[n, K..Kx); NULL iff Kx = K |
const char* eng_p2_expand(const uint8_t* codes, const int8_t* exps, const uint8_t* lowrank, int N, int K, int Kx,
                          void* out, void* stream);
// Copies a [rows, cols] bf16 block between strided buffers.
const char* eng_copy_2d(const void* src, int ld_src, void* dst, int ld_dst, int rows, int cols, void* stream);

#ifdef __cplusplus
}
#endif

#endif
