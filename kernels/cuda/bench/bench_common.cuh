// Shared pieces of the CUDA bench harnesses (hopper_bench.cu, p2q_bench.cu, gemv_bench.cu): error checks, the start every harness
// makes (device line, cuBLAS loaded, the timer's stream, events and L2 flush buffer), the timer (hot L2: a CUDA
// graph of calls replayed; cold L2: 256 MB memset before each single-call replay), the device-to-device copy rate
// (the HBM ceiling of a run), device allocations / downloads and host bf16 conversions.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../svdq_cuda.h"

// a CUDA runtime call that must succeed (exit 2 naming the call)
#define CK(x)                                                                                         \
  do {                                                                                                \
    cudaError_t e_ = (x);                                                                             \
    if (e_ != cudaSuccess) {                                                                          \
      std::printf("CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, __LINE__, #x);    \
      std::exit(2);                                                                                   \
    }                                                                                                 \
  } while (0)
// a svdq C API call (NULL on success, else the reason; exit 3)
#define CS(x)                                                                            \
  do {                                                                                   \
    const char* e_ = (x);                                                                \
    if (e_) {                                                                            \
      std::printf("svdq error %s at %s:%d\n", e_, __FILE__, __LINE__);                   \
      std::exit(3);                                                                      \
    }                                                                                    \
  } while (0)

template <class T>
inline T* dalloc(size_t n) {
  void* p;
  CK(cudaMalloc(&p, n * sizeof(T)));
  return static_cast<T*>(p);
}
// n elements of type T from the device
template <class T>
inline std::vector<T> down(const void* d, size_t n) {
  std::vector<T> h(n);
  CK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

// bf16 bits to float and back (round to nearest even)
inline float bf2f(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t f2bf(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}

struct Timer {
  cudaStream_t st;
  cudaEvent_t e0, e1;
  void* flush;  // cold L2: memset before each replay
  size_t flush_bytes;
};
// Prints the device line, fails unless cuBLAS loads, and returns the timer (its stream is the harness's stream).
inline Timer bench_start() {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, sm_%d%d, %d SMs, L2 %d MB\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, prop.l2CacheSize >> 20);
  CS(svdq_cublas_available());
  Timer T;
  CK(cudaStreamCreateWithFlags(&T.st, cudaStreamNonBlocking));
  CK(cudaEventCreate(&T.e0));
  CK(cudaEventCreate(&T.e1));
  T.flush_bytes = 256ull << 20;  // over the 50 MB L2 of an H100 (60 MB H200) several times
  T.flush = dalloc<uint8_t>(T.flush_bytes);
  return T;
}

inline float median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
// µs per call of f (work enqueued on T.st): hot = a graph of `it` calls (about 2 ms of work, 1 to 200 calls)
// replayed, median of 7; cold = L2 flushed (memset of 256 MB) before each single-call graph replay, median of 15
template <class F>
inline float time_us(Timer& T, bool cold, F&& f) {
  cudaGraph_t gr;
  cudaGraphExec_t ge;
  f();  // warm-up outside the capture (autotuning, lazy loading)
  CK(cudaStreamSynchronize(T.st));
  float once;
  {
    CK(cudaEventRecord(T.e0, T.st));
    f();
    CK(cudaEventRecord(T.e1, T.st));
    CK(cudaEventSynchronize(T.e1));
    CK(cudaEventElapsedTime(&once, T.e0, T.e1));
  }
  int it = cold ? 1 : std::max(1, std::min(200, int(2000.f / std::max(once * 1000.f, 1.f))));
  CK(cudaStreamBeginCapture(T.st, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < it; ++i) f();
  CK(cudaStreamEndCapture(T.st, &gr));
  CK(cudaGraphInstantiate(&ge, gr, 0));
  CK(cudaGraphLaunch(ge, T.st));
  CK(cudaStreamSynchronize(T.st));
  std::vector<float> ts;
  for (int r = 0; r < (cold ? 15 : 7); ++r) {
    if (cold) CK(cudaMemsetAsync(T.flush, r & 0xFF, T.flush_bytes, T.st));
    CK(cudaEventRecord(T.e0, T.st));
    CK(cudaGraphLaunch(ge, T.st));
    CK(cudaEventRecord(T.e1, T.st));
    CK(cudaEventSynchronize(T.e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, T.e0, T.e1));
    ts.push_back(ms * 1000.f / it);
  }
  CK(cudaGetLastError());
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(gr));
  return median(ts);
}

// The HBM copy ceiling of this run: a 1 GiB cudaMemcpy device to device, in GB/s of bytes read + written (printed).
inline double copy_rate_gbs(Timer& T) {
  const size_t nb = 1ull << 30;
  void* a = dalloc<uint8_t>(nb);
  void* b = dalloc<uint8_t>(nb);
  CK(cudaMemsetAsync(a, 1, nb, T.st));
  const float us = time_us(T, false, [&] { CK(cudaMemcpyAsync(b, a, nb, cudaMemcpyDeviceToDevice, T.st)); });
  const double gbs = 2.0 * nb / us / 1e3;
  std::printf("HBM copy (cudaMemcpy D2D) 1 GiB: %.1f us = %.0f GB/s (read + write)\n", us, gbs);
  CK(cudaFree(a));
  CK(cudaFree(b));
  return gbs;
}
