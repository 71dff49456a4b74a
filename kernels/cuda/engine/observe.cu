// Calibration observer kernels of the engine (engine_ops.h): per-channel absmax of a linear layer's input,
// accumulated across calls, and the gather of reservoir rows chosen on the host (packages/models reservoir.ts).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "engine_ops.h"

namespace {

thread_local std::string g_err;

const char* fail(const char* op, const std::string& why) {
  g_err = std::string(op) + ": " + why;
  return g_err.c_str();
}
const char* launched(const char* op) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return fail(op, std::string("launch: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
  return nullptr;
}

constexpr int kRowsPerBlock = 64;  // rows one thread folds before its atomic (M = 4608 → 72 row blocks)

// One thread per channel k of a 64-row chunk: the max of |x| as the f32 bit pattern. For non-negative floats the
// bit patterns order as the values do, and |NaN| (0x7fc…) sorts above +inf (0x7f80…), so atomicMax on the bits
// keeps a NaN or inf visible to the host's finiteness check.
__global__ void absmax_kernel(const __nv_bfloat16* __restrict__ x, int M, int K, unsigned* __restrict__ am) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= K) return;
  const int r0 = blockIdx.y * kRowsPerBlock;
  const int r1 = min(M, r0 + kRowsPerBlock);
  unsigned m = 0;
  for (int r = r0; r < r1; r++) {
    const unsigned b = (unsigned(__bfloat16_as_ushort(x[size_t(r) * K + k])) << 16) & 0x7fffffffu;  // |x| bits
    m = max(m, b);
  }
  atomicMax(am + k, m);
}

// Block i copies pair i of the plan (slot, row) when i < plan[0]: reservoir[slot, :] = f32(x[row, :]).
__global__ void gather_kernel(const __nv_bfloat16* __restrict__ x, int M, int K, const int* __restrict__ plan,
                              int capacity, float* __restrict__ res) {
  const int i = blockIdx.x;
  if (i >= plan[0]) return;
  const int slot = plan[1 + 2 * i], row = plan[2 + 2 * i];
  if (slot < 0 || slot >= capacity || row < 0 || row >= M) return;  // the host validates plans; never write outside
  const __nv_bfloat16* src = x + size_t(row) * K;
  float* dst = res + size_t(slot) * K;
  for (int k = threadIdx.x; k < K; k += blockDim.x) dst[k] = __bfloat162float(src[k]);
}

}  // namespace

extern "C" const char* eng_observe_absmax(const void* x, int M, int K, unsigned* absmax_bits, void* stream) {
  if (M <= 0 || K <= 0 || !x || !absmax_bits) return fail("eng_observe_absmax", "bad arguments");
  const dim3 grid((K + 255) / 256, (M + kRowsPerBlock - 1) / kRowsPerBlock);
  absmax_kernel<<<grid, 256, 0, static_cast<cudaStream_t>(stream)>>>(static_cast<const __nv_bfloat16*>(x), M, K,
                                                                      absmax_bits);
  return launched("eng_observe_absmax");
}

extern "C" const char* eng_observe_gather(const void* x, int M, int K, const int* plan, int capacity,
                                          float* reservoir, void* stream) {
  if (M <= 0 || K <= 0 || capacity <= 0 || !x || !plan || !reservoir) return fail("eng_observe_gather", "bad arguments");
  gather_kernel<<<capacity, 256, 0, static_cast<cudaStream_t>(stream)>>>(static_cast<const __nv_bfloat16*>(x), M, K,
                                                                        plan, capacity, reservoir);
  return launched("eng_observe_gather");
}
