// The few cuBLASLt 13 entry points p2_fp8.cu uses, declared here and loaded with dlopen (as
// kernels/cuda/cublas_peer.cpp does for cuBLAS) so that it builds where the toolkit has no cuBLAS headers.
// Enum values from the cuBLASLt 13 API (cublasLt.h: cublasLtMatmulDescAttributes_t, cublasLtMatmulMatrixScale_t,
// cublasLtMatmulPreferenceAttributes_t; library_types.h: cudaDataType).
#pragma once
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <library_types.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace lt {
using Handle = void*;
using Desc = void*;
using Layout = void*;
using Pref = void*;
struct Algo { uint64_t data[8]; };
struct Heur { Algo algo; size_t workspaceSize; int state; float wavesCount; int reserved[4]; };

constexpr int DESC_TRANSA = 3, DESC_TRANSB = 4, DESC_EPILOGUE = 7, DESC_BIAS_POINTER = 8, DESC_A_SCALE_POINTER = 17,
              DESC_B_SCALE_POINTER = 18, DESC_FAST_ACCUM = 25, DESC_BIAS_DATA_TYPE = 26, DESC_A_SCALE_MODE = 31,
              DESC_B_SCALE_MODE = 32;
// cublasLtEpilogue_t
constexpr int EPILOGUE_DEFAULT = 1, EPILOGUE_BIAS = 4, EPILOGUE_GELU = 32, EPILOGUE_GELU_BIAS = 36;
constexpr int SCALE_SCALAR_32F = 0, SCALE_OUTER_VEC_32F = 3;
constexpr int PREF_MAX_WORKSPACE_BYTES = 1;
constexpr int COMPUTE_32F = 68;  // cublasComputeType_t CUBLAS_COMPUTE_32F
constexpr int OP_N = 0, OP_T = 1;
// cublasLtMatmulAlgoCapAttributes_t / cublasLtMatmulAlgoConfigAttributes_t (the algorithm search of
// kernels/cuda/bench/lt_search.cu)
constexpr int CAP_SPLITK_SUPPORT = 0, CAP_REDUCTION_SCHEME_MASK = 1, CAP_CTA_SWIZZLING_SUPPORT = 2, CAP_TILE_IDS = 6,
              CAP_CUSTOM_OPTION_MAX = 7, CAP_STAGES_IDS = 13;
constexpr int CFG_ID = 0, CFG_TILE_ID = 1, CFG_SPLITK_NUM = 2, CFG_REDUCTION_SCHEME = 3, CFG_CTA_SWIZZLING = 4,
              CFG_CUSTOM_OPTION = 5, CFG_STAGES_ID = 6, CFG_INNER_SHAPE_ID = 7, CFG_CLUSTER_SHAPE_ID = 8;

struct Api {
  int (*create)(Handle*) = nullptr;
  int (*descCreate)(Desc*, int, cudaDataType) = nullptr;
  int (*descSet)(Desc, int, const void*, size_t) = nullptr;
  int (*layoutCreate)(Layout*, cudaDataType, uint64_t, uint64_t, int64_t) = nullptr;
  int (*prefCreate)(Pref*) = nullptr;
  int (*prefSet)(Pref, int, const void*, size_t) = nullptr;
  int (*heuristic)(Handle, Desc, Layout, Layout, Layout, Layout, Pref, int, Heur*, int*) = nullptr;
  int (*matmul)(Handle, Desc, const void*, const void*, Layout, const void*, Layout, const void*, const void*,
                Layout, void*, Layout, const Algo*, void*, size_t, cudaStream_t) = nullptr;
  size_t (*version)() = nullptr;
  // algorithm enumeration (cublasLtMatmulAlgoGetIds / Init / CapGetAttribute / ConfigSet|GetAttribute / Check)
  int (*algoGetIds)(Handle, int, cudaDataType, cudaDataType, cudaDataType, cudaDataType, cudaDataType, int, int*,
                    int*) = nullptr;
  int (*algoInit)(Handle, int, cudaDataType, cudaDataType, cudaDataType, cudaDataType, cudaDataType, int,
                  Algo*) = nullptr;
  int (*algoCapGet)(const Algo*, int, void*, size_t, size_t*) = nullptr;
  int (*algoCfgSet)(Algo*, int, const void*, size_t) = nullptr;
  int (*algoCfgGet)(const Algo*, int, void*, size_t, size_t*) = nullptr;
  int (*algoCheck)(Handle, Desc, Layout, Layout, Layout, Layout, const Algo*, Heur*) = nullptr;
  // dlopen libcublasLt (SVDQ_CUBLASLT_PATH, then libcublasLt.so.13, libcublasLt.so); false with *why on failure
  bool load(std::string* why) {
    const char* env = std::getenv("SVDQ_CUBLASLT_PATH");
    const char* names[] = {env, "libcublasLt.so.13", "libcublasLt.so"};
    void* lib = nullptr;
    for (const char* n : names)
      if (n && (lib = dlopen(n, RTLD_NOW | RTLD_LOCAL))) break;
    if (!lib) {
      const char* e = dlerror();
      *why = std::string("dlopen(libcublasLt.so.13): ") + (e ? e : "not found") + " (set SVDQ_CUBLASLT_PATH)";
      return false;
    }
#define LT_SYM(f, n)                                              \
  f = reinterpret_cast<decltype(f)>(dlsym(lib, n));               \
  if (!f) {                                                       \
    *why = std::string("dlsym(") + n + "): missing in libcublasLt"; \
    return false;                                                 \
  }
    LT_SYM(create, "cublasLtCreate");
    LT_SYM(descCreate, "cublasLtMatmulDescCreate");
    LT_SYM(descSet, "cublasLtMatmulDescSetAttribute");
    LT_SYM(layoutCreate, "cublasLtMatrixLayoutCreate");
    LT_SYM(prefCreate, "cublasLtMatmulPreferenceCreate");
    LT_SYM(prefSet, "cublasLtMatmulPreferenceSetAttribute");
    LT_SYM(heuristic, "cublasLtMatmulAlgoGetHeuristic");
    LT_SYM(matmul, "cublasLtMatmul");
    LT_SYM(algoGetIds, "cublasLtMatmulAlgoGetIds");
    LT_SYM(algoInit, "cublasLtMatmulAlgoInit");
    LT_SYM(algoCapGet, "cublasLtMatmulAlgoCapGetAttribute");
    LT_SYM(algoCfgSet, "cublasLtMatmulAlgoConfigSetAttribute");
    LT_SYM(algoCfgGet, "cublasLtMatmulAlgoConfigGetAttribute");
    LT_SYM(algoCheck, "cublasLtMatmulAlgoCheck");
#undef LT_SYM
    version = reinterpret_cast<decltype(version)>(dlsym(lib, "cublasLtGetVersion"));
    return true;
  }
};
}  // namespace lt
