// The engine's flash attention kernel (eng_attention / eng_attention_cross in engine_ops.h), as a template so the
// bench (kernels/cuda/bench/attn_bench.cu) can time the tile shapes side by side; attention.cu instantiates the
// chosen ones. Method (facts from the FlashAttention-2 paper, no code taken): one CTA owns BQ = WARPS·16·MT query
// rows, each warp MT m16 row tiles; keys/values stream through a STAGES-deep cp.async ring of BKV-row tiles with one
// __syncthreads per tile; S = Q·Kᵀ and O += P·V on mma.sync m16n8k16 bf16 (f32 accumulate); the softmax runs in the
// base-2 domain with log2(e)/√Dh folded into one FMA (p = 2^(s·c − m·c)); row max and sum stay in registers, P is
// converted in registers straight into the A operand of P·V.
//
// Shared memory rows are DK + 8 bf16 (DK = Dh rounded up to 16): the 16-byte pad puts the 8 rows an ldmatrix phase
// reads in 8 different 16-byte bank groups, so no swizzle is needed and Dh = 72 (DK = 80, 10 chunks) works too.
// | buffer | shape                  | notes                                                           |
// |--------|------------------------|-----------------------------------------------------------------|
// | sQ     | [BQ][DK + 8]           | query tile; columns Dh..DK-1 zero (Dh = 72: Q·Kᵀ runs over 80)   |
// | sK     | [STAGES][BKV][DK + 8]  | key ring; pad columns zero                                       |
// | sV     | [STAGES][BKV][DK + 8]  | value ring; P·V reads columns < Dh only                          |
// Keys j >= kv_len (the item's key count) are zero-filled in shared memory and masked to −∞ before the softmax;
// a row whose item has no key gets zeros.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace svdq_attn {

struct FlashArgs {
  const __nv_bfloat16* Q;  // [B, H, Sq, Dh]
  const __nv_bfloat16* K;  // [B, H, Skv, Dh]
  const __nv_bfloat16* V;  // [B, H, Skv, Dh]
  int B, H, Sq, Skv;
  const int* kv_len;  // device [B] or nullptr
  float scale_log2;   // log2(e)/√Dh
  int split;          // tokens s < split go to out_txt, the rest to out_img
  __nv_bfloat16* out_txt;
  __nv_bfloat16* out_img;
  int ld;
};

__device__ __forceinline__ uint32_t fa_smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void fa_cp16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;  // src-size 0: the 16 bytes are zero-filled
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void fa_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void fa_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ void fa_ldsm4(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(fa_smem_u32(p)));
}
__device__ __forceinline__ void fa_ldsm4t(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(fa_smem_u32(p)));
}
__device__ __forceinline__ void fa_ldsm2t(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(fa_smem_u32(p)));
}
__device__ __forceinline__ void fa_mma(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ float fa_exp2(float x) {  // 2^x on the MUFU (ex2.approx.ftz: 2^-inf = +0)
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ uint32_t fa_pack(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

template <int DH, int WARPS, int MT, int BKV, int STAGES>
struct FlashShape {
  static constexpr int DK = (DH + 15) / 16 * 16;  // k extent of Q·Kᵀ
  static constexpr int ROW = DK + 8;              // shared row (bf16)
  static constexpr int BQ = WARPS * 16 * MT;
  static constexpr size_t smem = size_t(BQ + 2 * STAGES * BKV) * ROW * 2;
};

// QREG: keep the warp's Q fragments in registers for the whole key loop (else re-read them from sQ every tile).
template <int DH, int WARPS, int MT, int BKV, int STAGES, bool QREG, int MINB>
__global__ void __launch_bounds__(WARPS * 32, MINB) flash_attention_kernel(const FlashArgs a) {
  using SH = FlashShape<DH, WARPS, MT, BKV, STAGES>;
  constexpr int DK = SH::DK, ROW = SH::ROW, BQ = SH::BQ;
  constexpr int KT = DK / 16;  // k16 steps of Q·Kᵀ
  constexpr int NT = DH / 8;   // n8 tiles of the output
  constexpr int CH = DH / 8;   // 16-byte chunks per global row
  constexpr int NTHR = WARPS * 32;
  static_assert(BKV % 16 == 0 && STAGES >= 2, "tile shape");
  extern __shared__ __align__(16) __nv_bfloat16 fa_sm[];
  __nv_bfloat16* sQ = fa_sm;
  __nv_bfloat16* sK = fa_sm + BQ * ROW;                     // [STAGES][BKV][ROW]
  __nv_bfloat16* sV = fa_sm + BQ * ROW + STAGES * BKV * ROW;  // [STAGES][BKV][ROW]

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int bh = blockIdx.y, q0 = blockIdx.x * BQ;
  const int b = bh / a.H, h = bh % a.H;
  const __nv_bfloat16* Qg = a.Q + size_t(bh) * a.Sq * DH;
  const __nv_bfloat16* Kg = a.K + size_t(bh) * a.Skv * DH;
  const __nv_bfloat16* Vg = a.V + size_t(bh) * a.Skv * DH;
  const int S = a.kv_len ? min(max(a.kv_len[b], 0), a.Skv) : a.Skv;  // keys of this item
  const int nkv = (S + BKV - 1) / BKV;

  if constexpr (DK > DH) {  // zero the k pad of Q and of every K stage once (cp.async never writes it)
    for (int r = tid; r < BQ + STAGES * BKV; r += NTHR) {
      __nv_bfloat16* row = r < BQ ? sQ + r * ROW : sK + (r - BQ) * ROW;
#pragma unroll
      for (int cc = DH; cc < DK; cc++) row[cc] = __float2bfloat16(0.f);
    }
  }
  // 32-bit element offsets (Skv·Dh < 2³¹) keep the hoisted address state small
  auto load_rows = [&](__nv_bfloat16* dst, const __nv_bfloat16* src, int r0, int rows, int n) {
    const uint32_t sdst = fa_smem_u32(dst);
#pragma unroll 2
    for (int i = tid; i < rows * CH; i += NTHR) {
      const int r = i / CH, cc = i - r * CH;
      const bool ok = r0 + r < n;
      fa_cp16(sdst + uint32_t(r * ROW + cc * 8) * 2, src + (ok ? (r0 + r) * DH + cc * 8 : 0), ok);
    }
  };
  auto load_kv = [&](int t) {
    const int st = t % STAGES;
    load_rows(sK + st * BKV * ROW, Kg, t * BKV, BKV, S);
    load_rows(sV + st * BKV * ROW, Vg, t * BKV, BKV, S);
  };
  // prologue: group 0 = Q + tile 0, groups 1..STAGES-2 = tiles 1..STAGES-2 (empty groups keep the count)
  load_rows(sQ, Qg, q0, BQ, a.Sq);
  if (nkv > 0) load_kv(0);
  fa_commit();
#pragma unroll
  for (int t = 1; t < STAGES - 1; t++) {
    if (t < nkv) load_kv(t);
    fa_commit();
  }

  uint32_t qf[QREG ? MT : 1][QREG ? KT : 1][4];
  float o[MT][NT][4];
#pragma unroll
  for (int m = 0; m < MT; m++)
#pragma unroll
    for (int j = 0; j < NT; j++) o[m][j][0] = o[m][j][1] = o[m][j][2] = o[m][j][3] = 0.f;
  float m_run[MT][2], l_run[MT][2];
#pragma unroll
  for (int m = 0; m < MT; m++) m_run[m][0] = m_run[m][1] = -INFINITY, l_run[m][0] = l_run[m][1] = 0.f;
  const float c = a.scale_log2;
  // ldmatrix row/column offsets of this lane (see the fragment layouts of mma.m16n8k16)
  const int a_row = (lane % 8) + 8 * ((lane / 8) % 2), a_col = 8 * (lane / 16);  // A (Q) and trans B (V)
  const int b_row = (lane % 8) + 8 * (lane / 16), b_col = 8 * ((lane / 8) % 2);   // non-trans B (K)
  const __nv_bfloat16* q_s = sQ + (warp * 16 * MT + a_row) * ROW + a_col;

  for (int t = 0; t < nkv; t++) {
    fa_wait<STAGES - 2>();
    __syncthreads();  // tile t landed for every thread; every warp is done with tile t-1's stage
    if (t + STAGES - 1 < nkv) load_kv(t + STAGES - 1);
    fa_commit();
    if constexpr (QREG) {
      if (t == 0) {
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
          for (int kk = 0; kk < KT; kk++) fa_ldsm4(qf[m][kk], q_s + m * 16 * ROW + kk * 16);
      }
    }
    const int st = t % STAGES;
    const __nv_bfloat16* k_s = sK + st * BKV * ROW + b_row * ROW + b_col;
    const __nv_bfloat16* v_s = sV + st * BKV * ROW + a_row * ROW + a_col;
    float s[MT][BKV / 8][4];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
      for (int j = 0; j < BKV / 8; j++) s[m][j][0] = s[m][j][1] = s[m][j][2] = s[m][j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KT; kk++) {
      uint32_t af[MT][4];
      if constexpr (!QREG) {
#pragma unroll
        for (int m = 0; m < MT; m++) fa_ldsm4(af[m], q_s + m * 16 * ROW + kk * 16);
      }
#pragma unroll
      for (int jp = 0; jp < BKV / 16; jp++) {
        uint32_t bf[4];
        fa_ldsm4(bf, k_s + jp * 16 * ROW + kk * 16);
#pragma unroll
        for (int m = 0; m < MT; m++) {
          const uint32_t* am = QREG ? qf[QREG ? m : 0][QREG ? kk : 0] : af[m];
          fa_mma(s[m][2 * jp], am, bf[0], bf[1]);
          fa_mma(s[m][2 * jp + 1], am, bf[2], bf[3]);
        }
      }
    }
    const int kv0 = t * BKV;
    if (kv0 + BKV > S) {  // last, partial tile: keys >= S get −∞
#pragma unroll
      for (int j = 0; j < BKV / 8; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int key = kv0 + 8 * j + 2 * (lane % 4) + (e & 1);
          if (key >= S) {
#pragma unroll
            for (int m = 0; m < MT; m++) s[m][j][e] = -INFINITY;
          }
        }
      }
    }
    uint32_t pf[MT][BKV / 16][4];
#pragma unroll
    for (int m = 0; m < MT; m++) {
      float mx[2] = {m_run[m][0], m_run[m][1]};
#pragma unroll
      for (int j = 0; j < BKV / 8; j++) {
        mx[0] = fmaxf(mx[0], fmaxf(s[m][j][0], s[m][j][1]));
        mx[1] = fmaxf(mx[1], fmaxf(s[m][j][2], s[m][j][3]));
      }
      float alpha[2], moff[2];
#pragma unroll
      for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        alpha[r] = fa_exp2((m_run[m][r] - mx[r]) * c);  // m_run = −∞ on the first tile: alpha = 0
        m_run[m][r] = mx[r];
        moff[r] = mx[r] * c;
      }
      float rs[2] = {0.f, 0.f};
#pragma unroll
      for (int j = 0; j < BKV / 8; j++) {
        const float p0 = fa_exp2(fmaf(s[m][j][0], c, -moff[0])), p1 = fa_exp2(fmaf(s[m][j][1], c, -moff[0]));
        const float p2 = fa_exp2(fmaf(s[m][j][2], c, -moff[1])), p3 = fa_exp2(fmaf(s[m][j][3], c, -moff[1]));
        rs[0] += p0 + p1;
        rs[1] += p2 + p3;
        pf[m][j / 2][(j % 2) * 2 + 0] = fa_pack(p0, p1);
        pf[m][j / 2][(j % 2) * 2 + 1] = fa_pack(p2, p3);
      }
      l_run[m][0] = l_run[m][0] * alpha[0] + rs[0];
      l_run[m][1] = l_run[m][1] * alpha[1] + rs[1];
#pragma unroll
      for (int j = 0; j < NT; j++) {
        o[m][j][0] *= alpha[0];
        o[m][j][1] *= alpha[0];
        o[m][j][2] *= alpha[1];
        o[m][j][3] *= alpha[1];
      }
    }
    // O += P V: k = BKV keys in chunks of 16, n = DH in n8 tiles
#pragma unroll
    for (int kk = 0; kk < BKV / 16; kk++) {
#pragma unroll
      for (int jp = 0; jp < NT / 2; jp++) {
        uint32_t bf[4];
        fa_ldsm4t(bf, v_s + kk * 16 * ROW + jp * 16);
#pragma unroll
        for (int m = 0; m < MT; m++) {
          fa_mma(o[m][2 * jp], pf[m][kk], bf[0], bf[1]);
          fa_mma(o[m][2 * jp + 1], pf[m][kk], bf[2], bf[3]);
        }
      }
      if constexpr (NT % 2) {
        uint32_t bf[2];
        fa_ldsm2t(bf, v_s + kk * 16 * ROW + (NT - 1) * 8 - a_col);
#pragma unroll
        for (int m = 0; m < MT; m++) fa_mma(o[m][NT - 1], pf[m][kk], bf[0], bf[1]);
      }
    }
  }
  fa_wait<0>();  // no cp.async may outlive the block (kv_len 0 runs no tile)
  // normalize and store
#pragma unroll
  for (int m = 0; m < MT; m++) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
      float l = l_run[m][r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const int s_tok = q0 + (warp * MT + m) * 16 + lane / 4 + 8 * r;
      if (s_tok >= a.Sq) continue;
      const float inv = l > 0.f ? 1.f / l : 0.f;  // no key (kv_len 0): zeros, not NaN
      __nv_bfloat16* dst = s_tok < a.split ? a.out_txt + (size_t(b) * a.split + s_tok) * a.ld
                                           : a.out_img + (size_t(b) * (a.Sq - a.split) + (s_tok - a.split)) * a.ld;
      dst += h * DH;
#pragma unroll
      for (int j = 0; j < NT; j++) {
        const int d = 8 * j + 2 * (lane % 4);
        *reinterpret_cast<uint32_t*>(dst + d) = fa_pack(o[m][j][2 * r] * inv, o[m][j][2 * r + 1] * inv);
      }
    }
  }
}

// Launches one instantiation; returns a cudaError_t (cudaSuccess when launched).
template <int DH, int WARPS, int MT, int BKV, int STAGES, bool QREG, int MINB>
cudaError_t flash_launch(const FlashArgs& a, cudaStream_t stream) {
  using SH = FlashShape<DH, WARPS, MT, BKV, STAGES>;
  auto kern = flash_attention_kernel<DH, WARPS, MT, BKV, STAGES, QREG, MINB>;
  // the dynamic shared memory limit is raised on every launch (a host-side call, no stream work): a once-per-process
  // flag would miss the second device of a multi-GPU process
  const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(SH::smem));
  if (e != cudaSuccess) return e;
  dim3 grid((a.Sq + SH::BQ - 1) / SH::BQ, a.B * a.H);
  kern<<<grid, WARPS * 32, SH::smem, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace svdq_attn
