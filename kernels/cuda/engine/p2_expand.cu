// int4p2 weights kept 4-bit on the device (engine_ops.h eng_p2_expand): the FP8 GEMM operand of one layer is built
// just before its GEMM, so an int4p2 model holds 0.5 byte per weight (plus one exponent byte per 64) instead of the
// operand's 1 byte. The format and the operand are p2_fp8.h's (packages/int4/src/p2.ts): q·2^e is exact in E4M3.
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "engine_ops.h"

namespace {

thread_local std::string g_err;

const char* fail(const std::string& why) {
  g_err = "eng_p2_expand: " + why;
  return g_err.c_str();
}

constexpr int kG = 64;  // int4p2 group size (p2.ts)
constexpr int kChunk = 16;  // output bytes per thread: one 16-byte store

// E4M3 bytes of q_lo·s and q_hi·s for the two signed nibbles of byte b (low nibble first, nibbles.ts), s = 2^e.
__device__ __forceinline__ uint16_t expand_byte(uint32_t b, float s) {
  const float lo = float(int((b & 15u) ^ 8u) - 8) * s;
  const float hi = float(int(((b >> 4) & 15u) ^ 8u) - 8) * s;
  return __nv_cvt_float2_to_fp8x2(make_float2(lo, hi), __NV_SATFINITE, __NV_E4M3);
}

// One thread per 16 output bytes of out [N, Kx]: chunk c of row n is 8 code bytes (c < K/16) or 16 low-rank bytes.
__global__ void expand_kernel(const uint8_t* __restrict__ codes, const int8_t* __restrict__ exps,
                              const uint8_t* __restrict__ lowrank, int N, int K, int Kx, uint8_t* __restrict__ out) {
  const int per_row = Kx / kChunk;
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i >= (long long)N * per_row) return;
  const int n = int(i / per_row), c = int(i % per_row);
  uint4 v;
  if (c < K / kChunk) {
    const uint2 w = *reinterpret_cast<const uint2*>(codes + (size_t)n * (K / 2) + c * 8);
    const int e = exps[(size_t)n * (K / kG) + c * kChunk / kG];
    const float s = __int_as_float((e + 127) << 23);  // 2^e, e in [-9, 5]: a normal f32
    v.x = expand_byte(w.x & 0xff, s) | uint32_t(expand_byte((w.x >> 8) & 0xff, s)) << 16;
    v.y = expand_byte((w.x >> 16) & 0xff, s) | uint32_t(expand_byte(w.x >> 24, s)) << 16;
    v.z = expand_byte(w.y & 0xff, s) | uint32_t(expand_byte((w.y >> 8) & 0xff, s)) << 16;
    v.w = expand_byte((w.y >> 16) & 0xff, s) | uint32_t(expand_byte(w.y >> 24, s)) << 16;
  } else {
    v = *reinterpret_cast<const uint4*>(lowrank + (size_t)n * (Kx - K) + (c - K / kChunk) * kChunk);
  }
  *reinterpret_cast<uint4*>(out + (size_t)n * Kx + c * kChunk) = v;
}

}  // namespace

extern "C" const char* eng_p2_expand(const uint8_t* codes, const int8_t* exps, const uint8_t* lowrank, int N, int K,
                                     int Kx, void* out, void* stream) {
  if (N <= 0 || K <= 0 || K % kG || (Kx != K && Kx != K + 96))
    return fail("N=" + std::to_string(N) + " K=" + std::to_string(K) + " Kx=" + std::to_string(Kx) +
                ": needs K % 64 == 0 and Kx = K or K + 96");
  if ((Kx != K) != (lowrank != nullptr)) return fail("the low-rank columns are given iff Kx = K + 96");
  const long long threads = (long long)N * (Kx / kChunk);
  const int block = 256;
  expand_kernel<<<unsigned((threads + block - 1) / block), block, 0, static_cast<cudaStream_t>(stream)>>>(
      codes, exps, lowrank, N, K, Kx, static_cast<uint8_t*>(out));
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return fail(std::string("launch: ") + cudaGetErrorName(e));
  return nullptr;
}
