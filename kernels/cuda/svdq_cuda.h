// C API of the SVDQuant W4A4 CUDA kernels (kernels/cuda/*.cu). Every function validates its shapes before any
// launch and returns NULL on success or a message naming the check or CUDA call that failed (valid until the next
// call on the same thread). Pointers are device pointers; `stream` may be 0.
//
// Tensor layouts (M tokens, K in-features, N out-features, G = 64 group size along K, R rank, Mp = M rounded up to
// a multiple of 128). "16-bit" means the dtype argument: bf16 or f16.
//
// | tensor      | shape / bytes                         | dtype  | layout |
// |-------------|---------------------------------------|--------|--------|
// | x           | [M, K]                                | 16-bit | row-major activations |
// | smooth      | [K]                                   | 16-bit | SVDQuant smoothing factor λ; codes are of x/λ |
// | lora_down   | [R, K]                                | 16-bit | row-major (rank x in), applied to the raw x |
// | act codes   | Mp*K/2 (s4), Mp*K (s8, f8) bytes      | 4/8-bit| "fragment layouts", see below |
// | act scales  | [K/G, Mp]                             | 16-bit | one scale per token per group, group-major |
// | lora_act    | [Mp, R]                               | f32    | x · lora_downᵀ, row-major; rows >= M are 0 |
// | qweight     | N*K/2 bytes                           | 4-bit  | nunchaku checkpoint layout (below), used as is |
// | wscales     | N*K/G values                          | 16-bit | nunchaku checkpoint layout (below), used as is |
// | lora_up     | [N, R]                                | 16-bit | row-major (out x rank) |
// | bias        | [N]                                   | 16-bit | optional |
// | out         | [M, N]                                | 16-bit | row-major |
//
// Quantized output for the next layer (svdq_gemm_w4a4 with next_codes != NULL; next_quant.cuh). The next layer's
// input is this layer's out, so its K is N; its smooth λ', rank R' = next_R and code format are its own. The values
// are exactly what svdq_quantize_act writes for x = out (codes and scales byte-identical, lora_act up to f32
// summation order):
// | tensor         | shape / bytes                         | dtype  | layout |
// |----------------|---------------------------------------|--------|--------|
// | next_smooth    | [N]                                   | 16-bit | λ' of the next layer, optional |
// | next_lora_down | [R', N]                               | 16-bit | row-major, applied to the raw out |
// | next_codes     | Mp*N/2 (s4), Mp*N (s8, f8) bytes      | 4/8-bit| code layouts below with K = N; rows >= M are 0 |
// | next_ascales   | [N/G, Mp]                             | 16-bit | group-major; rows >= M are 0 |
// | next_lora_act  | [Mp, R']                              | f32    | out · next_lora_downᵀ; rows >= M are 0 |

// Fragment layout of the activation codes (ours; nunchaku's packed activations follow the same per-lane idea):
// tiles of 16 rows x 64 k, tile (mt, kt) at byte ((mt*(K/64) + kt) * 512). Inside a tile, lane l = 4*g + t
// (g = l/4 in 0..7, t = l%4) owns 16 bytes at l*16: four 32-bit words
//   w0 = row g,   k = 8t..8t+7      w1 = row g+8, k = 8t..8t+7
//   w2 = row g,   k = 32+8t..+7     w3 = row g+8, k = 32+8t..+7
// with element j of a word in bits 4j..4j+3 (two's complement when signed, 0..15 when unsigned). These are exactly
// the A operand registers a0..a3 of PTX mma.sync.m16n8k64 (s4/u4). This "s4" format feeds the sm_80/86/89 path.
// The "s8" format (for the sm_90 path) stores the same codes pre-split to int8 x16: tiles of 1024 bytes, lane l at
// l*32 holds eight words lo(w0), lo(w1), hi(w0), hi(w1), lo(w2), lo(w3), hi(w2), hi(w3) with lo/hi as below:
// the A registers of the two m16n8k32 s8 (u8) mmas of the group, so the GEMM does no activation unpacking.
// The "f8" format (for the sm_90a wgmma path) holds FP8 E4M3 encodings of the codes (INT4 and u4 codes are exact
// in E4M3, and so are the group's 64-term sums of their products in the f32 accumulators) as the wgmma A operand
// sits in shared memory, like the "wg" weights below: blocks of 128 rows x 64 k (8192 bytes) at
// ((m/128)*(K/64) + k/64)*8192, K-major rows of 64 bytes (row r = m%128 at r*64), logical byte kb = 32s + 16h + c
// of a row holding k%64 = 32s + 8(c/4) + 2(c%4) + h, stored at 16*((kb/16) ^ ((r/2)%4)) + kb%16 (64-byte swizzle).
//
// nunchaku checkpoint layout of qweight (facts from nunchaku's NunchakuWeightPacker, bits=4, warp_n=128):
// chunks of 128 n x 64 k, chunk (nt, kt) at byte ((nt*(K/64) + kt) * 4096). Inside a chunk, pack p (0..7, 16 n each)
// at p*512, lane l = 4*g + t at +l*16, four words (nps, kps) in the order (0,0), (0,1), (1,0), (1,1):
//   word (nps, kps) holds n = nt*128 + 16p + 8*nps + g, k = kt*64 + 32*kps + 8t .. +7 (element j in bits 4j..).
// So (word (nps,0), word (nps,1)) are the B registers b0, b1 of mma.sync.m16n8k64 for the n8 tile (p, nps).
// wscales: for each (nt, kt) 128 values at ((nt*(K/64) + kt) * 128); the scale of n_local = 16a + 8b + 2c + d
// (a 0..7, b 0..1, c 0..3, d 0..1) sits at index 16a + 4c + 2b + d: lane t of an mma reads its 4 scales at once.
//
// The sm_90 path reads these same layouts (no repack is needed): each 32-bit word of 8 nibbles w is split into
// two int8x4 registers lo = (w << 4) & 0xF0F0F0F0 (even elements x16) and hi = w & 0xF0F0F0F0 (odd elements x16),
// which feed mma.sync.m16n8k32 s8 (u8 for unsigned activations). The same split is applied to A and B, so both
// operands see the same permutation of k inside the group; the product is 256x the int4 product, folded into the
// scale exactly (a power of two).
//
// "wg" layouts (sm_90a wgmma path; made once at load time by svdq_repack_weight_wg from the checkpoint layouts):
// | tensor      | shape / bytes                         | dtype  | layout |
// |-------------|---------------------------------------|--------|--------|
// | qweight_wg  | N*K bytes: [N/128][K/64][128][64]     | e4m3   | chunk (nt, kt) at (nt*(K/64) + kt) * 8192: 128 rows n of 64 bytes; logical byte kb = 32s + 16h + c of row n holds w[nt*128 + n][kt*64 + 32s + 8(c/4) + 2(c%4) + h] and is stored at n*64 + 16*((kb/16) ^ ((n/2) % 4)) + kb%16 |
// | wscales_wg  | N*K/64 f32: [N/128][K/64][2][4][8][2] | f32    | chunk (nt, kt) at (nt*(K/64) + kt) * 128; value (hf, t, j, e) at hf*64 + t*16 + j*2 + e is s_w of n = nt*128 + hf*64 + 8j + 2t + e |
// A chunk is the wgmma B operand of one k-group as it sits in shared memory: K-major rows of 64 bytes with the
// 64-byte swizzle (16-byte pieces XORed by address bits 7-8, so the 8 rows a core-matrix read touches fall in
// different banks); k32 step s is the byte range 32s..32s+31 of each row. The k order inside a step (the lo/hi nibble
// split of the "s8" registers) is the one of the "f8" activation rows, so A and B see the same permutation of k. The bytes are the E4M3 encodings of the int4 codes (exact). wscales_wg is ordered so that
// lane t of a warp reads its 16 columns of one 64-wide half as four float4.
#ifndef SVDQ_CUDA_H
#define SVDQ_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { SVDQ_BF16 = 0, SVDQ_F16 = 1 } svdq_dtype;
// Activation-code fragment formats (layouts above): "s4" any GPU, "s8" the sm_90 mma.sync path, "f8" the sm_90a
// wgmma path (with "wg" weights).
typedef enum { SVDQ_CODES_S4 = 0, SVDQ_CODES_S8 = 1, SVDQ_CODES_F8 = 2 } svdq_codes_format;

// GELU shift used for unsigned activation codes (nunchaku epilogue constant; GELU(x) >= -0.17 so x+shift >= 0).
#define SVDQ_GELU_SHIFT 0.171875f

typedef struct {
  svdq_dtype dtype;
  const void* x;         // [M, K]
  const void* smooth;    // [K] or NULL (λ = 1)
  const void* lora_down; // [R, K] or NULL when R == 0
  int M, K, R;           // R in {0, 16, 32, 64}
  int act_unsigned;      // 0: codes of x/λ in [-8, 7], scale amax/7; 1: codes of (x+shift)/λ in [0, 15], amax/15
  int codes_format;      // svdq_codes_format: "s4" (Mp*K/2 bytes), "s8" or "f8" (Mp*K bytes)
  void* codes;           // Mp*K/2 or Mp*K bytes
  void* ascales;         // [K/64, Mp]
  float* lora_act;       // [Mp, R] or NULL when R == 0
} svdq_quantize_args;

typedef struct {
  svdq_dtype dtype;
  const void* codes;     // fragment layout; its format picks the path: f8 (sm_90a wgmma, needs the "wg" weights),
  int codes_format;      // s8 (sm_90 mma.sync) or s4 (any; emulated on sm_90)
  const void* ascales;   // [K/64, Mp]
  const void* qweight;   // N*K/2 bytes (checkpoint layout)
  const void* wscales;   // N*K/64 values (checkpoint layout)
  const float* lora_act; // [Mp, R] or NULL when R == 0
  const void* lora_up;   // [N, R] or NULL when R == 0
  const void* bias;      // [N] or NULL
  void* out;             // [M, N]
  int M, N, K, R;        // N % 128 == 0, K % 64 == 0, R in {0, 16, 32, 48, ...} (multiple of 16, <= 256)
  int act_unsigned;
  int gelu;              // apply tanh-approximated GELU after bias
  int block_m;           // 0 = heuristic, else 32, 64 or 128 (mma.sync path); 64 or 128 (wgmma path)
  const void* qweight_wg;  // N*K bytes, "wg" layout (svdq_repack_weight_wg): needed with f8 codes, else ignored
  const void* wscales_wg;  // N*K/64 f32, "wg" layout
  // Optional: out quantized for the next layer (next K = N), as svdq_quantize_act would on `out` (table below).
  // next_codes == NULL: off.
  void* next_codes;             // Mp*N/2 ("s4") or Mp*N ("s8", "f8") bytes, code layout with K = N
  void* next_ascales;           // [N/64, Mp] 16-bit
  float* next_lora_act;         // [Mp, next_R] f32, or NULL when next_R == 0 (zeroed, then added into, by the call)
  const void* next_smooth;      // [N] 16-bit λ' of the next layer, or NULL (λ' = 1)
  const void* next_lora_down;   // [next_R, N] 16-bit, or NULL when next_R == 0
  int next_R;                   // 0, 16, 32 or 64
  int next_unsigned;            // codes of (out + shift)/λ' in [0, 15] (next input after GELU), else signed
  int next_codes_format;        // svdq_codes_format of the next codes ("s8" and "f8" for sm_90 only)
} svdq_gemm_args;

int svdq_pad_m(int M);  // Mp
int svdq_default_codes_format(void);  // the fast format that needs no repacked weights: s8 on sm_90+, else s4

const char* svdq_quantize_act(const svdq_quantize_args* a, void* stream);
const char* svdq_gemm_w4a4(const svdq_gemm_args* a, void* stream);

// Load-time repack of checkpoint qweight / wscales into the "wg" layouts of the sm_90a wgmma path (any device).
const char* svdq_repack_weight_wg(svdq_dtype dtype, const void* qweight, const void* wscales, int N, int K,
                                  void* qweight_wg, void* wscales_wg, void* stream);

// out[M, N] = x[M, K] · w[N, K]ᵀ (+ nothing), 16-bit in/out, f32 accumulate, through cuBLAS (loaded at run time).
const char* svdq_gemm_bf16_cublas(svdq_dtype dtype, const void* x, const void* w, void* out, int M, int N, int K,
                                  void* stream);
// Row-major out[M, N] (leading dimension ldo) = x[M, K] (ldx) · w[N, K] (ldw)ᵀ + beta · out through cuBLAS: 16-bit
// in, 16-bit (out_f32 = 0) or f32 (out_f32 = 1) out, f32 accumulate. Used by the engine (@svdquant/engine-cuda).
const char* svdq_gemm_cublas_ex(svdq_dtype dtype, int out_f32, const void* x, int ldx, const void* w, int ldw,
                                void* out, int ldo, int M, int N, int K, float beta, void* stream);
// out[M, N] int32 = x[M, K] int8 · w[N, K]ᵀ int8 through cuBLAS (IMMA; the INT8 peer). K and N multiples of 4.
const char* svdq_gemm_s8_cublas(const void* x, const void* w, void* out, int M, int N, int K, void* stream);
const char* svdq_cublas_available(void);  // NULL if cuBLAS could be loaded, else why not

#ifdef __cplusplus
}
#endif

#endif
