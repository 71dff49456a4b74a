// Fused multi-head attention for the engine (eng_attention and eng_attention_cross in engine_ops.h): the flash
// kernel of attention_flash.cuh (mma.sync m16n8k16 bf16, f32 accumulation, online base-2 softmax in registers,
// cp.async K/V ring, no [Sq, Skv] buffer). Self attention is the case Sq = Skv with no key mask; cross attention
// masks keys j >= kv_len[b] (a row with no key at all gets zeros). The tile shape per head dim below was picked from
// kernels/cuda/bench/attn-bench.sh on an H100 (docs/benchmarks.md, "fused attention").
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <string>

#include "attention_flash.cuh"
#include "engine_ops.h"

namespace {

thread_local std::string g_err;
using svdq_attn::FlashArgs;
using svdq_attn::flash_launch;

// Tile shape per head dim: <DH, WARPS, MT, BKV, STAGES, QREG, MINB> (attention_flash.cuh): 4 warps x 32 query rows
// = 128-row CTA, 64-key tiles, 2 stages, 2 CTAs per SM.
cudaError_t launch_dh(int Dh, const FlashArgs& a, cudaStream_t s) {
  switch (Dh) {
    case 16: return flash_launch<16, 4, 2, 64, 2, true, 2>(a, s);
    case 32: return flash_launch<32, 4, 2, 64, 2, true, 2>(a, s);
    case 64: return flash_launch<64, 4, 2, 64, 2, true, 2>(a, s);
    case 72: return flash_launch<72, 4, 2, 64, 2, true, 2>(a, s);
    case 128: return flash_launch<128, 4, 2, 64, 2, false, 2>(a, s);
    default: return cudaErrorInvalidValue;
  }
}

const char* run(const char* op, const FlashArgs& a, int Dh, cudaStream_t s) {
  if (Dh != 16 && Dh != 32 && Dh != 64 && Dh != 72 && Dh != 128) {
    g_err = std::string(op) + ": head dim " + std::to_string(Dh) + " not in {16, 32, 64, 72, 128}";
    return g_err.c_str();
  }
  const cudaError_t e = launch_dh(Dh, a, s);
  if (e != cudaSuccess) {
    g_err = std::string(op) + ": launch: " + cudaGetErrorName(e);
    return g_err.c_str();
  }
  return nullptr;
}

FlashArgs args(const void* Q, const void* K, const void* V, int B, int H, int Sq, int Skv, int Dh, const int* kv_len,
               int split, void* out_txt, void* out_img, int ld) {
  FlashArgs a;
  a.Q = static_cast<const __nv_bfloat16*>(Q);
  a.K = static_cast<const __nv_bfloat16*>(K);
  a.V = static_cast<const __nv_bfloat16*>(V);
  a.B = B;
  a.H = H;
  a.Sq = Sq;
  a.Skv = Skv;
  a.kv_len = kv_len;
  a.scale_log2 = 1.4426950408889634f / sqrtf(float(Dh));  // log2(e)/√Dh
  a.split = split;
  a.out_txt = static_cast<__nv_bfloat16*>(out_txt);
  a.out_img = static_cast<__nv_bfloat16*>(out_img);
  a.ld = ld;
  return a;
}

}  // namespace

extern "C" const char* eng_attention(const void* Q, const void* K, const void* V, int B, int H, int S, int Dh,
                                     int split, void* out_txt, void* out_img, int ld, void* stream) {
  if (B <= 0 || H <= 0 || S <= 0 || split < 0 || split > S || ld < H * Dh) {
    g_err = "eng_attention: bad shape B=" + std::to_string(B) + " H=" + std::to_string(H) + " S=" + std::to_string(S) +
            " split=" + std::to_string(split) + " ld=" + std::to_string(ld);
    return g_err.c_str();
  }
  if (split > 0 && !out_txt) {
    g_err = "eng_attention: out_txt is NULL but split > 0";
    return g_err.c_str();
  }
  if (!Q || !K || !V || (split < S && !out_img)) {
    g_err = "eng_attention: NULL Q, K, V or out_img";
    return g_err.c_str();
  }
  return run("eng_attention", args(Q, K, V, B, H, S, S, Dh, nullptr, split, out_txt, out_img, ld), Dh,
             static_cast<cudaStream_t>(stream));
}

extern "C" const char* eng_attention_cross(const void* Q, const void* K, const void* V, int B, int H, int Sq, int Skv,
                                           int Dh, const int* kv_len, void* out, int ld, void* stream) {
  if (B <= 0 || H <= 0 || Sq <= 0 || Skv <= 0 || ld < H * Dh) {
    g_err = "eng_attention_cross: bad shape B=" + std::to_string(B) + " H=" + std::to_string(H) +
            " Sq=" + std::to_string(Sq) + " Skv=" + std::to_string(Skv) + " ld=" + std::to_string(ld);
    return g_err.c_str();
  }
  if (!Q || !K || !V || !out) {
    g_err = "eng_attention_cross: NULL Q, K, V or out";
    return g_err.c_str();
  }
  return run("eng_attention_cross", args(Q, K, V, B, H, Sq, Skv, Dh, kv_len, 0, nullptr, out, ld), Dh,
             static_cast<cudaStream_t>(stream));
}
