// Stress test of the kernel thread pool (runtime.cc), run by hand: setThreads-style resizes followed by
// back-to-back parallel_for calls whose tasks take ~30 µs, with a random pause in between. Before the pool's
// workers started from the current run generation (they started from 0), a worker created by a resize could run
// the next generation twice, busy_ went below zero and parallel_for never returned: this program hung within
// 10,000–20,000 iterations on the 2-core Xeon dev machine (and a kernel-suite run hung in gemmW4A4 once).
//
//   g++ -std=c++17 -O2 -pthread -Ikernels/cpu kernels/cpu/bench/pool_stress.cc kernels/cpu/runtime.cc \
//       kernels/cpu/simd.cc -o /tmp/pool_stress && timeout 300 /tmp/pool_stress   # prints "done", exit 0
#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>

#include "common.h"

int main() {
  std::atomic<long> sum{0};
  std::mt19937 rng(1);
  const auto spin = [](int us) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    while (std::chrono::steady_clock::now() < until) {
    }
  };
  for (int it = 0; it < 40000; ++it) {
    svdq::set_num_threads(1);
    svdq::set_num_threads(2);
    spin(static_cast<int>(rng() % 60));
    for (int k = 0; k < 2; ++k)
      svdq::parallel_for(2, [&](int64_t t, int) {
        spin(30);
        sum += t;
      });
    if (it % 10000 == 0) {
      std::printf("iteration %d\n", it);
      std::fflush(stdout);
    }
  }
  std::printf("done %ld\n", sum.load());
  return 0;
}
