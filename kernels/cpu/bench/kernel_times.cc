// Kernel timing harness for tuning, run by hand (not part of the addon or of CI): links the kernel sources
// directly and times each operator in thread CPU time (the dev machine is shared: CPU time of the calling thread
// with 1 pool thread is far less sensitive to other jobs than wall time), min over `reps` calls, variants
// alternated round by round. Checks each result against a float64 reference on sampled outputs.
//
//   g++ -std=c++17 -O3 -pthread -Ikernels/cpu kernels/cpu/bench/kernel_times.cc kernels/cpu/runtime.cc \
//       kernels/cpu/simd.cc kernels/cpu/gemm_f32.cc kernels/cpu/act_quant.cc kernels/cpu/gemm_w4a4.cc \
//       kernels/cpu/gemm_w4a4_avx512.cc kernels/cpu/gemm_w4a4_amx.cc kernels/cpu/act_quant_p2.cc \
//       kernels/cpu/gemm_p2.cc kernels/cpu/gemm_p2_amx.cc -o /tmp/kernel_times
//   /tmp/kernel_times f32 M K N [threads] [isa]      # f32 GEMM (isa: 0 auto, 2 avx2, 3 avx512, 4 amx)
//   /tmp/kernel_times w4a4 M K N [threads] [isa]     # quantize ± rank-32 down, W4A4 GEMM ± rank-32 up
//   /tmp/kernel_times p2 M K N [threads] [isa]       # int4p2: quantize ± rank-32 down, bf16 GEMM ± 192 branch columns
// Each w4a4 / p2 round ends with "layer R=0 / R=32" (the sum of the two parts' minima) and the branch overhead
// (layer R=32 − layer R=0) / layer R=0.
#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common.h"
#include "p2_layer.h"

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
  std::uniform_real_distribution<float> d(-s, s);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

template <typename F>
double time_it(const char* name, double flop, int reps, F&& f) {
  double best_cpu = 1e30, best_wall = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double c0 = cpu_now(), w0 = wall_now();
    f();
    best_cpu = std::min(best_cpu, cpu_now() - c0);
    best_wall = std::min(best_wall, wall_now() - w0);
  }
  std::printf("%-34s cpu %8.2f ms  wall %8.2f ms  %7.1f GFLOP/s (cpu)\n", name, best_cpu * 1e3, best_wall * 1e3,
              flop / best_cpu * 1e-9);
  return best_cpu;
}

void print_overhead(double q0, double q1, double g0, double g1) {
  std::printf("  layer R=0 %.2f ms, R=32 %.2f ms (quantize +%.2f, GEMM +%.2f): branch overhead %.1f %%\n",
              (q0 + g0) * 1e3, (q1 + g1) * 1e3, (q1 - q0) * 1e3, (g1 - g0) * 1e3, ((q1 + g1) / (q0 + g0) - 1) * 100);
}

int run_f32(int64_t M, int64_t K, int64_t N, int reps) {
  const int64_t NP = (N + 15) / 16;
  auto x = rnd(M * K, 1.f, 1);
  auto w = rnd(N * K, 0.05f, 2);
  auto bias = rnd(N, 1.f, 3);
  std::vector<float> panel(NP * K * 16, 0.f);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) panel[((n / 16) * K + k) * 16 + n % 16] = w[n * K + k];
  std::vector<float> y(M * N);
  F32Args a{x.data(), M, K, N, panel.data(), bias.data(), false, y.data()};
  time_it("gemm_f32", 2.0 * M * N * K, reps, [&] { gemm_f32(a); });
  double maxerr = 0, maxref = 0;
  std::mt19937 g(7);
  for (int s = 0; s < 2000; ++s) {
    const int64_t m = g() % M, n = g() % N;
    double r = bias[n];
    for (int64_t k = 0; k < K; ++k) r += static_cast<double>(x[m * K + k]) * w[n * K + k];
    maxerr = std::max(maxerr, std::fabs(r - y[m * N + n]));
    maxref = std::max(maxref, std::fabs(r));
  }
  std::printf("  check: max |err| %.3g of max |y| %.3g (%.2g)\n", maxerr, maxref, maxerr / maxref);
  return maxerr / maxref < 1e-5 ? 0 : 1;
}

int run_w4a4(int64_t M, int64_t K, int64_t N, int reps) {
  const int64_t R = 32, G = K / 64, NP8 = (N + 7) / 8;
  auto x = rnd(M * K, 1.f, 1);
  auto ldown = rnd(R * K, 0.05f, 2);
  auto lup = rnd(NP8 * 8 * R, 0.05f, 3);
  auto bias = rnd(N, 1.f, 4);
  std::vector<uint8_t> qw(NP8 * G * 256);
  std::mt19937 g(5);
  for (auto& b : qw) b = static_cast<uint8_t>(g());
  auto ws = rnd(NP8 * G * 8, 0.01f, 6);
  std::vector<int8_t> codes(M * K + 64);
  int8_t* cod = codes.data();
  while (reinterpret_cast<uintptr_t>(cod) & 63) ++cod;
  std::vector<float> sc(M * G), la(M * R), y(M * N);
  ActQuantArgs q0{x.data(), nullptr, M, K, nullptr, nullptr, 0, kActInt4, 0.f, cod, sc.data(), nullptr};
  ActQuantArgs q1 = q0;
  q1.ldown = ldown.data();
  q1.R = R;
  q1.lora_act = la.data();
  W4A4Args w0{cod, sc.data(), nullptr, M, K, N, 0, qw.data(), ws.data(), nullptr, bias.data(), false, y.data()};
  W4A4Args w1 = w0;
  w1.lora_act = la.data();
  w1.R = R;
  w1.lup = lup.data();
  const double mk = static_cast<double>(M) * K;
  for (int round = 0; round < 2; ++round) {
    const double tq0 = time_it("act_quant R=0", mk, reps, [&] { act_quant(q0); });
    const double tq1 = time_it("act_quant R=32", mk, reps, [&] { act_quant(q1); });
    const double tg0 = time_it("gemm_w4a4 R=0", 2.0 * mk * N, reps, [&] { gemm_w4a4(w0); });
    const double tg1 = time_it("gemm_w4a4 R=32", 2.0 * mk * N, reps, [&] { gemm_w4a4(w1); });
    print_overhead(tq0, tq1, tg0, tg1);
  }
  // check lora_act against float64
  double e = 0, mx = 0;
  for (int64_t m = 0; m < std::min<int64_t>(M, 64); ++m)
    for (int64_t r = 0; r < R; ++r) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += static_cast<double>(x[m * K + k]) * ldown[r * K + k];
      e = std::max(e, std::fabs(s - la[m * R + r]));
      mx = std::max(mx, std::fabs(s));
    }
  std::printf("  lora_act check: max |err| %.3g of %.3g\n", e, mx);
  return e / mx < 1e-5 ? 0 : 1;
}

// int4p2: quantize (codes into the tiled bf16 operand) ± the rank-32 down-projection, GEMM over Kt = K (+ 192).
int run_p2(int64_t M, int64_t K, int64_t N, int reps) {
  const int64_t R = 32, G = K / 64;
  auto x = rnd(M * K, 1.f, 1);
  auto ldown = rnd(R * K, 0.05f, 2);
  auto lup = rnd(N * R, 0.05f, 3);
  auto bias = rnd(N, 1.f, 4);
  auto inv = rnd(K, 0.5f, 5);
  for (auto& v : inv) v = 1.5f + v;  // f32(1/λ) in [1, 2]
  std::vector<int8_t> wq(N * K), we(N * G);
  std::mt19937 g(6);
  for (auto& c : wq) c = static_cast<int8_t>(static_cast<int>(g() % 16) - 8);
  for (auto& e : we) e = static_cast<int8_t>(static_cast<int>(g() % 6) - 4);
  auto ws = rnd(N, 0.01f, 7);
  for (auto& s : ws) s = std::fabs(s) + 1e-3f;
  const int64_t Np = p2::round_up(N, 32), Mp = p2::round_up(M, 32);
  auto aligned = [](std::vector<uint16_t>& v, size_t n) {
    v.resize(n + 32);
    return reinterpret_cast<uint16_t*>((reinterpret_cast<uintptr_t>(v.data()) + 63) & ~uintptr_t{63});
  };
  std::vector<uint16_t> wb0, wb1, ab0, ab1;
  std::vector<float> sw0(Np), sw1(Np), sx0(M), sx1(M), la(M * R), y(M * N);
  const int64_t Kt0 = p2::kt_of(K, 0), Kt1 = p2::kt_of(K, R);
  p2::PackArgs pk0{wq.data(), we.data(), ws.data(), nullptr, N, K, 0, aligned(wb0, Np * Kt0), sw0.data()};
  p2::PackArgs pk1{wq.data(), we.data(), ws.data(), lup.data(), N, K, R, aligned(wb1, Np * Kt1), sw1.data()};
  p2::pack_weight(pk0);
  p2::pack_weight(pk1);
  p2::QuantArgs q0{x.data(), M, K, inv.data(), nullptr, 0, aligned(ab0, Mp * Kt0), sx0.data(),
                   nullptr, nullptr, nullptr, nullptr};
  p2::QuantArgs q1{x.data(), M, K, inv.data(), ldown.data(), R, aligned(ab1, Mp * Kt1), sx1.data(),
                   nullptr, nullptr, nullptr, la.data()};
  p2::GemmArgs g0{q0.aop, sx0.data(), pk0.wop, sw0.data(), bias.data(), M, N, Kt0, false, y.data()};
  p2::GemmArgs g1{q1.aop, sx1.data(), pk1.wop, sw1.data(), bias.data(), M, N, Kt1, false, y.data()};
  const double mk = static_cast<double>(M) * K;
  for (int round = 0; round < 2; ++round) {
    const double tq0 = time_it("p2 quantize R=0", mk, reps, [&] { p2::quantize(q0); });
    const double tq1 = time_it("p2 quantize R=32", mk, reps, [&] { p2::quantize(q1); });
    const double tg0 = time_it("p2 gemm Kt=K", 2.0 * M * N * Kt0, reps, [&] { p2::gemm(g0); });
    const double tg1 = time_it("p2 gemm Kt=K+192", 2.0 * M * N * Kt1, reps, [&] { p2::gemm(g1); });
    print_overhead(tq0, tq1, tg0, tg1);
  }
  double e = 0, worst = 0;
  for (int64_t m = 0; m < std::min<int64_t>(M, 64); ++m)
    for (int64_t r = 0; r < R; ++r) {
      double s = 0, a = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = static_cast<double>(x[m * K + k]) * ldown[r * K + k];
        s += p;
        a += std::fabs(p);
      }
      e = std::max(e, std::fabs(s - la[m * R + r]));
      worst = std::max(worst, std::fabs(s - la[m * R + r]) / a);
    }
  std::printf("  lora_act check: max |err| %.3g, max |err|/Σ|x·l| %.3g (the tests allow 1e-6)\n", e, worst);
  return worst < 1e-6 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s f32|w4a4|p2 M K N [threads] [isa]\n", argv[0]);
    return 2;
  }
  const std::string what = argv[1];
  const int64_t M = std::atoll(argv[2]), K = std::atoll(argv[3]), N = std::atoll(argv[4]);
  set_num_threads(argc > 5 ? std::atoi(argv[5]) : 1);
  if (argc > 6) set_isa_mode(std::atoi(argv[6]));
  std::printf("%s M=%lld K=%lld N=%lld threads %d isa %s\n", what.c_str(), (long long)M, (long long)K, (long long)N,
              num_threads(), isa_name(active_isa()));
  const int reps = std::getenv("REPS") ? std::atoi(std::getenv("REPS")) : 5;
  if (what == "p2") return run_p2(M, K, N, reps);
  return what == "f32" ? run_f32(M, K, N, reps) : run_w4a4(M, K, N, reps);
}
