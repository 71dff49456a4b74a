// Kernel timing harness for tuning, run by hand (not part of the addon or of CI): links the kernel sources
// directly and times each operator in thread CPU time (the dev machine is shared: CPU time of the calling thread
// with 1 pool thread is far less sensitive to other jobs than wall time), min over `reps` calls, variants
// alternated round by round. Checks each result against a float64 reference on sampled outputs.
//
//   g++ -std=c++17 -O3 -pthread -Ikernels/cpu kernels/cpu/bench/kernel_times.cc kernels/cpu/runtime.cc \
//       kernels/cpu/simd.cc kernels/cpu/gemm_f32.cc kernels/cpu/act_quant.cc kernels/cpu/gemm_w4a4.cc \
//       kernels/cpu/gemm_w4a4_avx512.cc kernels/cpu/gemm_w4a4_amx.cc kernels/cpu/act_quant_p2.cc \
//       kernels/cpu/gemm_p2.cc kernels/cpu/gemm_p2_amx.cc kernels/cpu/peak.cc kernels/cpu/gemm_w8a8.cc \
//       kernels/cpu/gemm_w8a8_x86.cc kernels/cpu/p2_branch_bf16.cc kernels/cpu/pack_p2_int8.cc \
//       kernels/cpu/gemm_p2_int8_amx.cc kernels/cpu/gemm_p2_avx2.cc -o /tmp/kernel_times
//   (add -DSVDQ_P2_TUNE to let P2_TR, P2_TC, P2_KC, P2_ROWS_OUTER, P2_L2PF override the int4p2 AMX plan)
//   /tmp/kernel_times f32 M K N [threads] [isa]      # f32 GEMM + y hash (isa: 0 auto, 2 avx2, 3 avx512, 4 amx; GELU=1)
//   /tmp/kernel_times w4a4 M K N [threads] [isa]     # quantize ± rank-32 down, W4A4 GEMM ± rank-32 up
//   /tmp/kernel_times p2 M K N [threads] [isa]       # int4p2 bf16 GEMM (Kt = K rounded up to 32), its tdpbf16ps peak
//   /tmp/kernel_times p2layer M K N [threads] [isa]  # int4p2: quantize ± rank-32 down, GEMM ± branch columns (f32 192, bf16 32)
//   /tmp/kernel_times p2a2 M K N [threads] [isa]     # int4p2 on AVX2 integers (p2_avx2.h) vs the INT4 W4A4 layer, R 0/32
//   /tmp/kernel_times w8a8 M K N [threads] [isa]     # W8A8 GEMM (random int8 codes)
//   /tmp/kernel_times p2i8 M K N [threads]           # int4p2 layer on AMX-INT8 vs AMX-BF16 (SPREAD=1: shadows,
//                                                    # BRANCH=1: bf16 branch, ONLY8=1: int8 GEMM only + y hash)
//   /tmp/kernel_times p2act M K N [threads]          # amx-int8 activation pass (bf16 branch): split, fused, byte-equal; N > 0: layer
//   /tmp/kernel_times p2loop STEPS BLOCKS CSTORE PF  # the int4p2 2×2 tile loop alone (see p2_loop below)
//   /tmp/kernel_times i8loop STEPS BLOCKS CSTORE PF  # the same loop on tdpbssd over STEPS·64 K vs bf16 (i8_loop;
//                                                    # I8TALL=1: 64 × 16 int8 blocks)
// p2 / w8a8 print GFLOP/s = 2 × multiply-adds per second of CPU time (per thread when threads > 1) and a hash of y
// (equal hashes from two builds = bit-identical results). Each w4a4 / p2layer round ends with "layer R=0 / R=32"
// (the sum of the two parts' minima) and the branch overhead (layer R=32 − layer R=0) / layer R=0.
#include <immintrin.h>
#include <pthread.h>
#include <sys/mman.h>
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
#include "lowrank_down.h"
#include "p2_avx2.h"
#include "p2_int8.h"
#include "lowrank_down.h"
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

uint64_t fnv(const std::vector<float>& y) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a of y's bytes: equal across builds = bit-identical results
  for (size_t i = 0; i < y.size() * 4; ++i) h = (h ^ reinterpret_cast<const uint8_t*>(y.data())[i]) * 1099511628211ull;
  return h;
}

uint64_t fnv_bytes(const void* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const uint8_t*>(p)[i]) * 1099511628211ull;
  return h;
}

// f32 GEMM with bias and GELU(tanh) (GELU=1 in the environment), y hash (equal hashes from two builds = bit-identical)
int run_f32(int64_t M, int64_t K, int64_t N, int reps) {
  const int64_t NP = (N + 15) / 16;
  auto x = rnd(M * K, 1.f, 1);
  auto w = rnd(N * K, 0.05f, 2);
  auto bias = rnd(N, 1.f, 3);
  std::vector<float> panel(NP * K * 16, 0.f);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) panel[((n / 16) * K + k) * 16 + n % 16] = w[n * K + k];
  std::vector<float> y(M * N);
  const bool gelu = std::getenv("GELU") && std::atoi(std::getenv("GELU"));
  F32Args a{x.data(), M, K, N, panel.data(), bias.data(), gelu, y.data()};
  time_it("gemm_f32", 2.0 * M * N * K, reps, [&] { gemm_f32(a); });
  std::printf("  y hash %016llx%s\n", (unsigned long long)fnv(y), gelu ? " (GELU)" : "");
  if (gelu) return 0;  // the check below is of the plain product
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
  auto lag = rnd(M * R, 1.f, 7);  // the GEMM's lora_act: fixed, so its y hash does not depend on act_quant's
  ActQuantArgs q0{x.data(), nullptr, M, K, nullptr, nullptr, 0, kActInt4, 0.f, cod, sc.data(), nullptr};
  ActQuantArgs q1 = q0;
  q1.ldown = ldown.data();
  q1.R = R;
  q1.lora_act = la.data();
  std::vector<float> ldt_buf;  // L_downᵀ prepared once, as prepareW4A4Layer does (NOLDT=1: transposed per call)
  if (!std::getenv("NOLDT")) q1.ldown_t = lowrank::transpose_down(ldown.data(), R, K, ldt_buf);
  W4A4Args w0{cod, sc.data(), nullptr, M, K, N, 0, qw.data(), ws.data(), nullptr, bias.data(), false, y.data()};
  W4A4Args w1 = w0;
  w1.lora_act = lag.data();
  w1.R = R;
  w1.lup = lup.data();
  const double mk = static_cast<double>(M) * K;
  // ONLY=act / ONLY=gemm: time one operator (the other's times print as 0); ROUNDS (default 2).
  const std::string only = std::getenv("ONLY") ? std::getenv("ONLY") : "";
  const int rounds = std::getenv("ROUNDS") ? std::atoi(std::getenv("ROUNDS")) : 2;
  for (int round = 0; round < rounds; ++round) {
    double tq0 = 0, tq1 = 0, tg0 = 0, tg1 = 0;
    if (only != "gemm") {
      tq0 = time_it("act_quant R=0", mk, reps, [&] { act_quant(q0); });
      tq1 = time_it("act_quant R=32", mk, reps, [&] { act_quant(q1); });
    }
    if (only != "act") {
      tg0 = time_it("gemm_w4a4 R=0", 2.0 * mk * N, reps, [&] { gemm_w4a4(w0); });
      tg1 = time_it("gemm_w4a4 R=32", 2.0 * mk * N, reps, [&] { gemm_w4a4(w1); });
    }
    print_overhead(tq0, tq1, tg0, tg1);
  }
  // Hashes (FNV-1a of the bytes; equal across builds = bit-identical): codes + scales of X, lora_act, y without
  // and with the branch (the GEMM's lora_act is the fixed random `lag`, not act_quant's output).
  act_quant(q1);
  const uint64_t hq = fnv_bytes(cod, M * K) ^ fnv(sc), hl = fnv(la);
  gemm_w4a4(w0);
  const uint64_t hy0 = fnv(y);
  gemm_w4a4(w1);
  std::printf("  hashes: codes+scales %016llx  lora_act %016llx  y R=0 %016llx  y R=32 %016llx\n",
              (unsigned long long)hq, (unsigned long long)hl, (unsigned long long)hy0, (unsigned long long)fnv(y));
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

// int4p2: quantize (codes into the tiled bf16 operand) ± the rank-32 down-projection, GEMM over Kt = K (+ branch
// columns), for both branch precisions (p2_layer.h): f32 (f32 down-projection, 192 columns) and bf16 (bf16
// down-projection on AMX tiles where the GEMM has them, 32 columns). "2 parts" estimates the middle option (f32
// down-projection, 2 bf16 parts per side: 3R = 96 columns) from the f32 quantize and a GEMM over K + 96 columns.
int run_p2layer(int64_t M, int64_t K, int64_t N, int reps) {
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
  std::vector<uint16_t> wb0, wb1, wb2, ab0, ab1, ab2, ldb;
  std::vector<float> sw0(Np), sw1(Np), sw2(Np), sx0(M), sx1(M), sx2(M), la(M * R), la2(M * R), y(M * N);
  const int64_t Kt0 = p2::kt_of(K, 0, p2::Branch::F32), Kt1 = p2::kt_of(K, R, p2::Branch::F32), Kt2 = p2::kt_of(K, R, p2::Branch::Bf16);
  const int64_t KtMid = K + p2::round_up(3 * R, 32);
  p2::PackArgs pk0{wq.data(), we.data(), ws.data(), nullptr, N, K, 0, align64(wb0, Np * Kt0), sw0.data()};
  p2::PackArgs pk1{wq.data(), we.data(), ws.data(), lup.data(), N, K, R, align64(wb1, Np * Kt1), sw1.data()};
  p2::PackArgs pk2 = pk1;
  pk2.wop = align64(wb2, Np * Kt2);
  pk2.sw = sw2.data();
  pk2.branch = p2::Branch::Bf16;
  p2::pack_weight(pk0);
  p2::pack_weight(pk1);
  p2::pack_weight(pk2);
  uint16_t* ldbp = align64(ldb, p2::down_bf16_len(K, R));
  p2::pack_down_bf16(ldown.data(), R, K, ldbp);
  p2::QuantArgs q0{x.data(), M, K, inv.data(), nullptr, 0, align64(ab0, Mp * Kt0), sx0.data(),
                   nullptr, nullptr, nullptr, nullptr};
  p2::QuantArgs q1{x.data(), M, K, inv.data(), ldown.data(), R, align64(ab1, Mp * Kt1), sx1.data(),
                   nullptr, nullptr, nullptr, la.data()};
  p2::QuantArgs q2 = q1;
  q2.aop = align64(ab2, Mp * Kt2);
  q2.sx = sx2.data();
  q2.lora_act = la2.data();
  q2.branch = p2::Branch::Bf16;
  q2.ldown_bf16 = ldbp;
  p2::GemmArgs g0{q0.aop, sx0.data(), pk0.wop, sw0.data(), bias.data(), M, N, Kt0, false, y.data()};
  p2::GemmArgs g1{q1.aop, sx1.data(), pk1.wop, sw1.data(), bias.data(), M, N, Kt1, false, y.data()};
  p2::GemmArgs g2{q2.aop, sx2.data(), pk2.wop, sw2.data(), bias.data(), M, N, Kt2, false, y.data()};
  p2::GemmArgs gm = g1;  // the GEMM cost of 3R columns (values are those of the 6R operands' first columns)
  gm.Kt = KtMid;
  const double mk = static_cast<double>(M) * K;
  for (int round = 0; round < 2; ++round) {
    const double tq0 = time_it("p2 quantize R=0", mk, reps, [&] { p2::quantize(q0); });
    const double tq1 = time_it("p2 quantize R=32 f32", mk, reps, [&] { p2::quantize(q1); });
    const double tq2 = time_it("p2 quantize R=32 bf16", mk, reps, [&] { p2::quantize(q2); });
    const double tg0 = time_it("p2 gemm Kt=K", 2.0 * M * N * Kt0, reps, [&] { p2::gemm(g0); });
    const double tg1 = time_it("p2 gemm Kt=K+192 (f32)", 2.0 * M * N * Kt1, reps, [&] { p2::gemm(g1); });
    const double tgm = time_it("p2 gemm Kt=K+96 (2 parts)", 2.0 * M * N * KtMid, reps, [&] { p2::gemm(gm); });
    const double tg2 = time_it("p2 gemm Kt=K+32 (bf16)", 2.0 * M * N * Kt2, reps, [&] { p2::gemm(g2); });
    std::printf(" f32: ");
    print_overhead(tq0, tq1, tg0, tg1);
    std::printf(" 2 parts (estimate): ");
    print_overhead(tq0, tq1, tg0, tgm);
    std::printf(" bf16: ");
    print_overhead(tq0, tq2, tg0, tg2);
  }
  p2::gemm(g1);
  const uint64_t h1 = fnv(y);
  p2::gemm(g2);
  const uint64_t h2 = fnv(y);
  std::printf("  y hash f32 branch %016llx, bf16 branch %016llx\n", (unsigned long long)h1, (unsigned long long)h2);
  if (p2::a2::available()) {  // the AVX2 integer path (p2_avx2.h) on the same inputs, vs the bf16-operand GEMM's y
    std::vector<float> ya(M * N), yb(M * N);
    std::vector<uint8_t> w0b, w1b, w2b, a0b, a1b, a2b;
    auto wpack = [&](p2::PackArgs pk, std::vector<uint8_t>& buf) {
      const int64_t R_ = pk.R;
      uint8_t* base = align64(buf, p2::a2::WeightLayout(N, K, R_).bytes);
      p2::a2::pack_weight(pk, base);
      return p2::a2::weight_view(base, N, K, R_);
    };
    const p2::a2::Weight aw0 = wpack(pk0, w0b), aw1 = wpack(pk1, w1b), aw2 = wpack(pk2, w2b);
    auto act = [&](std::vector<uint8_t>& buf, int64_t R_) {
      return p2::a2::act_view(align64(buf, p2::a2::ActLayout(M, K, R_).bytes), M, K, R_);
    };
    const p2::a2::Act x0 = act(a0b, 0), x1 = act(a1b, R), x2 = act(a2b, R);
    p2::QuantArgs r0 = q0, r1 = q1, r2 = q2;
    r0.aop = r1.aop = r2.aop = nullptr;
    for (int round = 0; round < 2; ++round) {
      const double tq0 = time_it("a2 quantize R=0", mk, reps, [&] { p2::a2::quantize(r0, x0); });
      const double tq1 = time_it("a2 quantize R=32 f32", mk, reps, [&] { p2::a2::quantize(r1, x1); });
      const double tq2 = time_it("a2 quantize R=32 bf16", mk, reps, [&] { p2::a2::quantize(r2, x2); });
      const double tg0 = time_it("a2 gemm R=0", 2.0 * M * N * K, reps, [&] { p2::a2::gemm(x0, aw0, bias.data(), false, ya.data()); });
      const double tg1 = time_it("a2 gemm R=32 f32", 2.0 * M * N * K, reps, [&] { p2::a2::gemm(x1, aw1, bias.data(), false, ya.data()); });
      const double tg2 = time_it("a2 gemm R=32 bf16", 2.0 * M * N * K, reps, [&] { p2::a2::gemm(x2, aw2, bias.data(), false, ya.data()); });
      std::printf(" a2 f32: ");
      print_overhead(tq0, tq1, tg0, tg1);
      std::printf(" a2 bf16: ");
      print_overhead(tq0, tq2, tg0, tg2);
    }
    // against the bf16-operand GEMM of the same quantized data: max |diff| / max |y|
    for (int b = 0; b < 3; ++b) {
      const p2::GemmArgs& gg = b == 0 ? g0 : b == 1 ? g1 : g2;
      p2::quantize(b == 0 ? q0 : b == 1 ? q1 : q2);
      p2::gemm(gg);
      yb = y;
      p2::a2::gemm(b == 0 ? x0 : b == 1 ? x1 : x2, b == 0 ? aw0 : b == 1 ? aw1 : aw2, bias.data(), false, ya.data());
      double d = 0, mx = 0;
      for (int64_t i = 0; i < M * N; ++i) {
        d = std::max(d, std::fabs(static_cast<double>(ya[i]) - yb[i]));
        mx = std::max(mx, std::fabs(static_cast<double>(yb[i])));
      }
      std::printf("  a2 vs bf16-operand GEMM (%s): max |diff| %.3g of max |y| %.3g; a2 y hash %016llx\n",
                  b == 0 ? "R=0" : b == 1 ? "f32 branch" : "bf16 branch", d, mx, (unsigned long long)fnv(ya));
    }
  }
  double e = 0, worst = 0, worst2 = 0;
  auto bfv = [](float v) { return static_cast<double>(p2::bf16_widen(p2::bf16_round(v))); };
  for (int64_t m = 0; m < std::min<int64_t>(M, 64); ++m)
    for (int64_t r = 0; r < R; ++r) {
      double s = 0, a = 0, s2 = 0, a2 = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = static_cast<double>(x[m * K + k]) * ldown[r * K + k];
        s += p;
        a += std::fabs(p);
        const double p2v = bfv(x[m * K + k]) * bfv(ldown[r * K + k]);
        s2 += p2v;
        a2 += std::fabs(p2v);
      }
      e = std::max(e, std::fabs(s - la[m * R + r]));
      worst = std::max(worst, std::fabs(s - la[m * R + r]) / a);
      worst2 = std::max(worst2, std::fabs(s2 - la2[m * R + r]) / a2);
    }
  std::printf("  lora_act check: f32 max |err| %.3g, max |err|/Σ|x·l| %.3g; bf16 (vs float64 of bf16 inputs) %.3g"
              " (the tests allow 1e-6)\n", e, worst, worst2);
  return worst < 1e-6 && worst2 < 1e-6 ? 0 : 1;
}

// The int4p2 layer on the AVX2 integer path (p2_avx2.h) and our INT4 W4A4 layer (act_quant + gemm_w4a4), rank 0
// and 32, alternated round by round in one process: per round the two layers' totals (quantize + GEMM minima), their
// ratio and each one's branch overhead.
int run_p2a2(int64_t M, int64_t K, int64_t N, int reps) {
  if (!p2::a2::available()) {
    std::printf("p2a2: needs the AVX2 path (isa avx2)\n");
    return 2;
  }
  const int64_t R = 32, G = K / 64, NP8 = (N + 7) / 8;
  auto x = rnd(M * K, 1.f, 1);
  auto ldown = rnd(R * K, 0.05f, 2);
  auto lup = rnd(NP8 * 8 * R, 0.05f, 3);
  auto bias = rnd(N, 1.f, 4);
  auto inv = rnd(K, 0.5f, 5);
  for (auto& v : inv) v = 1.5f + v;
  // INT4 W4A4 (as run_w4a4)
  std::vector<uint8_t> qw(NP8 * G * 256);
  std::mt19937 g(5);
  for (auto& b : qw) b = static_cast<uint8_t>(g());
  auto ws4 = rnd(NP8 * G * 8, 0.01f, 6);
  std::vector<int8_t> codes(M * K + 64);
  int8_t* cod = codes.data();
  while (reinterpret_cast<uintptr_t>(cod) & 63) ++cod;
  std::vector<float> sc(M * G), la(M * R), y(M * N);
  ActQuantArgs iq0{x.data(), nullptr, M, K, nullptr, nullptr, 0, kActInt4, 0.f, cod, sc.data(), nullptr};
  ActQuantArgs iq1 = iq0;
  iq1.ldown = ldown.data();
  iq1.R = R;
  iq1.lora_act = la.data();
  W4A4Args iw0{cod, sc.data(), nullptr, M, K, N, 0, qw.data(), ws4.data(), nullptr, bias.data(), false, y.data()};
  W4A4Args iw1 = iw0;
  iw1.lora_act = la.data();
  iw1.R = R;
  iw1.lup = lup.data();
  // int4p2 (as run_p2layer)
  std::vector<int8_t> wq(N * K), we(N * G);
  for (auto& c : wq) c = static_cast<int8_t>(static_cast<int>(g() % 16) - 8);
  for (auto& e : we) e = static_cast<int8_t>(static_cast<int>(g() % 6) - 4);
  auto ws = rnd(N, 0.01f, 7);
  for (auto& s : ws) s = std::fabs(s) + 1e-3f;
  std::vector<float> sw(p2::round_up(N, 32));
  std::vector<uint8_t> w0b, w1b, w2b, a0b, a1b, a2b;
  auto wpack = [&](int64_t R_, p2::Branch br, std::vector<uint8_t>& buf) {
    p2::PackArgs pk{wq.data(), we.data(), ws.data(), R_ ? lup.data() : nullptr, N, K, R_, nullptr, sw.data()};
    pk.branch = br;
    uint8_t* base = align64(buf, p2::a2::WeightLayout(N, K, R_).bytes);
    p2::a2::pack_weight(pk, base);
    return p2::a2::weight_view(base, N, K, R_);
  };
  const p2::a2::Weight aw0 = wpack(0, p2::Branch::F32, w0b), aw1 = wpack(R, p2::Branch::F32, w1b),
                       aw2 = wpack(R, p2::Branch::Bf16, w2b);
  auto act = [&](std::vector<uint8_t>& buf, int64_t R_) {
    return p2::a2::act_view(align64(buf, p2::a2::ActLayout(M, K, R_).bytes), M, K, R_);
  };
  const p2::a2::Act x0 = act(a0b, 0), x1 = act(a1b, R), x2 = act(a2b, R);
  std::vector<float> ldt, ldtb, xbf(R * K);
  const float* ldtp = lowrank::transpose_down(ldown.data(), R, K, ldt);
  for (int64_t i = 0; i < R * K; ++i) xbf[i] = p2::bf16_widen(p2::bf16_round(ldown[i]));
  const float* ldtbp = lowrank::transpose_down(xbf.data(), R, K, ldtb);  // the layer's prepared bf16(L_down)ᵀ
  p2::QuantArgs r0{x.data(), M, K, inv.data(), nullptr, 0, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
  p2::QuantArgs r1 = r0;
  r1.ldown = ldown.data();
  r1.R = R;
  r1.ldown_t = ldtp;
  p2::QuantArgs r2 = r1;
  r2.branch = p2::Branch::Bf16;
  r2.ldown_t = nullptr;
  r2.ldown_t_bf16 = ldtbp;
  std::vector<uint16_t> ldb(p2::down_bf16_len(K, R) + 64);
  uint16_t* ldbp = align64(ldb, p2::down_bf16_len(K, R));
  p2::pack_down_bf16(ldown.data(), R, K, ldbp);
  r2.ldown_bf16 = ldbp;
  const double mk = static_cast<double>(M) * K;
  for (int round = 0; round < 3; ++round) {
    const double iq0t = time_it("INT4 act_quant R=0", mk, reps, [&] { act_quant(iq0); });
    const double iq1t = time_it("INT4 act_quant R=32", mk, reps, [&] { act_quant(iq1); });
    const double ig0 = time_it("INT4 gemm_w4a4 R=0", 2.0 * mk * N, reps, [&] { gemm_w4a4(iw0); });
    const double ig1 = time_it("INT4 gemm_w4a4 R=32", 2.0 * mk * N, reps, [&] { gemm_w4a4(iw1); });
    const double tq0 = time_it("a2 quantize R=0", mk, reps, [&] { p2::a2::quantize(r0, x0); });
    const double tq1 = time_it("a2 quantize R=32 f32", mk, reps, [&] { p2::a2::quantize(r1, x1); });
    const double tq2 = time_it("a2 quantize R=32 bf16", mk, reps, [&] { p2::a2::quantize(r2, x2); });
    const double tg0 = time_it("a2 gemm R=0", 2.0 * mk * N, reps, [&] { p2::a2::gemm(x0, aw0, bias.data(), false, y.data()); });
    const double tg1 = time_it("a2 gemm R=32 f32", 2.0 * mk * N, reps, [&] { p2::a2::gemm(x1, aw1, bias.data(), false, y.data()); });
    const double tg2 = time_it("a2 gemm R=32 bf16", 2.0 * mk * N, reps, [&] { p2::a2::gemm(x2, aw2, bias.data(), false, y.data()); });
    std::printf(" INT4: ");
    print_overhead(iq0t, iq1t, ig0, ig1);
    std::printf(" int4p2 avx2-int8 f32 branch: ");
    print_overhead(tq0, tq1, tg0, tg1);
    std::printf(" int4p2 avx2-int8 bf16 branch: ");
    print_overhead(tq0, tq2, tg0, tg2);
    std::printf("  INT4 layer / int4p2 layer (R=32): f32 branch %.3fx, bf16 branch %.3fx, R=0 %.3fx\n",
                (iq1t + ig1) / (tq1 + tg1), (iq1t + ig1) / (tq2 + tg2), (iq0t + ig0) / (tq0 + tg0));
  }
  p2::a2::gemm(x1, aw1, bias.data(), false, y.data());
  const uint64_t h1 = fnv(y);
  p2::a2::gemm(x2, aw2, bias.data(), false, y.data());
  std::printf("  a2 y hash f32 branch %016llx, bf16 branch %016llx\n", (unsigned long long)h1, (unsigned long long)fnv(y));
  return 0;
}

// bf16 values on the int4p2 grid (q·2^e, |q| ≤ 7): every product is exact in f32, so the sums are exact up to the
// f32 additions and the check below is tight.
uint16_t p2_value(std::mt19937& g) {
  const int q = static_cast<int>(g() % 15) - 7, e = static_cast<int>(g() % 6) - 3;
  const float v = std::ldexp(static_cast<float>(q), e);
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return static_cast<uint16_t>(u >> 16);
}
double widen(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The int4p2 layer on AMX-INT8 (p2_int8.h) against the AMX-BF16 one on the same quantized data, rank 32, bias:
// quantize (+ codes, exponents for the int8 pack) and the two GEMMs, per core; y of both against a float64 sum of
// the bf16 operands on sampled outputs. spread 0: weight exponents in [1, 5] (one band), uniform x; spread 1: weight
// exponents in [−4, 5] (the kernels bench's) and every 8th token with one group 2^-8 smaller (shadow rows and columns).
int run_p2i8(int64_t M, int64_t K, int64_t N, int reps, int spread) {
  const int64_t R = 32, G = K / 64;
  // GELU=1: the GELU epilogue; BRANCH=1: the bf16 branch precision (p2_layer.h Branch::Bf16, R branch columns; the pipeline's default);
  // ONLY8=1: time only the int8 GEMM (y hashes compare builds).
  const p2::Branch br = std::getenv("BRANCH") && std::atoi(std::getenv("BRANCH")) ? p2::Branch::Bf16 : p2::Branch::F32;
  const bool only8 = std::getenv("ONLY8") && std::atoi(std::getenv("ONLY8"));
  const bool gelu = std::getenv("GELU") && std::atoi(std::getenv("GELU"));
  auto x = rnd(M * K, 1.f, 1);
  if (spread)
    for (int64_t m = 0; m < M; m += 8)
      for (int64_t k = 64 * ((m / 8) % G); k < 64 * ((m / 8) % G) + 64; ++k) x[m * K + k] *= 0x1p-8f;
  auto ldown = rnd(R * K, 0.05f, 2);
  auto lup = rnd(N * R, 0.05f, 3);
  auto bias = rnd(N, 1.f, 4);
  auto inv = rnd(K, 0.5f, 5);
  for (auto& v : inv) v = 1.5f + v;
  std::vector<int8_t> wq(N * K), we(N * G);
  std::mt19937 g(6);
  for (auto& c : wq) c = static_cast<int8_t>(static_cast<int>(g() % 16) - 8);
  for (auto& e : we) e = static_cast<int8_t>(spread ? static_cast<int>(g() % 10) - 4 : static_cast<int>(g() % 5) + 1);
  auto ws = rnd(N, 0.01f, 7);
  for (auto& s : ws) s = std::fabs(s) + 1e-3f;
  const int64_t Np = p2::round_up(N, 32), Mp = p2::round_up(M, 32), Kt = p2::kt_of(K, R, br);
  std::vector<uint16_t> wb, ab;
  std::vector<float> sw(Np), sx(M), la(M * R), rs(M), y0(M * N), y1(M * N);
  std::vector<int8_t> aq(M * K), ae(M * G);
  p2::PackArgs pk{wq.data(), we.data(), ws.data(), lup.data(), N, K, R, align64(wb, Np * Kt), sw.data()};
  pk.branch = br;
  p2::pack_weight(pk);
  p2i8::Weight w8;
  p2i8::pack_weight(pk, pk.wop, sw.data(), w8);
  p2::QuantArgs q0{x.data(), M, K, inv.data(), ldown.data(), R, align64(ab, Mp * Kt), sx.data(),
                   nullptr, nullptr, nullptr, la.data()};
  q0.branch = br;
  p2::QuantArgs q1 = q0;
  q1.row_scales = rs.data();
  q1.codes = aq.data();
  q1.exponents = ae.data();
  q1.aop_branch_only = true;  // the int8 GEMM reads only the branch tiles of the bf16 operand
  p2::quantize(q0);
  p2::quantize(q1);
  p2i8::Act a8;
  p2i8::pack_act(aq.data(), ae.data(), rs.data(), sx.data(), M, K, a8);
  std::printf("shadows: %lld activation rows of %lld, %lld weight columns of %lld\n", (long long)a8.Sa, (long long)M,
              (long long)w8.Sw, (long long)N);
  p2::GemmArgs g0{q0.aop, sx.data(), pk.wop, sw.data(), bias.data(), M, N, Kt, gelu, y0.data()};
  // YALIGN=1: y 64-byte aligned (the GEMM's streaming stores need it; a large std::vector / Node buffer is usually
  // 16 bytes into a page)
  std::vector<float> ya;
  const bool yalign = std::getenv("YALIGN") && std::atoi(std::getenv("YALIGN"));
  p2i8::GemmArgs g1{&a8, &w8, q1.aop, sx.data(), bias.data(), gelu, yalign ? align64(ya, M * N) : y1.data()};
  const double mac2 = 2.0 * M * N * Kt;
  p2::gemm(g0);
  for (int round = 0; round < 2; ++round) {
    if (only8) {
      time_it("int8: gemm", mac2, reps, [&] { p2i8::gemm(g1); });
      continue;
    }
    const double tq0 = time_it("bf16: quantize", M * K, reps, [&] { p2::quantize(q0); });
    const double tg0 = time_it("bf16: gemm", mac2, reps, [&] { p2::gemm(g0); });
    const double tq1 = time_it("int8: quantize (codes, exps, branch)", M * K, reps, [&] { p2::quantize(q1); });
    const double tp1 = time_it("int8: band pack", M * K, reps, [&] {
      p2i8::pack_act(aq.data(), ae.data(), rs.data(), sx.data(), M, K, a8);
    });
    const double tg1 = time_it("int8: gemm", mac2, reps, [&] { p2i8::gemm(g1); });
    std::printf("  layer bf16 %.2f ms, int8 %.2f ms: %.2fx (GEMM %.2fx)\n", (tq0 + tg0) * 1e3, (tq1 + tp1 + tg1) * 1e3,
                (tq0 + tg0) / (tq1 + tp1 + tg1), tg0 / tg1);
  }
  if (yalign) std::memcpy(y1.data(), g1.y, sizeof(float) * M * N);
  // float64 sums of the bf16 operands (exact products) on sampled outputs
  double maxerr0 = 0, maxerr1 = 0, maxref = 0;
  const int64_t KC = Kt / 32;
  for (int64_t m = 0; m < M; m += std::max<int64_t>(1, M / 16))
    for (int64_t n = 0; n < N; n += std::max<int64_t>(1, N / 64)) {
      double sum = 0;
      for (int64_t k = 0; k < Kt; ++k)
        sum += widen(q0.aop[p2::aop_row(m, Kt) + (k / 32) * 1024 + k % 32]) *
               widen(pk.wop[p2::wop_block(n / 16, Kt) + (k / 32) * 1024 + ((k % 32) / 2) * 32 + (n % 16) * 2 + k % 2]);
      const double r = sum * sx[m] * sw[n] + bias[n];
      maxref = std::max(maxref, std::fabs(r));
      maxerr0 = std::max(maxerr0, std::fabs(r - y0[m * N + n]));
      maxerr1 = std::max(maxerr1, std::fabs(r - y1[m * N + n]));
    }
  (void)KC;
  double d01 = 0;
  for (int64_t i = 0; i < M * N; ++i) d01 = std::max(d01, static_cast<double>(std::fabs(y0[i] - y1[i])));
  std::printf("  check: max |err| bf16 %.3g, int8 %.3g of max |y| %.3g; max |y_bf16 − y_int8| %.3g (%.2g)\n", maxerr0,
              maxerr1, maxref, d01, d01 / maxref);
  std::printf("  y hash int8 %016llx (branch %s, spread %d)\n", (unsigned long long)fnv(y1),
              br == p2::Branch::Bf16 ? "bf16" : "f32", spread);
  return maxerr1 / maxref < 1e-5 ? 0 : 1;
}

// The int4p2 activation pass of the AMX-INT8 path (bf16 branch, the pipeline's default), split: quantize without
// the branch, with it (codes + exponents + branch tiles), and the band pack; hashes of the band operand, codes,
// exponents and lora_act (equal across builds = byte-equal results).
int run_p2act(int64_t M, int64_t K, int64_t N, int reps) {
  const int64_t R = 32, G = K / 64, Mp = p2::round_up(M, 32);
  auto x = rnd(M * K, 1.f, 1);
  for (int64_t m = 0; m < M; m += 8)  // shadow rows as in p2i8 SPREAD=1
    for (int64_t k = 64 * ((m / 8) % G); k < 64 * ((m / 8) % G) + 64; ++k) x[m * K + k] *= 0x1p-8f;
  auto ldown = rnd(R * K, 0.05f, 2);
  auto inv = rnd(K, 0.5f, 5);
  for (auto& v : inv) v = 1.5f + v;
  const int64_t Kt0 = p2::kt_of(K, 0, p2::Branch::Bf16), Kt = p2::kt_of(K, R, p2::Branch::Bf16);
  std::vector<uint16_t> ab0, ab, ldb;
  std::vector<float> sx(M), la(M * R), rs(M);
  std::vector<int8_t> aq(M * K), ae(M * G);
  uint16_t* ldbp = align64(ldb, p2::down_bf16_len(K, R));
  p2::pack_down_bf16(ldown.data(), R, K, ldbp);
  p2::QuantArgs q0{x.data(), M, K, inv.data(), nullptr, 0, align64(ab0, Mp * Kt0), sx.data(),
                   rs.data(), aq.data(), ae.data(), nullptr};
  q0.aop_branch_only = true;
  q0.branch = p2::Branch::Bf16;
  p2::QuantArgs q1 = q0;
  q1.ldown = ldown.data();
  q1.R = R;
  q1.aop = align64(ab, Mp * Kt);
  q1.lora_act = la.data();
  q1.ldown_bf16 = ldbp;
  p2i8::Act a8, af;
  const double mk = static_cast<double>(M) * K;
  for (int round = 0; round < 2; ++round) {
    const double t0 = time_it("quantize R=0", mk, reps, [&] { p2::quantize(q0); });
    const double t1 = time_it("quantize R=32 bf16", mk, reps, [&] { p2::quantize(q1); });
    const double tp = time_it("band pack", mk, reps, [&] { p2i8::pack_act(aq.data(), ae.data(), rs.data(), sx.data(), M, K, a8); });
    std::printf("  pass R=0 %.2f ms, R=32 %.2f ms (%.2f ns/elt), branch +%.2f ms\n", (t0 + tp) * 1e3, (t1 + tp) * 1e3,
                (t1 + tp) / mk * 1e9, (t1 - t0) * 1e3);
    const double tf0 = time_it("fused quantize_act R=0", mk, reps, [&] { p2i8::quantize_act(q0, af); });
    const double tf1 = time_it("fused quantize_act R=32 bf16", mk, reps, [&] { p2i8::quantize_act(q1, af); });
    std::printf("  fused R=0 %.2f ms, R=32 %.2f ms (%.2f ns/elt): %.2fx the two passes\n", tf0 * 1e3, tf1 * 1e3,
                tf1 / mk * 1e9, (t1 + tp) / tf1);
  }
  p2::quantize(q1);
  p2i8::pack_act(aq.data(), ae.data(), rs.data(), sx.data(), M, K, a8);
  std::vector<float> sx1 = sx, la1 = la;
  p2i8::quantize_act(q1, af);
  const bool same = af.Ma == a8.Ma && af.Sa == a8.Sa && std::memcmp(af.a8, a8.a8, a8.Ma * K) == 0 &&
                    af.pa == a8.pa && af.sxa == a8.sxa && af.apar == a8.apar && af.first == a8.first &&
                    sx1 == sx && la1 == la;
  std::printf("  fused operand byte-equal to quantize + pack_act: %s\n", same ? "yes" : "NO");
  if (!same) return 1;
  if (N > 0) {  // the whole layer per core: weight in one band (as p2i8), bias, branch bf16
    std::vector<int8_t> wq(N * K), we(N * G);
    std::mt19937 g(6);
    for (auto& c : wq) c = static_cast<int8_t>(static_cast<int>(g() % 16) - 8);
    for (auto& e : we) e = static_cast<int8_t>(static_cast<int>(g() % 5) + 1);
    auto ws = rnd(N, 0.01f, 7), lup = rnd(N * R, 0.05f, 3), bias = rnd(N, 1.f, 4);
    for (auto& v : ws) v = std::fabs(v) + 1e-3f;
    std::vector<uint16_t> wb;
    std::vector<float> sw(p2::round_up(N, 32)), y0(M * N), y1(M * N);
    p2::PackArgs pk{wq.data(), we.data(), ws.data(), lup.data(), N, K, R, align64(wb, p2::round_up(N, 32) * Kt), sw.data()};
    pk.branch = p2::Branch::Bf16;
    p2::pack_weight(pk);
    p2i8::Weight w8;
    p2i8::pack_weight(pk, pk.wop, sw.data(), w8);
    p2i8::GemmArgs g0{&a8, &w8, q1.aop, sx.data(), bias.data(), false, y0.data()};
    p2i8::GemmArgs g1{&af, &w8, q1.aop, sx.data(), bias.data(), false, y1.data()};
    for (int round = 0; round < 2; ++round) {
      const double t0 = time_it("layer: quantize + band pack + gemm", mk, reps, [&] {
        p2::quantize(q1);
        p2i8::pack_act(aq.data(), ae.data(), rs.data(), sx.data(), M, K, a8);
        p2i8::gemm(g0);
      });
      const double t1 = time_it("layer: quantize_act + gemm", mk, reps, [&] {
        p2i8::quantize_act(q1, af);
        p2i8::gemm(g1);
      });
      std::printf("  layer %.2f -> %.2f ms (%.2fx)\n", t0 * 1e3, t1 * 1e3, t0 / t1);
    }
    std::printf("  y bit-identical: %s\n", y0 == y1 ? "yes" : "NO");
  }
  auto h8 = [](const void* p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const uint8_t*>(p)[i]) * 1099511628211ull;
    return (unsigned long long)h;
  };
  std::printf("  hashes: codes %016llx exps %016llx a8 %016llx pa %016llx sx %016llx lora %016llx branch tiles %016llx (Sa %lld)\n",
              h8(aq.data(), aq.size()), h8(ae.data(), ae.size()), h8(a8.a8, a8.Ma * K), h8(a8.pa.data(), a8.pa.size() * 4),
              h8(sx.data(), sx.size() * 4), h8(la.data(), la.size() * 4), 0ull, (long long)a8.Sa);
  return 0;
}

int run_p2(int64_t M, int64_t K, int64_t N, int reps) {
  const int64_t Kt = (K + 31) / 32 * 32, Mp = p2::round_up(M, 32), Np = p2::round_up(N, 32);
  // HUGE=1: operands in 2 MiB pages (madvise), to separate TLB misses from cache misses
  const bool huge = std::getenv("HUGE") && std::atoi(std::getenv("HUGE"));
  auto alloc = [&](size_t n) {
    const size_t bytes = (n * 2 + (2 << 20) - 1) / (2 << 20) * (2 << 20);
    void* p = std::aligned_alloc(2 << 20, bytes);
    if (huge) madvise(p, bytes, MADV_HUGEPAGE);
    std::memset(p, 0, bytes);
    return static_cast<uint16_t*>(p);
  };
  uint16_t* aop = alloc(Mp * Kt);
  uint16_t* wop = alloc(Np * Kt);
  std::mt19937 g(11);
  std::vector<uint16_t> A(M * Kt, 0), W(N * Kt, 0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) A[m * Kt + k] = p2_value(g);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) W[n * Kt + k] = p2_value(g);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < Kt; ++k) aop[p2::aop_row(m, Kt) + (k / 32) * 1024 + k % 32] = A[m * Kt + k];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < Kt; ++k)
      wop[p2::wop_block(n / 16, Kt) + (k / 32) * 1024 + ((k % 32) / 2) * 32 + (n % 16) * 2 + k % 2] = W[n * Kt + k];
  auto sx = rnd(M, 1.f, 12), sw = rnd(Np, 1.f, 13), bias = rnd(N, 1.f, 14);
  std::vector<float> y(M * N);
  p2::GemmArgs a{aop, sx.data(), wop, sw.data(), bias.data(), M, N, Kt, false, y.data()};
  const double peak = p2::peak_bf16(0, 200000000) / num_threads();
  std::printf("tdpbf16ps peak %.0f GMAC/s per thread (gemm_path %d)\n", peak * 1e-9, p2::gemm_path());
  for (int round = 0; round < 2; ++round)
    time_it("p2_gemm", 2.0 * M * N * Kt / num_threads(), reps, [&] { p2::gemm(a); });
  double maxerr = 0, maxref = 0;
  for (int s = 0; s < 3000; ++s) {
    const int64_t m = s < 8 ? M - 1 - s % M : g() % M, n = s < 8 ? N - 1 - (s / 2) % N : g() % N;
    double r = 0;
    for (int64_t k = 0; k < K; ++k) r += widen(A[m * Kt + k]) * widen(W[n * Kt + k]);
    r = r * sx[m] * sw[n] + bias[n];
    maxerr = std::max(maxerr, std::fabs(r - y[m * N + n]));
    maxref = std::max(maxref, std::fabs(r));
  }
  uint64_t h = 1469598103934665603ull;  // FNV-1a of y's bytes: equal across builds = bit-identical results
  for (size_t i = 0; i < y.size() * 4; ++i) h = (h ^ reinterpret_cast<const uint8_t*>(y.data())[i]) * 1099511628211ull;
  std::printf("  check: max |err| %.3g of max |y| %.3g (%.2g); y hash %016llx\n", maxerr, maxref, maxerr / maxref,
              (unsigned long long)h);
  return maxerr / maxref < 1e-5 ? 0 : 1;
}

int run_w8a8(int64_t M, int64_t K, int64_t N, int reps) {
  const int64_t NP = (N + 7) / 8;
  std::mt19937 g(21);
  std::vector<int8_t> codes(M * K), w(N * K), panel(NP * K * 8, 0);
  for (auto& v : codes) v = static_cast<int8_t>(static_cast<int>(g() % 255) - 127);
  for (auto& v : w) v = static_cast<int8_t>(static_cast<int>(g() % 255) - 127);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) panel[((n / 8) * (K / 4) + k / 4) * 32 + (n % 8) * 4 + k % 4] = w[n * K + k];
  auto as = rnd(M, 1.f, 22), ws = rnd(N, 1.f, 23), bias = rnd(N, 1.f, 24);
  std::vector<float> y(M * N);
  W8A8Args a{codes.data(), as.data(), M, K, N, panel.data(), ws.data(), bias.data(), y.data()};
  for (int round = 0; round < 2; ++round)
    time_it("w8a8_gemm", 2.0 * M * N * K / num_threads(), reps, [&] { gemm_w8a8(a); });
  double maxerr = 0, maxref = 0;
  for (int s = 0; s < 3000; ++s) {
    const int64_t m = s < 8 ? M - 1 - s % M : g() % M, n = s < 8 ? N - 1 - (s / 2) % N : g() % N;
    int64_t d = 0;
    for (int64_t k = 0; k < K; ++k) d += static_cast<int64_t>(codes[m * K + k]) * w[n * K + k];
    const double r = static_cast<double>(d) * as[m] * ws[n] + bias[n];
    maxerr = std::max(maxerr, std::fabs(r - y[m * N + n]));
    maxref = std::max(maxref, std::fabs(r));
  }
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < y.size() * 4; ++i) h = (h ^ reinterpret_cast<const uint8_t*>(y.data())[i]) * 1099511628211ull;
  std::printf("  check: max |err| %.3g of max |y| %.3g (%.2g); y hash %016llx\n", maxerr, maxref, maxerr / maxref,
              (unsigned long long)h);
  return maxerr / maxref < 1e-5 ? 0 : 1;
}

// The int4p2 2×2 tile loop alone: a 32-row activation block of `ka` 32-column steps (cycled), weight blocks of
// `steps` K steps taken in turn from a buffer of `wb` blocks (B streams through that many bytes), C tiles zeroed
// (cst = 0) or loaded from and stored to an L1 buffer (cst = 1) around each block; pf 1: prefetch the next weight
// block into L1 (T0), pf ≥ 2: the weight block pf ahead into L2 (T1), spread over the current block's steps.
__attribute__((target("amx-tile,amx-bf16,avx512f"))) double p2_loop(int64_t steps, int64_t wb, int cst, int pf,
                                                                    int64_t reps) {
  std::vector<uint16_t> abuf(steps * 1024 + 64), wbuf(wb * steps * 1024 + 64);
  std::mt19937 g(3);
  for (auto& v : abuf) v = p2_value(g);
  for (auto& v : wbuf) v = p2_value(g);
  uint16_t* A = abuf.data();
  while (reinterpret_cast<uintptr_t>(A) & 63) ++A;
  uint16_t* W = wbuf.data();
  while (reinterpret_cast<uintptr_t>(W) & 63) ++W;
  alignas(64) float cb[1024];
  std::memset(cb, 0, sizeof cb);
  const TileConfig cfg = full_tiles();
  _tile_loadconfig(&cfg);
  const double t0 = cpu_now();
  for (int64_t r = 0; r < reps; ++r)
    for (int64_t b = 0; b < wb; ++b) {
      if (cst) {
        _tile_loadd(0, cb, 64);
        _tile_loadd(1, cb + 256, 64);
        _tile_loadd(2, cb + 512, 64);
        _tile_loadd(3, cb + 768, 64);
      } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      }
      const uint16_t* ap = A;
      const uint16_t* bp = W + b * steps * 1024;
      const char* nx = reinterpret_cast<const char*>(W + ((b + (pf > 1 ? pf : 1)) % wb) * steps * 1024);
      for (int64_t s = 0; s < steps; ++s) {
        if (pf == 1)
          for (int l = 0; l < 2048; l += 64) _mm_prefetch(nx + 2048 * s + l, _MM_HINT_T0);
        else if (pf > 1)
          for (int l = 0; l < 2048; l += 64) _mm_prefetch(nx + 2048 * s + l, _MM_HINT_T1);
        _tile_loadd(4, ap, 64);
        _tile_loadd(6, bp, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, bp + 512, 64);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, ap + 512, 64);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
        ap += 1024;
        bp += 1024;
      }
      if (cst) {
        _tile_stored(0, cb, 64);
        _tile_stored(1, cb + 256, 64);
        _tile_stored(2, cb + 512, 64);
        _tile_stored(3, cb + 768, 64);
      }
    }
  const double dt = cpu_now() - t0;
  _tile_release();
  return reps * wb * steps * 4.0 * 8192 / dt;
}

// The same loop on AMX-INT8 (the exact int8 path idea for int4p2, docs/benchmarks.md "int4p2 on AMX-INT8"): K steps
// of 64 columns (one tdpbssd: a 16×64 int8 A tile times a 16(K quads)×16×4 int8 B tile), A 2 KiB and each weight
// block's step 2 KiB, so the same K takes half the steps and half the bytes of p2_loop; C tiles zeroed or loaded /
// stored as there (int32 sums).
__attribute__((target("amx-tile,amx-int8,avx512f"))) double i8_loop(int64_t steps, int64_t wb, int cst, int pf,
                                                                   int64_t reps) {
  // I8TALL=1: 64 × 16 blocks (B bytes per multiply-add halved, A bytes doubled) instead of 32 × 32
  const bool tall = std::getenv("I8TALL") && std::atoi(std::getenv("I8TALL"));
  std::vector<int8_t> abuf(steps * 4096 + 64), wbuf(wb * steps * 2048 + 64);
  std::mt19937 g(3);
  std::uniform_int_distribution<int> q(-128, 127);  // q·2^d, q in [-8, 7], d in [0, 4]: any int8 in [-128, 112]
  for (auto& v : abuf) v = static_cast<int8_t>(q(g));
  for (auto& v : wbuf) v = static_cast<int8_t>(q(g));
  int8_t* A = abuf.data();
  while (reinterpret_cast<uintptr_t>(A) & 63) ++A;
  int8_t* W = wbuf.data();
  while (reinterpret_cast<uintptr_t>(W) & 63) ++W;
  alignas(64) int32_t cb[1024];
  std::memset(cb, 0, sizeof cb);
  const TileConfig cfg = full_tiles();
  _tile_loadconfig(&cfg);
  const double t0 = cpu_now();
  for (int64_t r = 0; r < reps; ++r)
    for (int64_t b = 0; b < wb; ++b) {
      if (cst) {
        _tile_loadd(0, cb, 64);
        _tile_loadd(1, cb + 256, 64);
        _tile_loadd(2, cb + 512, 64);
        _tile_loadd(3, cb + 768, 64);
      } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      }
      const int8_t* ap = A;
      const int8_t* bp = W + b * steps * (tall ? 1024 : 2048);
      const char* nx = reinterpret_cast<const char*>(W + ((b + (pf > 1 ? pf : 1)) % wb) * steps * 2048);
      for (int64_t s = 0; s < steps; ++s) {
        if (pf == 1)
          for (int l = 0; l < 2048; l += 64) _mm_prefetch(nx + 2048 * s + l, _MM_HINT_T0);
        else if (pf > 1)
          for (int l = 0; l < 2048; l += 64) _mm_prefetch(nx + 2048 * s + l, _MM_HINT_T1);
        if (tall) {  // 64 rows × 16 columns: one 1 KiB B tile, four A tiles (A steps 4 KiB, B steps 1 KiB)
          _tile_loadd(7, bp, 64);
          _tile_loadd(4, ap, 64);
          _tile_dpbssd(0, 4, 7);
          _tile_loadd(5, ap + 1024, 64);
          _tile_dpbssd(1, 5, 7);
          _tile_loadd(6, ap + 2048, 64);
          _tile_dpbssd(2, 6, 7);
          _tile_loadd(4, ap + 3072, 64);
          _tile_dpbssd(3, 4, 7);
          ap += 4096;
          bp += 1024;
          continue;
        }
        _tile_loadd(4, ap, 64);
        _tile_loadd(6, bp, 64);
        _tile_dpbssd(0, 4, 6);
        _tile_loadd(7, bp + 1024, 64);
        _tile_dpbssd(1, 4, 7);
        _tile_loadd(5, ap + 1024, 64);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
        ap += 2048;
        bp += 2048;
      }
      if (cst) {
        _tile_stored(0, cb, 64);
        _tile_stored(1, cb + 256, 64);
        _tile_stored(2, cb + 512, 64);
        _tile_stored(3, cb + 768, 64);
      }
    }
  const double dt = cpu_now() - t0;
  _tile_release();
  return reps * wb * steps * 4.0 * 16384 / dt;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s f32|w4a4|p2|p2layer|w8a8 M K N [threads] [isa] | p2loop|i8loop STEPS BLOCKS CSTORE PF\n", argv[0]);
    return 2;
  }
  const std::string what = argv[1];
  if (what == "i8loop") {  // i8loop steps64 weight_blocks c_store prefetch: int8 vs bf16 loop over the same K
    if (argc < 6) return 2;
    if (!cpu_has_amx_bf16()) return 2;
    const int64_t steps = std::atoll(argv[2]), wb = std::atoll(argv[3]);
    const int cst = std::atoi(argv[4]), pf = std::atoi(argv[5]);
    const int64_t reps = std::max<int64_t>(1, 400000000 / (wb * steps * 65536));
    double bf = 0, i8 = 0, i8b = 0;
    for (int i = 0; i < 5; ++i) {  // alternated: bf16 over 2·steps 32-column steps, int8 over steps (same K),
      bf = std::max(bf, p2_loop(2 * steps, wb, cst, pf, reps));  // int8 over 2·steps (same bytes)
      i8 = std::max(i8, i8_loop(steps, wb, cst, pf, reps));
      i8b = std::max(i8b, i8_loop(2 * steps, wb, cst, pf, std::max<int64_t>(1, reps / 2)));
    }
    std::printf("i8loop K %lld (bf16 A %lld KiB, B %lld KiB | int8 A %lld KiB, B %lld KiB) cstore %d pf %d: bf16 %.0f, "
                "int8 same K %.0f (%.2fx), int8 same bytes %.0f (%.2fx) GMAC/s\n",
                (long long)steps * 64, (long long)steps * 4, (long long)(wb * steps * 4), (long long)steps * 2,
                (long long)(wb * steps * 2), cst, pf, bf * 1e-9, i8 * 1e-9, i8 / bf, i8b * 1e-9, i8b / bf);
    return 0;
  }
  if (what == "p2loop") {  // p2loop steps weight_blocks c_store prefetch
    if (argc < 6) return 2;
    if (!cpu_has_amx_bf16()) return 2;  // also asks Linux for the tile state
    const int64_t steps = std::atoll(argv[2]), wb = std::atoll(argv[3]);
    const int64_t reps = std::max<int64_t>(1, 400000000 / (wb * steps * 32768));
    double best = 0;
    for (int i = 0; i < 5; ++i) best = std::max(best, p2_loop(steps, wb, std::atoi(argv[4]), std::atoi(argv[5]), reps));
    std::printf("p2loop steps %lld (A %lld KiB) weight blocks %lld (B %lld KiB) cstore %s pf %s: %.0f GMAC/s\n",
                (long long)steps, (long long)steps * 2, (long long)wb, (long long)(wb * steps * 2), argv[4], argv[5],
                best * 1e-9);
    return 0;
  }
  const int64_t M = std::atoll(argv[2]), K = std::atoll(argv[3]), N = std::atoll(argv[4]);
  set_num_threads(argc > 5 ? std::atoi(argv[5]) : 1);
  if (argc > 6) set_isa_mode(std::atoi(argv[6]));
  std::printf("%s M=%lld K=%lld N=%lld threads %d isa %s\n", what.c_str(), (long long)M, (long long)K, (long long)N,
              num_threads(), isa_name(active_isa()));
  const int reps = std::getenv("REPS") ? std::atoi(std::getenv("REPS")) : 5;
  if (what == "p2") return run_p2(M, K, N, reps);
  if (what == "p2layer") return run_p2layer(M, K, N, reps);
  if (what == "p2a2") return run_p2a2(M, K, N, reps);
  if (what == "p2act") return run_p2act(M, K, N, reps);
  if (what == "p2i8") return run_p2i8(M, K, N, reps, std::getenv("SPREAD") ? std::atoi(std::getenv("SPREAD")) : 0);
  if (what == "w8a8") return run_w8a8(M, K, N, reps);
  return what == "f32" ? run_f32(M, K, N, reps) : run_w4a4(M, K, N, reps);
}
