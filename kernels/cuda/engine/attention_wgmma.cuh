// Hopper (sm_90a) flash attention for Dh = 128 and 72 (k padded to 80) on wgmma (issue 15); the bench
// (kernels/cuda/bench/attn_wgmma.cu) registers each shape as variant 100+, attention.cu picks one on sm_90. Other archs
// compile the kernels to a trap: callers check the device first. 2 warpgroups x 64 query rows per CTA (BQ = 128), BKV-key tiles in a 2-stage cp.async ring, S = Q·Kᵀ
// as wgmma m64nBKVk16 with both operands in shared memory (K-major, 128-byte swizzle), P converted in registers into
// the A operand of O += P·V (wgmma m64n128k16, V read MN-major through the transpose bit). Same base-2 online softmax
// as attention_flash.cuh. Facts from the PTX ISA (wgmma matrix descriptors, canonical layouts) and the
// FlashAttention-3 paper; no code taken.
//
// Shared memory (bytes, base 1024-aligned), every tile [2 d-blocks][rows][64 bf16] with the 16-byte chunk c of row r
// stored at chunk c ^ (r % 8) (the 128-byte swizzle):
// | tile   | rows       | bytes            |
// |--------|------------|------------------|
// | sQ     | 128        | 32768            |
// | sK[2]  | BKV        | 2 x BKV·256      |
// | sV[2]  | BKV        | 2 x BKV·256      |
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "attention_flash.cuh"
#include "attention_wgmma_ops.cuh"

namespace svdq_attn {

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ uint64_t wg_desc(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
  uint64_t d = 0;
  d |= uint64_t((saddr & 0x3FFFF) >> 4);
  d |= uint64_t((lbo >> 4) & 0x3FFF) << 16;
  d |= uint64_t((sbo >> 4) & 0x3FFF) << 32;
  d |= uint64_t(1) << 62;  // 128-byte swizzle
  return d;
}
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void pin(float* r) {  // keep the compiler from touching accumulators across async wgmma
#pragma unroll
  for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}
#endif

// NWG warpgroups of 64 query rows per CTA (BQ = 64·NWG), MINB CTAs per SM for __launch_bounds__.
template <int DH, int BKV, bool SWAPV, int NWG = 2, int MINB = 1>
__global__ void __launch_bounds__(NWG * 128, MINB) wg_attention_kernel(const FlashArgs a) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int BQ = 64 * NWG, NS = BKV / 2, NTHR = NWG * 128;  // NS: S accumulators per thread
  constexpr int DK = DH == 128 ? 128 : 80, CHK = DK / 8, KST = DK / 16, NT = DH / 8, NO = DH / 2;
  extern __shared__ __align__(1024) uint8_t wg_sm_raw[];
  const uint32_t base = (fa_smem_u32(wg_sm_raw) + 1023u) & ~1023u;
  const uint32_t sQ = base, sK0 = base + BQ * 256, sV0 = sK0 + 2 * BKV * 256;
  constexpr uint32_t KV_STAGE = BKV * 256;

  const int tid = threadIdx.x, wg = tid / 128, warp = (tid / 32) % 4, lane = tid % 32;
  const int bh = blockIdx.y, q0 = blockIdx.x * BQ;
  const int b = bh / a.H, h = bh % a.H;
  const __nv_bfloat16* Qg = a.Q + size_t(bh) * a.Sq * DH;
  const __nv_bfloat16* Kg = a.K + size_t(bh) * a.Skv * DH;
  const __nv_bfloat16* Vg = a.V + size_t(bh) * a.Skv * DH;
  const int S = a.kv_len ? min(max(a.kv_len[b], 0), a.Skv) : a.Skv;
  const int nkv = (S + BKV - 1) / BKV;

  // rows x 128 d of global rows [r0, r0 + rows) (zero past n) into a swizzled [2][rows][64] tile at dst
  auto load = [&](uint32_t dst, const __nv_bfloat16* src, int r0, int rows, int n) {
#pragma unroll 4
    for (int i = tid; i < rows * CHK; i += NTHR) {  // chunks >= Dh/8 (the k pad of Dh = 72) are zero-filled
      const int r = i / CHK, c = i % CHK;
      const bool ok = r0 + r < n && c < DH / 8;
      const uint32_t off = uint32_t((c / 8) * rows * 128 + r * 128 + (((c % 8) ^ (r % 8)) * 16));
      fa_cp16(dst + off, src + (ok ? (r0 + r) * DH + c * 8 : 0), ok);
    }
  };
  load(sQ, Qg, q0, BQ, a.Sq);
  if (nkv > 0) {
    load(sK0, Kg, 0, BKV, S);
    load(sV0, Vg, 0, BKV, S);
  }
  fa_commit();

  float o[NO];
#pragma unroll
  for (int i = 0; i < NO; i++) o[i] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
  const float c = a.scale_log2;

  for (int t = 0; t < nkv; t++) {
    fa_wait<0>();
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // cp.async writes -> wgmma reads
    __syncthreads();
    if (t + 1 < nkv) {
      const uint32_t st = uint32_t((t + 1) % 2) * KV_STAGE;
      load(sK0 + st, Kg, (t + 1) * BKV, BKV, S);
      load(sV0 + st, Vg, (t + 1) * BKV, BKV, S);
    }
    fa_commit();
    const uint32_t sK = sK0 + uint32_t(t % 2) * KV_STAGE, sV = sV0 + uint32_t(t % 2) * KV_STAGE;

    float s[NS];
    pin<NS>(s);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < KST; kk++) {
      const uint64_t da = wg_desc(sQ + (kk / 4) * (BQ * 128) + wg * 64 * 128 + (kk % 4) * 32, 16, 1024);
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
    for (int kk = 0; kk < BKV / 16; kk++) {
      const uint32_t lbo = SWAPV ? 1024 : BKV * 128, sbo = SWAPV ? BKV * 128 : 1024;
      const uint64_t dv = wg_desc(sV + kk * 16 * 128, lbo, sbo);
      if constexpr (DH == 128)
        wg_rs_n128_tb(o, pa[kk], dv);
      else
        wg_rs_n72_tb(o, pa[kk], dv);
    }
    wg_commit();
    wg_wait0();
    pin<NO>(o);
  }
  fa_wait<0>();
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
  __trap();  // sm_90a only
#endif
}

// Intra-warpgroup pipelined variant (the FlashAttention-3 paper's overlap of the softmax with the wgmma): in
// iteration t the warpgroup issues S_t = Q·K_tᵀ and O += P_{t-1}·V_{t-1} back to back, waits for S_t only, runs the
// softmax of tile t while P·V is in flight, then waits for it and rescales O. V_{t-1} is still read in iteration t, so
// the ring has 3 stages (tile t+1 loads into the stage of tile t-2).
template <int DH, int BKV>
__global__ void __launch_bounds__(256, 1) wg_attention_pipe_kernel(const FlashArgs a) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int BQ = 128, NS = BKV / 2, NP = BKV / 16;
  constexpr int DK = DH == 128 ? 128 : 80, CHK = DK / 8, KST = DK / 16, NT = DH / 8, NO = DH / 2;
  extern __shared__ __align__(1024) uint8_t wg_sm_raw[];
  const uint32_t base = (fa_smem_u32(wg_sm_raw) + 1023u) & ~1023u;
  constexpr uint32_t KV_STAGE = BKV * 256;
  const uint32_t sQ = base, sK0 = base + 32768, sV0 = sK0 + 3 * KV_STAGE;

  const int tid = threadIdx.x, wg = tid / 128, warp = (tid / 32) % 4, lane = tid % 32;
  const int bh = blockIdx.y, q0 = blockIdx.x * BQ;
  const int b = bh / a.H, h = bh % a.H;
  const __nv_bfloat16* Qg = a.Q + size_t(bh) * a.Sq * DH;
  const __nv_bfloat16* Kg = a.K + size_t(bh) * a.Skv * DH;
  const __nv_bfloat16* Vg = a.V + size_t(bh) * a.Skv * DH;
  const int S = a.kv_len ? min(max(a.kv_len[b], 0), a.Skv) : a.Skv;
  const int nkv = (S + BKV - 1) / BKV;

  auto load = [&](uint32_t dst, const __nv_bfloat16* src, int r0, int rows, int n) {
#pragma unroll 4
    for (int i = tid; i < rows * CHK; i += 256) {  // chunks >= Dh/8 (the k pad of Dh = 72) are zero-filled
      const int r = i / CHK, c = i % CHK;
      const bool ok = r0 + r < n && c < DH / 8;
      const uint32_t off = uint32_t((c / 8) * rows * 128 + r * 128 + (((c % 8) ^ (r % 8)) * 16));
      fa_cp16(dst + off, src + (ok ? (r0 + r) * DH + c * 8 : 0), ok);
    }
  };
  load(sQ, Qg, q0, BQ, a.Sq);
  if (nkv > 0) {
    load(sK0, Kg, 0, BKV, S);
    load(sV0, Vg, 0, BKV, S);
  }
  fa_commit();

  float o[NO];
#pragma unroll
  for (int i = 0; i < NO; i++) o[i] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
  const float c = a.scale_log2;
  uint32_t pprev[NP][4];
  constexpr uint32_t lbo_v = BKV * 128, sbo_v = 1024;
  auto pv = [&](const uint32_t* pa, uint32_t sv) {
    if constexpr (DH == 128)
      wg_rs_n128_tb(o, pa, wg_desc(sv, lbo_v, sbo_v));
    else
      wg_rs_n72_tb(o, pa, wg_desc(sv, lbo_v, sbo_v));
  };

  // the body with tile 0 peeled (FIRST: no P·V in flight), so ptxas sees straight-line wgmma / wait pairs
  auto body = [&](const int t, auto first_tag) {
    constexpr bool FIRST = decltype(first_tag)::value;
    fa_wait<0>();
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();  // tile t landed; every warpgroup is past P·V of tile t-2
    if (t + 1 < nkv) {
      const uint32_t st = uint32_t((t + 1) % 3) * KV_STAGE;
      load(sK0 + st, Kg, (t + 1) * BKV, BKV, S);
      load(sV0 + st, Vg, (t + 1) * BKV, BKV, S);
    }
    fa_commit();
    const uint32_t sK = sK0 + uint32_t(t % 3) * KV_STAGE;
    const uint32_t sVp = sV0 + uint32_t((t + 2) % 3) * KV_STAGE;  // tile t-1

    float s[NS];
    pin<NS>(s);
    pin<NO>(o);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < KST; kk++) {
      const uint64_t da = wg_desc(sQ + (kk / 4) * 16384 + wg * 64 * 128 + (kk % 4) * 32, 16, 1024);
      const uint64_t db = wg_desc(sK + (kk / 4) * (BKV * 128) + (kk % 4) * 32, 16, 1024);
      if constexpr (BKV == 128)
        wg_ss_n128(s, da, db, kk);
      else
        wg_ss_n64(s, da, db, kk);
    }
    wg_commit();
    if constexpr (!FIRST) {
#pragma unroll
      for (int kk = 0; kk < NP; kk++) pv(pprev[kk], sVp + kk * 16 * 128);
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
      wg_wait0();  // P_{t-1}·V_{t-1} done: O and P_{t-1} may be touched again
#pragma unroll
      for (int kk = 0; kk < NP; kk++)
#pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+r"(pprev[kk][e])::"memory");
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
  if (nkv > 0) {  // P·V of the last tile
    const uint32_t sVl = sV0 + uint32_t((nkv - 1) % 3) * KV_STAGE;
    pin<NO>(o);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < NP; kk++) pv(pprev[kk], sVl + kk * 16 * 128);
    wg_commit();
    wg_wait0();
    pin<NO>(o);
  }
  fa_wait<0>();
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
  __trap();  // sm_90a only
#endif
}

template <int DH, int BKV>
cudaError_t wg_pipe_run1(const FlashArgs& a, cudaStream_t s) {
  const size_t smem = 1024 + 32768 + size_t(6) * BKV * 256;
  // every launch (see flash_launch in attention_flash.cuh)
  const cudaError_t e =
      cudaFuncSetAttribute(wg_attention_pipe_kernel<DH, BKV>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (e != cudaSuccess) return e;
  dim3 grid((a.Sq + 127) / 128, a.B * a.H);
  wg_attention_pipe_kernel<DH, BKV><<<grid, 256, smem, s>>>(a);
  return cudaGetLastError();
}
template <int BKV>
cudaError_t wg_pipe_run(int Dh, const FlashArgs& a, cudaStream_t s) {
  return Dh == 128 ? wg_pipe_run1<128, BKV>(a, s) : Dh == 72 ? wg_pipe_run1<72, BKV>(a, s) : cudaErrorInvalidValue;
}

template <int DH, int BKV, bool SWAPV, int NWG = 2, int MINB = 1>
cudaError_t wg_run1(const FlashArgs& a, cudaStream_t s) {
  const size_t smem = 1024 + size_t(64 * NWG) * 256 + size_t(4) * BKV * 256;
  auto kern = wg_attention_kernel<DH, BKV, SWAPV, NWG, MINB>;
  const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (e != cudaSuccess) return e;  // every launch (see flash_launch in attention_flash.cuh)
  dim3 grid((a.Sq + 64 * NWG - 1) / (64 * NWG), a.B * a.H);
  kern<<<grid, NWG * 128, smem, s>>>(a);
  return cudaGetLastError();
}
template <int BKV, bool SWAPV, int NWG = 2, int MINB = 1>
cudaError_t wg_run(int Dh, const FlashArgs& a, cudaStream_t s) {
  return Dh == 128  ? wg_run1<128, BKV, SWAPV, NWG, MINB>(a, s)
         : Dh == 72 ? wg_run1<72, BKV, SWAPV, NWG, MINB>(a, s)
                    : cudaErrorInvalidValue;
}

}  // namespace svdq_attn
