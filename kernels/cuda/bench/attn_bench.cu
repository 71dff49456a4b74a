// Attention harness for issue 15 (no Node needed): the engine's fused attention (eng_attention /
// eng_attention_cross, kernels/cuda/engine/attention.cu), every tile shape of attn_variants.inc, the wgmma kernels
// (attn_wgmma.cu, ids 100+) and the kernel before the rewrite (attn_old.cu) are
//   1. checked against a float64 host reference: small shapes (every head dim, odd S, B = 2, the FLUX text/image
//      split, Sq != Skv with kv_len masks incl. 0, a padded output row stride whose pad must stay untouched) and
//      sampled rows of the full FLUX / PixArt shapes;
//   2. timed (CUDA events, 3 warm-up calls, median of 15) on FLUX.1 joint attention (1, 24, 4608, 128), PixArt-Σ
//      self attention (2, 16, 4096, 72) and cross attention (Sq 4096, Skv 300, kv_len 120 / 300).
// Timings go to stdout and to the file named by argv[2] ("shape impl ms tflops" lines) for attn_table.py, which
// prints them next to torch's scaled_dot_product_attention.
// Usage: attn_bench [check|small|time|all|list] [results file or ""] [impl keys: old,engine,v0,...,v100,...]
// (small: the small-shape checks only, for compute-sanitizer; list: print the impl keys).
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

#include "../engine/attention_flash.cuh"
#include "../engine/engine_ops.h"
#include "bench_common.cuh"

extern "C" const char* old_eng_attention(const void* Q, const void* K, const void* V, int B, int H, int S, int Dh,
                                         int split, void* out_txt, void* out_img, int ld, void* stream);
extern "C" const char* old_eng_attention_cross(const void* Q, const void* K, const void* V, int B, int H, int Sq,
                                               int Skv, int Dh, const int* kv_len, void* out, int ld, void* stream);

// ---- variant registry (attn_variant.cu registers each tile shape at start-up)
using VarFn = cudaError_t (*)(int Dh, const svdq_attn::FlashArgs& a, cudaStream_t s);
struct VarEntry {
  int id;
  const char* name;
  VarFn fn;
};
static std::vector<VarEntry>& registry() {
  static std::vector<VarEntry> r;
  return r;
}
int attn_register_variant(int id, const char* name, VarFn fn) {
  registry().push_back({id, name, fn});
  return id;
}

// ---- host helpers (CK, bf2f, f2bf, median: bench_common.cuh)
struct Lcg {
  uint64_t s;
  explicit Lcg(uint64_t seed) : s(seed * 6364136223846793005ull + 1442695040888963407ull) {}
  double next() {  // uniform [0, 1)
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return double(s >> 11) * (1.0 / 9007199254740992.0);
  }
};
__device__ uint32_t hsh(uint32_t a, uint32_t b) {
  uint32_t h = a * 0x9E3779B1u ^ (b + 0x7F4A7C15u);
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}
__global__ void fill_bf16(__nv_bfloat16* p, size_t n, uint32_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = __float2bfloat16_rn(lo + (hi - lo) * float(hsh(uint32_t(i), seed) >> 8) * 5.9604644775390625e-8f);
}

// ---- one attention problem on the device
struct Problem {
  int B, H, Sq, Skv, Dh;
  bool self;                // eng_attention (Sq == Skv, split) instead of eng_attention_cross
  int split;                // self: text tokens
  std::vector<int> kvl;     // cross: kv_len per item (empty: NULL)
  int ld;                   // output row stride (>= H·Dh)
  __nv_bfloat16 *q = nullptr, *k = nullptr, *v = nullptr, *o1 = nullptr, *o2 = nullptr;
  int* d_kvl = nullptr;
  size_t nq() const { return size_t(B) * H * Sq * Dh; }
  size_t nk() const { return size_t(B) * H * Skv * Dh; }
  size_t rows1() const { return self ? size_t(B) * split : 0; }  // out_txt rows
  size_t rows2() const { return size_t(B) * (self ? Sq - split : Sq); }
  int keys(int b) const { return kvl.empty() ? Skv : std::min(std::max(kvl[b], 0), Skv); }
  double flops() const {  // 2 matmuls x 2 flops per multiply-add, over the keys that count
    double f = 0;
    for (int b = 0; b < B; b++) f += 4.0 * H * Sq * double(keys(b)) * Dh;
    return f;
  }
  void alloc() {
    CK(cudaMalloc(&q, nq() * 2));
    CK(cudaMalloc(&k, nk() * 2));
    CK(cudaMalloc(&v, nk() * 2));
    if (rows1()) CK(cudaMalloc(&o1, rows1() * ld * 2));
    CK(cudaMalloc(&o2, rows2() * ld * 2));
    if (!kvl.empty()) {
      CK(cudaMalloc(&d_kvl, B * sizeof(int)));
      CK(cudaMemcpy(d_kvl, kvl.data(), B * sizeof(int), cudaMemcpyHostToDevice));
    }
  }
  void release() {
    cudaFree(q), cudaFree(k), cudaFree(v), cudaFree(o1), cudaFree(o2), cudaFree(d_kvl);
    q = k = v = o1 = o2 = nullptr;
    d_kvl = nullptr;
  }
  void poison() {  // 0xFFFF = bf16 NaN: anything not written shows up
    if (o1) CK(cudaMemset(o1, 0xFF, rows1() * ld * 2));
    CK(cudaMemset(o2, 0xFF, rows2() * ld * 2));
  }
};

// impl: -2 engine (public API), -1 old kernel, >= 0 index into the registry. Returns an error text or "".
static std::string run_impl(int impl, const Problem& p, cudaStream_t st) {
  if (impl == -2 || impl == -1) {
    const char* e;
    if (p.self)
      e = (impl == -2 ? eng_attention : old_eng_attention)(p.q, p.k, p.v, p.B, p.H, p.Sq, p.Dh, p.split, p.o1, p.o2,
                                                          p.ld, st);
    else
      e = (impl == -2 ? eng_attention_cross : old_eng_attention_cross)(p.q, p.k, p.v, p.B, p.H, p.Sq, p.Skv, p.Dh,
                                                                      p.d_kvl, p.o2, p.ld, st);
    return e ? std::string(e) : std::string();
  }
  svdq_attn::FlashArgs a;
  a.Q = p.q, a.K = p.k, a.V = p.v, a.B = p.B, a.H = p.H, a.Sq = p.Sq, a.Skv = p.Skv, a.kv_len = p.d_kvl;
  a.scale_log2 = 1.4426950408889634f / std::sqrt(float(p.Dh));
  a.split = p.self ? p.split : 0, a.out_txt = p.o1, a.out_img = p.o2, a.ld = p.ld;
  const cudaError_t e = registry()[impl].fn(p.Dh, a, st);
  return e == cudaSuccess ? std::string() : std::string(cudaGetErrorName(e));
}
static std::string impl_name(int impl) {
  if (impl == -2) return "engine";
  if (impl == -1) return "old";
  return "v" + std::to_string(registry()[impl].id) + " [" + registry()[impl].name + "]";
}
static bool impl_supports(int impl, int Dh) {  // variants: Dh 72 and 128; the TMA ones (ids 110+) 128 only
  if (impl < 0) return true;
  return registry()[impl].id >= 110 ? Dh == 128 : Dh == 72 || Dh == 128;
}

// float64 reference of one output row (b, h, s): out[d], from host bf16 copies
static void ref_row(const Problem& p, const std::vector<uint16_t>& hq, const std::vector<uint16_t>& hk,
                    const std::vector<uint16_t>& hv, int b, int h, int s, std::vector<double>& out) {
  const int D = p.Dh, n = p.keys(b);
  out.assign(D, 0.0);
  if (n == 0) return;
  const size_t qb = ((size_t(b) * p.H + h) * p.Sq + s) * D, kb = (size_t(b) * p.H + h) * p.Skv * D;
  std::vector<double> sc(n);
  double mx = -INFINITY;
  for (int j = 0; j < n; j++) {
    double acc = 0;
    for (int d = 0; d < D; d++) acc += double(bf2f(hq[qb + d])) * bf2f(hk[kb + size_t(j) * D + d]);
    sc[j] = acc / std::sqrt(double(D));
    mx = std::max(mx, sc[j]);
  }
  double sum = 0;
  for (int j = 0; j < n; j++) sum += sc[j] = std::exp(sc[j] - mx);
  for (int j = 0; j < n; j++)
    for (int d = 0; d < D; d++) out[d] += sc[j] * bf2f(hv[kb + size_t(j) * D + d]);
  for (int d = 0; d < D; d++) out[d] /= sum;
}

static int g_fail = 0;

// Runs impl on p (inputs already on the device, hq/hk/hv their host copies), compares the rows listed in `rows`
// ((b, h, s) triples; empty = all) with the float64 reference; also checks the pad columns of the output rows stayed
// poisoned and that rows of kv_len 0 items are exactly zero. tol on the relative L2 error (gpu-checks.ts: 1e-2).
static void check_impl(int impl, Problem& p, const std::vector<uint16_t>& hq, const std::vector<uint16_t>& hk,
                       const std::vector<uint16_t>& hv, const std::vector<int>& rows, const char* label,
                       double tol = 1e-2) {
  p.poison();
  const std::string err = run_impl(impl, p, 0);
  if (!err.empty()) {
    std::printf("FAIL %-28s %-34s launch error: %s\n", label, impl_name(impl).c_str(), err.c_str());
    g_fail++;
    return;
  }
  const cudaError_t se = cudaDeviceSynchronize();
  if (se != cudaSuccess) {
    std::printf("FAIL %-28s %-34s kernel error: %s\n", label, impl_name(impl).c_str(), cudaGetErrorString(se));
    std::exit(2);  // the context is gone
  }
  std::vector<uint16_t> g1(p.rows1() * p.ld), g2(p.rows2() * p.ld);
  if (p.o1) CK(cudaMemcpy(g1.data(), p.o1, g1.size() * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(g2.data(), p.o2, g2.size() * 2, cudaMemcpyDeviceToHost));
  auto out_row = [&](int b, int s) -> const uint16_t* {
    if (p.self && s < p.split) return g1.data() + (size_t(b) * p.split + s) * p.ld;
    const int n = p.self ? p.Sq - p.split : p.Sq, off = p.self ? p.split : 0;
    return g2.data() + (size_t(b) * n + (s - off)) * p.ld;
  };
  std::vector<int> list = rows;
  if (list.empty())
    for (int b = 0; b < p.B; b++)
      for (int h = 0; h < p.H; h++)
        for (int s = 0; s < p.Sq; s++) list.insert(list.end(), {b, h, s});
  double num = 0, den = 0, mx = 0;
  bool finite = true, zero_ok = true, pad_ok = true;
  std::vector<double> ref;
  for (size_t i = 0; i < list.size(); i += 3) {
    const int b = list[i], h = list[i + 1], s = list[i + 2];
    ref_row(p, hq, hk, hv, b, h, s, ref);
    const uint16_t* o = out_row(b, s) + size_t(h) * p.Dh;
    for (int d = 0; d < p.Dh; d++) {
      const double g = bf2f(o[d]);
      if (!std::isfinite(g)) finite = false;
      if (p.keys(b) == 0 && g != 0.0) zero_ok = false;
      num += (g - ref[d]) * (g - ref[d]);
      den += ref[d] * ref[d];
      mx = std::max(mx, std::fabs(g - ref[d]));
    }
  }
  if (rows.empty())  // whole output read: the pad columns H·Dh..ld-1 must be untouched
    for (int b = 0; b < p.B; b++)
      for (int s = 0; s < p.Sq; s++) {
        const uint16_t* o = out_row(b, s);
        for (int c = p.H * p.Dh; c < p.ld; c++)
          if (o[c] != 0xFFFF) pad_ok = false;
      }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  const bool ok = finite && zero_ok && pad_ok && rel <= tol;
  if (!ok) g_fail++;
  std::printf("%s %-28s %-34s relL2 %.3e maxabs %.3e%s%s%s\n", ok ? "ok  " : "FAIL", label, impl_name(impl).c_str(),
              rel, mx, finite ? "" : " NON-FINITE", zero_ok ? "" : " kv_len-0-rows-not-zero",
              pad_ok ? "" : " pad-overwritten");
  if (!ok) {  // a diagnosis: the first compared row, got vs float64, at d = 0..7 and 64..71
    const int b0 = list[0], h0 = list[1], s0 = list[2];
    ref_row(p, hq, hk, hv, b0, h0, s0, ref);
    const uint16_t* o = out_row(b0, s0) + size_t(h0) * p.Dh;
    for (int base : {0, 64}) {
      if (base + 8 > p.Dh) break;
      std::printf("     row (b %d, h %d, s %d) d %d..: got", b0, h0, s0, base);
      for (int d = base; d < base + 8; d++) std::printf(" %+.4f", bf2f(o[d]));
      std::printf(" | ref");
      for (int d = base; d < base + 8; d++) std::printf(" %+.4f", ref[d]);
      std::printf("\n");
    }
  }
}

static void fill_host(Problem& p, uint64_t seed, std::vector<uint16_t>& hq, std::vector<uint16_t>& hk,
                      std::vector<uint16_t>& hv) {
  Lcg r(seed);
  hq.resize(p.nq()), hk.resize(p.nk()), hv.resize(p.nk());
  for (auto& x : hq) x = f2bf(float(-2 + 4 * r.next()));  // gpu-checks.ts ranges: q, k in [-2, 2], v in [-1, 1]
  for (auto& x : hk) x = f2bf(float(-2 + 4 * r.next()));
  for (auto& x : hv) x = f2bf(float(-1 + 2 * r.next()));
  CK(cudaMemcpy(p.q, hq.data(), hq.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(p.k, hk.data(), hk.size() * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(p.v, hv.data(), hv.size() * 2, cudaMemcpyHostToDevice));
}
static void fill_device(Problem& p, uint32_t seed) {
  fill_bf16<<<1024, 256>>>(p.q, p.nq(), seed, -2.f, 2.f);
  fill_bf16<<<1024, 256>>>(p.k, p.nk(), seed + 1, -2.f, 2.f);
  fill_bf16<<<1024, 256>>>(p.v, p.nk(), seed + 2, -1.f, 1.f);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
}
static void download(const Problem& p, std::vector<uint16_t>& hq, std::vector<uint16_t>& hk,
                     std::vector<uint16_t>& hv) {
  hq.resize(p.nq()), hk.resize(p.nk()), hv.resize(p.nk());
  CK(cudaMemcpy(hq.data(), p.q, hq.size() * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hk.data(), p.k, hk.size() * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hv.data(), p.v, hv.size() * 2, cudaMemcpyDeviceToHost));
}

static std::string impl_key(int impl) {  // "old", "engine", "v<id>"
  return impl == -2 ? "engine" : impl == -1 ? "old" : "v" + std::to_string(registry()[impl].id);
}
static std::string g_filter;  // comma-separated impl keys (argv[3]); empty: all
static std::vector<int> all_impls() {
  std::vector<int> v = {-1, -2};
  for (size_t i = 0; i < registry().size(); i++) v.push_back(int(i));
  if (g_filter.empty()) return v;
  std::vector<int> out;
  const std::string f = "," + g_filter + ",";
  for (int i : v)
    if (f.find("," + impl_key(i) + ",") != std::string::npos) out.push_back(i);
  return out;
}

static Problem self_problem(int B, int H, int S, int Dh, int split, int ldpad) {
  Problem p{B, H, S, S, Dh, true, split, {}, H * Dh + ldpad};
  return p;
}
static Problem cross_problem(int B, int H, int Sq, int Skv, int Dh, std::vector<int> kvl, int ldpad) {
  Problem p{B, H, Sq, Skv, Dh, false, 0, std::move(kvl), H * Dh + ldpad};
  return p;
}

static void run_checks(bool big_too) {
  std::printf("== correctness vs float64 (tol relL2 1e-2, the engine's gpu-checks.ts bound)\n");
  std::vector<Problem> small = {
      // the attention cases of packages/engine-cuda/test/gpu.test.ts and bench/device-run.ts
      self_problem(1, 2, 300, 128, 0, 0), self_problem(2, 3, 129, 72, 0, 0), self_problem(2, 4, 45, 16, 0, 0),
      self_problem(1, 2, 64, 64, 0, 0), self_problem(1, 1, 1, 128, 0, 0),
      // odd S, B = 2, the text/image split and a padded output stride, every head dim
      self_problem(2, 3, 77, 32, 13, 8), self_problem(2, 2, 203, 128, 37, 16), self_problem(2, 2, 131, 72, 19, 8),
      self_problem(2, 2, 97, 64, 1, 0), self_problem(1, 3, 260, 16, 200, 8),
      // cross: Sq != Skv, kv_len masks (prefixes) incl. 0 and > tile, NULL kv_len
      cross_problem(2, 3, 130, 77, 72, {77, 0}, 8), cross_problem(2, 2, 5, 300, 72, {300, 120}, 0),
      cross_problem(2, 2, 200, 300, 128, {1, 299}, 16), cross_problem(2, 3, 65, 129, 16, {64, 65}, 0),
      cross_problem(2, 2, 33, 40, 32, {0, 40}, 0), cross_problem(1, 2, 150, 91, 64, {}, 8),
      cross_problem(2, 2, 128, 300, 128, {}, 0), cross_problem(2, 1, 64, 64, 72, {0, 0}, 0),
  };
  uint64_t seed = 1;
  for (auto& p : small) {
    p.alloc();
    std::vector<uint16_t> hq, hk, hv;
    fill_host(p, seed++, hq, hk, hv);
    char label[96];
    if (p.self)
      std::snprintf(label, sizeof label, "self %d,%d,%d,%d split %d", p.B, p.H, p.Sq, p.Dh, p.split);
    else
      std::snprintf(label, sizeof label, "cross %d,%d,%dx%d,%d kvl %s", p.B, p.H, p.Sq, p.Skv, p.Dh,
                    p.kvl.empty() ? "NULL" : (std::to_string(p.kvl[0]) + "/" + std::to_string(p.kvl[1])).c_str());
    for (int impl : all_impls())
      if (impl_supports(impl, p.Dh)) check_impl(impl, p, hq, hk, hv, {}, label);
    p.release();
  }
  if (!big_too) return;
  // sampled rows of the full-size shapes (the whole output is computed; 3 heads x 16 rows are compared)
  std::vector<std::pair<const char*, Problem>> big = {
      {"flux 1,24,4608,128 split 512", self_problem(1, 24, 4608, 128, 512, 0)},
      {"pixart self 2,16,4096,72", self_problem(2, 16, 4096, 72, 0, 0)},
      {"pixart cross 4096x300 120/300", cross_problem(2, 16, 4096, 300, 72, {120, 300}, 0)},
  };
  for (auto& [label, p] : big) {
    p.alloc();
    fill_device(p, 1234);
    std::vector<uint16_t> hq, hk, hv;
    download(p, hq, hk, hv);
    std::vector<int> rows;
    Lcg r(99);
    const int hs[3] = {0, 7, p.H - 1};
    for (int b = 0; b < p.B; b++)
      for (int h : hs) {
        for (int s : {0, 1, 511, 512, 513, 2047, p.Sq - 1}) rows.insert(rows.end(), {b, h, std::min(s, p.Sq - 1)});
        for (int i = 0; i < 9; i++) rows.insert(rows.end(), {b, h, int(r.next() * p.Sq)});
      }
    for (int impl : all_impls())
      if (impl_supports(impl, p.Dh)) check_impl(impl, p, hq, hk, hv, rows, label);
    p.release();
  }
}

static void run_times(FILE* res) {
  std::printf("== timings (CUDA events, 3 warm-up calls, median of 15 single calls; TFLOP/s = 4·B·H·Sq·keys·Dh / t)\n");
  std::vector<std::pair<const char*, Problem>> shapes = {
      {"flux", self_problem(1, 24, 4608, 128, 512, 0)},
      {"pixart_self", self_problem(2, 16, 4096, 72, 0, 0)},
      {"pixart_cross", cross_problem(2, 16, 4096, 300, 72, {120, 300}, 0)},
  };
  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (auto& [name, p] : shapes) {
    p.alloc();
    fill_device(p, 777);
    float old_ms = 0;
    for (int impl : all_impls()) {
      if (!impl_supports(impl, p.Dh)) continue;
      bool bad = false;
      for (int i = 0; i < 3 && !bad; i++) bad = !run_impl(impl, p, st).empty();
      if (bad) {
        std::printf("%-13s %-36s launch error: %s\n", name, impl_name(impl).c_str(), run_impl(impl, p, st).c_str());
        continue;
      }
      std::vector<float> t;
      for (int i = 0; i < 15; i++) {
        CK(cudaEventRecord(e0, st));
        run_impl(impl, p, st);
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        t.push_back(ms);
      }
      const float ms = median(t);
      if (impl == -1) old_ms = ms;
      const double tf = p.flops() / (ms * 1e-3) / 1e12;
      std::printf("%-13s %-36s %8.3f ms %7.1f TFLOP/s", name, impl_name(impl).c_str(), ms, tf);
      if (impl != -1 && old_ms > 0) std::printf("  %.2fx vs old", old_ms / ms);
      std::printf("\n");
      if (res) std::fprintf(res, "%s\t%s\t%.4f\t%.1f\n", name, impl_name(impl).c_str(), ms, tf);
    }
    p.release();
  }
  CK(cudaGetLastError());
}

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "all";
  std::sort(registry().begin(), registry().end(), [](const VarEntry& a, const VarEntry& b) { return a.id < b.id; });
  if (argc > 3) g_filter = argv[3];
  if (mode == "list") {  // the impl keys, for running each in its own process (a fault kills only that one)
    for (int i : all_impls()) std::printf("%s ", impl_key(i).c_str());
    std::printf("\n");
    return 0;
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs), %zu tile variants\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, registry().size());
  if (mode == "check" || mode == "all" || mode == "small") run_checks(mode != "small");
  if (mode == "time" || mode == "all") {
    FILE* res = argc > 2 && argv[2][0] ? std::fopen(argv[2], "a") : nullptr;
    run_times(res);
    if (res) std::fclose(res);
  }
  if (mode != "time") std::printf("checks: %s (%d failed)\n", g_fail ? "FAIL" : "ok", g_fail);
  return g_fail ? 1 : 0;
}
