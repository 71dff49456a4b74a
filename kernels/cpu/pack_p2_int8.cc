// The band operands of the int4p2 layer on AMX-INT8 (p2_int8.h): per row, the greedy 5-level windows over its groups'
// exponent offsets, the int8 values q·2^shift written into the tiles tdpbssd loads, and the power-of-two factors.
#include "x86.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "p2_int8.h"
#include "simd.h"

namespace svdq {
namespace p2i8 {

namespace {

constexpr uint8_t kNone = 255;

// The power of two c with sx = S'·2^c (p2_layer.h: S' = S, or 1 for an all-zero row); both are f32 powers of two
// times S, so the quotient is exact.
int shift_of(float s_scaled, float S) {
  const double r = static_cast<double>(s_scaled) / (S > 0 ? static_cast<double>(S) : 1.0);
  return std::ilogb(r);
}

#if SVDQ_X86
// 64 codes q in [−8, 7] times 2^s (s in [0, 4]) as int8, by one byte shuffle of the table of q·2^s per q & 15.
SVDQ_TARGET_AVX512 inline __m512i shifted_codes(const int8_t* q, int s) {
  alignas(64) static const int8_t kTables[5][64] = {
#define SVDQ_TABLE(S)                                                                                                \
  {0,       1 << S,  2 << S,  3 << S,  4 << S,  5 << S,  6 << S,  7 << S,  (-8 * (1 << S)), (-7 * (1 << S)),          \
   (-6 * (1 << S)), (-5 * (1 << S)), (-4 * (1 << S)), (-3 * (1 << S)), (-2 * (1 << S)), (-1 * (1 << S)),            \
   0,       1 << S,  2 << S,  3 << S,  4 << S,  5 << S,  6 << S,  7 << S,  (-8 * (1 << S)), (-7 * (1 << S)),          \
   (-6 * (1 << S)), (-5 * (1 << S)), (-4 * (1 << S)), (-3 * (1 << S)), (-2 * (1 << S)), (-1 * (1 << S)),            \
   0,       1 << S,  2 << S,  3 << S,  4 << S,  5 << S,  6 << S,  7 << S,  (-8 * (1 << S)), (-7 * (1 << S)),          \
   (-6 * (1 << S)), (-5 * (1 << S)), (-4 * (1 << S)), (-3 * (1 << S)), (-2 * (1 << S)), (-1 * (1 << S)),            \
   0,       1 << S,  2 << S,  3 << S,  4 << S,  5 << S,  6 << S,  7 << S,  (-8 * (1 << S)), (-7 * (1 << S)),          \
   (-6 * (1 << S)), (-5 * (1 << S)), (-4 * (1 << S)), (-3 * (1 << S)), (-2 * (1 << S)), (-1 * (1 << S))}
      SVDQ_TABLE(0), SVDQ_TABLE(1), SVDQ_TABLE(2), SVDQ_TABLE(3), SVDQ_TABLE(4)};
#undef SVDQ_TABLE
  const __m512i idx = _mm512_and_si512(_mm512_loadu_si512(q), _mm512_set1_epi8(15));
  return _mm512_shuffle_epi8(_mm512_load_si512(kTables[s]), idx);
}
#endif  // SVDQ_X86

// Per-row band data of a tensor: bands [rows], top, start [rows][3], band / shift [rows][G].
struct RowBands {
  std::vector<uint8_t> nb, band, shift;
  std::vector<int> top, start;
  void resize(int64_t rows, int64_t G) {
    nb.resize(rows);
    top.resize(rows);
    start.resize(rows * 3);
    band.resize(rows * G);
    shift.resize(rows * G);
  }
};

void bands_of_rows(const int8_t* codes, const int8_t* exponents, int64_t rows, int64_t K, RowBands& b) {
  const int64_t G = K / kGroup;
  b.resize(rows, G);
  parallel_for((rows + 63) / 64, [&](int64_t t, int) {
    for (int64_t r = t * 64; r < std::min(rows, t * 64 + 64); ++r)
      b.nb[r] = static_cast<uint8_t>(row_bands(codes + r * K, exponents + r * G, K, b.top[r], &b.start[r * 3],
                                               &b.band[r * G], &b.shift[r * G]));
  });
}

}  // namespace

int row_bands(const int8_t* q, const int8_t* e, int64_t K, int& top, int start[3], uint8_t* band, uint8_t* shift) {
  const int64_t G = K / kGroup;
  top = -1000;
  for (int64_t g = 0; g < G; ++g) {
    bool nz = e[g] != p2::kExpMin;  // e > −9: the group's largest |q| is ≥ 3 (p2.ts: amax / (S·2^e) > 3.5 / 2)
    if (!nz)
      for (int i = 0; i < kGroup; ++i)
        if (q[g * kGroup + i] != 0) {
          nz = true;
          break;
        }
    band[g] = nz ? 0 : kNone;
    if (nz) top = std::max(top, static_cast<int>(e[g]));
  }
  if (top == -1000) {
    for (int64_t g = 0; g < G; ++g) shift[g] = 0;
    start[0] = start[1] = start[2] = 0;
    return 0;
  }
  uint32_t dmask = 0;
  for (int64_t g = 0; g < G; ++g)
    if (band[g] != kNone) dmask |= 1u << (top - e[g]);
  int n = 0;
  for (int d = 0, end = -1; d < 15; ++d)
    if ((dmask >> d & 1u) && d > end) {
      start[n++] = d;  // at most 3 windows cover d in [0, 14]
      end = d + 4;
    }
  for (int j = n; j < 3; ++j) start[j] = 0;
  for (int64_t g = 0; g < G; ++g) {
    if (band[g] == kNone) {
      shift[g] = 0;
      continue;
    }
    const int d = top - e[g];
    int j = 0;
    while (j + 1 < n && d >= start[j + 1]) ++j;
    band[g] = static_cast<uint8_t>(j);
    shift[g] = static_cast<uint8_t>(4 - (d - start[j]));
  }
  return n;
}

void pack_weight(const p2::PackArgs& a, const uint16_t* wop, const float* sw, Weight& o) {
  const int64_t N = a.N, K = a.K, G = K / kGroup;
  if (K > kMaxK) throw KernelError("p2i8: K above 131008 would overflow the int32 sums");
  o.N = N;
  o.K = K;
  o.Kt = p2::kt_of(K, a.R, a.branch);
  o.Np = p2::round_up(N, 32);
  RowBands b;
  bands_of_rows(a.codes, a.exponents, N, K, b);
  std::vector<int64_t> first(N + 1, 0);  // first shadow column of each row
  for (int64_t n = 0; n < N; ++n) first[n + 1] = first[n] + std::max(0, b.nb[n] - 1);
  o.Sw = first[N];
  o.Na = o.Np + p2::round_up(o.Sw, 32);
  o.w8 = align64(o.w8_store, static_cast<size_t>(o.Na * K));
  std::memset(o.w8, 0, static_cast<size_t>(o.Na * K));
  o.pw.assign(o.Na, 1.f);
  o.wpar.assign(o.Sw, 0);
  o.sw.assign(sw, sw + o.Np);
  o.swa.assign(o.Na, 0.f);
  for (int64_t n = 0; n < N; ++n) o.swa[n] = sw[n];
  parallel_for((N + 31) / 32, [&](int64_t t, int) {
    for (int64_t n = t * 32; n < std::min(N, t * 32 + 32); ++n) {
      if (b.nb[n] == 0) continue;
      const int c = shift_of(sw[n], a.row_scales[n]);
      int64_t col[3];
      for (int j = 0; j < b.nb[n]; ++j) {
        col[j] = j == 0 ? n : o.Np + first[n] + j - 1;
        o.pw[col[j]] = static_cast<float>(std::ldexp(1.0, b.top[n] - 4 - c - b.start[n * 3 + j]));
        if (j > 0) {
          o.wpar[first[n] + j - 1] = static_cast<int32_t>(n);
          o.swa[col[j]] = sw[n];
        }
      }
      for (int64_t k = 0; k < K; ++k) {
        const uint8_t bg = b.band[n * G + k / kGroup];
        if (bg == kNone) continue;
        o.w8[w8_at(col[bg], k, K)] = static_cast<int8_t>(a.codes[n * K + k] * (1 << b.shift[n * G + k / kGroup]));
      }
    }
  });
  // the branch tiles of the bf16 operand: 32-column block nb, K step K/32 + j
  const int64_t KC = o.Kt / 32, BR = (o.Kt - K) / 32;
  o.wbr = align64(o.wbr_store, static_cast<size_t>(std::max<int64_t>(1, o.Np / 32 * BR * 1024)));
  for (int64_t nb = 0; nb < o.Np / 32; ++nb)
    for (int64_t j = 0; j < BR; ++j)
      std::memcpy(o.wbr + (nb * BR + j) * 1024, wop + (nb * KC + K / 32 + j) * 1024, 2048);
}

#if SVDQ_X86
namespace {

void zero_row(int8_t* a8, int64_t m, int64_t K) {
  for (int64_t g = 0; g < K / 64; ++g) std::memset(a8 + a8_at(m, g * 64, K), 0, 64);
}

// Rows [m0, m1) of the activation operand (their shadow rows included).
SVDQ_TARGET_AVX512 void act_rows(const int8_t* codes, const float* row_scales, const float* sx, int64_t K,
                                 const RowBands& b, Act& o, int64_t m0, int64_t m1) {
  const int64_t G = K / kGroup;
  const __m512i zero = _mm512_setzero_si512();
  for (int64_t m = m0; m < m1; ++m) {
    const int nbm = b.nb[m];
    o.sxa[m] = sx[m];
    if (nbm == 0) {
      zero_row(o.a8, m, K);
      continue;
    }
    const int c = shift_of(sx[m], row_scales[m]);
    int64_t row[3];
    for (int j = 0; j < nbm; ++j) {
      row[j] = j == 0 ? m : o.Mp + o.first[m] + j - 1;
      o.pa[row[j]] = static_cast<float>(std::ldexp(1.0, b.top[m] - 4 - c - b.start[m * 3 + j]));
      if (j > 0) {
        o.apar[o.first[m] + j - 1] = static_cast<int32_t>(m);
        o.sxa[row[j]] = sx[m];
        zero_row(o.a8, row[j], K);
      }
    }
    const uint8_t* bd = &b.band[m * G];
    const uint8_t* sh = &b.shift[m * G];
    for (int64_t g = 0; g < G; ++g) {
      const uint8_t bg = bd[g];
      if (bg == kNone) {
        _mm512_store_si512(o.a8 + a8_at(m, g * 64, K), zero);
        continue;
      }
      const __m512i v = shifted_codes(codes + m * K + g * kGroup, sh[g]);
      _mm512_store_si512(o.a8 + a8_at(row[bg], g * 64, K), v);
      if (bg != 0) _mm512_store_si512(o.a8 + a8_at(m, g * 64, K), zero);
    }
  }
}

thread_local RowBands t_act_bands;
// Main rows above 2 MiB (the dev Xeon's L2 per core) are streamed: at M = 256, K = 3072 (768 KiB) cached stores
// measured 0.72 vs 0.69 ms for the activation pass (the GEMM then reads the operand from L2).
constexpr int64_t kStreamBytes = int64_t{2} << 20;
// Codes of the rows with shadow bands (quantize_act), at their row's place in [M][K]: left uninitialized, so only
// those rows' pages are touched.
thread_local std::unique_ptr<int8_t[]> t_side;
thread_local int64_t t_side_len = 0;

// The band operand's main rows written per quantized row (p2::RowSink), while its codes are in L1: a row in one band
// (or none) is written whole, by non-temporal stores for a large operand (each row's 64-byte lines are 2 KiB apart;
// at M = 1024, K = 12288 cached stores made the activation pass 0.82–0.89x the two passes, streamed ones
// 0.98–1.02x and the layer 1.04–1.07x per core); a row with shadow bands keeps its codes in `side` for the pass after the quantizer
// (shadow rows are placed by a prefix sum over all rows).
struct BandSink final : p2::RowSink {
  Act* o;
  RowBands* b;
  int8_t* side;
  int64_t K;
  bool stream;  // non-temporal stores: the operand is larger than L2
  SVDQ_TARGET_AVX512 void row(int64_t m, const int8_t* q, const int8_t* e, float) override {
    const int64_t G = K / kGroup;
    const int n = row_bands(q, e, K, b->top[m], &b->start[m * 3], &b->band[m * G], &b->shift[m * G]);
    b->nb[m] = static_cast<uint8_t>(n);
    if (n == 0) {
      zero_row(o->a8, m, K);
    } else if (n == 1) {
      const uint8_t* bd = &b->band[m * G];
      const uint8_t* sh = &b->shift[m * G];
      if (stream) {
        for (int64_t g = 0; g < G; ++g)
          _mm512_stream_si512(reinterpret_cast<__m512i*>(o->a8 + a8_at(m, g * 64, K)),
                              bd[g] == kNone ? _mm512_setzero_si512() : shifted_codes(q + g * kGroup, sh[g]));
        _mm_sfence();  // the streamed lines are visible before the pool's join (the GEMM reads them)
      } else {
        for (int64_t g = 0; g < G; ++g)
          _mm512_store_si512(o->a8 + a8_at(m, g * 64, K),
                             bd[g] == kNone ? _mm512_setzero_si512() : shifted_codes(q + g * kGroup, sh[g]));
      }
    } else {
      std::memcpy(side + m * K, q, K);
    }
  }
};

}  // namespace

int64_t quantize_act(p2::QuantArgs q, Act& o) {
  const int64_t M = q.M, K = q.K, G = K / kGroup, Mp = p2::round_up(M, 32);
  if (!q.row_scales || !q.sx) throw KernelError("p2i8: quantize_act needs row_scales and sx");
  RowBands& b = t_act_bands;
  b.resize(M, G);
  BandSink sink;
  sink.o = &o;
  sink.b = &b;
  sink.K = K;
  sink.stream = Mp * K > kStreamBytes;
  if (t_side_len < M * K) {
    t_side.reset(new int8_t[M * K]);
    t_side_len = M * K;
  }
  sink.side = t_side.get();
  // the main rows now; the storage keeps the previous call's shadow rows (moved below when more are needed)
  const int64_t have = o.a8 ? (static_cast<int64_t>(o.a8_store.size()) - 64) / K : 0;
  o.a8 = align64(o.a8_store, static_cast<size_t>(std::max(have, Mp) * K));
  q.codes = nullptr;
  q.exponents = nullptr;
  q.sink = &sink;
  const int64_t st = p2::quantize(q);
  if (st != -1) return st;
  o.M = M;
  o.Mp = Mp;
  o.first.resize(M + 1);
  o.first[0] = 0;
  for (int64_t m = 0; m < M; ++m) o.first[m + 1] = o.first[m] + std::max(0, b.nb[m] - 1);
  o.Sa = o.first[M];
  o.Ma = Mp + p2::round_up(o.Sa, 32);
  if (static_cast<int64_t>(o.a8_store.size()) < o.Ma * K + 64) {  // more shadow rows than the storage holds
    std::vector<int8_t> grown;
    int8_t* p = align64(grown, static_cast<size_t>(o.Ma * K));
    std::memcpy(p, o.a8, static_cast<size_t>(Mp * K));
    o.a8_store.swap(grown);
    o.a8 = p;
  }
  o.pa.assign(o.Ma, 1.f);
  o.sxa.assign(o.Ma, 0.f);
  o.apar.assign(o.Sa, 0);
  for (int64_t m = M; m < Mp; ++m) zero_row(o.a8, m, K);
  for (int64_t m = Mp + o.Sa; m < o.Ma; ++m) zero_row(o.a8, m, K);
  for (int64_t m = 0; m < M; ++m) {
    if (b.nb[m] >= 2) {  // main and shadow rows from the kept codes
      act_rows(t_side.get(), q.row_scales, q.sx, K, b, o, m, m + 1);
      continue;
    }
    o.sxa[m] = q.sx[m];
    if (b.nb[m] == 1)
      o.pa[m] = static_cast<float>(
          std::ldexp(1.0, b.top[m] - 4 - shift_of(q.sx[m], q.row_scales[m]) - b.start[m * 3]));
  }
  return -1;
}

void pack_act(const int8_t* codes, const int8_t* exponents, const float* row_scales, const float* sx, int64_t M,
              int64_t K, Act& o) {
  RowBands& b = t_act_bands;
  bands_of_rows(codes, exponents, M, K, b);
  o.M = M;
  o.Mp = p2::round_up(M, 32);
  o.first.resize(M + 1);
  o.first[0] = 0;
  for (int64_t m = 0; m < M; ++m) o.first[m + 1] = o.first[m] + std::max(0, b.nb[m] - 1);
  o.Sa = o.first[M];
  o.Ma = o.Mp + p2::round_up(o.Sa, 32);
  o.a8 = align64(o.a8_store, static_cast<size_t>(o.Ma * K));
  o.pa.assign(o.Ma, 1.f);
  o.sxa.assign(o.Ma, 0.f);
  o.apar.assign(o.Sa, 0);
  for (int64_t m = M; m < o.Mp; ++m) zero_row(o.a8, m, K);
  for (int64_t m = o.Mp + o.Sa; m < o.Ma; ++m) zero_row(o.a8, m, K);
  parallel_for((M + 31) / 32, [&](int64_t t, int) {
    act_rows(codes, row_scales, sx, K, b, o, t * 32, std::min(M, t * 32 + 32));
  });
}
#endif  // SVDQ_X86

}  // namespace p2i8
}  // namespace svdq
