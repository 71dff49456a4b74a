// W4A16 GEMV harness (issue 16: "W4A16 at M <= 8: >= 3x cuBLAS BF16"): the engine's eng_gemv_w4a16
// (kernels/cuda/engine/ops.cu) — the streaming kernel (gemv_stream.cuh, variant 3, the automatic choice where it
// applies) against the previous engine kernels (variant 1 CUDA cores, 2 tensor cores; the previous automatic choice
// is 1 below M = 4, 2 from there) and cuBLAS BF16, all in this process, on the AdaNorm shapes (FLUX.1: K = 3072,
// N = 18432 / 9216 / 6144; PixArt-Σ: K = 1152, N = 6912), M in {1, 2, 4, 8}, cold L2 (256 MB memset before each
// call) and hot L2 (a graph of calls replayed). The streaming kernel's tile widths (16, 32, 64 rows per block) are
// timed too, through the header's own launcher.
// Checks (before any timing; exit 6 if one fails): every output of every variant (auto, 1, 2, 3 and each tile
// width) vs a float64 host reference at M = 1..8 on every shape: the AdaNorm shapes, odd N (partial tiles), K from
// 64 to 12288 (K % 128 != 0 takes the older kernels; long K wraps the per-warp ring), with and without bias, plus a
// misaligned x (every variant must refuse with an error) and scales / zeros 2 bytes off (the automatic choice falls
// back to the older kernels; variant 3 must refuse).
// Modes: (none) checks + table; quick: small checks + the N = 6144 rows; small: small checks only (for
// compute-sanitizer memcheck: M = 1, 3, 8, no big shapes, the new kernel and the automatic choice only); tiny: three
// small shapes at M = 1 and 8 (racecheck / synccheck); ncu: no checks, one launch of each kernel on the FLUX shapes
// at M = 1 and 8 (for Nsight Compute's DRAM throughput).
// Build and run (GPU machine, repo root): bash kernels/cuda/bench/gemv-bench.sh [mode].
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../engine/engine_ops.h"
#include "../engine/gemv_stream.cuh"
#include "../svdq_cuda.h"
#include "bench_common.cuh"

struct Layer {
  int K, N;
  int soff;  // scales / zeros start at element soff of their buffers (1: 2 bytes off, the misaligned check)
  __nv_bfloat16 *x, *scl, *zer, *bias;
  uint8_t* codes;
};
// x holds 8 rows plus 8 spare values, scales / zeros 2 spare values (the misaligned checks)
static Layer make_layer(int K, int N, uint32_t seed, cudaStream_t s) {
  Layer L{K, N, 0};
  L.x = dalloc<__nv_bfloat16>(size_t(8) * K + 8);
  L.codes = dalloc<uint8_t>(size_t(N) * K / 2);
  L.scl = dalloc<__nv_bfloat16>(size_t(N) * K / 64 + 2);
  L.zer = dalloc<__nv_bfloat16>(size_t(N) * K / 64 + 2);
  L.bias = dalloc<__nv_bfloat16>(N);
  CS(eng_fill_random(L.x, size_t(8) * K + 8, 0, seed, 0.f, 2.f, s));
  CS(eng_fill_random_bytes(L.codes, size_t(N) * K / 2, seed + 1, s));
  // scale ~ 0.1/√K·U(0.5, 1.5), zero ~ −7.5·scale ± 0.3 scale: weights of both signs (AWQ-style zero points)
  const float sk = 1.f / std::sqrt(float(K));
  CS(eng_fill_random(L.scl, size_t(N) * K / 64 + 2, 0, seed + 2, 0.1f * sk, 0.1f * sk, s));
  CS(eng_fill_random(L.zer, size_t(N) * K / 64 + 2, 0, seed + 3, -0.75f * sk, 0.06f * sk, s));
  CS(eng_fill_random(L.bias, N, 0, seed + 4, 0.f, 0.2f, s));
  CK(cudaStreamSynchronize(s));
  return L;
}
static void free_layer(Layer& L) {
  for (void* p : {(void*)L.x, (void*)L.codes, (void*)L.scl, (void*)L.zer, (void*)L.bias}) CK(cudaFree(p));
}

// float64 reference y[m, n] = Σ_k x[m, k]·(q[n, k]·s + z) for all 8 rows of x starting at element xoff (no bias)
static std::vector<double> reference(const Layer& L, size_t xoff) {
  const int K = L.K, N = L.N, G = K / 64;
  const auto hx = down<uint16_t>(L.x + xoff, size_t(8) * K), hs = down<uint16_t>(L.scl + L.soff, size_t(N) * G),
             hz = down<uint16_t>(L.zer + L.soff, size_t(N) * G);
  const auto hc = down<uint8_t>(L.codes, size_t(N) * K / 2);
  std::vector<double> xd(size_t(8) * K), y(size_t(8) * N);
  for (size_t i = 0; i < xd.size(); ++i) xd[i] = bf2f(hx[i]);
  const int nt = std::max(1, std::min(16, int(std::thread::hardware_concurrency())));
  std::vector<std::thread> th;
  for (int w = 0; w < nt; ++w)
    th.emplace_back([&, w] {
      std::vector<double> wr(K);
      for (int n = w; n < N; n += nt) {
        for (int k = 0; k < K; ++k) {
          const int q = (hc[(size_t(n) * K + k) / 2] >> (4 * (k & 1))) & 15;
          const size_t g = size_t(n) * G + k / 64;
          wr[k] = q * double(bf2f(hs[g])) + double(bf2f(hz[g]));
        }
        for (int m = 0; m < 8; ++m) {
          double r = 0;
          for (int k = 0; k < K; ++k) r += xd[size_t(m) * K + k] * wr[k];
          y[size_t(m) * N + n] = r;
        }
      }
    });
  for (auto& t : th) t.join();
  return y;
}

// a kernel under test: the engine's C API with a variant, or the streaming kernel at a fixed tile width
struct Kern {
  const char* name;
  int variant;  // 0..3: eng_gemv_w4a16_variant; -1: gemv_stream::launch_tpw(tpw)
  int tpw;
};
static const char* run_kern(const Kern& k, const Layer& L, const __nv_bfloat16* x, int M, bool bias,
                            __nv_bfloat16* o, cudaStream_t s) {
  const __nv_bfloat16* b = bias ? L.bias : nullptr;
  const __nv_bfloat16 *sc = L.scl + L.soff, *ze = L.zer + L.soff;
  if (k.variant >= 0) return eng_gemv_w4a16_variant(x, M, L.K, L.codes, sc, ze, b, L.N, o, k.variant, s);
  const cudaError_t e = gemv_stream::launch_tpw(k.tpw, x, M, L.K, L.codes, sc, ze, b, L.N, o, s);
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

// rel-L2 over every output of an [M, N] call vs float64 (PASS below 4e-3: bf16 output rounding alone is about
// 2^-9/√3 ≈ 1.1e-3 relative)
static bool check(const Kern& k, const Layer& L, size_t xoff, const std::vector<double>& ref, int M, bool bias,
                  cudaStream_t s, bool verbose) {
  const int N = L.N;
  auto* o = dalloc<__nv_bfloat16>(size_t(M) * N);
  CK(cudaMemsetAsync(o, 0xFF, size_t(M) * N * 2, s));  // NaN poison
  const char* err = run_kern(k, L, L.x + xoff, M, bias, o, s);
  CK(cudaStreamSynchronize(s));
  if (err) {
    std::printf("check %s M=%d K=%d N=%d: FAIL (error: %s)\n", k.name, M, L.K, N, err);
    CK(cudaFree(o));
    return false;
  }
  const auto ho = down<uint16_t>(o, size_t(M) * N);
  const auto hb = down<uint16_t>(L.bias, N);
  CK(cudaFree(o));
  double num = 0, den = 0, mx = 0, amax = 0;
  bool finite = true;
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      const double r = ref[size_t(m) * N + n] + (bias ? double(bf2f(hb[n])) : 0.0);
      const double v = bf2f(ho[size_t(m) * N + n]);
      finite = finite && std::isfinite(v);
      num += (v - r) * (v - r);
      den += r * r;
      mx = std::max(mx, std::fabs(v - r));
      amax = std::max(amax, std::fabs(r));
    }
  const double rel = std::sqrt(num / den);
  const bool ok = finite && rel < 4e-3;
  if (verbose || !ok)
    std::printf("check %-16s M=%d K=%d N=%d%s: %s rel-L2 %.2e, max |err| / max |ref| %.2e (vs float64, all %d outputs)\n",
                k.name, M, L.K, N, bias ? " +bias" : "", ok ? "PASS" : "FAIL", rel, mx / amax, M * N);
  return ok;
}

// Read-only HBM rate of this run: a kernel summing 1 GiB as 16-byte loads (ld.global.nc), GB/s (printed).
__global__ void read_kernel(const uint4* p, size_t n, uint32_t* sink) {
  uint32_t a = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const uint4 v = __ldg(p + i);
    a ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (a == 0x12345678u) *sink = a;  // keeps the loads
}
static double read_rate_gbs(Timer& T) {
  const size_t nb = 1ull << 30;
  auto* a = dalloc<uint4>(nb / 16);
  auto* sink = dalloc<uint32_t>(1);
  CK(cudaMemsetAsync(a, 1, nb, T.st));
  int dev = 0, sms = 0;
  CK(cudaGetDevice(&dev));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const float us = time_us(T, false, [&] { read_kernel<<<sms * 8, 256, 0, T.st>>>(a, nb / 16, sink); });
  const double gbs = nb / us / 1e3;
  std::printf("HBM read (16-byte loads) 1 GiB: %.1f us = %.0f GB/s\n", us, gbs);
  CK(cudaFree(a));
  CK(cudaFree(sink));
  return gbs;
}

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  const bool tiny = mode == "tiny", small = mode == "small" || tiny, quick = mode == "quick";
  if (mode == "ncu") {  // no timing, no checks: each kernel once per shape (ncu flushes the caches before each)
    Timer T = bench_start();
    for (const int N : {18432, 6144}) {
      Layer L = make_layer(3072, N, 5 + N, T.st);
      auto* o = dalloc<__nv_bfloat16>(size_t(8) * N);
      for (const int M : {1, 8}) {
        CS(eng_gemv_w4a16_variant(L.x, M, 3072, L.codes, L.scl, L.zer, L.bias, N, o, M < 4 ? 1 : 2, T.st));
        CS(eng_gemv_w4a16_variant(L.x, M, 3072, L.codes, L.scl, L.zer, L.bias, N, o, 3, T.st));
      }
      CK(cudaStreamSynchronize(T.st));
      CK(cudaFree(o));
      free_layer(L);
    }
    std::printf("ncu mode: done\n");
    return 0;
  }
  Timer T = bench_start();
  cudaStream_t s = T.st;
  int fails = 0, checks = 0;
  const Kern kerns[] = {{"auto", 0, 0},       {"CUDA cores", 1, 0}, {"tensor cores", 2, 0}, {"stream", 3, 0},
                        {"stream 16 rows", -1, 1}, {"stream 32 rows", -1, 2}, {"stream 64 rows", -1, 4}};
  {
    struct S { int K, N; bool big; };
    // K % 128 != 0 (64, 1088, 192) takes the older kernels; K = 1152: 9 stages over 8 warps; 12288 / 5120: the
    // per-warp ring wraps (12 and 5 stages per warp, 4 slots); N odd or below one tile: partial tiles
    const S shapes[] = {{256, 200, false},   {128, 67, false},    {1152, 70, false},    {64, 9, false},
                        {1088, 131, false},  {192, 33, false},    {5120, 40, false},    {12288, 520, false},
                        {4096, 130, false},  {6144, 96, false},   {3072, 1000, false},  {3072, 6144, true},
                        {3072, 9216, true},  {1152, 6912, true},  {3072, 18432, true}};
    for (const S& sh : shapes) {
      if ((small || quick) && sh.big) continue;
      if (small && sh.K * size_t(sh.N) > 4'000'000) continue;
      if (tiny && !(sh.K == 1152 || sh.K == 5120 || sh.K == 256)) continue;
      Layer L = make_layer(sh.K, sh.N, 100 + sh.K + sh.N, s);
      const auto ref = reference(L, 0);
      const bool stream_ok = sh.K % 128 == 0;
      int shape_fails = 0, shape_checks = 0;
      for (int M = 1; M <= 8; ++M) {
        if (small && M != 1 && M != 3 && M != 8) continue;  // sanitizer run: fewer launches
        if (tiny && M == 3) continue;
        for (const Kern& k : kerns) {
          if (!stream_ok && (k.variant == 3 || k.variant < 0)) continue;
          if (small && k.variant >= 1 && k.variant <= 2) continue;  // sanitizer run: the new kernel and the choice
          if (tiny && k.variant == 0) continue;                       // racecheck: the streaming kernel only
          // variant 1 stages x for MM = M rounded up to 1/2/4/8 rows in shared memory (ops.cu launch_gemv: MM·(K/32)
          // ·(36 + 1) floats, at most 200 KiB): beyond that it must refuse with an error, and the automatic choice
          // does not pick it (the streaming kernel or the tensor-core kernel runs instead)
          const int MMv = M <= 1 ? 1 : M <= 2 ? 2 : M <= 4 ? 4 : 8;
          if (k.variant == 1 && size_t(MMv) * (L.K / 32) * 37 * 4 > 200 * 1024) {
            const char* e = eng_gemv_w4a16_variant(L.x, M, L.K, L.codes, L.scl, L.zer, L.bias, L.N, nullptr, 1, s);
            if (!e) std::printf("check CUDA cores M=%d K=%d: FAIL (no error beyond its shared memory)\n", M, L.K);
            shape_fails += e == nullptr;
            shape_checks++;
            continue;
          }
          for (int b = 0; b < 2; ++b) {
            if (b == 0 && (tiny || (M != 1 && M != 8))) continue;  // without bias: M = 1 and 8
            shape_fails += !check(k, L, 0, ref, M, b == 1, s, false);
            shape_checks++;
          }
        }
      }
      std::printf("checks K=%d N=%d (M = 1..8, %s, with/without bias): %d/%d PASS\n", sh.K, sh.N,
                  stream_ok ? "auto, 1, 2, 3, 16/32/64 rows" : "auto, 1, 2", shape_checks - shape_fails, shape_checks);
      fails += shape_fails;
      checks += shape_checks;
      if (sh.K == 3072 && sh.N == 1000) {
        const int M = 3;
        auto* o = dalloc<__nv_bfloat16>(size_t(M) * L.N);
        // x 8 bytes off: every variant refuses (the kernels read x as 16-byte vectors)
        int refused = 0;
        for (int v = 0; v <= 3; ++v)
          refused += eng_gemv_w4a16_variant(L.x + 4, M, L.K, L.codes, L.scl, L.zer, L.bias, L.N, o, v, s) != nullptr;
        std::printf("check a misaligned x: %s (%d of 4 variants refused)\n", refused == 4 ? "PASS" : "FAIL", refused);
        fails += refused != 4;
        // scales / zeros 2 bytes off: the automatic choice falls back to the older kernels, variant 3 refuses
        Layer L1 = L;
        L1.soff = 1;
        const auto ref1 = reference(L1, 0);
        fails += !check(kerns[0], L1, 0, ref1, M, true, s, true);
        const char* e = eng_gemv_w4a16_variant(L.x, M, L.K, L.codes, L.scl + 1, L.zer + 1, L.bias, L.N, o, 3, s);
        std::printf("check variant 3 on scales 2 bytes off: %s (%s)\n", e ? "PASS" : "FAIL", e ? e : "no error");
        fails += e == nullptr;
        checks += 3;
        CK(cudaStreamSynchronize(s));
        CK(cudaFree(o));
      }
      free_layer(L);
    }
  }
  std::printf("\nchecks: %s (%d of %d failed)\n", fails ? "FAIL" : "all PASS", fails, checks);
  if (small || fails) return fails ? 6 : 0;

  const double copy = copy_rate_gbs(T);
  const double rd = read_rate_gbs(T);
  std::printf("\n| L2 | M | K | N | cuBLAS BF16 µs | previous engine µs | stream µs | stream vs cuBLAS | stream vs previous | "
              "16 rows µs | 32 rows µs | 64 rows µs | stream GB/s | %% of read rate | %% of copy rate |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  struct Sh { int K, N; };
  const Sh tshapes[] = {{3072, 18432}, {3072, 9216}, {3072, 6144}, {1152, 6912}};
  for (const Sh& sh : tshapes) {
    if (quick && sh.N != 6144) continue;
    const int K = sh.K, N = sh.N;
    Layer L = make_layer(K, N, 7 + N, s);
    auto* w = dalloc<__nv_bfloat16>(size_t(N) * K);
    CS(eng_fill_random(w, size_t(N) * K, 0, 99, 0.f, 0.05f, s));
    auto* o = dalloc<__nv_bfloat16>(size_t(8) * N);
    for (int cold = 1; cold >= 0; --cold)
      for (int M : {1, 2, 4, 8}) {
        const float tb = time_us(T, cold, [&] { CS(svdq_gemm_bf16_cublas(SVDQ_BF16, L.x, w, o, M, N, K, s)); });
        const int prev = M < 4 ? 1 : 2;  // the previous automatic choice (SVDQ_GEMV_MMA_FROM = 4)
        auto eng = [&](int v) { CS(eng_gemv_w4a16_variant(L.x, M, K, L.codes, L.scl, L.zer, L.bias, N, o, v, s)); };
        const float tp = time_us(T, cold, [&] { eng(prev); });
        const float tn = time_us(T, cold, [&] { eng(3); });
        float tt[3];
        for (int i = 0; i < 3; ++i)
          tt[i] = time_us(T, cold, [&] { CS(run_kern(kerns[4 + i], L, L.x, M, true, o, s)); });
        const double bytes =
            double(N) * K / 2 + double(N) * K / 64 * 4 + double(M) * K * 2 + double(M) * N * 2 + N * 2.0;
        const double gbs = bytes / tn / 1e3;
        std::printf("| %s | %d | %d | %d | %.1f | %.1f | %.1f | %.2fx | %.2fx | %.1f | %.1f | %.1f | %.0f | %.0f%% | %.0f%% |\n",
                    cold ? "cold" : "hot", M, K, N, tb, tp, tn, tb / tn, tp / tn, tt[0], tt[1], tt[2], gbs,
                    100.0 * gbs / rd, 100.0 * gbs / copy);
        std::fflush(stdout);
      }
    CK(cudaFree(w));
    CK(cudaFree(o));
    free_layer(L);
  }
  std::printf("\n(previous engine = variant 1 below M = 4, variant 2 from M = 4; stream = variant 3 with the automatic "
              "tile width, what eng_gemv_w4a16 now runs; bytes = codes + scales + zeros + x + out + bias)\n");
  return 0;
}
