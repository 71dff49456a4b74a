// Registers the wgmma kernels of kernels/cuda/engine/attention_wgmma.cuh (sm_90a) with attn_bench.cu as variants
// 100+ (Dh 72 and 128).
#include <cuda_runtime.h>

#include "../engine/attention_wgmma.cuh"

using VarFn = cudaError_t (*)(int Dh, const svdq_attn::FlashArgs& a, cudaStream_t s);
int attn_register_variant(int id, const char* name, VarFn fn);  // attn_bench.cu

namespace {
using svdq_attn::wg_run;
using svdq_attn::wg_pipe_run;
const int r0 = attn_register_variant(100, "wgmma bq128 bkv128", wg_run<128, false>);
const int r1 = attn_register_variant(101, "wgmma bq128 bkv128 swapV", wg_run<128, true>);
const int r2 = attn_register_variant(102, "wgmma bq128 bkv64", wg_run<64, false>);
const int r3 = attn_register_variant(103, "wgmma bq128 bkv64 swapV", wg_run<64, true>);
const int r4 = attn_register_variant(104, "wgmma pipelined bq128 bkv64 st3", wg_pipe_run<64>);
const int r5 = attn_register_variant(105, "wgmma pipelined bq128 bkv128 st3", wg_pipe_run<128>);
const int r6 = attn_register_variant(106, "wgmma 3 warpgroups bq192 bkv64", wg_run<64, false, 3, 1>);
const int r7 = attn_register_variant(107, "wgmma bq128 bkv64 2 CTAs/SM", wg_run<64, false, 2, 2>);
}  // namespace
