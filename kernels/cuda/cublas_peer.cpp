// 16-bit and INT8 GEMMs through cuBLAS (the peers of the W4A4 kernels), loaded with dlopen at first use so that the addon builds where the CUDA toolkit has
// no cuBLAS (CI) and runs where libcublas.so.13 is installed (the GPU machine). Only the four entry points used
// here are declared; their signatures and enum values are from the cuBLAS 13 API (cublas_api.h, library_types.h).
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <library_types.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>

#include "svdq_cuda.h"

namespace {

using cublasHandle_t = void*;
using cublasStatus_t = int;
constexpr int CUBLAS_OP_N = 0;
constexpr int CUBLAS_OP_T = 1;
constexpr int CUBLAS_COMPUTE_32F = 68;
constexpr int CUBLAS_COMPUTE_32I = 72;
constexpr int CUBLAS_GEMM_DEFAULT = -1;

using create_fn = cublasStatus_t (*)(cublasHandle_t*);
using set_stream_fn = cublasStatus_t (*)(cublasHandle_t, cudaStream_t);
using gemm_ex_fn = cublasStatus_t (*)(cublasHandle_t, int, int, int, int, int, const void*, const void*,
                                      cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                                      cudaDataType, int, int, int);

struct Cublas {
  std::string error;
  cublasHandle_t handle = nullptr;
  set_stream_fn set_stream = nullptr;
  gemm_ex_fn gemm_ex = nullptr;
};

thread_local std::string g_err;

Cublas& cublas() {
  static Cublas c;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("SVDQ_CUBLAS_PATH");
    const char* names[] = {env, "libcublas.so.13", "libcublas.so"};
    void* lib = nullptr;
    for (const char* n : names) {
      if (n && (lib = dlopen(n, RTLD_NOW | RTLD_LOCAL))) break;
    }
    if (!lib) {
      c.error = std::string("dlopen(libcublas.so.13): ") + dlerror() + " (set SVDQ_CUBLAS_PATH)";
      return;
    }
    auto create = reinterpret_cast<create_fn>(dlsym(lib, "cublasCreate_v2"));
    c.set_stream = reinterpret_cast<set_stream_fn>(dlsym(lib, "cublasSetStream_v2"));
    c.gemm_ex = reinterpret_cast<gemm_ex_fn>(dlsym(lib, "cublasGemmEx"));
    if (!create || !c.set_stream || !c.gemm_ex) {
      c.error = "dlsym(cublasCreate_v2/cublasSetStream_v2/cublasGemmEx): symbol missing in libcublas";
      return;
    }
    const cublasStatus_t s = create(&c.handle);
    if (s != 0) c.error = "cublasCreate_v2: status " + std::to_string(s);
  });
  return c;
}

}  // namespace

extern "C" const char* svdq_cublas_available(void) {
  Cublas& c = cublas();
  if (c.error.empty()) return nullptr;
  g_err = c.error;
  return g_err.c_str();
}

namespace {
const char* run_gemm_ex(const char* fn, const void* x, const void* w, void* out, int M, int N, int K, void* stream,
                        cudaDataType tin, cudaDataType tout, int compute, const void* alpha, const void* beta,
                        int ldx = 0, int ldw = 0, int ldo = 0) {
  if (M <= 0 || N <= 0 || K <= 0) {
    g_err = std::string(fn) + ": M, N and K must be positive";
    return g_err.c_str();
  }
  if (!x || !w || !out) {
    g_err = std::string(fn) + ": x, w and out must be non-null";
    return g_err.c_str();
  }
  Cublas& c = cublas();
  if (!c.error.empty()) {
    g_err = c.error;
    return g_err.c_str();
  }
  cublasStatus_t s = c.set_stream(c.handle, static_cast<cudaStream_t>(stream));
  if (s != 0) {
    g_err = "cublasSetStream_v2: status " + std::to_string(s);
    return g_err.c_str();
  }
  // Row-major out[M,N] = x[M,K] · w[N,K]ᵀ is column-major outᵀ[N,M] = (wᵀ as [K,N] col-major)ᵀ · xᵀ ("TN").
  s = c.gemm_ex(c.handle, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, alpha, w, tin, ldw ? ldw : K, x, tin, ldx ? ldx : K, beta,
                out, tout, ldo ? ldo : N, compute, CUBLAS_GEMM_DEFAULT);
  if (s != 0) {
    g_err = std::string(fn) + ": cublasGemmEx: status " + std::to_string(s);
    return g_err.c_str();
  }
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    g_err = std::string(fn) + ": cublasGemmEx: " + cudaGetErrorName(e);
    return g_err.c_str();
  }
  return nullptr;
}
}  // namespace

extern "C" const char* svdq_gemm_bf16_cublas(svdq_dtype dtype, const void* x, const void* w, void* out, int M, int N,
                                             int K, void* stream) {
  const cudaDataType t = dtype == SVDQ_BF16 ? CUDA_R_16BF : CUDA_R_16F;
  const float alpha = 1.0f, beta = 0.0f;
  return run_gemm_ex("svdq_gemm_bf16_cublas", x, w, out, M, N, K, stream, t, t, CUBLAS_COMPUTE_32F, &alpha, &beta);
}

extern "C" const char* svdq_gemm_s8_cublas(const void* x, const void* w, void* out, int M, int N, int K,
                                           void* stream) {
  // cuBLAS IMMA GEMMs need the "TN" form (done above) and K, the leading dimensions, a multiple of 4
  if (K % 4 != 0 || N % 4 != 0) {
    g_err = "svdq_gemm_s8_cublas: K=" + std::to_string(K) + " and N=" + std::to_string(N) + " must be multiples of 4";
    return g_err.c_str();
  }
  const int32_t alpha = 1, beta = 0;
  return run_gemm_ex("svdq_gemm_s8_cublas", x, w, out, M, N, K, stream, CUDA_R_8I, CUDA_R_32I, CUBLAS_COMPUTE_32I,
                     &alpha, &beta);
}

extern "C" const char* svdq_gemm_cublas_ex(svdq_dtype dtype, int out_f32, const void* x, int ldx, const void* w,
                                           int ldw, void* out, int ldo, int M, int N, int K, float beta,
                                           void* stream) {
  if (ldx < K || ldw < K || ldo < N) {
    g_err = "svdq_gemm_cublas_ex: leading dimensions ldx=" + std::to_string(ldx) + " ldw=" + std::to_string(ldw) +
            " ldo=" + std::to_string(ldo) + " below K=" + std::to_string(K) + " / N=" + std::to_string(N);
    return g_err.c_str();
  }
  const cudaDataType t = dtype == SVDQ_BF16 ? CUDA_R_16BF : CUDA_R_16F;
  const float alpha = 1.0f;
  return run_gemm_ex("svdq_gemm_cublas_ex", x, w, out, M, N, K, stream, t, out_f32 ? CUDA_R_32F : t, CUBLAS_COMPUTE_32F,
                     &alpha, &beta, ldx, ldw, ldo);
}
