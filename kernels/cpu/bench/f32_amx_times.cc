// Timing harness for the split-bf16 f32 GEMM (gemm_f32_amx.cc) against the f32 GEMM (gemm_f32.cc), run by hand (not
// part of the addon or of CI). Process CPU time, min over `reps` calls, the variants alternated round by round;
// each result checked against a float64 reference on sampled outputs.
//
//   g++ -std=c++17 -O3 -pthread -Ikernels/cpu kernels/cpu/bench/f32_amx_times.cc kernels/cpu/runtime.cc \
//       kernels/cpu/simd.cc kernels/cpu/gemm_f32.cc kernels/cpu/gemm_f32_amx.cc -o /tmp/f32_amx_times
//   /tmp/f32_amx_times M K N [threads] [rounds] [copies of W, read in turn: > 1 for cold caches]
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "common.h"
#include "gemm_f32_amx.h"

using namespace svdq;

namespace {

double cpu_now() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}
double wall_now() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

std::vector<float> rnd(size_t n, float s, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, s);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

template <typename F>
void time_it(const char* name, double flop, int reps, F&& f) {
  double best_cpu = 1e30, best_wall = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double c0 = cpu_now(), w0 = wall_now();
    f();
    best_cpu = std::min(best_cpu, cpu_now() - c0);
    best_wall = std::min(best_wall, wall_now() - w0);
  }
  std::printf("%-22s cpu %8.2f ms  wall %8.2f ms  %7.1f GFLOP/s (cpu)\n", name, best_cpu * 1e3, best_wall * 1e3,
              flop / best_cpu * 1e-9);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s M K N [threads] [rounds] [copies]\n", argv[0]);
    return 2;
  }
  const int64_t M = std::atoll(argv[1]), K = std::atoll(argv[2]), N = std::atoll(argv[3]);
  set_num_threads(argc > 4 ? std::atoi(argv[4]) : 1);
  const int rounds = argc > 5 ? std::atoi(argv[5]) : 2;
  const int copies = argc > 6 ? std::atoi(argv[6]) : 1;
  std::printf("M=%lld K=%lld N=%lld threads %d, AMX-BF16 %s\n", (long long)M, (long long)K, (long long)N,
              num_threads(), f32_split_uses_amx() ? "yes" : "no");
  auto x = rnd(M * K, 1.f, 1);
  auto w = rnd(N * K, 1.f / std::sqrt(static_cast<float>(K)), 2);
  auto bias = rnd(N, 1.f, 3);
  const int64_t NP = (N + 15) / 16;
  std::vector<float> panel(NP * K * 16, 0.f);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) panel[((n / 16) * K + k) * 16 + n % 16] = w[n * K + k];
  std::vector<uint16_t> s2(f32_split_elems(N, K, 2)), s3(f32_split_elems(N, K, 3));
  pack_f32_split(w.data(), N, K, 2, s2.data());
  pack_f32_split(w.data(), N, K, 3, s3.data());
  // `copies` > 1: each call reads another copy of W (cold caches, as in a model forward where each weight is read once)
  std::vector<std::vector<float>> pc(copies, panel);
  std::vector<std::vector<uint16_t>> s2c(copies, s2), s3c(copies, s3);
  int turn = 0;
  std::vector<float> y0(M * N), y2(M * N), y3(M * N);
  F32Args a0{x.data(), M, K, N, panel.data(), bias.data(), false, y0.data()};
  F32SplitArgs a2{x.data(), M, K, N, s2.data(), 2, bias.data(), false, y2.data()};
  F32SplitArgs a3{x.data(), M, K, N, s3.data(), 3, bias.data(), false, y3.data()};
  const double flop = 2.0 * M * N * K;
  for (int r = 0; r < rounds; ++r) {
    time_it("gemm_f32", flop, 3, [&] { a0.wpanel = pc[turn++ % copies].data(); gemm_f32(a0); });
    time_it("gemm_f32_split S=3", flop, 3, [&] { a3.wsplit = s3c[turn++ % copies].data(); gemm_f32_split(a3); });
    time_it("gemm_f32_split S=2", flop, 3, [&] { a2.wsplit = s2c[turn++ % copies].data(); gemm_f32_split(a2); });
  }
  std::mt19937 g(7);
  double e[3] = {0, 0, 0}, ref2 = 0;
  for (int s = 0; s < 3000; ++s) {
    const int64_t m = g() % M, n = g() % N;
    double r = bias[n];
    for (int64_t k = 0; k < K; ++k) r += static_cast<double>(x[m * K + k]) * w[n * K + k];
    const float* ys[3] = {y0.data(), y3.data(), y2.data()};
    for (int i = 0; i < 3; ++i) e[i] += (r - ys[i][m * N + n]) * (r - ys[i][m * N + n]);
    ref2 += r * r;
  }
  std::printf("rel. L2 error vs float64 (3000 samples): f32 %.3g, split S=3 %.3g, split S=2 %.3g\n",
              std::sqrt(e[0] / ref2), std::sqrt(e[1] / ref2), std::sqrt(e[2] / ref2));
  return 0;
}
