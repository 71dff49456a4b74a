// f32 GEMM on split-bf16 operands (gemm_f32_amx.cc): Y [M,N] = X [M,K]·Wᵀ (+ bias) (optional GELU), W [N,K]
// packed once into S bf16 parts (W = W₀ + W₁ (+ W₂)), X split the same way per call, products summed in f32 by
// AMX-BF16 tiles (tdpbf16ps). Layout of the packed weight (`wsplit`, uint16 bf16 bits), Np = N rounded up to 32,
// Kp = K rounded up to 32, padding zero:
//   [Np/16][Kp/32][S][16 kk][16 j][2 t] : element (p, c, s, kk, j, t) = part s of W[16p + j, 32c + 2kk + t]
// (one 16-column panel's 32-k chunk of part s is one 1 KiB AMX B tile in the VNNI pair layout).
#pragma once
#include <cstdint>

namespace svdq {

// True when gemm_f32_split runs on AMX-BF16 tiles now (active path amx and the CPU has AMX-BF16); otherwise it
// rebuilds f32 panels from the parts and runs gemm_f32 (exact for S = 3: the parts sum to W).
bool f32_split_uses_amx();

// Elements (uint16) of a packed weight of N×K in S parts.
int64_t f32_split_elems(int64_t N, int64_t K, int S);
// Packs W [N,K] row-major into S ∈ {2, 3} bf16 parts (round to nearest even; part s+1 is part of the rest left by
// parts 0..s, so for S = 3 the parts sum exactly to W for every |W| ≥ 2⁻¹⁰³, whose rests are bf16 normals; tdpbf16ps reads
// denormal parts as zero).
void pack_f32_split(const float* w, int64_t N, int64_t K, int S, uint16_t* out);

struct F32SplitArgs {
  const float* x;         // [M, K]
  int64_t M, K, N;
  const uint16_t* wsplit; // f32_split_elems(N, K, S), layout above
  int S;                  // 2 or 3 parts; products of parts i·j with i + j < S (3 or 6 per k)
  const float* bias;      // [N] or null
  bool gelu;
  float* y;               // [M, N]
};
void gemm_f32_split(const F32SplitArgs& a);

struct AttentionArgs;
// Operator 7 on AMX-BF16 tiles with 3-part split operands (attention_f32_amx.cc). Returns false, doing nothing,
// where it does not run (not the amx path or no AMX-BF16, Dh not a multiple of 32, Skv > 8192): attention_f32 then
// runs its own kernels.
bool attention_f32_split(const AttentionArgs& a);

}  // namespace svdq
