// cuBLASLt algorithm search for the int4p2 FP8 GEMM (issue 16): svdq_p2_gemm (kernels/cuda/p2_fp8.cu) takes the
// first answer of cublasLtMatmulAlgoGetHeuristic, and for E4M3 x E4M3 with outer-vector (per-row x per-column) f32
// scales the heuristic returns one algorithm. This harness enumerates what cuBLASLt 13 has for that configuration
// (cublasLtMatmulAlgoGetIds, then every tile x stages of each algorithm, then split-K x reduction x CTA swizzle x
// custom option x cluster shape around the best few), keeps what cublasLtMatmulAlgoCheck accepts, times it, and
// prints the heuristic's choice against the best found, with cuBLAS BF16 in the same process.
//
// Operands as the engine runs them (column-major view, as p2_fp8.cu):
// | operand | cuBLASLt view            | bytes          | row-major meaning                         |
// |---------|--------------------------|----------------|-------------------------------------------|
// | b8      | A: E4M3, Kx x N, op T    | N * Kx         | weights [N, Kx] (Kx = K + 96 branch cols) |
// | a8      | B: E4M3, Kx x M, op N    | M * Kx         | activations [M, Kx]                       |
// | sw, sx  | outer-vector f32 scales  | 4 N, 4 M       | per weight row, per token                 |
// | out     | D: bf16, N x M (ld N)    | 2 M * N        | Y [M, N]                                  |
// Checks: every timed configuration's output against the heuristic's exact-accumulation output (rel-L2 and
// max |diff| / max |Y|); a configuration above 3e-3 rel-L2 (or, with fast accumulation, above 1.05x the heuristic's
// fast-accumulation error) is reported and not counted as a win. Random E4M3 bytes
// with magnitudes in [2^-3, 2^3] (no NaN patterns), scales in [0.5, 2).
// Timing (bench_common.cuh): the search ranks with 20 back-to-back calls between events (hot L2); the finalists and
// peers are timed hot (graph of calls, median of 7) and cold (256 MB memset before each call, median of 15).
// Usage: lt_search [quick]   (quick: M in {256, 4608} at K = N = 3072 only)
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../cublaslt_api.h"
#include "bench_common.cuh"

namespace {
lt::Api g;
lt::Handle H;
constexpr size_t WS = 64ull << 20;  // workspace offered to split-K configurations
void* g_ws;

struct Problem {
  int M, N, K, Kx;
  void *a8, *b8, *out, *ref;
  float *sx, *sw;
  lt::Desc desc[2];  // exact, fast accumulation
  lt::Layout la, lb, ld;
};

struct Cfg {
  lt::Algo algo;
  int id, tile, stages, splitk, red, swz, custom, cluster, inner;
  size_t ws;
  float us;
};

lt::Desc make_desc(Problem& p, int fast) {
  lt::Desc d;
  int rc = g.descCreate(&d, lt::COMPUTE_32F, CUDA_R_32F);
  const int ta = lt::OP_T, tb = lt::OP_N, mode = lt::SCALE_OUTER_VEC_32F, epi = lt::EPILOGUE_DEFAULT;
  const int8_t fa = int8_t(fast);
  rc |= g.descSet(d, lt::DESC_TRANSA, &ta, sizeof ta);
  rc |= g.descSet(d, lt::DESC_TRANSB, &tb, sizeof tb);
  rc |= g.descSet(d, lt::DESC_FAST_ACCUM, &fa, sizeof fa);
  rc |= g.descSet(d, lt::DESC_A_SCALE_MODE, &mode, sizeof mode);
  rc |= g.descSet(d, lt::DESC_B_SCALE_MODE, &mode, sizeof mode);
  rc |= g.descSet(d, lt::DESC_A_SCALE_POINTER, &p.sw, sizeof p.sw);
  rc |= g.descSet(d, lt::DESC_B_SCALE_POINTER, &p.sx, sizeof p.sx);
  rc |= g.descSet(d, lt::DESC_EPILOGUE, &epi, sizeof epi);
  if (rc) {
    std::printf("descriptor setup failed (status %d)\n", rc);
    std::exit(4);
  }
  return d;
}

int run(Problem& p, int fast, const lt::Algo& a, size_t ws, void* out, cudaStream_t s) {
  const float one = 1.f, zero = 0.f;
  return g.matmul(H, p.desc[fast], &one, p.b8, p.la, p.a8, p.lb, &zero, out, p.ld, out, p.ld, &a, g_ws, ws, s);
}

// µs per call: 2 warm-up calls, then 20 calls between events (hot L2); NAN when a call fails
float quick_us(Timer& T, Problem& p, int fast, const lt::Algo& a, size_t ws) {
  for (int i = 0; i < 2; ++i)
    if (run(p, fast, a, ws, p.out, T.st)) return NAN;
  CK(cudaEventRecord(T.e0, T.st));
  for (int i = 0; i < 20; ++i) run(p, fast, a, ws, p.out, T.st);
  CK(cudaEventRecord(T.e1, T.st));
  if (cudaEventSynchronize(T.e1) != cudaSuccess) return NAN;
  float ms;
  CK(cudaEventElapsedTime(&ms, T.e0, T.e1));
  return ms * 1000.f / 20;
}

template <class V>
std::vector<V> cap_array(const lt::Algo& a, int attr) {
  size_t n = 0;
  std::vector<V> v(256);
  if (g.algoCapGet(&a, attr, v.data(), v.size() * sizeof(V), &n)) return {};
  v.resize(n / sizeof(V));
  return v;
}
template <class V>
V cap(const lt::Algo& a, int attr) {
  V v{};
  size_t n = 0;
  g.algoCapGet(&a, attr, &v, sizeof v, &n);
  return v;
}
template <class V>
V cfg_get(const lt::Algo& a, int attr) {
  V v{};
  size_t n = 0;
  g.algoCfgGet(&a, attr, &v, sizeof v, &n);
  return v;
}

// why configurations were refused: [0] a config attribute refused, [1] cublasLtMatmulAlgoCheck's status != 0,
// [2] its result state != 0, [3] workspace over WS; g_check_status: the first few AlgoCheck statuses seen
int g_refused[4];
std::vector<int> g_check_status;
// sets the configuration on a fresh copy of `base` and asks cuBLASLt whether it runs this problem
bool configure(Problem& p, int fast, const lt::Algo& base, Cfg& c) {
  c.algo = base;
  const uint32_t tile = c.tile, stages = c.stages, sk = c.splitk, red = c.red, swz = c.swz, cus = c.custom;
  const uint16_t cl = uint16_t(c.cluster), in = uint16_t(c.inner);
  if (g.algoCfgSet(&c.algo, lt::CFG_TILE_ID, &tile, sizeof tile) ||
      g.algoCfgSet(&c.algo, lt::CFG_STAGES_ID, &stages, sizeof stages) ||
      g.algoCfgSet(&c.algo, lt::CFG_SPLITK_NUM, &sk, sizeof sk) ||
      g.algoCfgSet(&c.algo, lt::CFG_REDUCTION_SCHEME, &red, sizeof red) ||
      g.algoCfgSet(&c.algo, lt::CFG_CTA_SWIZZLING, &swz, sizeof swz) ||
      g.algoCfgSet(&c.algo, lt::CFG_CUSTOM_OPTION, &cus, sizeof cus) ||
      g.algoCfgSet(&c.algo, lt::CFG_CLUSTER_SHAPE_ID, &cl, sizeof cl) ||
      g.algoCfgSet(&c.algo, lt::CFG_INNER_SHAPE_ID, &in, sizeof in)) {
    ++g_refused[0];
    return false;
  }
  lt::Heur h{};
  const int st = g.algoCheck(H, p.desc[fast], p.la, p.lb, p.ld, p.ld, &c.algo, &h);
  if (st) {
    ++g_refused[1];
    if (g_check_status.size() < 6) g_check_status.push_back(st);
    return false;
  }
  if (h.state != 0) {
    ++g_refused[2];
    return false;
  }
  if (h.workspaceSize > WS) {
    ++g_refused[3];
    return false;
  }
  c.ws = h.workspaceSize;
  return true;
}

std::string describe(const Cfg& c) {
  char b[160];
  std::snprintf(b, sizeof b, "algo %d tile %d stages %d splitK %d red %d swz %d custom %d cluster %d inner %d ws %zu KB",
                c.id, c.tile, c.stages, c.splitk, c.red, c.swz, c.custom, c.cluster, c.inner, c.ws >> 10);
  return b;
}

Cfg from_algo(const lt::Algo& a, size_t ws) {
  Cfg c{};
  c.algo = a;
  c.id = cfg_get<int>(a, lt::CFG_ID);
  c.tile = int(cfg_get<uint32_t>(a, lt::CFG_TILE_ID));
  c.stages = int(cfg_get<uint32_t>(a, lt::CFG_STAGES_ID));
  c.splitk = int(cfg_get<uint32_t>(a, lt::CFG_SPLITK_NUM));
  c.red = int(cfg_get<uint32_t>(a, lt::CFG_REDUCTION_SCHEME));
  c.swz = int(cfg_get<uint32_t>(a, lt::CFG_CTA_SWIZZLING));
  c.custom = int(cfg_get<uint32_t>(a, lt::CFG_CUSTOM_OPTION));
  c.cluster = int(cfg_get<uint16_t>(a, lt::CFG_CLUSTER_SHAPE_ID));
  c.inner = int(cfg_get<uint16_t>(a, lt::CFG_INNER_SHAPE_ID));
  c.ws = ws;
  return c;
}

// rel-L2 and max |diff| / max |ref| of a bf16 [M, N] output against the reference output
void compare(Problem& p, const void* out, double* rel, double* mx) {
  const size_t n = size_t(p.M) * p.N;
  auto y = down<uint16_t>(out, n), r = down<uint16_t>(p.ref, n);
  double se = 0, sr = 0, md = 0, mr = 0;
  for (size_t i = 0; i < n; ++i) {
    const double a = bf2f(y[i]), b = bf2f(r[i]);
    if (!std::isfinite(a)) {
      se = INFINITY;
      break;
    }
    se += (a - b) * (a - b);
    sr += b * b;
    md = std::max(md, std::fabs(a - b));
    mr = std::max(mr, std::fabs(b));
  }
  *rel = std::sqrt(se / sr);
  *mx = md / mr;
}
}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "quick") == 0;
  std::string why;
  if (!g.load(&why)) {
    std::printf("%s\n", why.c_str());
    return 1;
  }
  Timer T = bench_start();
  std::printf("cuBLASLt %zu\n", g.version ? g.version() : size_t(0));
  if (g.create(&H)) return 1;
  g_ws = dalloc<uint8_t>(WS);
  std::vector<std::vector<int>> shapes = {{256, 3072, 3072}, {256, 3072, 12288}, {256, 12288, 3072},
                                          {4608, 3072, 3072}, {4608, 3072, 12288}, {4608, 12288, 3072}};
  if (quick) shapes = {{256, 3072, 3072}, {4608, 3072, 3072}};
  std::mt19937 rng(20261207);
  std::vector<std::string> table;
  int bad = 0;
  for (auto& sh : shapes) {
    Problem p{};
    p.M = sh[0], p.K = sh[1], p.N = sh[2], p.Kx = p.K + 96;  // SVDQuant rank 32: 3R branch columns (p2_fp8.cu)
    auto fill8 = [&](size_t n) {
      std::vector<uint8_t> h(n);
      for (auto& b : h) b = uint8_t((rng() & 0x80) | ((4 + rng() % 7) << 3) | (rng() & 7));  // exp 4..10: 2^-3..2^3
      void* d = dalloc<uint8_t>(n);
      CK(cudaMemcpy(d, h.data(), n, cudaMemcpyHostToDevice));
      return d;
    };
    auto fillf = [&](size_t n) {
      std::vector<float> h(n);
      for (auto& v : h) v = 0.5f + 1.5f * float(rng() % 65536) / 65536.f;
      float* d = dalloc<float>(n);
      CK(cudaMemcpy(d, h.data(), n * 4, cudaMemcpyHostToDevice));
      return d;
    };
    p.a8 = fill8(size_t(p.M) * p.Kx);
    p.b8 = fill8(size_t(p.N) * p.Kx);
    p.sx = fillf(p.M);
    p.sw = fillf(p.N);
    p.out = dalloc<uint16_t>(size_t(p.M) * p.N);
    p.ref = dalloc<uint16_t>(size_t(p.M) * p.N);
    int rc = g.layoutCreate(&p.la, CUDA_R_8F_E4M3, p.Kx, p.N, p.Kx);
    rc |= g.layoutCreate(&p.lb, CUDA_R_8F_E4M3, p.Kx, p.M, p.Kx);
    rc |= g.layoutCreate(&p.ld, CUDA_R_16BF, p.N, p.M, p.N);
    if (rc) return 4;
    p.desc[0] = make_desc(p, 0);
    p.desc[1] = make_desc(p, 1);
    // peers: cuBLAS BF16 on bf16 operands of the same shape (K, not Kx: the 16-bit layer has no branch columns)
    uint16_t* xb = dalloc<uint16_t>(size_t(p.M) * p.K);
    uint16_t* wb = dalloc<uint16_t>(size_t(p.N) * p.K);
    uint16_t* ob = dalloc<uint16_t>(size_t(p.M) * p.N);
    CK(cudaMemset(xb, 0x3c, size_t(p.M) * p.K * 2));  // bf16 0x3c3c ≈ 0.0115: defined data, timing only
    CK(cudaMemset(wb, 0x3c, size_t(p.N) * p.K * 2));
    const float bf_hot = time_us(T, false, [&] { CS(svdq_gemm_bf16_cublas(SVDQ_BF16, xb, wb, ob, p.M, p.N, p.K, T.st)); });
    const float bf_cold = time_us(T, true, [&] { CS(svdq_gemm_bf16_cublas(SVDQ_BF16, xb, wb, ob, p.M, p.N, p.K, T.st)); });
    CK(cudaFree(xb));
    CK(cudaFree(wb));
    CK(cudaFree(ob));

    int nids = 0;
    std::vector<int> ids(128);
    if (g.algoGetIds(H, lt::COMPUTE_32F, CUDA_R_32F, CUDA_R_8F_E4M3, CUDA_R_8F_E4M3, CUDA_R_16BF, CUDA_R_16BF,
                     int(ids.size()), ids.data(), &nids)) {
      std::printf("cublasLtMatmulAlgoGetIds failed\n");
      return 5;
    }
    ids.resize(nids);
    for (int fast = 0; fast < 2; ++fast) {
      // the heuristic's choice (what svdq_p2_gemm runs)
      lt::Pref pref;
      g.prefCreate(&pref);
      const uint64_t wsb = 32ull << 20;  // p2_fp8.cu's WS_BYTES
      g.prefSet(pref, lt::PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
      lt::Heur hh[8];
      int nh = 0;
      if (g.heuristic(H, p.desc[fast], p.la, p.lb, p.ld, p.ld, pref, 8, hh, &nh) || nh == 0) {
        std::printf("M=%d K=%d N=%d fast=%d: no heuristic answer\n", p.M, p.K, p.N, fast);
        return 5;
      }
      Cfg heur = from_algo(hh[0].algo, hh[0].workspaceSize);
      if (fast == 0) {
        if (run(p, 0, heur.algo, heur.ws, p.ref, T.st)) return 5;
        CK(cudaStreamSynchronize(T.st));
      }
      // the heuristic's own configuration must pass this harness's configure (else its enumeration is broken)
      std::memset(g_refused, 0, sizeof g_refused);
      g_check_status.clear();
      {
        Cfg c = heur;
        if (!configure(p, fast, heur.algo, c))
          std::printf("  (the heuristic's configuration is refused when set again: refusals %d/%d/%d/%d)\n",
                      g_refused[0], g_refused[1], g_refused[2], g_refused[3]);
      }
      // stage A: every algorithm id x tile x stages x custom option x cluster shape (split-K 1, the heuristic's
      // inner shape); the algorithm's own initial values where a capability list is empty
      std::vector<Cfg> found;
      int checked = 0, valid = 0;
      for (int id : ids) {
        lt::Algo base;
        if (g.algoInit(H, lt::COMPUTE_32F, CUDA_R_32F, CUDA_R_8F_E4M3, CUDA_R_8F_E4M3, CUDA_R_16BF, CUDA_R_16BF, id,
                       &base))
          continue;
        const Cfg init = from_algo(base, 0);
        auto tiles = cap_array<uint32_t>(base, lt::CAP_TILE_IDS);
        auto stages = cap_array<uint32_t>(base, lt::CAP_STAGES_IDS);
        if (tiles.empty()) tiles = {uint32_t(init.tile)};
        if (stages.empty()) stages = {uint32_t(init.stages)};
        const int cmax = std::min(7, cap<int32_t>(base, lt::CAP_CUSTOM_OPTION_MAX));
        for (uint32_t t : tiles)
          for (uint32_t s : stages)
            for (int cu = 0; cu <= cmax; ++cu)
              for (int cl : {0, 2, 3, 4, 5, 6, 7, 8}) {
                if (valid >= 400) break;
                Cfg c{};
                c.id = id, c.tile = int(t), c.stages = int(s), c.splitk = 1, c.custom = cu, c.cluster = cl;
                c.inner = id == heur.id ? heur.inner : init.inner;
                ++checked;
                if (!configure(p, fast, id == heur.id ? heur.algo : base, c)) continue;  // heuristic's as the base
                ++valid;
                c.us = quick_us(T, p, fast, c.algo, c.ws);
                if (std::isfinite(c.us)) found.push_back(c);
              }
      }
      CK(cudaGetLastError());
      heur.us = quick_us(T, p, fast, heur.algo, heur.ws);
      found.push_back(heur);  // stage B also searches around the heuristic's own configuration
      std::sort(found.begin(), found.end(), [](const Cfg& a, const Cfg& b) { return a.us < b.us; });
      // stage B: around the best 6 (the heuristic's among them): split-K x reduction x swizzle, then custom option x
      // cluster shape
      std::vector<Cfg> more;
      for (size_t i = 0; i < std::min<size_t>(6, found.size()); ++i) {
        lt::Algo base;
        g.algoInit(H, lt::COMPUTE_32F, CUDA_R_32F, CUDA_R_8F_E4M3, CUDA_R_8F_E4M3, CUDA_R_16BF, CUDA_R_16BF,
                   found[i].id, &base);
        const int sks = cap<int32_t>(base, lt::CAP_SPLITK_SUPPORT);
        const uint32_t redm = cap<uint32_t>(base, lt::CAP_REDUCTION_SCHEME_MASK);
        const uint32_t swzs = cap<uint32_t>(base, lt::CAP_CTA_SWIZZLING_SUPPORT);
        for (int sk : {1, 2, 3, 4, 6, 8}) {
          if (sk > 1 && !sks) break;
          for (int red : {0, 1, 2, 4}) {
            if ((sk == 1) != (red == 0) || (red && !(redm & uint32_t(red)))) continue;
            for (int swz = 0; swz <= (swzs ? 1 : 0); ++swz) {
              if (sk == 1 && swz == found[i].swz) continue;  // stage A's own configuration
              Cfg c = found[i];
              c.splitk = sk, c.red = red, c.swz = swz;
              ++checked;
              if (!configure(p, fast, found[i].id == heur.id ? heur.algo : base, c)) continue;
              ++valid;
              c.us = quick_us(T, p, fast, c.algo, c.ws);
              if (std::isfinite(c.us)) more.push_back(c);
            }
          }
        }
        for (int cu = 0; cu <= 7; ++cu)
          for (int cl = 0; cl <= 16; ++cl) {
            if (cu == found[i].custom && cl == found[i].cluster) continue;
            Cfg c = found[i];
            c.custom = cu, c.cluster = cl;
            ++checked;
            if (!configure(p, fast, found[i].id == heur.id ? heur.algo : base, c)) continue;
            ++valid;
            c.us = quick_us(T, p, fast, c.algo, c.ws);
            if (std::isfinite(c.us)) more.push_back(c);
          }
      }
      CK(cudaGetLastError());
      found.insert(found.end(), more.begin(), more.end());
      std::sort(found.begin(), found.end(), [](const Cfg& a, const Cfg& b) { return a.us < b.us; });
      // finalists: the best 4 and the heuristic's, timed hot and cold, checked against the reference output
      const float h_hot = time_us(T, false, [&] { run(p, fast, heur.algo, heur.ws, p.out, T.st); });
      const float h_cold = time_us(T, true, [&] { run(p, fast, heur.algo, heur.ws, p.out, T.st); });
      double hrel, hmx;
      compare(p, p.out, &hrel, &hmx);
      std::printf("\nM=%d K=%d N=%d %s: %zu algorithm ids, %d configurations checked, %d accepted by cuBLASLt, %zu ran\n",
                  p.M, p.K, p.N, fast ? "fast accumulation" : "exact accumulation", ids.size(), checked, valid,
                  found.size());
      std::printf("  refused: %d config attribute, %d AlgoCheck (statuses", g_refused[0], g_refused[1]);
      for (int st : g_check_status) std::printf(" %d", st);
      std::printf("), %d state, %d workspace\n", g_refused[2], g_refused[3]);
      {
        auto tl = cap_array<uint32_t>(heur.algo, lt::CAP_TILE_IDS), sl = cap_array<uint32_t>(heur.algo, lt::CAP_STAGES_IDS);
        std::printf("  heuristic's algorithm caps: %zu tile ids, %zu stages ids, split-K %d, reduction mask %u, swizzle %u, "
                    "custom max %d\n", tl.size(), sl.size(), cap<int32_t>(heur.algo, lt::CAP_SPLITK_SUPPORT),
                    cap<uint32_t>(heur.algo, lt::CAP_REDUCTION_SCHEME_MASK),
                    cap<uint32_t>(heur.algo, lt::CAP_CTA_SWIZZLING_SUPPORT),
                    cap<int32_t>(heur.algo, lt::CAP_CUSTOM_OPTION_MAX));
      }
      std::printf("  cuBLAS BF16 %.1f / %.1f us (hot / cold)\n", bf_hot, bf_cold);
      std::printf("  heuristic   %.1f / %.1f us  %.2fx / %.2fx BF16  rel-L2 %.2e  [%s]\n", h_hot, h_cold, bf_hot / h_hot,
                  bf_cold / h_cold, hrel, describe(heur).c_str());
      float best_hot = h_hot, best_cold = h_cold;
      std::string best_desc = "heuristic";
      for (size_t i = 0; i < std::min<size_t>(4, found.size()); ++i) {
        Cfg& c = found[i];
        const float th = time_us(T, false, [&] { run(p, fast, c.algo, c.ws, p.out, T.st); });
        const float tc = time_us(T, true, [&] { run(p, fast, c.algo, c.ws, p.out, T.st); });
        double rel, mx;
        compare(p, p.out, &rel, &mx);
        const bool ok = rel <= std::max(3e-3, 1.05 * hrel);  // fast accumulation: its own error, not more
        if (!ok) ++bad;
        std::printf("  found #%zu   %.1f / %.1f us  %.2fx / %.2fx BF16  rel-L2 %.2e max %.2e %s [%s]\n", i + 1, th, tc,
                    bf_hot / th, bf_cold / tc, rel, mx, ok ? "ok" : "REJECTED", describe(c).c_str());
        if (ok && th < best_hot) best_hot = th, best_desc = describe(c);
        if (ok && tc < best_cold) best_cold = tc;
      }
      char row[400];
      std::snprintf(row, sizeof row, "| %d | %d | %d | %s | %.1f / %.1f | %.1f / %.1f (%.2fx / %.2fx) | %.1f / %.1f (%.2fx / %.2fx) | %.2fx / %.2fx | %s |",
                    p.M, p.K, p.N, fast ? "fast" : "exact", bf_hot, bf_cold, h_hot, h_cold, bf_hot / h_hot,
                    bf_cold / h_cold, best_hot, best_cold, bf_hot / best_hot, bf_cold / best_cold, h_hot / best_hot,
                    h_cold / best_cold, best_desc.c_str());
      table.push_back(row);
    }
    CK(cudaFree(p.a8));
    CK(cudaFree(p.b8));
    CK(cudaFree(p.out));
    CK(cudaFree(p.ref));
    CK(cudaFree(p.sx));
    CK(cudaFree(p.sw));
  }
  std::printf("\n| M | K | N | accumulation | cuBLAS BF16 us hot / cold | heuristic us (vs BF16) | best found us (vs BF16) | best vs heuristic | best configuration (hot) |\n|---|---|---|---|---|---|---|---|---|\n");
  for (auto& r : table) std::printf("%s\n", r.c_str());
  std::printf("rejected finalists (rel-L2 vs the heuristic's exact output > max(3e-3, 1.05x the heuristic's)): %d\n", bad);
  return 0;
}
