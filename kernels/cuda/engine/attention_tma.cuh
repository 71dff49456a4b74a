// Hopper attention for head dim 128, warp-specialized (engine: eng_attention on sm_90a builds; bench: variants 110,
// 111, 113 of kernels/cuda/bench/attn_bench.cu). One producer warp loads Q and a K/V ring by TMA (2-D tensor maps,
// 128-byte swizzle, the shared-memory layout of attention_wgmma.cuh) and signals "full" mbarriers; two consumer
// warpgroups (64 query rows each, 128 per CTA) run the wgmma flash loop of attention_wgmma.cuh and release each stage
// through an "empty" mbarrier, so no CTA-wide barrier couples them. Facts from the PTX ISA (cp.async.bulk.tensor,
// mbarrier) and the FlashAttention-3 paper; no code taken. On FLUX's (1, 24, 4608, 128) the 128-key / 2-stage form
// runs in 0.459 ms (569 TFLOP/s, 0.93x torch's cuDNN backend; docs/benchmarks.md "Fused attention", round 2).
// tma_run returns cudaErrorNotSupported when the driver has no cuTensorMapEncodeTiled (the caller falls back).
//
// | operand | shape              | dtype | notes                                                     |
// |---------|--------------------|-------|-----------------------------------------------------------|
// | Q, K, V | [B, H, S, 128]     | bf16  | row pitch 256 bytes: one 2-D tensor map over B·H·S rows    |
// | out     | FlashArgs (split text / image rows at ld)  | bf16 | as attention_flash.cuh              |
#ifndef SVDQ_ATTENTION_TMA_CUH
#define SVDQ_ATTENTION_TMA_CUH
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "attention_wgmma.cuh"

// anonymous inside: each translation unit (the engine, the bench) gets its own kernel instances and driver-entry cache
namespace svdq_attn_tma {
namespace {
using namespace svdq_attn;

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void mb_init(uint32_t mb, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(mb), "r"(count));
}
__device__ __forceinline__ void mb_expect_tx(uint32_t mb, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(mb), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mb_arrive(uint32_t mb) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(mb) : "memory");
}
__device__ __forceinline__ void mb_wait(uint32_t mb, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred p;\nWAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAIT_%=;\n}\n" ::"r"(mb),
      "r"(parity)
      : "memory");
}
__device__ __forceinline__ void tma_2d(uint32_t dst, const CUtensorMap* map, int c0, int c1, uint32_t mb) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::
          "r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(mb)
      : "memory");
}
#endif

// PIPE: the consumer loop of attention_wgmma.cuh's pipelined kernel (Q·K_tᵀ and P_{t-1}·V_{t-1} issued back to
// back, the softmax of tile t under P·V); a stage is released after its P·V.
template <int BKV, int ST, bool PIPE>
__global__ void __launch_bounds__(288, 1)
    tma_attention_kernel(const FlashArgs a, const __grid_constant__ CUtensorMap tmQ,
                         const __grid_constant__ CUtensorMap tmK, const __grid_constant__ CUtensorMap tmV) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int DH = 128, BQ = 128, NS = BKV / 2, NT = 16, NO = 64;
  constexpr uint32_t KV_STAGE = BKV * 256;  // bytes of one K (or V) stage: [2][BKV][64] bf16
  extern __shared__ __align__(1024) uint8_t tm_sm_raw[];
  const uint32_t base = (fa_smem_u32(tm_sm_raw) + 1023u) & ~1023u;
  const uint32_t sQ = base, sK0 = base + 32768, sV0 = sK0 + ST * KV_STAGE;
  const uint32_t bars = sV0 + ST * KV_STAGE;  // qbar, full[ST], empty[ST] (8 bytes each)
  const uint32_t qbar = bars;
  auto full = [&](int s) { return bars + 8 + 8 * s; };
  auto empty = [&](int s) { return bars + 8 + 8 * ST + 8 * s; };

  const int tid = threadIdx.x, warp_all = tid / 32, lane = tid % 32;
  const int bh = blockIdx.y, q0 = blockIdx.x * BQ;
  const int b = bh / a.H, h = bh % a.H;
  const int S = a.kv_len ? min(max(a.kv_len[b], 0), a.Skv) : a.Skv;
  const int nkv = (S + BKV - 1) / BKV;

  if (tid == 0) {
    mb_init(qbar, 1);
    for (int s = 0; s < ST; s++) {
      mb_init(full(s), 1);
      mb_init(empty(s), 256);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (warp_all == 8) {  // producer warp
    if (lane == 0) {
      mb_expect_tx(qbar, 32768);
      tma_2d(sQ, &tmQ, 0, bh * a.Sq + q0, qbar);
      tma_2d(sQ + 16384, &tmQ, 64, bh * a.Sq + q0, qbar);
      for (int t = 0; t < nkv; t++) {
        const int s = t % ST;
        if (t >= ST) mb_wait(empty(s), uint32_t((t / ST - 1) & 1));
        mb_expect_tx(full(s), 2 * KV_STAGE);
        const int row = bh * a.Skv + t * BKV;
        const uint32_t k = sK0 + s * KV_STAGE, v = sV0 + s * KV_STAGE;
        tma_2d(k, &tmK, 0, row, full(s));
        tma_2d(k + BKV * 128, &tmK, 64, row, full(s));
        tma_2d(v, &tmV, 0, row, full(s));
        tma_2d(v + BKV * 128, &tmV, 64, row, full(s));
      }
    }
    return;
  }
  // consumers: warpgroups 0 and 1 (threads 0..255)
  const int wg = tid / 128, warp = warp_all % 4;
  float o[NO];
#pragma unroll
  for (int i = 0; i < NO; i++) o[i] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
  const float c = a.scale_log2;
  mb_wait(qbar, 0);
  if constexpr (!PIPE) {
  for (int t = 0; t < nkv; t++) {
    const int st = t % ST;
    mb_wait(full(st), uint32_t((t / ST) & 1));
    const uint32_t sK = sK0 + st * KV_STAGE, sV = sV0 + st * KV_STAGE;
    float s[NS];
    pin<NS>(s);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < 8; kk++) {
      const uint64_t da = wg_desc(sQ + (kk / 4) * 16384 + wg * 64 * 128 + (kk % 4) * 32, 16, 1024);
      const uint64_t db = wg_desc(sK + (kk / 4) * (BKV * 128) + (kk % 4) * 32, 16, 1024);
      if constexpr (BKV == 128)
        wg_ss_n128(s, da, db, kk);
      else
        wg_ss_n64(s, da, db, kk);
    }
    wg_commit();
    wg_wait0();
    pin<NS>(s);
    const int kv0 = t * BKV;
    if (kv0 + BKV > S) {
#pragma unroll
      for (int i = 0; i < NS; i++) {
        const int key = kv0 + 8 * (i / 4) + 2 * (lane % 4) + (i & 1);
        if (key >= S) s[i] = -INFINITY;
      }
    }
    float mx[2] = {m_run[0], m_run[1]};
#pragma unroll
    for (int i = 0; i < NS; i += 4) {
      mx[0] = fmaxf(mx[0], fmaxf(s[i], s[i + 1]));
      mx[1] = fmaxf(mx[1], fmaxf(s[i + 2], s[i + 3]));
    }
    float alpha[2], moff[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      alpha[r] = fa_exp2((m_run[r] - mx[r]) * c);
      m_run[r] = mx[r];
      moff[r] = mx[r] * c;
    }
    uint32_t pa[BKV / 16][4];
    float rs[2] = {0.f, 0.f};
#pragma unroll
    for (int j = 0; j < BKV / 8; j++) {
      const float p0 = fa_exp2(fmaf(s[4 * j + 0], c, -moff[0]));
      const float p1 = fa_exp2(fmaf(s[4 * j + 1], c, -moff[0]));
      const float p2 = fa_exp2(fmaf(s[4 * j + 2], c, -moff[1]));
      const float p3 = fa_exp2(fmaf(s[4 * j + 3], c, -moff[1]));
      rs[0] += p0 + p1;
      rs[1] += p2 + p3;
      pa[j / 2][(j % 2) * 2 + 0] = fa_pack(p0, p1);
      pa[j / 2][(j % 2) * 2 + 1] = fa_pack(p2, p3);
    }
    l_run[0] = l_run[0] * alpha[0] + rs[0];
    l_run[1] = l_run[1] * alpha[1] + rs[1];
#pragma unroll
    for (int j = 0; j < NT; j++) {
      o[4 * j + 0] *= alpha[0];
      o[4 * j + 1] *= alpha[0];
      o[4 * j + 2] *= alpha[1];
      o[4 * j + 3] *= alpha[1];
    }
    pin<NO>(o);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < BKV / 16; kk++) wg_rs_n128_tb(o, pa[kk], wg_desc(sV + kk * 16 * 128, BKV * 128, 1024));
    wg_commit();
    wg_wait0();
    pin<NO>(o);
    mb_arrive(empty(st));  // this thread is done with stage st
  }
  } else {
    constexpr int NP = BKV / 16;
    uint32_t pprev[NP][4];
    auto pv = [&](const uint32_t (*pp)[4], uint32_t sv) {
#pragma unroll
      for (int kk = 0; kk < NP; kk++) wg_rs_n128_tb(o, pp[kk], wg_desc(sv + kk * 16 * 128, BKV * 128, 1024));
    };
    auto body = [&](const int t, auto first_tag) {
      constexpr bool FIRST = decltype(first_tag)::value;
      const int st = t % ST, sp = (t + ST - 1) % ST;
      mb_wait(full(st), uint32_t((t / ST) & 1));
      const uint32_t sK = sK0 + st * KV_STAGE;
      float s[NS];
      pin<NS>(s);
      pin<NO>(o);
      wg_fence();
#pragma unroll
      for (int kk = 0; kk < 8; kk++) {
        const uint64_t da = wg_desc(sQ + (kk / 4) * 16384 + wg * 64 * 128 + (kk % 4) * 32, 16, 1024);
        const uint64_t db = wg_desc(sK + (kk / 4) * (BKV * 128) + (kk % 4) * 32, 16, 1024);
        if constexpr (BKV == 128)
          wg_ss_n128(s, da, db, kk);
        else
          wg_ss_n64(s, da, db, kk);
      }
      wg_commit();
      if constexpr (!FIRST) {
        pv(pprev, sV0 + sp * KV_STAGE);
        wg_commit();
        asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
      } else {
        wg_wait0();
      }
      pin<NS>(s);
      const int kv0 = t * BKV;
      if (kv0 + BKV > S) {
#pragma unroll
        for (int i = 0; i < NS; i++) {
          const int key = kv0 + 8 * (i / 4) + 2 * (lane % 4) + (i & 1);
          if (key >= S) s[i] = -INFINITY;
        }
      }
      float mx[2] = {m_run[0], m_run[1]};
#pragma unroll
      for (int i = 0; i < NS; i += 4) {
        mx[0] = fmaxf(mx[0], fmaxf(s[i], s[i + 1]));
        mx[1] = fmaxf(mx[1], fmaxf(s[i + 2], s[i + 3]));
      }
      float alpha[2], moff[2];
#pragma unroll
      for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        alpha[r] = fa_exp2((m_run[r] - mx[r]) * c);
        m_run[r] = mx[r];
        moff[r] = mx[r] * c;
      }
      uint32_t pcur[NP][4];
      float rs[2] = {0.f, 0.f};
#pragma unroll
      for (int j = 0; j < BKV / 8; j++) {
        const float p0 = fa_exp2(fmaf(s[4 * j + 0], c, -moff[0]));
        const float p1 = fa_exp2(fmaf(s[4 * j + 1], c, -moff[0]));
        const float p2 = fa_exp2(fmaf(s[4 * j + 2], c, -moff[1]));
        const float p3 = fa_exp2(fmaf(s[4 * j + 3], c, -moff[1]));
        rs[0] += p0 + p1;
        rs[1] += p2 + p3;
        pcur[j / 2][(j % 2) * 2 + 0] = fa_pack(p0, p1);
        pcur[j / 2][(j % 2) * 2 + 1] = fa_pack(p2, p3);
      }
      l_run[0] = l_run[0] * alpha[0] + rs[0];
      l_run[1] = l_run[1] * alpha[1] + rs[1];
      if constexpr (!FIRST) {
        wg_wait0();
#pragma unroll
        for (int kk = 0; kk < NP; kk++)
#pragma unroll
          for (int e = 0; e < 4; e++) asm volatile("" : "+r"(pprev[kk][e])::"memory");
        mb_arrive(empty(sp));  // P·V of tile t-1 done: its stage may be refilled
      }
      pin<NO>(o);
#pragma unroll
      for (int j = 0; j < NT; j++) {
        o[4 * j + 0] *= alpha[0];
        o[4 * j + 1] *= alpha[0];
        o[4 * j + 2] *= alpha[1];
        o[4 * j + 3] *= alpha[1];
      }
#pragma unroll
      for (int kk = 0; kk < NP; kk++)
#pragma unroll
        for (int e = 0; e < 4; e++) pprev[kk][e] = pcur[kk][e];
    };
    if (nkv > 0) body(0, std::true_type{});
    for (int t = 1; t < nkv; t++) body(t, std::false_type{});
    if (nkv > 0) {
      pin<NO>(o);
      wg_fence();
      pv(pprev, sV0 + ((nkv - 1) % ST) * KV_STAGE);
      wg_commit();
      wg_wait0();
      pin<NO>(o);
    }
  }
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float l = l_run[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int s_tok = q0 + wg * 64 + warp * 16 + lane / 4 + 8 * r;
    if (s_tok >= a.Sq) continue;
    const float inv = l > 0.f ? 1.f / l : 0.f;
    __nv_bfloat16* dst = s_tok < a.split ? a.out_txt + (size_t(b) * a.split + s_tok) * a.ld
                                         : a.out_img + (size_t(b) * (a.Sq - a.split) + (s_tok - a.split)) * a.ld;
    dst += h * DH;
#pragma unroll
    for (int j = 0; j < NT; j++) {
      const int d = 8 * j + 2 * (lane % 4);
      *reinterpret_cast<uint32_t*>(dst + d) = fa_pack(o[4 * j + 2 * r] * inv, o[4 * j + 2 * r + 1] * inv);
    }
  }
#else
  __trap();
#endif
}

// 2D tensor map over rows x 128 bf16 (row pitch 256 bytes), box 64 columns x box_rows rows, 128-byte swizzle
cudaError_t make_map(CUtensorMap* m, const void* p, uint64_t rows, uint32_t box_rows) {
  static PFN_cuTensorMapEncodeTiled_v12000 enc = nullptr;
  if (!enc) {
    cudaDriverEntryPointQueryResult q;
    void* fn = nullptr;
    const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q);
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || !fn) return cudaErrorNotSupported;
    enc = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }
  const cuuint64_t dims[2] = {128, rows};
  const cuuint64_t strides[1] = {256};
  const cuuint32_t box[2] = {64, box_rows};
  const cuuint32_t estr[2] = {1, 1};
  const CUresult r = enc(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(p), dims, strides, box, estr,
                         CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                         CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

template <int BKV, int ST, bool PIPE = false>
cudaError_t tma_run(int Dh, const FlashArgs& a, cudaStream_t s) {
  if (Dh != 128) return cudaErrorInvalidValue;
  CUtensorMap mq, mk, mv;
  cudaError_t e;
  if ((e = make_map(&mq, a.Q, uint64_t(a.B) * a.H * a.Sq, 128)) != cudaSuccess) return e;
  if ((e = make_map(&mk, a.K, uint64_t(a.B) * a.H * a.Skv, BKV)) != cudaSuccess) return e;
  if ((e = make_map(&mv, a.V, uint64_t(a.B) * a.H * a.Skv, BKV)) != cudaSuccess) return e;
  const size_t smem = 1024 + 32768 + size_t(2 * ST) * BKV * 256 + 8 * (1 + 2 * ST);
  auto kern = tma_attention_kernel<BKV, ST, PIPE>;
  if ((e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem))) != cudaSuccess) return e;
  dim3 grid((a.Sq + 127) / 128, a.B * a.H);
  kern<<<grid, 288, smem, s>>>(a, mq, mk, mv);
  return cudaGetLastError();
}

}  // namespace
}  // namespace svdq_attn_tma

#endif
