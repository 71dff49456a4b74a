// A/B of the W4A4 GEMM (gemm_w4a4) between two builds in one process: the "old" object is another revision's
// gemm_w4a4.cc compiled with -Dgemm_w4a4=gemm_w4a4_old; both run alternately on the same inputs (1 pool thread,
// thread CPU time, min over reps), and the outputs are compared byte for byte. Run by hand, not part of the addon:
//
//   git show main:kernels/cpu/gemm_w4a4.cc > /tmp/gemm_w4a4_old.cc
//   F="-std=c++17 -O3 -pthread -fno-math-errno -Ikernels/cpu"
//   g++ $F -Dgemm_w4a4=gemm_w4a4_old -c /tmp/gemm_w4a4_old.cc -o /tmp/old.o
//   g++ $F kernels/cpu/bench/w4a4_ab.cc kernels/cpu/gemm_w4a4.cc kernels/cpu/gemm_w4a4_avx512.cc \
//       kernels/cpu/gemm_w4a4_amx.cc kernels/cpu/runtime.cc kernels/cpu/simd.cc /tmp/old.o -o /tmp/w4a4_ab
//   flock /tmp/svdq-bench.lock /tmp/w4a4_ab M K N [reps] [R]      # R: 0 (default) or 32 (low-rank up epilogue)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <vector>

#include "common.h"

namespace svdq {
void gemm_w4a4_old(const W4A4Args& a);
}
using namespace svdq;

static double cpu_now() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s M K N [reps] [R]\n", argv[0]);
    return 2;
  }
  const int64_t M = std::atoll(argv[1]), K = std::atoll(argv[2]), N = std::atoll(argv[3]);
  const int reps = argc > 4 ? std::atoi(argv[4]) : 20, R = argc > 5 ? std::atoi(argv[5]) : 0;
  set_num_threads(1);
  const int64_t G = K / 64, NP8 = (N + 7) / 8;
  std::mt19937 g(5);
  std::vector<int8_t> codes(M * K + 64);
  int8_t* cod = codes.data();
  while (reinterpret_cast<uintptr_t>(cod) & 63) ++cod;
  for (int64_t i = 0; i < M * K; ++i) cod[i] = static_cast<int8_t>(static_cast<int>(g() % 16) - 8);  // INT4 codes
  std::vector<uint8_t> qw(NP8 * G * 256);
  for (auto& b : qw) b = static_cast<uint8_t>(g());
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> ws(NP8 * G * 8), sc(M * G), la(M * 32), lup(NP8 * 8 * 32), bias(N), y0(M * N), y1(M * N);
  for (auto& v : ws) v = d(g) * 0.01f;
  for (auto& v : sc) v = d(g);
  for (auto& v : la) v = d(g);
  for (auto& v : lup) v = d(g) * 0.05f;
  for (auto& v : bias) v = d(g);
  W4A4Args a{cod,          sc.data(),   R ? la.data() : nullptr, M,     K, N, R,
             qw.data(),    ws.data(),   R ? lup.data() : nullptr, bias.data(), false, y0.data()};
  W4A4Args b = a;
  b.y = y1.data();
  double best_old = 1e9, best_new = 1e9;
  for (int r = 0; r < reps; ++r) {
    const double t0 = cpu_now();
    gemm_w4a4_old(a);
    const double t1 = cpu_now();
    gemm_w4a4(b);
    const double t2 = cpu_now();
    best_old = std::min(best_old, t1 - t0);
    best_new = std::min(best_new, t2 - t1);
  }
  const double mac = static_cast<double>(M) * K * N;
  std::printf("M=%lld K=%lld N=%lld R=%d (1 thread, %s): old %.3f ms (%.1f GMAC/s) new %.3f ms (%.1f GMAC/s), "
              "new/old speed %.3fx, y %s\n",
              (long long)M, (long long)K, (long long)N, R, isa_name(active_isa()), best_old * 1e3,
              mac / best_old * 1e-9, best_new * 1e3, mac / best_new * 1e-9, best_old / best_new,
              std::memcmp(y0.data(), y1.data(), sizeof(float) * M * N) ? "DIFFERENT" : "bit-identical");
  return 0;
}
