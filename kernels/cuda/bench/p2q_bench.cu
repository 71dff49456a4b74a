// int4p2 activation-quantize harness (issue 16: "a memory-bound activation-quantize kernel (>= 80% of HBM
// bandwidth)"): svdq_p2_quantize_rows (x [M, K] bf16 read once, the FP8 operand a8 [M, Kx] and S_x [M] written once;
// lora_act from one cuBLAS GEMM) on the FLUX.1 shapes (M = 4608 tokens; K = 3072, 12288, 15360; M = 256) and the
// PixArt-Σ ones (M = 4096; K = 1152, 4608), hot and cold L2, as GB/s (bytes read + written / time) and as % of a
// cudaMemcpy device-to-device rate measured in the same run. Peers in the same run: the kernel as it was before the
// rewrite (p2q_old.cuh) and the launch variants of the new one (threads per block, units in flight, rows per set).
// Checks: the fast kernel's bytes (a8, S_x) equal the reference path's on every shape, with edge rows (zeros, tiny,
// huge outliers that requantize groups below the window, Inf/NaN), without λ and without the low-rank columns; the
// reference path equals the host float32 twin (p2_twin.h) on sampled rows. Timing: bench_common.cuh.
// Build and run (GPU machine, repo root): bash kernels/cuda/bench/p2q-bench.sh [ncu]
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
#include "../p2_fp8.h"
#include "../svdq_cuda.h"
#include "bench_common.cuh"
#include "p2_twin.h"
#include "p2q_old.cuh"

extern "C" const char* svdq_p2_quantize_rows_cfg(const svdq_p2_rows_args* a, int nt, int pf, int rb, void* stream);

// x with outlier channels (every 61st ×24) and some quieter rows, as hopper_bench.cu draws them; edge rows when
// `edges`: row 1 zeros, row 2 ×2^-110 (subnormal-range groups), row 3 one value ×2^20 (groups below the window are
// requantized), row 5 an Inf and a NaN, row 6 half of its groups zero
__global__ void fill_x(__nv_bfloat16* p, size_t n, int K, uint32_t seed, int edges) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 0x9E3779B1u + seed;
    h ^= h >> 16; h *= 0x7FEB352Du; h ^= h >> 15; h *= 0x846CA68Bu; h ^= h >> 16;
    float v = 4.f * (float(h >> 8) * 5.9604644775390625e-8f - 0.5f);
    const size_t row = i / K, k = i % K;
    if (k % 61 == 7) v *= 24.f;
    if ((row % 13) == 3) v *= 0.25f;
    if (edges) {
      if (row == 1) v = 0.f;
      if (row == 2) v = ldexpf(v, -110);
      if (row == 3 && k == 100) v = ldexpf(v, 20);
      if (row == 5 && k == 70) v = INFINITY;
      if (row == 5 && k == 300) v = NAN;
      if (row == 6 && (k / 64) % 2) v = 0.f;
    }
    p[i] = __float2bfloat16_rn(v);
  }
}

static void launch_old(const svdq_p2_rows_args& a, cudaStream_t s) {
  const int Kx = a.K + (a.lr_shift ? 3 * R : 0);
  const size_t sh = size_t(8) * (a.K / 256) * 32 * 4 + size_t(8) * (a.K / G);
  static bool raised = false;
  if (!raised) {
    CK(cudaFuncSetAttribute(p2q_old::old_rows_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024));
    raised = true;
  }
  p2q_old::old_rows_kernel<true><<<(a.M + 7) / 8, 256, sh, s>>>(
      static_cast<const __nv_bfloat16*>(a.x), static_cast<const __nv_bfloat16*>(a.smooth), a.lora_act, a.lr_shift,
      a.M, a.K, Kx, static_cast<uint8_t*>(a.a8), a.sx);
  CK(cudaGetLastError());
}

int main(int argc, char** argv) {
  const bool ncu = argc > 1 && std::strcmp(argv[1], "ncu") == 0;  // one launch each of old and new, for ncu
  const bool small = argc > 1 && std::strcmp(argv[1], "small") == 0;  // checks on small shapes (memcheck), no timing
  Timer T = bench_start();
  cudaStream_t s = T.st;
  const double hbm = ncu || small ? 0 : copy_rate_gbs(T);
  int fails = 0;
  std::vector<std::string> rows, tune;
  struct Sh {
    int M, K;
  };
  const std::vector<Sh> shapes = ncu     ? std::vector<Sh>{{4608, 12288}}
                                 : small ? std::vector<Sh>{{37, 1152}, {300, 3072}, {9, 4608}}
                                     : std::vector<Sh>{{4608, 3072}, {256, 3072}, {4608, 12288}, {4608, 15360},
                                                       {4096, 1152}, {4096, 4608}, {256, 1152}};
  for (const Sh sh : shapes) {
    const int M = sh.M, K = sh.K, Kx = K + 3 * R;
    __nv_bfloat16 *x, *lam, *ldn;
    int* cr;
    uint8_t *a8r, *a8n;
    float *sxr, *sxn, *la;
    CK(cudaMalloc(&x, size_t(M) * K * 2));
    CK(cudaMalloc(&lam, size_t(K) * 2));
    CK(cudaMalloc(&ldn, size_t(R) * K * 2));
    CK(cudaMalloc(&cr, R * 4));
    CK(cudaMalloc(&a8r, size_t(M) * Kx));
    CK(cudaMalloc(&a8n, size_t(M) * Kx));
    CK(cudaMalloc(&sxr, size_t(M) * 4));
    CK(cudaMalloc(&sxn, size_t(M) * 4));
    CK(cudaMalloc(&la, size_t(M) * R * 4));
    CS(eng_fill_random(lam, K, 0, 5, 1.f, 0.8f, s));
    CS(eng_fill_random(ldn, size_t(R) * K, 0, 6, 0.f, 2.f / std::sqrt(float(K)), s));
    std::vector<int> hcr(R);
    for (int r = 0; r < R; ++r) hcr[r] = -2 + (r % 5);  // per-rank power-of-two shifts (p2-weights.ts c_r)
    CK(cudaMemcpy(cr, hcr.data(), R * 4, cudaMemcpyHostToDevice));
    svdq_p2_rows_args ra{};
    ra.x = x; ra.smooth = lam; ra.lora_act = la; ra.lr_shift = cr; ra.M = M; ra.K = K; ra.sx = sxr;
    if (!ncu) {
      // ---- checks: edge rows first, then the timing data
      for (int edges = 1; edges >= 0; --edges) {
        fill_x<<<1024, 256, 0, s>>>(x, size_t(M) * K, K, 17 + K + edges, edges);
        CS(svdq_gemm_cublas_ex(SVDQ_BF16, 1, x, K, ldn, K, la, R, M, R, K, 0.f, s));
        struct V {
          const char* name;
          bool smooth, lowrank;
          int nt, pf, rb;
        };
        std::vector<V> vs = {{"default", true, true, 0, 0, 0}, {"no λ", false, true, 0, 0, 0},
                             {"no low-rank", true, false, 0, 0, 0}, {"256 thr, pf 16", true, true, 256, 16, 0},
                             {"512 thr, pf 8, rb 1", true, true, 512, 8, 1}, {"256 thr, pf 4, rb 3", true, true, 256, 4, 3}};
        for (const V& vv : vs) {
          svdq_p2_rows_args b = ra;
          b.smooth = vv.smooth ? lam : nullptr;
          b.lora_act = vv.lowrank ? la : nullptr;
          b.lr_shift = vv.lowrank ? cr : nullptr;
          const int kx = vv.lowrank ? Kx : K;
          b.reference = 1;
          b.a8 = a8r;
          b.sx = sxr;
          CK(cudaMemsetAsync(a8r, 0x5A, size_t(M) * Kx, s));
          CS(svdq_p2_quantize_rows(&b, s));
          b.reference = 0;
          b.a8 = a8n;
          b.sx = sxn;
          CK(cudaMemsetAsync(a8n, 0xA5, size_t(M) * Kx, s));
          CK(cudaMemsetAsync(sxn, 0xFF, size_t(M) * 4, s));
          if (vv.nt) CS(svdq_p2_quantize_rows_cfg(&b, vv.nt, vv.pf, vv.rb, s));
          else CS(svdq_p2_quantize_rows(&b, s));
          CK(cudaStreamSynchronize(s));
          const auto o = down<uint8_t>(a8r, size_t(M) * kx), n = down<uint8_t>(a8n, size_t(M) * kx);
          const auto so = down<uint32_t>(sxr, M), sn = down<uint32_t>(sxn, M);
          size_t bad = 0, sbad = 0, first = size_t(-1);
          for (size_t i = 0; i < o.size(); ++i)
            if (o[i] != n[i]) bad++, first = std::min(first, i);
          for (int m = 0; m < M; ++m) sbad += so[m] != sn[m];
          const bool ok = bad == 0 && sbad == 0;
          fails += !ok;
          std::printf("check fast == reference (%s%s) M=%d K=%d: %s (%zu operand bytes, %zu scales differ; first at row %zu col %zu)\n",
                        vv.name, edges ? ", edge rows" : "", M, K, ok ? "PASS" : "FAIL", bad, sbad,
                        first == size_t(-1) ? 0 : first / kx, first == size_t(-1) ? 0 : first % kx);
          if (vv.nt == 0 && vv.smooth && vv.lowrank) {  // the reference path against the host twin, sampled rows
            const auto hx = down<uint16_t>(x, size_t(M) * K);
            const auto hl = down<uint16_t>(lam, K);
            const auto hla = down<float>(la, size_t(M) * R);
            size_t hb = 0;
            int nrows = 0;
            std::vector<float> v(K);
            std::vector<uint8_t> rb(Kx);
            for (int m = 0; m < M; m += (m < 8 ? 1 : 97)) {
              if (edges && m == 5) continue;  // Inf/NaN: the twin's division is not the device's
              for (int k = 0; k < K; ++k) {
                const float rl = 1.f / bf2f(hl[k]);
                v[k] = bf2f(hx[size_t(m) * K + k]) * rl;
              }
              float rsx;
              ref_quant_row(v.data(), K, &hla[size_t(m) * R], hcr.data(), true, rb.data(), &rsx);
              for (int k = 0; k < Kx; ++k) hb += rb[k] != o[size_t(m) * Kx + k];
              uint32_t ru;
              std::memcpy(&ru, &rsx, 4);
              hb += ru != so[m];
              ++nrows;
            }
            fails += hb != 0;
            std::printf("check reference path == host f32 twin (%s) M=%d K=%d, %d rows: %s (%zu bytes differ)\n",
                        edges ? "edge rows" : "plain", M, K, nrows, hb ? "FAIL" : "PASS", hb);
          }
        }
      }
    } else {
      fill_x<<<1024, 256, 0, s>>>(x, size_t(M) * K, K, 17 + K, 0);
      CS(svdq_gemm_cublas_ex(SVDQ_BF16, 1, x, K, ldn, K, la, R, M, R, K, 0.f, s));
    }
    ra.reference = 0;
    ra.a8 = a8n;
    ra.sx = sxn;
    if (small) {
    } else if (ncu) {
      launch_old(ra, s);
      CS(svdq_p2_quantize_rows(&ra, s));
      CK(cudaStreamSynchronize(s));
    } else {
      const double qbytes = double(M) * K * 2 + double(M) * Kx + M * 4.0 + double(M) * R * 4 + K * 2.0;
      auto gbs = [&](float us) { return qbytes / us / 1e3; };
      for (int cold = 1; cold >= 0; --cold) {
        const float to = K % 256 ? NAN : time_us(T, cold, [&] { launch_old(ra, s); });
        const float tn = time_us(T, cold, [&] { CS(svdq_p2_quantize_rows(&ra, s)); });
        const float tl = time_us(T, cold, [&] { CS(svdq_gemm_cublas_ex(SVDQ_BF16, 1, x, K, ldn, K, la, R, M, R, K, 0.f, s)); });
        const float tb = time_us(T, cold, [&] {
          CS(svdq_gemm_cublas_ex(SVDQ_BF16, 1, x, K, ldn, K, la, R, M, R, K, 0.f, s));
          CS(svdq_p2_quantize_rows(&ra, s));
        });
        char buf[512];
        std::snprintf(buf, sizeof buf, "| %s | %d | %d | %.1f (%.0f GB/s, %.0f%%) | %.1f (%.0f GB/s, %.0f%%) | %.2fx | %.1f | %.1f |",
                      cold ? "cold" : "hot", M, K, to, gbs(to), 100 * gbs(to) / hbm, tn, gbs(tn), 100 * gbs(tn) / hbm,
                      to / tn, tl, tb);
        rows.push_back(buf);
        std::printf("%s\n", buf);
        // launch variants (cold only)
        if (cold) {
          std::string t = "| " + std::to_string(M) + " | " + std::to_string(K) + " |";
          for (int nt : {256, 512})
            for (int pf : {4, 8, 16})
              for (int rb : {0, 1, 2, 4, 8, 16}) {
                if (pf == 16 && nt == 512) continue;
                const float tv = time_us(T, true, [&] { CS(svdq_p2_quantize_rows_cfg(&ra, nt, pf, rb, s)); });
                char b2[64];
                std::snprintf(b2, sizeof b2, " %.1f (%.0f%%) |", tv, 100 * gbs(tv) / hbm);
                t += b2;
              }
          tune.push_back(t);
          std::printf("%s\n", t.c_str());
        }
        std::fflush(stdout);
      }
    }
    for (void* q : {(void*)x, (void*)lam, (void*)ldn, (void*)cr, (void*)a8r, (void*)a8n, (void*)sxr, (void*)sxn, (void*)la})
      CK(cudaFree(q));
  }
  if (!ncu && !small) {
    std::printf("\ncudaMemcpy D2D rate this run: %.0f GB/s\n", hbm);
    std::printf("\n| L2 | M | K | before (one warp per row) µs (GB/s, %% of memcpy) | rows kernel µs (GB/s, %% of memcpy) | speedup | cuBLAS low-rank down µs | down + rows µs |\n|---|---|---|---|---|---|---|---|\n");
    for (auto& r : rows) std::printf("%s\n", r.c_str());
    std::printf("\nlaunch variants, cold L2, µs (%% of memcpy); columns: threads / units in flight per thread / rows per set\n| M | K |");
    for (int nt : {256, 512})
      for (int pf : {4, 8, 16})
        for (int rb : {0, 1, 2, 4, 8, 16})
          if (pf != 16 || nt != 512) std::printf(" %d/%d/%s |", nt, pf, rb ? std::to_string(rb).c_str() : "auto");
    std::printf("\n|---|---|");
    for (int i = 0; i < 30; ++i) std::printf("---|");
    std::printf("\n");
    for (auto& r : tune) std::printf("%s\n", r.c_str());
  }
  std::printf("\nchecks: %s (%d failed)\n", fails ? "FAIL" : "all PASS", fails);
  return fails ? 6 : 0;
}
