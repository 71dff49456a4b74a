// The int4p2 layer's GEMM on AMX-INT8 (p2_int8.h). One tdpbssd adds a 16×64 int8 activation tile times a 16(K
// quads)×16(columns)×4 int8 weight tile (one 64-group) into a 16×16 int32 C tile; blocks of 32 rows × 32 columns
// (tiles 0-3 C, 4-5 A, 6-7 B), the int32 sums exact over the whole K. Cache blocking as gemm_p2_amx.cc (tasks of up
// to 384 × 384 outputs, K chunks whose 32-row activation chunk (16 KiB) stays in L1, partial sums parked between
// chunks, the next chunk prefetched into L2), with 64-column K steps of half the bytes. After the last chunk a main
// block runs the branch: its C tiles zeroed, the 6R (or R, Branch::Bf16) bf16 columns on tdpbf16ps (the same
// 16 × 64-byte tile shapes). Epilogue: y = ((f32(C8)·pa[m])·pw[n] + C_branch)·sx[m]·sw[n] (+ bias, GELU), run one
// block behind the tile work (OutRing) so its vector loads do not wait on the tiles just stored; the last chunk
// prefetches the block's y lines for writing. With shadow rows or columns the main
// blocks write the sum without bias / GELU, the shadow blocks write theirs to a scratch, and a last pass adds them to
// their parents and applies bias and GELU.
#include "x86.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "amx_partial.h"
#include "amx_plan.h"
#include "p2_int8.h"
#include "simd.h"

#define SVDQ_TARGET_AMX8 \
  __attribute__((target("avx2,fma,prfchw,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,amx-tile,amx-int8,amx-bf16")))

namespace svdq {
namespace p2i8 {

#if SVDQ_X86
namespace {

// The plan of gemm_p2_amx.cc (amx_plan.h): 384 × 384 tasks, 8-step chunks (here 512 K columns: the 32-row
// activation chunk is 16 KiB as there); few rows: one long chunk, column blocks outer.
constexpr int64_t kSkinnyChunkSteps = 64;
using Plan = AmxPlan;

struct Ctx {
  const GemmArgs* a;
  int64_t K, KS;     // K, K/64
  int64_t KC32, BR;  // bf16 32-column steps of the bf16 operand (Kt/32), branch steps ((Kt − K)/32)
  bool shadows;      // any shadow row or column
  bool pfy;          // prefetchw the y lines of each final block during its last K chunk
  float* zr;         // [Sa][Na] shadow rows' sums
  float* zc;         // [Mp][Na − Np] main rows × shadow columns
};

thread_local std::vector<int32_t> t_cbuf;
struct OutRing;

#ifdef SVDQ_P2_TUNE
// Tuning hook for the timing harness only (never in the addon): P8_TR, P8_TC (task rows/columns), P8_KS (int8 K
// steps per chunk).
int64_t env_or(const char* n, int64_t d) {
  const char* v = std::getenv(n);
  return v ? std::atoll(v) : d;
}
#endif

// A full 32 × 32 block of final outputs (main rows and columns, no shadows): the same operations in the same order
// as block_out, one row (two 16-column halves) at a time with unmasked loads. (Streaming stores for y, where y is
// 64-byte aligned and larger than L2, measured no faster: docs/benchmarks.md "int8 int4p2 GEMM per core".)
template <bool kBranch, bool kGelu>
SVDQ_TARGET_AMX8 void block_out_full(const Ctx& x, int64_t m0, int64_t n0, const int32_t* c8, const float* cb) {
  const GemmArgs& a = *x.a;
  const Act& A = *a.act;
  const Weight& W = *a.w;
  const __m512 pw0 = _mm512_loadu_ps(W.pw.data() + n0), pw1 = _mm512_loadu_ps(W.pw.data() + n0 + 16);
  const __m512 sw0 = _mm512_loadu_ps(W.swa.data() + n0), sw1 = _mm512_loadu_ps(W.swa.data() + n0 + 16);
  const __m512 b0 = a.bias ? _mm512_loadu_ps(a.bias + n0) : _mm512_setzero_ps();
  const __m512 b1 = a.bias ? _mm512_loadu_ps(a.bias + n0 + 16) : _mm512_setzero_ps();
  const int64_t m1 = std::min(A.M, m0 + 32);
  float* yr = a.y + m0 * W.N + n0;
  for (int64_t m = m0; m < m1; ++m, c8 += 32, yr += W.N) {
    const __m512 pa = _mm512_set1_ps(A.pa[m]), sx = _mm512_set1_ps(A.sxa[m]);
    __m512 v0 = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c8)), pa), pw0);
    __m512 v1 = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c8 + 16)), pa), pw1);
    if (kBranch) {
      v0 = _mm512_add_ps(v0, _mm512_load_ps(cb));
      v1 = _mm512_add_ps(v1, _mm512_load_ps(cb + 16));
      cb += 32;
    }
    v0 = _mm512_fmadd_ps(_mm512_mul_ps(v0, sx), sw0, b0);
    v1 = _mm512_fmadd_ps(_mm512_mul_ps(v1, sx), sw1, b1);
    if (kGelu) {
      v0 = gelu512(v0);
      v1 = gelu512(v1);
    }
    _mm512_storeu_ps(yr, v0);
    _mm512_storeu_ps(yr + 16, v1);
  }
}

template <bool kBranch>
SVDQ_TARGET_AMX8 void block_out_full(const Ctx& x, int64_t m0, int64_t n0, const int32_t* c8, const float* cb) {
  if (x.a->gelu)
    block_out_full<kBranch, true>(x, m0, n0, c8, cb);
  else
    block_out_full<kBranch, false>(x, m0, n0, c8, cb);
}

// The block's outputs: c8 (int32 32×32, row stride 32), cb (f32 branch sums or null).
SVDQ_TARGET_AMX8 void block_out(const Ctx& x, int64_t m0, int64_t n0, const int32_t* c8, const float* cb) {
  const GemmArgs& a = *x.a;
  const Act& A = *a.act;
  const Weight& W = *a.w;
  const bool main_r = m0 < A.Mp, main_c = n0 < W.Np;
  const int64_t m1 = main_r ? std::min(A.M, m0 + 32) : std::min(A.Mp + A.Sa, m0 + 32);
  const int64_t n1 = main_c ? std::min(W.N, n0 + 32) : std::min(W.Np + W.Sw, n0 + 32);
  if (m0 >= m1 || n0 >= n1) return;
  const bool final = main_r && main_c && !x.shadows;
  if (final && n1 - n0 == 32) {
    cb ? block_out_full<true>(x, m0, n0, c8, cb) : block_out_full<false>(x, m0, n0, c8, cb);
    return;
  }
  for (int64_t j0 = n0; j0 < n1; j0 += 16) {
    const int cnt = static_cast<int>(std::min<int64_t>(16, n1 - j0));
    const __mmask16 mk = static_cast<__mmask16>((1u << cnt) - 1u);
    const __m512 pw = _mm512_maskz_loadu_ps(mk, W.pw.data() + j0);
    const __m512 sw = _mm512_maskz_loadu_ps(mk, W.swa.data() + j0);
    const __m512 bias = final && a.bias ? _mm512_maskz_loadu_ps(mk, a.bias + j0) : _mm512_setzero_ps();
    for (int64_t m = m0; m < m1; ++m) {
      const int64_t i = m - m0, j = j0 - n0;
      __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(mk, c8 + i * 32 + j)),
                               _mm512_set1_ps(A.pa[m]));
      v = _mm512_mul_ps(v, pw);
      if (cb) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, cb + i * 32 + j));
      v = _mm512_mul_ps(v, _mm512_set1_ps(A.sxa[m]));  // (sum·sx)·sw: sx·sw alone can leave the f32 range
      v = _mm512_fmadd_ps(v, sw, bias);
      if (final && a.gelu) v = gelu512(v);
      float* dst = main_r && main_c  ? a.y + m * W.N + j0
                   : main_r          ? x.zc + m * (W.Na - W.Np) + (j0 - W.Np)
                                     : x.zr + (m - A.Mp) * W.Na + j0;
      _mm512_mask_storeu_ps(dst, mk, v);
    }
  }
}

// Finished blocks' tile sums wait here one block for their epilogue: the epilogue's vector loads of a block's
// tilestored sums then come after the next block's tile products instead of right behind the stores.
struct OutRing {
  alignas(64) int32_t c8[2][32 * 32];
  alignas(64) float cb[2][32 * 32];
  int64_t m0 = 0, n0 = 0;
  int slot = 0;
  bool pending = false, branch = false;
};

SVDQ_TARGET_AMX8 void flush(const Ctx& x, OutRing& r) {
  if (!r.pending) return;
  const int s = r.slot ^ 1;  // the pending block's slot (the next block writes r.slot)
  block_out(x, r.m0, r.n0, r.c8[s], r.branch ? r.cb[s] : nullptr);
  r.pending = false;
}

// The block's branch sums (6R or R bf16 columns on tdpbf16ps) into cb, on C tiles 0–3 (free: zeroed here).
SVDQ_TARGET_AMX8 inline void branch32(const Ctx& x, int64_t m0, int64_t n0, float* cb) {
  const GemmArgs& a = *x.a;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const uint16_t* abp = a.abr + ((m0 / 32) * x.KC32 + x.K / 32) * 1024;
  const uint16_t* bbp = a.w->wbr + (n0 / 32) * x.BR * 1024;
  for (int64_t j = 0; j < x.BR; ++j) {
    _tile_loadd(4, abp, 64);
    _tile_loadd(6, bbp, 64);
    _tile_dpbf16ps(0, 4, 6);
    _tile_loadd(7, bbp + 512, 64);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(5, abp + 512, 64);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
    abp += 1024;
    bbp += 1024;
  }
  _tile_stored(0, cb, 128);
  _tile_stored(1, cb + 16, 128);
  _tile_stored(2, cb + 16 * 32, 128);
  _tile_stored(3, cb + 16 * 32 + 16, 128);
}

// One 32×32 block over the int8 K steps [s0, s1); after the last chunk the int8 sums are stored, then the branch
// runs on the same C tiles. (Running the branch first in the last chunk, while the int8 sums are parked, measured the
// same: docs/benchmarks.md "int8 int4p2 GEMM per core".)
SVDQ_TARGET_AMX8 inline void block32(const Ctx& x, int64_t m0, int64_t n0, int64_t s0, int64_t s1, bool first,
                                     bool last, int32_t* cpart, ChunkPrefetch& pf, OutRing& ring) {
  const GemmArgs& a = *x.a;
  const bool branch = last && x.BR > 0 && a.abr && m0 < a.act->Mp && n0 < a.w->Np;
  float* cb = ring.cb[ring.slot];
  c_tiles_resume(cpart, first);
  const int8_t* ap = a.act->a8 + ((m0 / 32) * x.KS + s0) * 2048;
  const int8_t* bp = a.w->w8 + ((n0 / 32) * x.KS + s0) * 2048;
  // Last chunk of a final block: its y lines (32 rows × 128 bytes) requested for writing a few per K step, so their
  // reads for ownership overlap the tile products instead of stalling the epilogue's stores.
  const bool pfy = last && x.pfy && m0 < a.act->M && n0 < a.w->N;
  const int64_t ypr = pfy ? (63 + s1 - s0) / (s1 - s0) : 0;  // y lines per step
  int64_t yl = 0;
  char* yb = pfy ? reinterpret_cast<char*>(a.y + m0 * a.w->N + n0) : nullptr;
  const int64_t ylines = pfy ? 2 * std::min<int64_t>(32, a.act->M - m0) : 0;
  for (int64_t s = s0; s < s1; ++s) {
    pf.step();
    for (int64_t t = 0; t < ypr && yl < ylines; ++t, ++yl)
      _m_prefetchw(yb + (yl >> 1) * a.w->N * 4 + (yl & 1) * 64);
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
  if (!last) {
    c_tiles_park(cpart);
    return;
  }
  int32_t* c8 = ring.c8[ring.slot];
  _tile_stored(0, c8, 128);
  _tile_stored(1, c8 + 16, 128);
  _tile_stored(2, c8 + 16 * 32, 128);
  _tile_stored(3, c8 + 16 * 32 + 16, 128);
  if (branch) branch32(x, m0, n0, cb);
  // the epilogue one block later (OutRing)
  flush(x, ring);
  ring.m0 = m0;
  ring.n0 = n0;
  ring.branch = branch;
  ring.pending = true;
  ring.slot ^= 1;
}

thread_local OutRing t_ring;

SVDQ_TARGET_AMX8 void amx_task(const Ctx& x, const Plan& p, int64_t task, int64_t tn) {
  const GemmArgs& a = *x.a;
  const int64_t Ma = a.act->Ma, Na = a.w->Na;
  const int64_t mt0 = (task / tn) * p.task_rows, nt0 = (task % tn) * p.task_cols;
  const int64_t mt1 = std::min(Ma, mt0 + p.task_rows), nt1 = std::min(Na, nt0 + p.task_cols);
  const int64_t ib_n = (mt1 - mt0) / 32, jb_n = (nt1 - nt0) / 32;
  int32_t* cbuf = nullptr;
  if (p.chunks > 1) cbuf = align64(t_cbuf, static_cast<size_t>(ib_n * jb_n * 1024));
  const TileConfig cfg = full_tiles();
  _tile_loadconfig(&cfg);
  OutRing& ring = t_ring;
  for (int64_t ch = 0; ch < p.chunks; ++ch) {
    const int64_t s0 = ch * p.csteps, s1 = ch + 1 == p.chunks ? x.KS : std::min(x.KS, s0 + p.csteps);
    if (s0 >= s1) break;
    const bool first = ch == 0, last = s1 == x.KS;
    ChunkPrefetch pf;
    if (p.prefetch && !last) {
      const int64_t n0s = s1, n1s = ch + 2 == p.chunks ? x.KS : std::min(x.KS, s1 + p.csteps);
      pf.list[0] = {reinterpret_cast<const char*>(a.act->a8 + ((mt0 / 32) * x.KS + n0s) * 2048), (n1s - n0s) * 2048,
                    x.KS * 2048, ib_n};
      pf.list[1] = {reinterpret_cast<const char*>(a.w->w8 + ((nt0 / 32) * x.KS + n0s) * 2048), (n1s - n0s) * 2048,
                    x.KS * 2048, jb_n};
      pf.plan(ib_n * jb_n * (s1 - s0));
    }
    const int64_t outer_n = p.rows_outer ? ib_n : jb_n, inner_n = p.rows_outer ? jb_n : ib_n;
    for (int64_t o = 0; o < outer_n; ++o)
      for (int64_t i = 0; i < inner_n; ++i) {
        const int64_t ib = p.rows_outer ? o : i, jb = p.rows_outer ? i : o;
        block32(x, mt0 + 32 * ib, nt0 + 32 * jb, s0, s1, first, last, cbuf ? cbuf + (ib * jb_n + jb) * 1024 : nullptr,
                pf, ring);
      }
  }
  flush(x, ring);
  _tile_release();
}

// Shadow sums into their parents, then bias and GELU (only when there are shadows).
SVDQ_TARGET_AVX512 void fixup_rows(const Ctx& x, int64_t m0, int64_t m1) {
  const GemmArgs& a = *x.a;
  const Act& A = *a.act;
  const Weight& W = *a.w;
  const int64_t N = W.N, SW = W.Na - W.Np;
  for (int64_t m = m0; m < m1; ++m) {
    float* y = a.y + m * N;
    // shadow rows of m: all their columns (main ones directly, shadow columns to the shadow's parent)
    for (int64_t s = A.first[m]; s < A.first[m + 1]; ++s) {
      const float* z = x.zr + s * W.Na;
      for (int64_t n = 0; n < N; n += 16) {
        const __mmask16 mk = N - n >= 16 ? __mmask16(0xffff) : __mmask16((1u << (N - n)) - 1u);
        _mm512_mask_storeu_ps(y + n, mk, _mm512_add_ps(_mm512_maskz_loadu_ps(mk, y + n), _mm512_maskz_loadu_ps(mk, z + n)));
      }
      for (int64_t t = 0; t < W.Sw; ++t) y[W.wpar[t]] += z[W.Np + t];
    }
    for (int64_t t = 0; t < W.Sw; ++t) y[W.wpar[t]] += x.zc[m * SW + t];
    for (int64_t n = 0; n < N; n += 16) {
      const __mmask16 mk = N - n >= 16 ? __mmask16(0xffff) : __mmask16((1u << (N - n)) - 1u);
      __m512 v = _mm512_maskz_loadu_ps(mk, y + n);
      if (a.bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, a.bias + n));
      if (a.gelu) v = gelu512(v);
      _mm512_mask_storeu_ps(y + n, mk, v);
    }
  }
}

thread_local std::vector<float> t_zr, t_zc;

}  // namespace
#endif  // SVDQ_X86

bool available() { return cpu_has_amx_bf16(); }

#if SVDQ_X86
void gemm(const GemmArgs& a) {
  const Act& A = *a.act;
  const Weight& W = *a.w;
  if (A.M == 0) return;
  Ctx x;
  x.a = &a;
  x.K = W.K;
  x.KS = W.K / 64;
  x.KC32 = W.Kt / 32;
  x.BR = (W.Kt - W.K) / 32;
  x.shadows = A.Sa > 0 || W.Sw > 0;
  x.pfy = !x.shadows;
#ifdef SVDQ_P2_TUNE
  if (std::getenv("P8_NOPFY")) x.pfy = false;
#endif
  x.zr = x.zc = nullptr;
  if (x.shadows) {
    x.zr = align64(t_zr, static_cast<size_t>(std::max<int64_t>(1, A.Sa * W.Na)));
    x.zc = align64(t_zc, static_cast<size_t>(std::max<int64_t>(1, A.Mp * (W.Na - W.Np))));
  }
  const int64_t Ma = A.Ma, Na = W.Na;
  Plan p = amx_plan(Ma, Na, kSkinnyChunkSteps);
#ifdef SVDQ_P2_TUNE
  p.task_rows = env_or("P8_TR", p.task_rows);
  p.task_cols = env_or("P8_TC", p.task_cols);
  p.csteps = env_or("P8_KS", p.csteps);
#endif
  amx_plan_split(p, Ma, Na, x.KS, num_threads());
  const int64_t tm = (Ma + p.task_rows - 1) / p.task_rows, tn = (Na + p.task_cols - 1) / p.task_cols;
  parallel_for(tm * tn, [&](int64_t task, int) { amx_task(x, p, task, tn); });
  if (x.shadows) {
    parallel_for((A.M + 15) / 16, [&](int64_t t, int) { fixup_rows(x, t * 16, std::min(A.M, t * 16 + 16)); });
  }
}
#endif  // SVDQ_X86

}  // namespace p2i8
}  // namespace svdq
