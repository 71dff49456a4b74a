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
// | act codes   | Mp*K/2 (s4) or Mp*K (s8) bytes        | 4/8-bit| "fragment layouts", see below |
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
// | next_codes     | Mp*N/2 (s4) or Mp*N (s8) bytes        | 4/8-bit| fragment layout below with K = N; rows >= M are 0 |
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
// | qweight_wg  | N*K bytes: [N/128][K/64][128][64]     | int8   | chunk (nt, kt) at (nt*(K/64) + kt) * 8192: 128 rows n of 64 bytes; logical byte kb = 32s + 16h + c of row n holds w[nt*128 + n][kt*64 + 32s + 8(c/4) + 2(c%4) + h] and is stored at n*64 + 16*((kb/16) ^ ((n/2) % 4)) + kb%16 |
// | wscales_wg  | N*K/64 f32: [N/128][K/64][2][4][8][2] | f32    | chunk (nt, kt) at (nt*(K/64) + kt) * 128; value (hf, t, j, e) at hf*64 + t*16 + j*2 + e is s_w of n = nt*128 + hf*64 + 8j + 2t + e |
// A chunk is the wgmma B operand of one k-group as it sits in shared memory: K-major rows of 64 bytes with the
// 64-byte swizzle (16-byte pieces XORed by address bits 7-8, so the 8 rows a core-matrix read touches fall in
// different banks); k32 step s is the byte range 32s..32s+31 of each row. The k order inside a step is the order
// of the "s8" activation codes in the A registers (lo/hi nibble split), so A and B see the same permutation of k.
// The weight codes are plain int8 (-8..7) and the activations x16, so the product is 16x the int4 one (folded into
// s_x). wscales_wg is ordered so that lane t of a warp reads its 16 columns of one 64-wide half as four float4.
#ifndef SVDQ_CUDA_H
#define SVDQ_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { SVDQ_BF16 = 0, SVDQ_F16 = 1 } svdq_dtype;

// GELU shift used for unsigned activation codes (nunchaku epilogue constant; GELU(x) >= -0.17 so x+shift >= 0).
#define SVDQ_GELU_SHIFT 0.171875f

typedef struct {
  svdq_dtype dtype;
  const void* x;         // [M, K]
  const void* smooth;    // [K] or NULL (λ = 1)
  const void* lora_down; // [R, K] or NULL when R == 0
  int M, K, R;           // R in {0, 16, 32, 64}
  int act_unsigned;      // 0: codes of x/λ in [-8, 7], scale amax/7; 1: codes of (x+shift)/λ in [0, 15], amax/15
  int codes_s8;          // 1: "s8" int8 fragment format (Mp*K bytes, sm_90 GEMM path); 0: "s4" (Mp*K/2 bytes)
  void* codes;           // Mp*K/2 or Mp*K bytes
  void* ascales;         // [K/64, Mp]
  float* lora_act;       // [Mp, R] or NULL when R == 0
} svdq_quantize_args;

typedef struct {
  svdq_dtype dtype;
  const void* codes;     // fragment layout; its format picks the path: s8 (sm_90 only) or s4 (any; emulated on sm_90)
  int codes_s8;
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
  const void* qweight_wg;  // N*K bytes, "wg" layout (svdq_repack_weight_wg) or NULL; with wscales_wg and s8 codes
  const void* wscales_wg;  // N*K/64 f32, "wg" layout, or NULL            on sm_90 this selects the wgmma path
  // Optional: out quantized for the next layer (next K = N), as svdq_quantize_act would on `out` (table below).
  // next_codes == NULL: off. Not on the wgmma path yet (rejected when it would run).
  void* next_codes;             // Mp*N/2 ("s4") or Mp*N ("s8") bytes, fragment layout with K = N
  void* next_ascales;           // [N/64, Mp] 16-bit
  float* next_lora_act;         // [Mp, next_R] f32, or NULL when next_R == 0 (zeroed, then added into, by the call)
  const void* next_smooth;      // [N] 16-bit λ' of the next layer, or NULL (λ' = 1)
  const void* next_lora_down;   // [next_R, N] 16-bit, or NULL when next_R == 0
  int next_R;                   // 0, 16, 32 or 64
  int next_unsigned;            // codes of (out + shift)/λ' in [0, 15] (next input after GELU), else signed
  int next_codes_s8;            // next code format: 1 "s8" (sm_90 only), 0 "s4"
} svdq_gemm_args;

int svdq_pad_m(int M);  // Mp
int svdq_default_codes_s8(void);  // 1 when the current device is sm_90 or newer (the s8 path is the fast one)

const char* svdq_quantize_act(const svdq_quantize_args* a, void* stream);
const char* svdq_gemm_w4a4(const svdq_gemm_args* a, void* stream);

// Load-time repack of checkpoint qweight / wscales into the "wg" layouts of the sm_90a wgmma path (any device).
const char* svdq_repack_weight_wg(svdq_dtype dtype, const void* qweight, const void* wscales, int N, int K,
                                  void* qweight_wg, void* wscales_wg, void* stream);

// out[M, N] = x[M, K] · w[N, K]ᵀ (+ nothing), 16-bit in/out, f32 accumulate, through cuBLAS (loaded at run time).
const char* svdq_gemm_bf16_cublas(svdq_dtype dtype, const void* x, const void* w, void* out, int M, int N, int K,
                                  void* stream);
const char* svdq_cublas_available(void);  // NULL if cuBLAS could be loaded, else why not

#ifdef __cplusplus
}
#endif

#endif
