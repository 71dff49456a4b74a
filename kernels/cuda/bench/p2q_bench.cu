// int4p2 activation-quantize harness (issue 16: "a memory-bound activation-quantize kernel (>= 80% of HBM
// bandwidth)"): svdq_p2_quantize_rows (x [M, K] bf16 read once, the FP8 operand a8 [M, Kx] and S_x [M] written once;
// lora_act from one cuBLAS GEMM) on the FLUX.1 shapes (M = 4608 tokens; K = 3072, 12288, 15360; M = 256) and the
// PixArt-Σ ones (M = 4096; K = 1152, 4608), hot and cold L2, as GB/s (bytes read + written / time) and as % of a
// cudaMemcpy device-to-device rate measured in the same run. Peers in the same run: the kernel as it was before the
// rewrite (p2q_old.cuh) and the launch variants of the new one (threads per block, units in flight, rows per set).
// Checks: the fast kernel's bytes (a8, S_x) equal the reference path's on every shape, with edge rows (zeros, tiny,
// huge outliers that requantize groups below the window, Inf/NaN), without λ and without the low-rank columns; the
// reference path equals a host float32 twin on sampled rows.
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
#include "p2q_old.cuh"

extern "C" const char* svdq_p2_quantize_rows_cfg(const svdq_p2_rows_args* a, int nt, int pf, int rb, void* stream);

#define CK(x)                                                                                 \
  do {                                                                                        \
    const cudaError_t e_ = (x);                                                               \
    if (e_ != cudaSuccess) {                                                                  \
      std::printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__);   \
      std::exit(3);                                                                           \
    }                                                                                         \
  } while (0)
#define CS(x)                                                       \
  do {                                                              \
    const char* m_ = (x);                                           \
    if (m_) {                                                       \
      std::printf("error: %s (%s:%d)\n", m_, __FILE__, __LINE__);   \
      std::exit(4);                                                 \
    }                                                               \
  } while (0)

constexpr int G = 64, EMIN = SVDQ_P2_EXP_MIN, EMAX = SVDQ_P2_EXP_MAX, R = 32, KEMPTY = -1000;

// ---- timing: hot = a graph of `it` calls replayed (median of 7); cold = 256 MB memset before each single call
struct Timer {
  cudaStream_t st;
  cudaEvent_t e0, e1;
  void* flush;
  size_t flush_bytes;
};
template <class F>
static float time_us(Timer& T, bool cold, F&& f) {
  f();
  CK(cudaStreamSynchronize(T.st));
  const int it = cold ? 1 : 50;
  cudaGraph_t gr;
  cudaGraphExec_t ge;
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
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(gr));
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

template <class T>
static std::vector<T> down(const void* p, size_t n) {
  std::vector<T> h(n);
  CK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}
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

// ---- host float32 twin of the quantizer for one row (as hopper_bench.cu's): v = x·(1/λ) in f32
static double e4m3_dec(uint8_t b) {
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  double v = e == 0 ? std::ldexp(m, -9) : std::ldexp(8 + m, e - 10);
  if (e == 15 && m == 7) v = NAN;
  return s ? -v : v;
}
static uint8_t e4m3_enc(double v) {
  if (std::isnan(v)) return 0x7F;
  const uint8_t s = v < 0 ? 0x80 : 0;
  double a = std::fabs(v);
  if (a >= 448) return s | 0x7E;
  // candidates: quantum 2^(E-3) for normal E >= -6, 2^-9 below
  int ex; std::frexp(a, &ex);  // a = f·2^ex, f in [0.5, 1)
  int E = ex - 1;
  if (E < -6) E = -6;
  const double q = std::ldexp(1.0, E - 3);
  double r = std::nearbyint(a / q) * q;  // ties to even (default rounding mode)
  if (r >= 448) return s | 0x7E;
  if (r == 0) return s;
  int re; std::frexp(r, &re);
  int RE = re - 1;
  if (RE < -6) return s | uint8_t(std::lround(r / std::ldexp(1.0, -9)));
  const int m = int(std::lround(r / std::ldexp(1.0, RE - 3))) - 8;
  return s | uint8_t((RE + 7) << 3) | uint8_t(m);
}
// smallest integer k with 2^k >= t (t > 0)
static int ceil_log2(double t) {
  int ex;
  const double f = std::frexp(t, &ex);
  return f == 0.5 ? ex - 1 : ex;
}
static void ref_quant_row(const float* v, int K, const float* la, const int* cr, bool lowrank, uint8_t* out,
                          float* sxo) {
  const int ng = K / G;
  std::vector<int> kg(ng, KEMPTY), q(K, 0);
  int kmax = KEMPTY;
  for (int gi = 0; gi < ng; ++gi) {
    float a = 0;
    for (int j = 0; j < G; ++j) a = std::max(a, std::fabs(v[gi * G + j]));
    if (a == 0) continue;
    const int k = ceil_log2(a / 7.f);
    kmax = std::max(kmax, k);
    float p0[8], p1[8];
    std::vector<int> c0(G), c1(G);
    for (int l = 0; l < 8; ++l) {
      float s0 = 0.f, s1 = 0.f;
      for (int j = 0; j < 8; ++j) {
        const int i = gi * G + 8 * l + j;
        c0[8 * l + j] = int(std::min(7.0, std::max(-8.0, std::nearbyint(std::ldexp(double(v[i]), -k)))));
        c1[8 * l + j] = int(std::min(7.0, std::max(-8.0, std::nearbyint(std::ldexp(double(v[i]), 1 - k)))));
        const float d0 = v[i] - std::ldexp(float(c0[8 * l + j]), k);
        const float d1 = v[i] - std::ldexp(float(c1[8 * l + j]), k - 1);
        const float e0 = d0 * d0, e1 = d1 * d1;
        s0 = s0 + e0;
        s1 = s1 + e1;
      }
      p0[l] = s0;
      p1[l] = s1;
    }
    const float t0 = ((p0[0] + p0[1]) + (p0[2] + p0[3])) + ((p0[4] + p0[5]) + (p0[6] + p0[7]));
    const float t1 = ((p1[0] + p1[1]) + (p1[2] + p1[3])) + ((p1[4] + p1[5]) + (p1[6] + p1[7]));
    const bool finer = t1 < t0;
    kg[gi] = finer ? k - 1 : k;
    for (int j = 0; j < G; ++j) q[gi * G + j] = finer ? c1[j] : c0[j];
  }
  int E = kmax == KEMPTY ? 0 : kmax - EMAX;
  float lrmax = 0;
  if (lowrank)
    for (int r = 0; r < R; ++r) lrmax = std::max(lrmax, std::fabs(std::ldexp(la[r], -cr[r])));
  if (lrmax > 0) {
    const int elr = ceil_log2(lrmax / 256.f);
    if (kmax == KEMPTY || elr > E) E = elr;
  }
  *sxo = std::ldexp(1.f, E);
  for (int gi = 0; gi < ng; ++gi)
    for (int j = 0; j < G; ++j) {
      uint8_t b = 0;
      if (kg[gi] != KEMPTY) {
        int e = kg[gi] - E;
        const int shift = e < EMIN ? e - EMIN : 0;
        e = std::max(e, EMIN);
        double qq = q[gi * G + j];
        if (shift) qq = std::nearbyint(std::ldexp(qq, shift));
        b = e4m3_enc(std::ldexp(qq, e));
      }
      out[gi * G + j] = b;
    }
  if (lowrank)
    for (int r = 0; r < R; ++r) {
      const float a = std::ldexp(la[r], -cr[r] - E);
      const uint8_t h = e4m3_enc(a);
      const uint8_t lo = e4m3_enc(double(a - float(e4m3_dec(h))));
      out[K + r] = h;
      out[K + R + r] = h;
      out[K + 2 * R + r] = lo;
    }
}
static float bf2f(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
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
  cudaDeviceProp p{};
  CK(cudaGetDeviceProperties(&p, 0));
  std::printf("device %s, %d SMs, L2 %d MB\n", p.name, p.multiProcessorCount, p.l2CacheSize >> 20);
  CS(svdq_cublas_available());
  Timer T;
  CK(cudaStreamCreateWithFlags(&T.st, cudaStreamNonBlocking));
  CK(cudaEventCreate(&T.e0));
  CK(cudaEventCreate(&T.e1));
  T.flush_bytes = 256ull << 20;
  CK(cudaMalloc(&T.flush, T.flush_bytes));
  cudaStream_t s = T.st;
  double hbm = 0;
  if (!ncu && !small) {
    const size_t nb = 1ull << 30;
    void *a, *b;
    CK(cudaMalloc(&a, nb));
    CK(cudaMalloc(&b, nb));
    CK(cudaMemsetAsync(a, 1, nb, s));
    const float us = time_us(T, false, [&] { CK(cudaMemcpyAsync(b, a, nb, cudaMemcpyDeviceToDevice, s)); });
    hbm = 2.0 * nb / us / 1e3;
    std::printf("cudaMemcpy D2D 1 GiB: %.1f us = %.0f GB/s (read + write)\n", us, hbm);
    CK(cudaFree(a));
    CK(cudaFree(b));
  }
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
              for (int rb : {0, 1, 2, 4}) {
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
        for (int rb : {0, 1, 2, 4})
          if (pf != 16 || nt != 512) std::printf(" %d/%d/%s |", nt, pf, rb ? std::to_string(rb).c_str() : "auto");
    std::printf("\n|---|---|");
    for (int i = 0; i < 20; ++i) std::printf("---|");
    std::printf("\n");
    for (auto& r : tune) std::printf("%s\n", r.c_str());
  }
  std::printf("\nchecks: %s (%d failed)\n", fails ? "FAIL" : "all PASS", fails);
  return fails ? 6 : 0;
}
