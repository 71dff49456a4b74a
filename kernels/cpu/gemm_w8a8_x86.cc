// W8A8 GEMM on AVX-512 VNNI (Isa::Avx512) and AMX-INT8 (Isa::Amx); the scalar and AVX2 paths are in gemm_w8a8.cc.
//   Y [M,N] = (codes_x [M,K] · codes_wᵀ) · s_x[m] · s_w[n] + bias;  weight panel [Np/8][K/4][8][4] int8 (layout.ts).
// VNNI: vpdpbusd multiplies unsigned by signed bytes, so the activation bytes are offset to x + 128 (xor 0x80) and
//   128·Σ_k w[n,k] is subtracted per column at the end (exact in int32: |Σ| ≤ K·255·127 < 2^31 for K < 66000).
//   One 512-bit vector = the 32-byte rows [p, k4] of two neighbouring panels = 16 columns × 4 k.
// AMX (K a multiple of 64): tdpbssd on signed bytes needs no offset; the weights of a task's 32 columns are copied
//   once into B tiles [16 k4][16 columns][4] and the int32 sums stay in the C tiles over the whole K, so the f32
//   epilogue runs once per output (unlike W4A4, there are no per-group scales).
#include "x86.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "amx_partial.h"
#include "common.h"
#include "simd.h"

#if SVDQ_X86
#define SVDQ_TARGET_AMX \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,amx-tile,amx-int8")))

namespace svdq {

namespace {

constexpr int kPanel = 8;

struct Ctx8 {
  const W8A8Args* a;
  int64_t NP;
  const int32_t* colsum;  // [NP·8 + 8] Σ_k w[n, k] (VNNI), zero-padded
  const int8_t* zeros;    // K·8 zero bytes: the panel after the last one
};

inline const int8_t* panel(const Ctx8& c, int64_t p) {
  return p < c.NP ? c.a->qweight + p * c.a->K * kPanel : c.zeros;
}

// Stores MR rows × 16·NV columns from n0: (acc − 128·colsum)·s_x·s_w + bias, columns < N.
template <int MR, int NV>
SVDQ_TARGET_AVX512 void store_tile(const Ctx8& c, int64_t m, int64_t n0, __m512i (&acc)[MR][NV], bool offset) {
  const W8A8Args& a = *c.a;
  for (int j = 0; j < NV; ++j) {
    const int64_t nj = n0 + 16 * j;
    if (nj >= a.N) break;
    const int64_t cnt = std::min<int64_t>(16, a.N - nj);
    const __mmask16 mask = static_cast<__mmask16>((1u << cnt) - 1u);
    const __m512 ws = _mm512_maskz_loadu_ps(mask, a.wscales + nj);
    const __m512 b = a.bias ? _mm512_maskz_loadu_ps(mask, a.bias + nj) : _mm512_setzero_ps();
    const __m512i off =
        offset ? _mm512_slli_epi32(_mm512_loadu_si512(c.colsum + nj), 7) : _mm512_setzero_si512();  // 128·Σw
    for (int i = 0; i < MR; ++i) {
      const __m512 d = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][j], off));
      const __m512 v = _mm512_fmadd_ps(d, _mm512_mul_ps(ws, _mm512_set1_ps(a.ascales[m + i])), b);
      _mm512_mask_storeu_ps(a.y + (m + i) * a.N + nj, mask, v);
    }
  }
}

template <int MR, int NV>
SVDQ_TARGET_AVX512 void micro_vnni(const Ctx8& c, int64_t m, int64_t p) {
  const W8A8Args& a = *c.a;
  const int64_t K = a.K;
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512i acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_si512();
  const int8_t* wp[2 * NV];
#pragma GCC unroll 8
  for (int j = 0; j < 2 * NV; ++j) wp[j] = panel(c, p + j);
  for (int64_t k4 = 0; k4 < K / 4; ++k4) {
    __m512i w[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) w[j] = load_pair_epi8(wp[2 * j] + k4 * 32, wp[2 * j + 1] + k4 * 32);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      int32_t d;
      std::memcpy(&d, a.codes + (m + i) * K + k4 * 4, 4);
      const __m512i x = _mm512_xor_si512(_mm512_set1_epi32(d), flip);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], x, w[j]);
    }
  }
  store_tile<MR, NV>(c, m, p * kPanel, acc, true);
}

template <int MR>
SVDQ_TARGET_AVX512 void rows_vnni(const Ctx8& c, int64_t m, int64_t p0, int64_t p1) {
  int64_t p = p0;
  for (; p + 4 <= p1; p += 4) micro_vnni<MR, 2>(c, m, p);
  for (; p < p1; p += 2) micro_vnni<MR, 1>(c, m, p);
}

SVDQ_TARGET_AVX512 void tile_vnni(const Ctx8& c, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  int64_t m = m0;
  for (; m + 8 <= m1; m += 8) rows_vnni<8>(c, m, p0, p1);
  switch (m1 - m) {
    case 7: rows_vnni<7>(c, m, p0, p1); break;
    case 6: rows_vnni<6>(c, m, p0, p1); break;
    case 5: rows_vnni<5>(c, m, p0, p1); break;
    case 4: rows_vnni<4>(c, m, p0, p1); break;
    case 3: rows_vnni<3>(c, m, p0, p1); break;
    case 2: rows_vnni<2>(c, m, p0, p1); break;
    case 1: rows_vnni<1>(c, m, p0, p1); break;
    default: break;
  }
}

// ---- AMX ----
thread_local std::vector<int8_t> t_bw, t_apad;

// Rows [m0, m1) × panels [p0, p1) (p1 − p0 ≤ 4: one or two B tiles of 16 columns), K % 64 == 0.
SVDQ_TARGET_AMX void tile_amx(const Ctx8& c, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const W8A8Args& a = *c.a;
  const int64_t K = a.K, KC = K / 64;
  // B tiles [2][KC][16 k4][16 columns][4]: two panels side by side per k4 row
  if (static_cast<int64_t>(t_bw.size()) < 2 * K * 16) t_bw.resize(2 * K * 16);
  for (int t = 0; t < 2; ++t) {
    const int8_t* pa = panel(c, p0 + 2 * t);
    const int8_t* pb = panel(c, p0 + 2 * t + 1);
    int8_t* dst = t_bw.data() + t * K * 16;
    for (int64_t k4 = 0; k4 < K / 4; ++k4) {
      std::memcpy(dst + k4 * 64, pa + k4 * 32, 32);
      std::memcpy(dst + k4 * 64 + 32, pb + k4 * 32, 32);
    }
  }
  const TileConfig cfg = full_tiles();
  _tile_loadconfig(&cfg);
  const int8_t* b0 = t_bw.data();
  const int8_t* b1 = b0 + K * 16;
  alignas(64) int32_t cb[4][256];
  for (int64_t m = m0; m < m1; m += 32) {
    const int rows_ = static_cast<int>(std::min<int64_t>(32, m1 - m));
    const int8_t* abase = a.codes + m * K;
    if (m + 32 > a.M) {
      if (static_cast<int64_t>(t_apad.size()) < 32 * K) t_apad.resize(32 * K);
      std::memset(t_apad.data(), 0, 32 * K);
      std::memcpy(t_apad.data(), abase, (a.M - m) * K);
      abase = t_apad.data();
    }
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t kc = 0; kc < KC; ++kc) {
      _tile_loadd(4, abase + kc * 64, K);
      _tile_loadd(5, abase + 16 * K + kc * 64, K);
      _tile_loadd(6, b0 + kc * 1024, 64);
      _tile_loadd(7, b1 + kc * 1024, 64);
      _tile_dpbssd(0, 4, 6);
      _tile_dpbssd(1, 4, 7);
      _tile_dpbssd(2, 5, 6);
      _tile_dpbssd(3, 5, 7);
    }
    _tile_stored(0, cb[0], 64);
    _tile_stored(1, cb[1], 64);
    _tile_stored(2, cb[2], 64);
    _tile_stored(3, cb[3], 64);
    for (int h = 0; h < 2 && 16 * h < rows_; ++h) {
      const int rr = std::min(16, rows_ - 16 * h);
      for (int i = 0; i < rr; ++i) {
        __m512i acc[1][2] = {{_mm512_load_si512(cb[2 * h] + 16 * i), _mm512_load_si512(cb[2 * h + 1] + 16 * i)}};
        store_tile<1, 2>(c, m + 16 * h + i, p0 * kPanel, acc, false);
      }
    }
  }
  _tile_release();
}

// Blocked AMX task (M > kSkinnyRows), the int4p2 GEMM's plan (gemm_p2_amx.cc): rows [m0, m1) × panels [p0, p1)
// (up to kTaskRows × kTaskCols outputs) over the whole K in chunks of `csteps` 64-k steps. Per chunk the task's
// weight columns are copied into B tiles [column block][step][2][16 k4][16 columns][4] (an L2-resident buffer),
// then its row blocks (outer) run over its column blocks (inner): the row block's 32 × 64·csteps activation bytes
// stay in L1, the int32 partial sums of all but the last chunk go to an L2 buffer, and the next chunk's activation
// rows and weight panels are prefetched into L2. The task reads its operands from L3 once: K·(rows + cols) bytes
// for rows·cols·K multiply-adds, where the 128-row × 32-column tasks re-read the activations per 32 columns
// (≈ 26 multiply-adds per byte; this Xeon's L3 feeds one core ≈ 9–10 GB/s).
constexpr int64_t kTaskRows = 384, kTaskCols = 384, kChunkSteps = 8, kSkinnyRows = 128;

struct Blocked {
  std::vector<int8_t> bt, apad;
  std::vector<int32_t> c;
};
thread_local Blocked t_blk;

SVDQ_TARGET_AMX void task_amx(const Ctx8& c, int64_t m0, int64_t m1, int64_t p0, int64_t p1, int64_t chunks,
                              int64_t csteps) {
  const W8A8Args& a = *c.a;
  const int64_t K = a.K, KC = K / 64;
  const int64_t ib_n = (m1 - m0 + 31) / 32, jb_n = (p1 - p0 + 3) / 4;
  int8_t* bt = align64(t_blk.bt, static_cast<size_t>(jb_n * csteps * 2048));
  int32_t* cbuf = chunks > 1 ? align64(t_blk.c, static_cast<size_t>(ib_n * jb_n * 1024)) : nullptr;
  // the last row block, when partial, from a zero-padded copy of its rows
  const int8_t* apad = nullptr;
  const int64_t tail = (m1 - m0) % 32;
  if (tail) {
    int8_t* ap = align64(t_blk.apad, static_cast<size_t>(32 * K));
    std::memset(ap, 0, 32 * K);
    std::memcpy(ap, a.codes + (m1 - tail) * K, tail * K);
    apad = ap;
  }
  const TileConfig cfg = full_tiles();
  _tile_loadconfig(&cfg);
  alignas(64) int32_t cb[4][256];
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t s0 = ch * csteps, s1 = std::min(KC, s0 + csteps);
    if (s0 >= s1) break;
    const bool first = ch == 0, last = s1 == KC;
    const int64_t ns = s1 - s0;
    // B tiles of the chunk: row r of step s = k4 16s + r, panels (pa, pb) side by side
    for (int64_t jb = 0; jb < jb_n; ++jb)
      for (int t = 0; t < 2; ++t) {
        const int8_t* pa = panel(c, p0 + 4 * jb + 2 * t);
        const int8_t* pb = panel(c, p0 + 4 * jb + 2 * t + 1);
        for (int64_t s = 0; s < ns; ++s) {
          int8_t* dst = bt + ((jb * csteps + s) * 2 + t) * 1024;
          const int64_t k40 = (s0 + s) * 16;
          for (int r = 0; r < 16; ++r) {
            std::memcpy(dst + r * 64, pa + (k40 + r) * 32, 32);
            std::memcpy(dst + r * 64 + 32, pb + (k40 + r) * 32, 32);
          }
        }
      }
    ChunkPrefetch pf;  // the next chunk: each row's 64·steps bytes, each panel's 16·steps k4 rows of 32 bytes
    if (!last) {
      const int64_t n1s = std::min(KC, s1 + csteps);
      pf.list[0] = {reinterpret_cast<const char*>(a.codes + m0 * K + s1 * 64), (n1s - s1) * 64, K, m1 - m0};
      pf.list[1] = {reinterpret_cast<const char*>(a.qweight + p0 * K * kPanel + s1 * 512), (n1s - s1) * 512,
                    K * kPanel, std::min(p1, c.NP) - p0};
      pf.plan(ib_n * jb_n * ns);
    }
    for (int64_t ib = 0; ib < ib_n; ++ib) {
      const int64_t m = m0 + 32 * ib;
      const bool pad = apad && ib == ib_n - 1;
      const int8_t* abase = (pad ? apad : a.codes + m * K) + s0 * 64;
      for (int64_t jb = 0; jb < jb_n; ++jb) {
        int32_t* cc = cbuf ? cbuf + (ib * jb_n + jb) * 1024 : nullptr;
        c_tiles_resume(cc, first);
        const int8_t* ap = abase;
        const int8_t* bp = bt + jb * csteps * 2048;
        for (int64_t s = 0; s < ns; ++s) {
          pf.step();
          _tile_loadd(4, ap, K);
          _tile_loadd(6, bp, 64);
          _tile_dpbssd(0, 4, 6);
          _tile_loadd(7, bp + 1024, 64);
          _tile_dpbssd(1, 4, 7);
          _tile_loadd(5, ap + 16 * K, K);
          _tile_dpbssd(2, 5, 6);
          _tile_dpbssd(3, 5, 7);
          ap += 64;
          bp += 2048;
        }
        if (!last) {
          c_tiles_park(cc);
          continue;
        }
        _tile_stored(0, cb[0], 64);
        _tile_stored(1, cb[1], 64);
        _tile_stored(2, cb[2], 64);
        _tile_stored(3, cb[3], 64);
        const int rows_ = static_cast<int>(std::min<int64_t>(32, m1 - m));
        const int64_t pj = p0 + 4 * jb;
        if (pj >= c.NP) continue;
        for (int h = 0; h < 2 && 16 * h < rows_; ++h) {
          const int rr = std::min(16, rows_ - 16 * h);
          for (int i = 0; i < rr; ++i) {
            __m512i acc[1][2] = {{_mm512_load_si512(cb[2 * h] + 16 * i), _mm512_load_si512(cb[2 * h + 1] + 16 * i)}};
            store_tile<1, 2>(c, m + 16 * h + i, pj * kPanel, acc, false);
          }
        }
      }
    }
  }
  _tile_release();
}

}  // namespace

// Entry of the AVX-512 and AMX paths (called by gemm_w8a8 when the active path is one of them).
void gemm_w8a8_x86(const W8A8Args& a, bool amx) {
  Ctx8 c;
  c.a = &a;
  c.NP = (a.N + kPanel - 1) / kPanel;
  amx = amx && a.K % 64 == 0;  // tiles take 64 k per step; other K run the VNNI kernel
  std::vector<int8_t> zeros(a.K * kPanel, 0);
  c.zeros = zeros.data();
  std::vector<int32_t> colsum;
  if (!amx) {
    colsum.assign(c.NP * kPanel + 16, 0);
    parallel_for(c.NP, [&](int64_t p, int) {
      const int8_t* w = a.qweight + p * a.K * kPanel;
      for (int64_t k4 = 0; k4 < a.K / 4; ++k4)
        for (int col = 0; col < kPanel; ++col)
          for (int t = 0; t < 4; ++t) colsum[p * kPanel + col] += w[(k4 * kPanel + col) * 4 + t];
    });
  }
  c.colsum = colsum.data();
  if (amx && a.M > kSkinnyRows) {  // the blocked plan (task_amx)
    const int64_t KC = a.K / 64;
    // Tile rows of codes must not straddle cache lines (half the tile load rate, gemm_w4a4.cc): when the caller's
    // codes are not 64-byte aligned (Node's large ArrayBuffers start 16 bytes into a page), the tiles read an aligned
    // copy (K is a multiple of 64 here, so every row of it is aligned too). Measured on the dev Xeon (kernel_times
    // w8a8, 1 thread, thread CPU time): 12.7 → 11.4 ms at M = 1024, K = N = 3072; 273 → 240 ms at M = 4096, K = 12288.
    std::vector<int8_t> acopy;
    W8A8Args aligned_args;
    if ((reinterpret_cast<uintptr_t>(a.codes) & 63) != 0) {
      int8_t* dst = align64(acopy, static_cast<size_t>(a.M * a.K));
      parallel_for((a.M + 63) / 64, [&](int64_t t, int) {
        const int64_t r0 = t * 64, r1 = std::min(a.M, r0 + 64);
        std::memcpy(dst + r0 * a.K, a.codes + r0 * a.K, (r1 - r0) * a.K);
      });
      aligned_args = a;
      aligned_args.codes = dst;
      c.a = &aligned_args;
    }
    int64_t rows = std::min<int64_t>(kTaskRows, (a.M + 31) / 32 * 32), panels = std::min<int64_t>(kTaskCols / kPanel, (c.NP + 3) / 4 * 4);
    auto tasks = [&] { return ((a.M + rows - 1) / rows) * ((c.NP + panels - 1) / panels); };
    while (tasks() < num_threads() && (panels > 8 || rows > 64)) {  // every pool thread gets a task
      if (panels * kPanel >= rows)
        panels = (panels / 2 + 3) / 4 * 4;
      else
        rows = (rows / 2 + 31) / 32 * 32;
    }
    const int64_t chunks = KC <= kChunkSteps * 3 / 2 ? 1 : (KC + kChunkSteps - 1) / kChunkSteps;
    const int64_t csteps = (KC + chunks - 1) / chunks;
    const int64_t tn = (c.NP + panels - 1) / panels;
    parallel_for(((a.M + rows - 1) / rows) * tn, [&](int64_t t, int) {
      const int64_t m0 = (t / tn) * rows, p0 = (t % tn) * panels;
      task_amx(c, m0, std::min(a.M, m0 + rows), p0, std::min(c.NP, p0 + panels), chunks, csteps);
    });
    return;
  }
  // Tasks: AMX (M ≤ kSkinnyRows) 128 rows × 32 columns (the 32 columns' weights are copied once per task); VNNI 64
  // rows × 64 columns.
  const int64_t mb = amx ? 128 : 64, nbp = amx ? 4 : 8;
  const int64_t mt = (a.M + mb - 1) / mb, nt = (c.NP + nbp - 1) / nbp;
  parallel_for(mt * nt, [&](int64_t t, int) {
    const int64_t nb = t / mt, mi = t % mt;
    const int64_t m0 = mi * mb, m1 = std::min(a.M, m0 + mb);
    const int64_t p0 = nb * nbp, p1 = std::min(c.NP, p0 + nbp);
    if (amx)
      tile_amx(c, m0, m1, p0, p1);
    else
      tile_vnni(c, m0, m1, p0, p1);
  });
}

}  // namespace svdq
#endif  // SVDQ_X86
