// Bench registration of the warp-specialized TMA attention kernel (kernels/cuda/engine/attention_tma.cuh, which the
// engine runs for head dim 128 on sm_90a): variants 110 (64-key tiles, 3 stages), 111 (128-key tiles, 2 stages; the
// engine's choice) and 113 (64-key tiles, 4 stages, softmax overlapped with P·V).
#include "../engine/attention_tma.cuh"

using VarFn = cudaError_t (*)(int Dh, const svdq_attn::FlashArgs& a, cudaStream_t s);
int attn_register_variant(int id, const char* name, VarFn fn);  // attn_bench.cu

namespace {
using svdq_attn_tma::tma_run;
const int r0 = attn_register_variant(110, "tma+mbarrier warp-specialized bkv64 st3", tma_run<64, 3>);
const int r1 = attn_register_variant(111, "tma+mbarrier warp-specialized bkv128 st2", tma_run<128, 2>);
const int r3 = attn_register_variant(113, "tma+mbarrier ws pipelined bkv64 st4", tma_run<64, 4, true>);
}  // namespace
