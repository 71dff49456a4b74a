// The bf16 low-rank branch of the int4p2 layer (p2_layer.h Branch::Bf16, SVDQuant §4: the branch in 16 bit with
// f32 sums): bf16(L_down) packed as tdpbf16ps B tiles once per layer, and the down-projection
// lact = bf16(x)·bf16(L_down)ᵀ per block of ≤ 32 rows, run inside the activation pass (act_quant_p2.cc) on
//   AMX-BF16: the activation pass's first read of each row also writes bf16(x) into the block's A tiles (x is read
//             from memory once, as without the branch: a separate conversion pass cost 1.3 ms more at M = 1024,
//             K = N = 3072 and twice the x traffic at K = 12288); then 2 × 2 C tiles (32 rows × 32 ranks) per rank
//             group over all of K (down_bf16_amx_tiles);
//   AVX-512:  the f32 outer-product kernel of lowrank_down.h on bf16-rounded copies of x and L_downᵀ (exact
//             products, the same f32 sums);
//   scalar:   float64 sums of the bf16 products.
// tdpbf16ps treats bf16 subnormal inputs as zero and flushes products below 2^-126 (measured on the dev Xeon:
// 2^-63·2^-64 added to 0 or to 1.5·2^-126 leaves it unchanged), so a row block holding a row with max |x| < 2^-40
// runs again (down_bf16_amx) with each row scaled by 2^s (max |x|·2^s in [0.5, 1), s ≤ 126; exact) before
// rounding, one K chunk (kChunk 32-column steps, 16 KiB, in L1) at a time, its sums divided by 2^s.
#include "x86.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "amx_partial.h"
#include "p2_layer.h"
#include "simd.h"

#define SVDQ_TARGET_P2BF \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,amx-tile,amx-bf16")))

namespace svdq {
namespace p2 {

namespace {

#if SVDQ_X86
constexpr int64_t kChunk = 8;  // 32-column K steps per converted chunk of x (32 rows × 256 bf16 = 16 KiB)
#endif  // SVDQ_X86

// Element (r, k) of the packed L_down (p2_layer.h ldb table).
inline int64_t ldb_at(int64_t r, int64_t k, int64_t RB) {
  return ((k / 32) * RB + r / 16) * 512 + ((k % 32) / 2) * 32 + (r % 16) * 2 + k % 2;
}

#if SVDQ_X86
struct Scratch {
  std::vector<uint16_t> xa;  // [kChunk][2][16][32] bf16 A tiles of the current chunk
  std::vector<float> c;      // [rank groups][4][16][16] parked C tiles
};
thread_local Scratch t_scratch;

// 2^n for n in [-126, 127].
inline float pow2f(int n) {
  const uint32_t u = static_cast<uint32_t>(n + 127) << 23;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The row's power-of-two pre-scale exponent s (0 unless 0 < max |x| < 2^-40).
SVDQ_TARGET_P2BF int row_shift(const float* x, int64_t K) {
  const __m512 absm = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  __m512 m = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) m = _mm512_max_ps(m, _mm512_and_ps(_mm512_loadu_ps(x + k), absm));
  const float amax = _mm512_reduce_max_ps(m);
  if (!(amax > 0.f) || !(amax < 0x1p-40f)) return 0;  // zero, NaN (the row fails later), or no underflow risk
  int e = 0;
  std::frexp(amax, &e);  // amax = f·2^e, f in [0.5, 1)
  return std::min(126, -e);
}
#endif  // SVDQ_X86

}  // namespace

uint16_t bf16_round(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float bf16_widen(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void pack_down_bf16(const float* ldown, int64_t R, int64_t K, uint16_t* ldb) {
  const int64_t Rp = round_up(R, 16), RB = Rp / 16;
  std::memset(ldb, 0, static_cast<size_t>(K * Rp) * sizeof(uint16_t));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t k = 0; k < K; ++k) ldb[ldb_at(r, k, RB)] = bf16_round(ldown[r * K + k]);
}

const float* ldt_of_ldb(const uint16_t* ldb, int64_t R, int64_t K, std::vector<float>& buf) {
  const int64_t Rp = round_up(R, 16), RB = Rp / 16;
  float* t = align64(buf, static_cast<size_t>(K * Rp));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t r = 0; r < Rp; ++r) t[k * Rp + r] = bf16_widen(ldb[ldb_at(r, k, RB)]);
  return t;
}

void round_rows_bf16(const float* x, int64_t ldx, int rows, int64_t K, float* dst) {
  for (int i = 0; i < rows; ++i)
    for (int64_t k = 0; k < K; ++k) dst[i * K + k] = bf16_widen(bf16_round(x[i * ldx + k]));
}

void down_bf16_scalar(const float* x, int64_t ldx, int rows, int64_t K, const uint16_t* ldb, int64_t R, float* lact,
                      int64_t ldl) {
  const int64_t RB = round_up(R, 16) / 16;
  for (int i = 0; i < rows; ++i)
    for (int64_t r = 0; r < R; ++r) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += static_cast<double>(bf16_widen(bf16_round(x[i * ldx + k]))) * bf16_widen(ldb[ldb_at(r, k, RB)]);
      lact[i * ldl + r] = static_cast<float>(s);
    }
}

#if SVDQ_X86
namespace {

// One 32-column K step of a 32-row block: A tiles 4, 5 (rows 0–15, 16–31) from ap, B tiles 6 (ranks 0–15) and, with
// `two`, 7 (ranks 16–31) from bp, into the 2×2 C tiles 0–3 (amx_partial.h).
SVDQ_TARGET_P2BF inline __attribute__((always_inline)) void tile_step(const uint16_t* ap, const uint16_t* bp, bool two) {
  _tile_loadd(4, ap, 64);
  _tile_loadd(6, bp, 64);
  _tile_dpbf16ps(0, 4, 6);
  _tile_loadd(5, ap + 512, 64);
  _tile_dpbf16ps(2, 5, 6);
  if (two) {
    _tile_loadd(7, bp + 512, 64);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(3, 5, 7);
  }
}

// One block of ≤ 32 rows, every row pre-scaled by 2^row_shift, x converted one K chunk at a time.
SVDQ_TARGET_P2BF void down_block_amx(const float* x, int64_t ldx, int rows, int64_t K, const uint16_t* ldb, int64_t R,
                                     float* lact, int64_t ldl) {
  const int64_t RB = round_up(R, 16) / 16, KC = K / 32, groups = (RB + 1) / 2;
  Scratch& s = t_scratch;
  uint16_t* xa = align64(s.xa, kChunk * 1024);
  float* cb = align64(s.c, static_cast<size_t>(groups * 1024));
  if (rows < 32) std::memset(xa, 0, kChunk * 1024 * sizeof(uint16_t));  // pad rows stay zero over the chunks
  __m512 scale[32];
  float unscale[32];
  for (int i = 0; i < rows; ++i) {
    const int sh = row_shift(x + i * ldx, K);
    scale[i] = _mm512_set1_ps(pow2f(sh));
    unscale[i] = pow2f(-sh);
  }
  const TileConfig cfg = full_tiles();
  _tile_loadconfig(&cfg);
  for (int64_t c0 = 0; c0 < KC; c0 += kChunk) {
    const int64_t steps = std::min(kChunk, KC - c0);
    for (int64_t st = 0; st < steps; ++st)
      for (int i = 0; i < rows; ++i) {
        const float* src = x + i * ldx + (c0 + st) * 32;
        uint16_t* dst = xa + (st * 2 + i / 16) * 512 + (i % 16) * 32;
        const __m512 lo = _mm512_loadu_ps(src), hi = _mm512_loadu_ps(src + 16);
        _mm256_store_si256(reinterpret_cast<__m256i*>(dst), bf16_round16(_mm512_mul_ps(lo, scale[i])));
        _mm256_store_si256(reinterpret_cast<__m256i*>(dst + 16), bf16_round16(_mm512_mul_ps(hi, scale[i])));
      }
    for (int64_t g = 0; g < groups; ++g) {
      const bool two = 2 * g + 1 < RB;
      float* cg = cb + g * 1024;
      c_tiles_resume(cg, c0 == 0);
      for (int64_t st = 0; st < steps; ++st)
        tile_step(xa + st * 1024, ldb + ((c0 + st) * RB + 2 * g) * 512, two);
      c_tiles_park(cg);
    }
  }
  _tile_release();
  // C tile t of group g: rows 16·(t / 2) + i, ranks 32g + 16·(t % 2) + j at cb[g·1024 + t·256 + 16i + j]
  for (int i = 0; i < rows; ++i)
    for (int64_t r = 0; r < R; ++r) {
      const int64_t g = r / 32, t = (i / 16) * 2 + (r % 32) / 16;
      lact[i * ldl + r] = cb[g * 1024 + t * 256 + (i % 16) * 16 + r % 16] * unscale[i];
    }
}

}  // namespace

// Each row pre-scaled (a first pass over x for the row maxima): the activation pass calls it for a row block with a
// tiny row only (its fused path converts x unscaled, down_bf16_amx_tiles).
void down_bf16_amx(const float* x, int64_t ldx, int rows, int64_t K, const uint16_t* ldb, int64_t R, float* lact,
                   int64_t ldl) {
  down_block_amx(x, ldx, rows, K, ldb, R, lact, ldl);
}

SVDQ_TARGET_P2BF void down_bf16_amx_tiles(const uint16_t* xa, int rows, int64_t K, const uint16_t* ldb, int64_t R,
                                          float* lact, int64_t ldl) {
  const int64_t RB = round_up(R, 16) / 16, KC = K / 32, groups = (RB + 1) / 2;
  alignas(64) float cb[1024];
  const TileConfig cfg = full_tiles();
  _tile_loadconfig(&cfg);
  for (int64_t g = 0; g < groups; ++g) {
    const bool two = 2 * g + 1 < RB;
    c_tiles_resume(cb, true);
    for (int64_t st = 0; st < KC; ++st) tile_step(xa + st * 1024, ldb + (st * RB + 2 * g) * 512, two);
    c_tiles_park(cb);
    for (int i = 0; i < rows; ++i)
      for (int64_t r = 32 * g; r < std::min<int64_t>(R, 32 * g + 32); ++r)
        lact[i * ldl + r] = cb[((i / 16) * 2 + (r % 32) / 16) * 256 + (i % 16) * 16 + r % 16];
  }
  _tile_release();
}
#endif  // SVDQ_X86

}  // namespace p2
}  // namespace svdq
