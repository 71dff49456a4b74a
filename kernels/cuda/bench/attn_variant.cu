// One tile shape of the engine's flash attention kernel (attention_flash.cuh) for Dh = 72 and 128, compiled once
// per entry of attn_variants.inc with -DVID=i (in parallel) and registered with attn_bench.cu's table at start-up.
#include <cuda_runtime.h>

#include "../engine/attention_flash.cuh"

struct VDef {
  int warps, mt, bkv, stages, qreg, minb;
  const char* name;
};
constexpr VDef kVars[] = {
#include "attn_variants.inc"
};
#ifndef VID
#error "compile with -DVID=<index into attn_variants.inc>"
#endif
constexpr VDef kV = kVars[VID];
using VarFn = cudaError_t (*)(int Dh, const svdq_attn::FlashArgs& a, cudaStream_t s);
int attn_register_variant(int id, const char* name, VarFn fn);  // attn_bench.cu

namespace {
template <int DH>
cudaError_t one(const svdq_attn::FlashArgs& a, cudaStream_t s) {
  constexpr bool qreg = kV.qreg == 2 ? DH <= 80 : kV.qreg == 1;
  return svdq_attn::flash_launch<DH, kV.warps, kV.mt, kV.bkv, kV.stages, qreg, kV.minb>(a, s);
}
cudaError_t run(int Dh, const svdq_attn::FlashArgs& a, cudaStream_t s) {
  switch (Dh) {
    case 72: return one<72>(a, s);
    case 128: return one<128>(a, s);
    default: return cudaErrorInvalidValue;
  }
}
const int registered = attn_register_variant(VID, kV.name, run);
}  // namespace
