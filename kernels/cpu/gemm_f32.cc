// Operators 3 and 4: f32 GEMM on packed 16-column weight panels, and W4A16 GEMM (4-bit codes through a
// 16-entry codebook: INT4 or NF4) that dequantizes one K-block of a panel into the same f32 panel form.
//   Y [M,N] = X [M,K] · Wᵀ (+ bias) (optional GELU), W [N,K].
// AVX2/scalar: Goto-style blocking: KC rows of a 16-column panel (16 KiB) stay in L1 while a copied block of MC rows
// of X (L2) streams through a 6×16 FMA micro-kernel (12 accumulators + 2 panel vectors + 1 broadcast of the 16 YMM
// registers); partial sums in a per-thread buffer (run_plan).
// AVX-512: 8×48 micro-kernel on copied row blocks of X, partial sums in a per-thread buffer (run_plan_avx512).
#include "x86.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#include "simd.h"

namespace svdq {

namespace {

constexpr int kNR = 16;  // panel width (columns)

inline float gelu1(float x) {
  return 0.5f * x * (1.f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

// ---- AVX2 / scalar path ----
// Tasks: up to kMC rows × kNC panels (fewer where that leaves the pool too few tasks). For each K block of kKC, the
// task copies its rows of X once into ap [rows][kKC] (fixed row stride: the six broadcasts of a micro-tile address
// one pointer with immediate offsets, and the rows no longer alias in L1 as X's rows do when K·4 bytes is a multiple
// of 4 KiB), then runs every panel of its columns against them: a [kc][16] panel block (16 KiB) stays in L1 for the
// block's micro-tiles of 6 rows, ap (96 KiB) in L2. The partial sums live in a per-thread buffer cb [rows][16·panels]
// (L2) until the last K block writes Y (bias at the first block, GELU at the last).
//
//   | tensor | shape             | layout / what                                         |
//   | ------ | ----------------- | ----------------------------------------------------- |
//   | X      | [M, K]            | row-major, M tokens, K in                             |
//   | W      | [Np/16][K][16]    | 16-column panels (packF32), N out padded to Np        |
//   | Y      | [M, N]            | row-major                                             |
//   | ap     | [kMC][kKC]        | the task's rows of X, one K block (row stride kKC)    |
//   | panel  | [kc][16]          | panel p, one K block (in place, or dequantized W4A16) |
//   | cb     | [rows][16·panels] | the task's partial sums (per thread)                  |
//
// Measured (AMD EPYC Zen 3, AVX2, 1 thread, CPU time, % of the FMA peak; docs/benchmarks.md, branch avx2f32): kKC
// 256 at 85 % against 82-83 % for 384 (24 KiB of panel next to 9 KiB of X in the 32 KiB L1); 12 panels per task
// copy X twice as often (2-4 % slower), 48 panels or 132-row tasks were within the noise; prefetching the next panel
// block spread over the current block's micro-tiles gained 4 % (all at once at the panel's start lost 4 %). With its
// operands in L1 the 6×16 micro-kernel runs at 95-99 % of the peak.
constexpr int64_t kKC = 256;  // K block
constexpr int64_t kMC = 96;   // rows per task (multiple of 6)
constexpr int64_t kNC = 24;   // panels per task (384 columns)

// C tile [MR][16]: sums start from cin (row stride ldi) or, when cin is null, from bias16 (or zero); they go to cout
// (row stride ldo), with GELU when asked. A row i at ap[i·kKC + k].
#if SVDQ_X86
template <int MR>
__attribute__((target("avx2,fma"))) void micro_f32(const float* ap, const float* b, int64_t kc, const float* cin,
                                                   int64_t ldi, float* cout, int64_t ldo, const float* bias16,
                                                   bool gelu) {
  __m256 acc[MR][2];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    if (cin) {
      acc[i][0] = _mm256_load_ps(cin + i * ldi);
      acc[i][1] = _mm256_load_ps(cin + i * ldi + 8);
    } else {
      acc[i][0] = bias16 ? _mm256_loadu_ps(bias16) : _mm256_setzero_ps();
      acc[i][1] = bias16 ? _mm256_loadu_ps(bias16 + 8) : _mm256_setzero_ps();
    }
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b + k * kNR), b1 = _mm256_loadu_ps(b + k * kNR + 8);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 av = _mm256_broadcast_ss(ap + i * kKC + k);
      acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    if (gelu) {
      acc[i][0] = gelu256(acc[i][0]);
      acc[i][1] = gelu256(acc[i][1]);
    }
    _mm256_storeu_ps(cout + i * ldo, acc[i][0]);
    _mm256_storeu_ps(cout + i * ldo + 8, acc[i][1]);
  }
}
#endif  // SVDQ_X86

void micro_scalar(int mr, const float* ap, const float* b, int64_t kc, const float* cin, int64_t ldi, float* cout,
                  int64_t ldo, const float* bias16, bool gelu) {
  for (int i = 0; i < mr; ++i) {
    float acc[kNR];
    for (int j = 0; j < kNR; ++j) acc[j] = cin ? cin[i * ldi + j] : (bias16 ? bias16[j] : 0.f);
    for (int64_t k = 0; k < kc; ++k) {
      const float av = ap[i * kKC + k];
      for (int j = 0; j < kNR; ++j) acc[j] += av * b[k * kNR + j];
    }
    for (int j = 0; j < kNR; ++j) cout[i * ldo + j] = gelu ? gelu1(acc[j]) : acc[j];
  }
}

void micro_tile(bool avx, int mr, const float* ap, const float* b, int64_t kc, const float* cin, int64_t ldi,
                float* cout, int64_t ldo, const float* bias16, bool gelu) {
  if (!avx) return micro_scalar(mr, ap, b, kc, cin, ldi, cout, ldo, bias16, gelu);  // always taken off x86
#if SVDQ_X86
  switch (mr) {
    case 6: micro_f32<6>(ap, b, kc, cin, ldi, cout, ldo, bias16, gelu); break;
    case 5: micro_f32<5>(ap, b, kc, cin, ldi, cout, ldo, bias16, gelu); break;
    case 4: micro_f32<4>(ap, b, kc, cin, ldi, cout, ldo, bias16, gelu); break;
    case 3: micro_f32<3>(ap, b, kc, cin, ldi, cout, ldo, bias16, gelu); break;
    case 2: micro_f32<2>(ap, b, kc, cin, ldi, cout, ldo, bias16, gelu); break;
    default: micro_f32<1>(ap, b, kc, cin, ldi, cout, ldo, bias16, gelu); break;
  }
#endif  // SVDQ_X86
}

struct Plan {
  const float* x;
  int64_t M, K, N;
  const float* bias_padded;  // [Np] or null
  bool gelu;
  float* y;
  // Returns a pointer to the [kc][16] panel block; may fill dst (thread scratch) and return it.
  const float* (*panel)(const void* ctx, int64_t p, int64_t k0, int64_t kc, float* dst);
  const void* ctx;
  const float* wpanel;  // [Np/16][K][16] when the panels are in memory (f32; prefetched), else null (W4A16)
};

#if SVDQ_X86
// ---- AVX-512 path ----
// Micro-tile: kMR512 rows × kNV512 panels (16 columns = one ZMM each): 24 accumulators + 3 panel vectors + 1
// broadcast of the 32 ZMM registers.
// Measured (1 thread, CPU time, M = 448, K = N = 3072): 8×48 and 14×32 tiles and K blocks of 128–512 all within
// the machine's noise (±5 %) once the partial sums left Y (below); 8×48 reads each broadcast for 3 FMAs.
constexpr int kMR512 = 8, kNV512 = 3;
constexpr int64_t kKC512 = 192;  // K block: a [kc][16·3] panel group is 36 KiB (L1: 48 KiB)

// One micro-tile over one K block. A comes from the packed block ap (row i at ap[i·kKC512 + k]: X copied row by
// row with a fixed row stride, so the broadcasts address one pointer with immediate offsets; read in place, with
// the run-time row stride K, the compiler ran out of general registers for the row pointers and reloaded some
// inside the k loop). The sums start from cin (row stride ldi) or, when cin is null, from the bias (or zero);
// they go to cout (row stride ldo): the task's accumulation buffer (all 16 lanes) or, for the last K block, Y
// (columns past N masked off, GELU applied when asked).
template <int MR, int NV>
SVDQ_TARGET_AVX512 void micro512(const float* ap, const float* const* b, int64_t kc, const float* cin, int64_t ldi,
                                 float* cout, int64_t ldo, bool to_y, const float* bias, bool gelu,
                                 const __mmask16* mask) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      acc[i][j] = cin ? _mm512_load_ps(cin + i * ldi + 16 * j)
                      : (bias ? _mm512_loadu_ps(bias + 16 * j) : _mm512_setzero_ps());
  const float* bp[NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j) bp[j] = b[j];
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = _mm512_loadu_ps(bp[j] + k * kNR);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(ap[i * kKC512 + k]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  if (to_y) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j)
        _mm512_mask_storeu_ps(cout + i * ldo + 16 * j, mask[j], gelu ? gelu512(acc[i][j]) : acc[i][j]);
  } else {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) _mm512_store_ps(cout + i * ldo + 16 * j, acc[i][j]);
  }
}

template <int NV>
SVDQ_TARGET_AVX512 void rows512(int mr, const float* ap, const float* const* b, int64_t kc, const float* cin,
                                int64_t ldi, float* cout, int64_t ldo, bool to_y, const float* bias, bool gelu,
                                const __mmask16* mask) {
  switch (mr) {
    case 8: micro512<8, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
    case 7: micro512<7, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
    case 6: micro512<6, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
    case 5: micro512<5, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
    case 4: micro512<4, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
    case 3: micro512<3, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
    case 2: micro512<2, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
    default: micro512<1, NV>(ap, b, kc, cin, ldi, cout, ldo, to_y, bias, gelu, mask); break;
  }
}
static_assert(kMR512 <= 8, "rows512 dispatches up to 8 rows");

// Tasks: up to kMT512 rows × kNC512 panels. For each K block, the task runs its rows in blocks of kMC512: each row
// block of X is copied once into ap [rows][kKC512] (L2) and runs against every panel group of the task's columns
// (a [kc][48] group stays in L1 for the block's 14 micro-tiles); the task's [kc][16·kNC512] slice of W (288 KiB)
// stays in L2 for all its row blocks. The partial sums live in a per-thread buffer [kMT512][16·kNC512] (1.6 KiB
// rows, L2) until the last K block writes Y: kept in Y between K blocks they were 18 % slower on the dev Xeon
// (1 thread, M = 448, K = N = 3072), because Y's row stride (N·4 bytes, a multiple of 4 KiB for FLUX widths) maps
// the rows of a block onto few L2 sets, and the block fell out to L3.
constexpr int64_t kMC512 = 112;  // 14 micro-tiles of 8 rows
constexpr int64_t kMT512 = 448;  // rows per task (4 row blocks)
constexpr int64_t kNC512 = 24;   // panels per task (384 columns): a multiple of kNV512

void run_plan_avx512(const Plan& P) {
  const int64_t NP = (P.N + kNR - 1) / kNR;
  const int threads = num_threads();
  // Narrow the tasks until the pool has 8 per thread (they are handed out one by one, runtime.cc, so on a shared
  // machine a thread that lost its core for a while leaves little behind): columns first down to 192 (fewer rows
  // per task read the task's W slice from memory once more per row block; fewer columns copy X once more per
  // column block: 96 was 15-20 % slower at N = 768), then rows, then columns; the rows are split evenly (M = 256 as
  // 224 + 32 rows read W twice for a 32-row task).
  int64_t mtr = kMT512, nc = kNC512;
  const auto tasks = [&] { return ((P.M + mtr - 1) / mtr) * ((NP + nc - 1) / nc); };
  while (tasks() < 8 * threads && nc > 4 * kNV512) nc /= 2;
  while (tasks() < 8 * threads && mtr > kMC512) mtr /= 2;
  while (tasks() < 8 * threads && nc > kNV512) nc /= 2;
  const int64_t mt = (P.M + mtr - 1) / mtr, nt = (NP + nc - 1) / nc;
  mtr = ((P.M + mt - 1) / mt + kMR512 - 1) / kMR512 * kMR512;
  const int64_t ldc = nc * kNR;  // row stride of the accumulation buffer
  struct Buf {
    std::vector<float> b, a, c;
  };
  std::vector<Buf> scratch(threads);
  parallel_for(mt * nt, [&](int64_t t, int th) {
    const int64_t nb = t / mt, mb = t % mt;
    const int64_t r0 = mb * mtr, r1 = std::min(P.M, r0 + mtr);
    const int64_t p0 = nb * nc, p1 = std::min(NP, p0 + nc);
    Buf& s = scratch[th];
    float* buf = align64(s.b, kNV512 * kKC512 * kNR);
    float* apk = align64(s.a, kMC512 * kKC512);
    float* cb = P.K > kKC512 ? align64(s.c, mtr * ldc) : nullptr;
    for (int64_t k0 = 0; k0 < P.K; k0 += kKC512) {
      const int64_t kc = std::min(kKC512, P.K - k0);
      const bool first = k0 == 0, last = k0 + kc == P.K;
      for (int64_t m0 = r0; m0 < r1; m0 += kMC512) {
        const int64_t m1 = std::min(r1, m0 + kMC512);
        for (int64_t m = m0; m < m1; ++m)
          std::memcpy(apk + (m - m0) * kKC512, P.x + m * P.K + k0, kc * sizeof(float));
        for (int64_t p = p0; p < p1; p += kNV512) {
          const int nv = static_cast<int>(std::min<int64_t>(kNV512, p1 - p));
          const float* b[kNV512] = {};
          __mmask16 mask[kNV512];
          for (int j = 0; j < nv; ++j) b[j] = P.panel(P.ctx, p + j, k0, kc, buf + j * kKC512 * kNR);
          for (int j = 0; j < kNV512; ++j) {
            const int64_t cnt = std::max<int64_t>(0, std::min<int64_t>(kNR, P.N - (p + j) * kNR));
            mask[j] = static_cast<__mmask16>((1u << cnt) - 1u);
          }
          const float* bias = P.bias_padded ? P.bias_padded + p * kNR : nullptr;
          for (int64_t m = m0; m < m1; m += kMR512) {
            const int mr = static_cast<int>(std::min<int64_t>(kMR512, m1 - m));
            const float* ap = apk + (m - m0) * kKC512;
            float* cbt = cb ? cb + (m - r0) * ldc + (p - p0) * kNR : nullptr;
            const float* cin = first ? nullptr : cbt;
            float* cout = last ? P.y + m * P.N + p * kNR : cbt;
            const int64_t ldo = last ? P.N : ldc;
            if (nv == 3)
              rows512<3>(mr, ap, b, kc, cin, ldc, cout, ldo, last, bias, P.gelu, mask);
            else if (nv == 2)
              rows512<2>(mr, ap, b, kc, cin, ldc, cout, ldo, last, bias, P.gelu, mask);
            else
              rows512<1>(mr, ap, b, kc, cin, ldc, cout, ldo, last, bias, P.gelu, mask);
          }
        }
      }
    }
  });
}
static_assert(kNV512 == 3 && kNC512 % kNV512 == 0, "run_plan_avx512 dispatches groups of up to 3 panels");
#endif  // SVDQ_X86

void run_plan(const Plan& P) {
#if SVDQ_X86
  if (isa_at_least(Isa::Avx512)) return run_plan_avx512(P);
#endif  // SVDQ_X86
  const bool avx = isa_at_least(Isa::Avx2);
  const int64_t NP = (P.N + kNR - 1) / kNR;
  const int threads = num_threads();
  // Narrow the tasks until the pool has 4 per thread (small M or N; they are handed out one by one, runtime.cc):
  // columns first down to 6 panels (fewer columns copy the rows of X for fewer panels), then rows down to 24. The
  // rows are split evenly into blocks (M = 256: 90 + 90 + 76 rows, not 96 + 96 + 64) of micro-tiles of 6.
  int64_t nc = kNC, mc = kMC;
  const auto tasks = [&] { return ((P.M + mc - 1) / mc) * ((NP + nc - 1) / nc); };
  while (tasks() < 4 * threads && nc > 6) nc /= 2;
  while (tasks() < 4 * threads && mc > 24) mc /= 2;
  const int64_t mt = (P.M + mc - 1) / mc, nt = (NP + nc - 1) / nc;
  const int64_t mrows = ((P.M + mt - 1) / mt + 5) / 6 * 6;
  struct Buf {
    std::vector<float> b, a, c, e;
  };
  std::vector<Buf> scratch(threads);
  parallel_for(mt * nt, [&](int64_t t, int th) {
    const int64_t nb = t / mt, mb = t % mt;
    const int64_t m0 = mb * mrows, m1 = std::min(P.M, m0 + mrows);
    const int64_t p0 = nb * nc, p1 = std::min(NP, p0 + nc);
    if (m0 >= m1) return;
    const int64_t ldc = (p1 - p0) * kNR;  // row stride of cb
    Buf& s = scratch[th];
    float* buf = align64(s.b, kKC * kNR);
    float* ap = align64(s.a, kMC * kKC);
    float* cb = P.K > kKC ? align64(s.c, mrows * ldc) : nullptr;
    float* edge = align64(s.e, 6 * kNR);  // [6][16] staging of the last, partial panel's Y columns
    const int64_t tiles = (m1 - m0 + 5) / 6;
    for (int64_t k0 = 0; k0 < P.K; k0 += kKC) {
      const int64_t kc = std::min(kKC, P.K - k0);
      const bool first = k0 == 0, last = k0 + kc == P.K;
      for (int64_t m = m0; m < m1; ++m) std::memcpy(ap + (m - m0) * kKC, P.x + m * P.K + k0, kc * sizeof(float));
      // the next K block of these rows, 64-byte lines spread over the panels of this block
      const int64_t kn = last ? 0 : std::min(kKC, P.K - k0 - kc), lpr = (kn * 4 + 63) / 64;
      const int64_t xlines = (m1 - m0) * lpr, xper = (xlines + (p1 - p0) - 1) / (p1 - p0);
      const float* xn = P.x + m0 * P.K + k0 + kc;
      for (int64_t p = p0; p < p1; ++p) {
        const float* b = P.panel(P.ctx, p, k0, kc, buf);
        for (int64_t q = (p - p0) * xper, q1 = std::min(xlines, q + xper); q < q1; ++q)
          __builtin_prefetch(reinterpret_cast<const char*>(xn + (q / lpr) * P.K) + (q % lpr) * 64, 0, 2);
        // the next panel block (the next panel, or the task's first panel of the next K block), kc lines of 64 bytes
        // spread over this block's micro-tiles
        const float* nxt = !P.wpanel ? nullptr
                           : p + 1 < p1 ? P.wpanel + ((p + 1) * P.K + k0) * kNR
                           : !last      ? P.wpanel + (p0 * P.K + k0 + kc) * kNR
                                        : nullptr;
        const int64_t nlines = p + 1 < p1 ? kc : kn, nper = (nlines + tiles - 1) / tiles;
        const float* bias16 = P.bias_padded ? P.bias_padded + p * kNR : nullptr;
        const int64_t n0 = p * kNR, ncol = std::min<int64_t>(kNR, P.N - n0);
        for (int64_t m = m0, j = 0; m < m1; m += 6, ++j) {
          if (nxt)
            for (int64_t q = j * nper, q1 = std::min(nlines, q + nper); q < q1; ++q)
              __builtin_prefetch(reinterpret_cast<const char*>(nxt + q * kNR), 0, 2);
          const int mr = static_cast<int>(std::min<int64_t>(6, m1 - m));
          float* cbt = cb ? cb + (m - m0) * ldc + (p - p0) * kNR : nullptr;
          const float* cin = first ? nullptr : cbt;
          float* cout = cbt;
          int64_t ldo = ldc;
          if (last) {
            cout = ncol == kNR ? P.y + m * P.N + n0 : edge;
            ldo = ncol == kNR ? P.N : kNR;
          }
          micro_tile(avx, mr, ap + (m - m0) * kKC, b, kc, cin, ldc, cout, ldo, first ? bias16 : nullptr,
                     last && P.gelu);
          if (last && ncol < kNR)
            for (int i = 0; i < mr; ++i) std::memcpy(P.y + (m + i) * P.N + n0, edge + i * kNR, ncol * sizeof(float));
        }
      }
    }
  });
}

std::vector<float> pad_bias(const float* bias, int64_t N) {
  if (!bias) return {};
  std::vector<float> b(((N + kNR - 1) / kNR) * kNR, 0.f);
  std::copy(bias, bias + N, b.begin());
  return b;
}

const float* f32_panel(const void* ctx, int64_t p, int64_t k0, int64_t, float*) {
  const F32Args* a = static_cast<const F32Args*>(ctx);
  return a->wpanel + (p * a->K + k0) * kNR;
}

// ---- W4A16 dequantization of one [kc][16] block ----
void deq_scalar(const W4A16Args* a, int64_t p, int64_t k0, int64_t kc, float* dst) {
  const int64_t KG = a->K / a->G;
  for (int64_t k = k0; k < k0 + kc; ++k) {
    const uint32_t* w = a->qweight + (p * a->K + k) * 2;
    const float* s = a->wscales + (p * KG + k / a->G) * kNR;
    for (int j = 0; j < kNR; ++j) dst[(k - k0) * kNR + j] = a->lut[(w[j >> 3] >> (4 * (j & 7))) & 15] * s[j];
  }
}

#if SVDQ_X86
__attribute__((target("avx2,fma"))) void deq_avx2(const W4A16Args* a, int64_t p, int64_t k0, int64_t kc, float* dst) {
  const int64_t KG = a->K / a->G;
  const __m256 lut_lo = _mm256_loadu_ps(a->lut), lut_hi = _mm256_loadu_ps(a->lut + 8);
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i mask = _mm256_set1_epi32(15);
  for (int64_t k = k0; k < k0 + kc; ++k) {
    const uint32_t* w = a->qweight + (p * a->K + k) * 2;
    const float* s = a->wscales + (p * KG + k / a->G) * kNR;
    for (int h = 0; h < 2; ++h) {
      const __m256i idx =
          _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(w[h])), shifts), mask);
      const __m256 lo = _mm256_permutevar8x32_ps(lut_lo, idx), hi = _mm256_permutevar8x32_ps(lut_hi, idx);
      const __m256 v = _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
      _mm256_storeu_ps(dst + (k - k0) * kNR + 8 * h, _mm256_mul_ps(v, _mm256_loadu_ps(s + 8 * h)));
    }
  }
}
#endif  // SVDQ_X86

const float* w4a16_panel(const void* ctx, int64_t p, int64_t k0, int64_t kc, float* dst) {
  const W4A16Args* a = static_cast<const W4A16Args*>(ctx);
#if SVDQ_X86
  if (isa_at_least(Isa::Avx2))
    deq_avx2(a, p, k0, kc, dst);
  else
#endif  // SVDQ_X86
    deq_scalar(a, p, k0, kc, dst);
  return dst;
}

}  // namespace

void gemm_f32(const F32Args& a) {
  std::vector<float> bias = pad_bias(a.bias, a.N);
  Plan P{a.x, a.M, a.K, a.N, a.bias ? bias.data() : nullptr, a.gelu, a.y, f32_panel, &a, a.wpanel};
  run_plan(P);
}

void gemm_w4a16(const W4A16Args& a) {
  if (a.G <= 0 || a.K % a.G != 0) throw KernelError("gemm_w4a16: K must be a multiple of the group size");
  std::vector<float> bias = pad_bias(a.bias, a.N);
  Plan P{a.x, a.M, a.K, a.N, a.bias ? bias.data() : nullptr, false, a.y, w4a16_panel, &a, nullptr};
  run_plan(P);
}

}  // namespace svdq
