// Fused multi-head attention for the engine (eng_attention and eng_attention_cross in engine_ops.h): the flash
// kernels of attention_flash.cuh (mma.sync m16n8k16 bf16, f32 accumulation, online base-2 softmax in registers,
// cp.async K/V ring; every arch), attention_wgmma.cuh (Hopper wgmma, sm_90a builds) and attention_tma.cuh (Hopper,
// TMA producer warp + two wgmma consumer warpgroups, head dim 128 self attention); no [Sq, Skv] buffer. Self attention is the case Sq = Skv with no key mask; cross attention
// masks keys j >= kv_len[b] (a row with no key at all gets zeros).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <string>

#include "attention_flash.cuh"
#include "attention_tma.cuh"
#include "attention_wgmma.cuh"
#include "engine_ops.h"

namespace {

thread_local std::string g_err;
using svdq_attn::FlashArgs;
using svdq_attn::flash_launch;

// Per-device facts, read once per device: compute capability, the opt-in shared memory per block (sm_86 / sm_89
// allow 99 KiB, sm_80 163 KiB, sm_90 227 KiB) and whether the wgmma kernels were built for this device (sm_90a SASS;
// an sm_80-only build running on an H100 has binaryVersion 80 and takes the mma.sync path). A build for plain sm_90
// (no "a") cannot be told apart here and would run the wgmma kernels' trap: the engine's build lists 90a
// (packages/engine-cuda/native/build.mjs, SVDQ_CUDA_ARCHS).
struct DevInfo {
  int cc = 0, smem = 0;
  bool wgmma = false;
};
const DevInfo& dev_info() {
  static DevInfo info[64];
  static bool have[64] = {};
  int dev = 0;
  cudaGetDevice(&dev);
  if (dev < 0 || dev >= 64) dev = 0;
  if (!have[dev]) {
    int major = 0, minor = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    cudaDeviceGetAttribute(&info[dev].smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    info[dev].cc = major * 10 + minor;
    cudaFuncAttributes fa{};
    info[dev].wgmma = info[dev].cc == 90 &&
                      cudaFuncGetAttributes(&fa, svdq_attn::wg_attention_pipe_kernel<128, 128>) == cudaSuccess &&
                      fa.binaryVersion == 90;
    have[dev] = true;
  }
  return info[dev];
}

// Which kernel runs, from kernels/cuda/bench/attn-bench.sh on an H100 (docs/benchmarks.md, "fused attention", round 1:
// every candidate checked vs float64 and timed in one run):
// - sm_90a build on sm_90, Dh 128 self attention: the warp-specialized TMA kernel of attention_tma.cuh, 128-key
//   tiles, 2 stages (0.459 ms on FLUX's (1, 24, 4608, 128), round 2); with a key mask, Sq != Skv or no tensor-map
//   entry point in the driver:
//   the softmax/P·V-overlapped wgmma kernel with 128-key tiles (0.773 ms on FLUX's
//   (1, 24, 4608, 128), 1.63x the old kernel; the plain wgmma kernel 0.785 ms, the best mma.sync shape 0.852 ms);
// - sm_90a build on sm_90, Dh 72: the plain wgmma kernel with 64-key tiles (0.457 ms on PixArt's (2, 16, 4096, 72)
//   vs 0.522 ms for the best mma.sync shape; 0.051 ms on the 4096 x 300 cross attention);
// - everything else: the mma.sync kernel, 4 warps x 32 query rows, 64-key tiles (2 stages; 3 at Dh 72, which has the
//   shared memory for it), 2 CTAs per SM; on 99 KiB parts (sm_86 / sm_89) Dh 128 takes 32-key tiles.
template <int DH>
cudaError_t launch_mma(const FlashArgs& a, cudaStream_t s, int smem_optin) {
  constexpr bool qreg = DH <= 80;  // Q fragments stay in registers when they fit next to O and S
  constexpr int stages = DH == 72 ? 3 : 2;
  using Big = svdq_attn::FlashShape<DH, 4, 2, 64, stages>;
  if (Big::smem <= size_t(smem_optin)) return flash_launch<DH, 4, 2, 64, stages, qreg, 2>(a, s);
  return flash_launch<DH, 4, 2, 32, 2, qreg, 2>(a, s);
}
cudaError_t launch_dh(int Dh, const FlashArgs& a, cudaStream_t s) {
  const DevInfo& d = dev_info();
  if (d.wgmma && Dh == 128) {
    // self attention (no key mask): the warp-specialized TMA kernel, 128-key tiles, 2 stages (0.459 ms on FLUX's
    // shape vs 0.773 ms for the wgmma kernel below); without the driver's tensor-map entry point, the wgmma kernel
    if (a.kv_len == nullptr && a.Sq == a.Skv) {
      const cudaError_t e = svdq_attn_tma::tma_run<128, 2>(128, a, s);
      if (e != cudaErrorNotSupported) return e;
    }
    return svdq_attn::wg_pipe_run1<128, 128>(a, s);
  }
  if (d.wgmma && Dh == 72) return svdq_attn::wg_run1<72, 64, false>(a, s);
  switch (Dh) {
    case 16: return launch_mma<16>(a, s, d.smem);
    case 32: return launch_mma<32>(a, s, d.smem);
    case 64: return launch_mma<64>(a, s, d.smem);
    case 72: return launch_mma<72>(a, s, d.smem);
    case 128: return launch_mma<128>(a, s, d.smem);
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
