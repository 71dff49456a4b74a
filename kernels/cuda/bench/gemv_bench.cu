// W4A16 GEMV harness (issue 16: "W4A16 at M <= 8: >= 3x cuBLAS BF16"): the engine's eng_gemv_w4a16
// (kernels/cuda/engine/ops.cu) against the previous engine kernel (kept below, verbatim in its arithmetic, for the
// same-run comparison only) and cuBLAS BF16 on the AdaNorm shapes of FLUX.1 (K = 3072, N = 18432 / 9216 / 6144),
// M in {1, 2, 4, 8}, hot L2 and cold L2 (256 MB memset before each call), plus checks of the engine kernel against
// float64 on every output (odd shapes, bias, M = 1..8).
// Build and run (GPU machine, repo root): bash kernels/cuda/bench/gemv-bench.sh [quick]. Timing: bench_common.cuh.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../engine/engine_ops.h"
#include "../svdq_cuda.h"
#include "bench_common.cuh"

// ---- the previous engine kernel (before this harness): one warp per output row, the whole x [M, K] staged as f32
// in shared memory by every block of 8 rows, per-token inner loop over the codes
template <int MM>
__global__ void gemv_old_kernel(const __nv_bfloat16* x, int M, int K, const uint8_t* codes,
                                const __nv_bfloat16* scales, const __nv_bfloat16* zeros, const __nv_bfloat16* bias,
                                int N, __nv_bfloat16* out) {
  extern __shared__ float xs[];
  for (int i = threadIdx.x; i < M * K; i += blockDim.x) xs[i] = __bfloat162float(x[i]);
  __syncthreads();
  const int warps = blockDim.x / 32, lane = threadIdx.x % 32;
  const int n = blockIdx.x * warps + threadIdx.x / 32;
  if (n >= N) return;
  const int G = K / 64;
  const uint4* row = reinterpret_cast<const uint4*>(codes + size_t(n) * K / 2);
  float acc[MM];
#pragma unroll
  for (int m = 0; m < MM; m++) acc[m] = 0.f;
  for (int c = lane; c < K / 32; c += 32) {
    const uint4 w = __ldg(row + c);
    const int g = c / 2;
    const float sc = __bfloat162float(scales[size_t(n) * G + g]), z = __bfloat162float(zeros[size_t(n) * G + g]);
    const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
    float sq[MM], sx[MM];
#pragma unroll
    for (int m = 0; m < MM; m++) sq[m] = sx[m] = 0.f;
#pragma unroll
    for (int e = 0; e < 4; e++) {
#pragma unroll
      for (int j = 0; j < 8; j++) {
        const float q = float((ws[e] >> (4 * j)) & 15u);
        const int k = 32 * c + 8 * e + j;
#pragma unroll
        for (int m = 0; m < MM; m++) {
          if (m < M) {
            const float xv = xs[m * K + k];
            sq[m] += q * xv;
            sx[m] += xv;
          }
        }
      }
    }
#pragma unroll
    for (int m = 0; m < MM; m++) acc[m] += sc * sq[m] + z * sx[m];
  }
#pragma unroll
  for (int m = 0; m < MM; m++) {
    float v = acc[m];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0 && m < M) {
      if (bias) v = __bfloat162float(__float2bfloat16(v)) + __bfloat162float(bias[n]);
      out[size_t(m) * N + n] = __float2bfloat16(v);
    }
  }
}
static void gemv_old(const void* x, int M, int K, const uint8_t* codes, const void* sc, const void* ze, int N,
                     void* out, cudaStream_t s) {
  const size_t sh = size_t(M) * K * 4;
  const int grid = (N + 7) / 8;
  auto X = static_cast<const __nv_bfloat16*>(x);
  auto S = static_cast<const __nv_bfloat16*>(sc);
  auto Z = static_cast<const __nv_bfloat16*>(ze);
  auto O = static_cast<__nv_bfloat16*>(out);
  if (M <= 2) {
    CK(cudaFuncSetAttribute(gemv_old_kernel<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(sh)));
    gemv_old_kernel<2><<<grid, 256, sh, s>>>(X, M, K, codes, S, Z, nullptr, N, O);
  } else {
    CK(cudaFuncSetAttribute(gemv_old_kernel<8>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(sh)));
    gemv_old_kernel<8><<<grid, 256, sh, s>>>(X, M, K, codes, S, Z, nullptr, N, O);
  }
}

struct Layer {
  int K, N;
  __nv_bfloat16 *x, *scl, *zer, *bias;
  uint8_t* codes;
};
static Layer make_layer(int K, int N, uint32_t seed, cudaStream_t s) {
  Layer L{K, N};
  L.x = dalloc<__nv_bfloat16>(size_t(8) * K);
  L.codes = dalloc<uint8_t>(size_t(N) * K / 2);
  L.scl = dalloc<__nv_bfloat16>(size_t(N) * K / 64);
  L.zer = dalloc<__nv_bfloat16>(size_t(N) * K / 64);
  L.bias = dalloc<__nv_bfloat16>(N);
  CS(eng_fill_random(L.x, size_t(8) * K, 0, seed, 0.f, 2.f, s));
  CS(eng_fill_random_bytes(L.codes, size_t(N) * K / 2, seed + 1, s));
  // scale ~ 0.1/√K·U(0.5, 1.5), zero ~ −7.5·scale ± 0.3 scale: weights of both signs (AWQ-style zero points)
  CS(eng_fill_random(L.scl, size_t(N) * K / 64, 0, seed + 2, 0.1f / std::sqrt(float(K)), 0.1f / std::sqrt(float(K)), s));
  CS(eng_fill_random(L.zer, size_t(N) * K / 64, 0, seed + 3, -0.75f / std::sqrt(float(K)), 0.06f / std::sqrt(float(K)), s));
  CS(eng_fill_random(L.bias, N, 0, seed + 4, 0.f, 0.2f, s));
  return L;
}
static void free_layer(Layer& L) {
  for (void* p : {(void*)L.x, (void*)L.codes, (void*)L.scl, (void*)L.zer, (void*)L.bias}) CK(cudaFree(p));
}

// rel-L2 and rel-max of the engine kernel's output vs float64 on every output of an [M, N] call
static bool check(const Layer& L, int M, bool with_bias, int variant, cudaStream_t s) {
  const int K = L.K, N = L.N;
  auto* o = dalloc<__nv_bfloat16>(size_t(M) * N);
  CK(cudaMemsetAsync(o, 0xFF, size_t(M) * N * 2, s));  // NaN poison
  CS(eng_gemv_w4a16_variant(L.x, M, K, L.codes, L.scl, L.zer, with_bias ? L.bias : nullptr, N, o, variant, s));
  CK(cudaStreamSynchronize(s));
  const auto hx = down<uint16_t>(L.x, size_t(M) * K), hs = down<uint16_t>(L.scl, size_t(N) * K / 64),
             hz = down<uint16_t>(L.zer, size_t(N) * K / 64), hb = down<uint16_t>(L.bias, N), ho = down<uint16_t>(o, size_t(M) * N);
  std::vector<uint8_t> hc(size_t(N) * K / 2);
  CK(cudaMemcpy(hc.data(), L.codes, hc.size(), cudaMemcpyDeviceToHost));
  double num = 0, den = 0, mx = 0, amax = 0;
  bool finite = true;
  for (int n = 0; n < N; ++n)
    for (int m = 0; m < M; ++m) {
      double r = 0;
      for (int k = 0; k < K; ++k) {
        const int q = (hc[(size_t(n) * K + k) / 2] >> (4 * (k & 1))) & 15;
        const size_t g = size_t(n) * (K / 64) + k / 64;
        r += double(bf2f(hx[size_t(m) * K + k])) * (q * double(bf2f(hs[g])) + double(bf2f(hz[g])));
      }
      if (with_bias) r += bf2f(hb[n]);
      const double v = bf2f(ho[size_t(m) * N + n]);
      finite = finite && std::isfinite(v);
      num += (v - r) * (v - r);
      den += r * r;
      mx = std::max(mx, std::fabs(v - r));
      amax = std::max(amax, std::fabs(r));
    }
  CK(cudaFree(o));
  const double rel = std::sqrt(num / den);
  // bf16 output: rounding alone gives about 2^-9 / √3 ≈ 1.1e-3 relative
  const bool ok = finite && rel < 4e-3;
  std::printf("check eng_gemv_w4a16 (%s) M=%d K=%d N=%d%s: %s rel-L2 %.2e, max |err| / max |ref| %.2e (vs float64, all outputs)\n",
              variant == 1 ? "CUDA cores" : variant == 2 ? "tensor cores" : "auto", M, K, N, with_bias ? " +bias" : "",
              ok ? "PASS" : "FAIL", rel, mx / amax);
  return ok;
}

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "quick";
  Timer T = bench_start();
  cudaStream_t s = T.st;
  const double hbm = copy_rate_gbs(T);
  int fails = 0;
  // correctness: odd shapes (N not a multiple of the rows per warp, K not a multiple of 1024, one chunk per lane)
  {
    struct S { int M, K, N; bool bias; };
    const S shapes[] = {{1, 256, 200, true}, {2, 3072, 384, true}, {3, 128, 67, true}, {5, 1088, 131, false},
                        {8, 3072, 1000, true}, {4, 6144, 96, true}, {7, 64, 9, true}, {1, 3072, 18432, false},
                        {8, 3072, 9216, true}};
    for (const S& sh : shapes) {
      if (quick && sh.N > 2000) continue;
      Layer L = make_layer(sh.K, sh.N, 100 + sh.M * 7 + sh.N, s);
      for (int v = 0; v < 3; ++v) fails += !check(L, sh.M, sh.bias, v, s);
      free_layer(L);
    }
  }
  std::printf("\n| L2 | M | K | N | cuBLAS BF16 µs | old engine GEMV µs | vs cuBLAS | CUDA-core GEMV µs | vs cuBLAS | tensor-core GEMV µs | vs cuBLAS | engine (auto) µs | vs cuBLAS | vs old | auto GB/s (%% of copy rate) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (int N : {18432, 9216, 6144}) {
    const int K = 3072;
    Layer L = make_layer(K, N, 7 + N, s);
    auto* w = dalloc<__nv_bfloat16>(size_t(N) * K);
    CS(eng_fill_random(w, size_t(N) * K, 0, 99, 0.f, 0.05f, s));
    auto* o = dalloc<__nv_bfloat16>(size_t(8) * N);
    for (int cold = 1; cold >= 0; --cold)
      for (int M : {1, 2, 4, 8}) {
        const float tb = time_us(T, cold, [&] { CS(svdq_gemm_bf16_cublas(SVDQ_BF16, L.x, w, o, M, N, K, s)); });
        const float to = time_us(T, cold, [&] { gemv_old(L.x, M, K, L.codes, L.scl, L.zer, N, o, s); });
        const float t1 = time_us(T, cold, [&] { CS(eng_gemv_w4a16_variant(L.x, M, K, L.codes, L.scl, L.zer, nullptr, N, o, 1, s)); });
        const float t2 = time_us(T, cold, [&] { CS(eng_gemv_w4a16_variant(L.x, M, K, L.codes, L.scl, L.zer, nullptr, N, o, 2, s)); });
        const float tn = time_us(T, cold, [&] { CS(eng_gemv_w4a16(L.x, M, K, L.codes, L.scl, L.zer, nullptr, N, o, s)); });
        const double bytes = double(N) * K / 2 + double(N) * K / 64 * 4 + double(M) * K * 2 + double(M) * N * 2;
        std::printf("| %s | %d | %d | %d | %.1f | %.1f | %.2fx | %.1f | %.2fx | %.1f | %.2fx | %.1f | %.2fx | %.1fx | %.0f (%.0f%%) |\n",
                    cold ? "cold" : "hot", M, K, N, tb, to, tb / to, t1, tb / t1, t2, tb / t2, tn, tb / tn, to / tn,
                    bytes / tn / 1e3, 100.0 * bytes / tn / 1e3 / hbm);
        std::fflush(stdout);
      }
    CK(cudaFree(w));
    CK(cudaFree(o));
    free_layer(L);
  }
  std::printf("\nchecks: %s (%d failed)\n", fails ? "FAIL" : "all PASS", fails);
  return fails ? 6 : 0;
}
