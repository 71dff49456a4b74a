// f32 GEMM on split-bf16 operands, AMX-BF16 path (layout and contract in gemm_f32_amx.h).
//
// Why: one tdpbf16ps multiplies 16×32 by 32×16 bf16 (8192 MACs) in 16 cycles (Intel optimization manual, AMX
// chapter: 1024 bf16 FLOP/cycle/core) against 32 f32 FMA lanes per cycle for AVX-512: 16x the products. A bf16 has 8
// significant bits, so x ≈ x₀ + x₁ (+ x₂) with each part the bf16 rounding of what the parts before left (S parts
// carry ≈ 8·S bits); products of two bf16 are exact in f32 and tdpbf16ps sums them in f32. x·w is then the sum of
// the part products xᵢ·wⱼ with i + j < S: S = 3 (6 products, dropped terms ≤ 2⁻²⁴ relative) is f32-class; S = 2
// (3 products, ≈ 2⁻¹⁶ relative) is an explicit option.
//
// Blocking: a task is a block of up to kSlab rows × all columns. It splits its rows of X (all of K) into A tiles
// (split_bf16.h) in a buffer of its thread, then per 128 columns (task_amx) runs K in blocks of chunks_per_block(S)
// chunks of 32: per 32-column pair, per 32-row pair, C tiles 0-3 (32×32 f32) start at zero (first block) or at the
// task's f32 partial sums, run over the block's chunks (chunk_products), and go back to the partial sums — or,
// after the last block, to a 32×32 buffer and from there to Y with bias and GELU.
// Measured on the dev Xeon (1 thread, CPU time, M = 1280, K = 768, N = 3072, S = 3, f32 path 46 ms): blocks of 192
// rows and K blocks of 768 26 ms; K blocks of 128 (the B tiles of a column pair L1-resident, C through the partial
// sums every 4 chunks) 35 ms; blocks of 512 rows 34 ms. One tdpbf16ps takes ≈ 16.5 cycles on constant zero tiles
// in L1 and ≈ 20.5 on random bf16 data in L1 (a microbenchmark); here both operands stream from L2 (≈ 36 cycles).
#include "gemm_f32_amx.h"

#include "x86.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "split_bf16.h"
#include "common.h"
#include "simd.h"

namespace svdq {

namespace {

using namespace splitbf16;

constexpr int64_t kNT = 128;        // columns per task (4 column pairs)
constexpr int64_t kSlab = 192;      // rows per task (6 row pairs: their A tiles of a K block, 864 KiB, stay in L2)
constexpr int64_t kPanelCols = 16;  // f32 panel width of gemm_f32 (layout.ts, PackedF32)

// Chunks per K block: 768 k for S = 3 (the A tiles of a task's K block: 192 rows × 768 × 3 parts × 2 bytes = 864 KiB,
// a column pair's B tiles 144 KiB, both in L2), the same bytes for S = 2.
constexpr int64_t chunks_per_block(int S) { return S == 3 ? 24 : 36; }

#if SVDQ_X86
// [rows][columns] f32 partial sums of a task between K blocks (+64 B alignment), per thread.
thread_local std::vector<float> t_sums;

// Bias, GELU and the store of a 32×32 block (rows < nrows, columns < ncols) from cb [32][32] to Y.
SVDQ_TARGET_SPLIT_BF16 void store_block(const float* cb, int nrows, int ncols, const float* bias, bool gelu, float* y,
                                      int64_t ldy) {
  const __mmask16 m0 = static_cast<__mmask16>((1u << std::min(16, ncols)) - 1u);
  const __mmask16 m1 = static_cast<__mmask16>((1u << std::max(0, std::min(16, ncols - 16))) - 1u);
  const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  const __m512 b1 = bias && m1 ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
  for (int i = 0; i < nrows; ++i) {
    __m512 v0 = _mm512_add_ps(_mm512_load_ps(cb + i * 32), b0);
    __m512 v1 = _mm512_add_ps(_mm512_load_ps(cb + i * 32 + 16), b1);
    if (gelu) {
      v0 = gelu512(v0);
      v1 = gelu512(v1);
    }
    _mm512_mask_storeu_ps(y + i * ldy, m0, v0);
    if (m1) _mm512_mask_storeu_ps(y + i * ldy + 16, m1, v1);
  }
}

// Splits rows [r0, r0 + 32) (rows ≥ M read as zero) × all of K (k ≥ K zero) of X into S parts, A tile layout:
// ap[((rb·CH + c)·S + s)·512 + i·32 + t] = part s of X[r0 + 16rb + i, 32c + t] for rb = 0, 1.
template <int S>
SVDQ_TARGET_SPLIT_BF16 void split_rows(const float* x, int64_t M, int64_t K, int64_t r0, uint16_t* ap) {
  const int64_t CH = round_up(K, kChunk) / kChunk;
  split_a<S>(x, K, M, K, r0, 32, 0, CH, ap);
}

// One task: rows [r0, r1) of the slab whose A tiles start at row s0 (aslab), columns [c0, c1) (c0 a multiple of
// 32), all of K.
template <int S>
SVDQ_TARGET_SPLIT_BF16 void task_amx(const F32SplitArgs& P, const uint16_t* aslab, int64_t s0, int64_t r0, int64_t r1,
                                   int64_t c0, int64_t c1) {
  const int64_t CH = round_up(P.K, kChunk) / kChunk, KB = chunks_per_block(S), panel_stride = CH * S * kTile;
  const int64_t rows = round_up(r1 - r0, 32), ldc = round_up(c1 - c0, 32);
  float* cbuf = CH > KB ? align64(t_sums, rows * ldc) : nullptr;
  alignas(64) float cb[32 * 32];
  const TileConfig cfg = full_tiles();
  _tile_loadconfig(&cfg);
  for (int64_t k0 = 0; k0 < CH; k0 += KB) {
    const int64_t nch = std::min(KB, CH - k0);
    const bool first = k0 == 0, last = k0 + nch == CH;
    for (int64_t n = c0; n < c1; n += 32) {
      const uint16_t* bp = P.wsplit + (n / 16) * panel_stride + k0 * S * kTile;
      for (int64_t r = 0; r < rows; r += 32) {
        const uint16_t* a = aslab + ((r0 - s0 + r) / 16 * CH + k0) * S * kTile;
        float* cr = cbuf ? cbuf + r * ldc + (n - c0) : nullptr;
        if (first) {
          _tile_zero(0);
          _tile_zero(1);
          _tile_zero(2);
          _tile_zero(3);
        } else {
          _tile_loadd(0, cr, ldc * 4);
          _tile_loadd(1, cr + 16, ldc * 4);
          _tile_loadd(2, cr + 16 * ldc, ldc * 4);
          _tile_loadd(3, cr + 16 * ldc + 16, ldc * 4);
        }
        // after the last chunk: the next row pair's first chunk (B: the same column pair's first chunk)
        const uint16_t* an = r + 32 < rows ? a + 2 * CH * S * kTile : a;
        for (int64_t c = 0; c < nch; ++c) {
          const bool more = c + 1 < nch;
          chunk_products<S>(a + c * S * kTile, panel_stride, bp + c * S * kTile, panel_stride,
                            more ? a + (c + 1) * S * kTile : an, more ? bp + (c + 1) * S * kTile : bp);
        }
        if (last) {
          _tile_stored(0, cb, 128);
          _tile_stored(1, cb + 16, 128);
          _tile_stored(2, cb + 16 * 32, 128);
          _tile_stored(3, cb + 16 * 32 + 16, 128);
          __asm__ volatile("" : : : "memory");  // GCC's tile intrinsics declare no memory access: order the reads of cb
          const int nrows = static_cast<int>(std::min<int64_t>(32, r1 - r0 - r));
          const int ncols = static_cast<int>(std::min<int64_t>(32, c1 - n));
          store_block(cb, nrows, ncols, P.bias ? P.bias + n : nullptr, P.gelu, P.y + (r0 + r) * P.N + n, P.N);
        } else {
          _tile_stored(0, cr, ldc * 4);
          _tile_stored(1, cr + 16, ldc * 4);
          _tile_stored(2, cr + 16 * ldc, ldc * 4);
          _tile_stored(3, cr + 16 * ldc + 16, ldc * 4);
        }
      }
    }
  }
  _tile_release();
}

// Tasks are row blocks of up to kSlab rows × all columns: a task splits its own rows of X (all of K) into a buffer
// of its thread and runs every 128-column block on them (task_amx). Splitting X once per call into one shared slab
// instead (each task reading all rows of the slab) cost 25 % more CPU time with 2 threads (1280×768×768: 8.6 vs
// 6.9 ms): half of the slab's A tiles sat in the other core's L2. Splitting per 128-column task split X once per
// task: ≈ 0.6 cycles per element and part, as much as the tile products of 128 columns.
thread_local std::vector<uint16_t> t_rows;

template <int S>
SVDQ_TARGET_SPLIT_BF16 void rows_task(const F32SplitArgs& P, int64_t r0, int64_t r1) {
  const int64_t CH = round_up(P.K, kChunk) / kChunk, rows = round_up(r1 - r0, 32);
  uint16_t* ap = align64(t_rows, rows * CH * S * kTile / 16);
  for (int64_t r = 0; r < rows; r += 32) split_rows<S>(P.x, P.M, P.K, r0 + r, ap + r / 16 * CH * S * kTile);
  for (int64_t c0 = 0; c0 < P.N; c0 += kNT) task_amx<S>(P, ap, r0, r0, r1, c0, std::min(P.N, c0 + kNT));
}

template <int S>
void run_amx(const F32SplitArgs& P) {
  // Rows split evenly into blocks of at most kSlab (a multiple of 32) until the pool has 2 tasks per thread.
  const int threads = num_threads();
  int64_t mt = (P.M + kSlab - 1) / kSlab;
  while (mt < 2 * threads && round_up((P.M + mt) / (mt + 1), 32) < round_up((P.M + mt - 1) / mt, 32)) ++mt;
  const int64_t mtr = round_up((P.M + mt - 1) / mt, 32);
  parallel_for((P.M + mtr - 1) / mtr, [&](int64_t t, int) { rows_task<S>(P, t * mtr, std::min(P.M, (t + 1) * mtr)); });
}
#endif  // SVDQ_X86

// The non-AMX paths: f32 panels rebuilt from the parts (Σ parts, exact for S = 3), then gemm_f32.
void run_rebuilt(const F32SplitArgs& P) {
  const int64_t Kp = round_up(P.K, kChunk), CH = Kp / kChunk, NP16 = (P.N + kPanelCols - 1) / kPanelCols;
  std::vector<float> panel(NP16 * P.K * kPanelCols);
  parallel_for(NP16, [&](int64_t p, int) {
    const uint16_t* src = P.wsplit + p * CH * P.S * kTile;
    float* dst = panel.data() + p * P.K * kPanelCols;
    for (int64_t k = 0; k < P.K; ++k) {
      const int64_t c = k / kChunk, kk = (k % kChunk) / 2, tt = k % 2;
      for (int64_t j = 0; j < kPanelCols; ++j) {
        float sum = 0.f;
        for (int s = P.S - 1; s >= 0; --s) {  // smallest part first: exact either way for S = 3
          const uint32_t b = static_cast<uint32_t>(src[(c * P.S + s) * kTile + kk * 32 + j * 2 + tt]) << 16;
          float v;
          std::memcpy(&v, &b, 4);
          sum += v;
        }
        dst[k * kPanelCols + j] = sum;
      }
    }
  });
  F32Args a{P.x, P.M, P.K, P.N, panel.data(), P.bias, P.gelu, P.y};
  gemm_f32(a);
}


}  // namespace

bool f32_split_uses_amx() { return isa_at_least(Isa::Amx) && cpu_has_amx_bf16(); }

int64_t f32_split_elems(int64_t N, int64_t K, int S) { return round_up(N, 32) * round_up(K, kChunk) * S; }

void pack_f32_split(const float* w, int64_t N, int64_t K, int S, uint16_t* out) {
  if (S != 2 && S != 3) throw KernelError("packF32Split: splits must be 2 or 3");
  parallel_for(round_up(N, 32) / 16, [&](int64_t p, int) { pack_b(w, K, 1, 1.f, N, K, S, p, p + 1, out); });
}

void gemm_f32_split(const F32SplitArgs& a) {
  if (a.S != 2 && a.S != 3) throw KernelError("gemmF32Split: splits must be 2 or 3");
  if (a.M == 0) return;
  if (!f32_split_uses_amx()) return run_rebuilt(a);  // always taken off x86
#if SVDQ_X86
  if (a.S == 3)
    run_amx<3>(a);
  else
    run_amx<2>(a);
#endif  // SVDQ_X86
}

}  // namespace svdq
