// The int4p2 rows quantizer as it was before issue 16's memory-bound rewrite (kernels/cuda/p2_fp8.cu at d1b5286:
// one warp per row, 8 rows per block), kept here only as the timing baseline of p2q_bench.cu ("before" column).
// K must be a multiple of 256. Same bytes as the current kernel (the harness checks it).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cstdint>
#include "../p2_fp8.h"

namespace p2q_old {
[[maybe_unused]] constexpr int G = 64, EMIN = SVDQ_P2_EXP_MIN, EMAX = SVDQ_P2_EXP_MAX, R = 32, KEMPTY = -1000;
__device__ __forceinline__ float pow2f(int e) { return __int_as_float((e + 127) << 23); }
// ---- device: the single-pass activation quantizer for callers that compute lora_act themselves (the engine: one
// cuBLAS GEMM x·lora_downᵀ). One warp per row, 8 rows per block; lane l holds the 8 values k = 256c + 8l .. +7 of
// chunk c (group 4c + l/8), as p2_quant_kernel does, with the same per-group arithmetic, so its FP8 operand and row
// scale equal p2_quant_kernel's for the same lora_act. x is read once (16-byte loads, PF chunks ahead), the codes
// stay in registers (4 bits each) and the group exponents in shared memory until the row's exponent E is known,
// then the FP8 operand is written once (8 bytes per lane per chunk: 256 contiguous bytes per warp).
// FAST: the same bytes with fewer conversions (the F2I / I2F / F2F units run at a fraction of the FP32 rate): codes
// rounded by the 1.5·2^23 magic addition (round-half-even, as __float2int_rn, for |v·2^-k| <= 16) and clamped in
// that domain, and the FP8 bytes of q·2^e built from a table of |q|'s E4M3 bytes plus e in the exponent field when
// every q·2^e is a normal E4M3 value (e >= -6, no requantization); other groups take the conversion path.
template <bool FAST>
__global__ void __launch_bounds__(256, 3)
    old_rows_kernel(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ smooth,
                   const float* __restrict__ lora_act, const int* __restrict__ lr_shift, int M, int K, int Kx,
                   uint8_t* __restrict__ a8, float* __restrict__ sx) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 890
  __trap();  // not built below sm_89 (the launcher refuses first)
#else
  // A loop, not an unrolled row: fully unrolled rows (tens of KB of straight-line code per warp) made both this
  // kernel and p2_quant_kernel instruction-fetch bound (round 1 on the H100: 78 µs for 256 rows, hardly less than
  // for 4608). The row's codes wait in shared memory instead of registers.
  constexpr int PF = 4;  // chunks of x in flight per lane
  const int NCH = K / 256;
  extern __shared__ uint32_t rsm[];  // codes [8 warps][NCH][32 lanes], then group exponents [8][K/64] int8
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  uint32_t* csm = rsm + size_t(w) * NCH * 32;
  signed char* kx = reinterpret_cast<signed char*>(rsm + 8 * NCH * 32) + w * (K / G);
  const int m = blockIdx.x * 8 + w;
  if (m >= M) return;  // whole warps leave: no block-wide barrier below
  const uint4* xrow = reinterpret_cast<const uint4*>(x + size_t(m) * K);
  const uint4* srow = reinterpret_cast<const uint4*>(smooth);
  int kcm = -128;
  uint4 pf[PF], pfs[PF];
#pragma unroll
  for (int i = 0; i < PF; ++i) {
    if (i < NCH) {
      pf[i] = __ldcs(xrow + i * 32 + l);
      if (smooth) pfs[i] = __ldg(srow + i * 32 + l);
    }
  }
  for (int c0 = 0; c0 < NCH; c0 += PF) {
#pragma unroll
  for (int i = 0; i < PF; ++i) {
    const int c = c0 + i;
    if (c >= NCH) break;  // warp-uniform
    const uint4 raw = pf[i];
    const uint4 sr = pfs[i];
    if (c + PF < NCH) {
      pf[i] = __ldcs(xrow + (c + PF) * 32 + l);
      if (smooth) pfs[i] = __ldg(srow + (c + PF) * 32 + l);
    }
    const __nv_bfloat16* xv = reinterpret_cast<const __nv_bfloat16*>(&raw);
    float v[8];
    float amax = 0.f;
    if (smooth) {
      const __nv_bfloat16* sv = reinterpret_cast<const __nv_bfloat16*>(&sr);
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = __fmul_rn(__bfloat162float(xv[j]), __frcp_rn(__bfloat162float(sv[j])));
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = __bfloat162float(xv[j]);
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) amax = fmaxf(amax, fabsf(v[j]));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 4));
    int k = KEMPTY;
    if (amax > 0.f) {
      const float ts = __fdiv_rn(amax, 7.f);
      int ex;
      const float f = frexpf(ts, &ex);
      k = f == 0.5f ? ex - 1 : ex;
      kcm = max(kcm, k);
    }
    const int k0 = k == KEMPTY ? 0 : k;
    const bool fast = k0 > -120 && k0 < 120;
    const float inv0 = fast ? pow2f(-k0) : 0.f, inv1 = fast ? pow2f(1 - k0) : 0.f;
    const float sc0 = fast ? pow2f(k0) : 0.f, sc1 = fast ? pow2f(k0 - 1) : 0.f;
    int q0[8], q1[8];
    float s0 = 0.f, s1 = 0.f;
    if (FAST && fast) {
      constexpr float MAGIC = 12582912.f;  // 1.5·2^23: x + MAGIC rounds x (|x| < 2^22) to an integer, ties to even
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float r0 = fminf(fmaxf(__fadd_rn(__fmul_rn(v[j], inv0), MAGIC), MAGIC - 8.f), MAGIC + 7.f);
        const float r1 = fminf(fmaxf(__fadd_rn(__fmul_rn(v[j], inv1), MAGIC), MAGIC - 8.f), MAGIC + 7.f);
        q0[j] = __float_as_int(r0) - 0x4B400000;
        q1[j] = __float_as_int(r1) - 0x4B400000;
        const float d0 = __fsub_rn(v[j], __fmul_rn(__fsub_rn(r0, MAGIC), sc0));
        const float d1 = __fsub_rn(v[j], __fmul_rn(__fsub_rn(r1, MAGIC), sc1));
        s0 = __fadd_rn(s0, __fmul_rn(d0, d0));
        s1 = __fadd_rn(s1, __fmul_rn(d1, d1));
      }
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        q0[j] = max(-8, min(7, __float2int_rn(fast ? __fmul_rn(v[j], inv0) : ldexpf(v[j], -k0))));
        q1[j] = max(-8, min(7, __float2int_rn(fast ? __fmul_rn(v[j], inv1) : ldexpf(v[j], 1 - k0))));
        const float d0 = __fsub_rn(v[j], fast ? __fmul_rn(float(q0[j]), sc0) : ldexpf(float(q0[j]), k0));
        const float d1 = __fsub_rn(v[j], fast ? __fmul_rn(float(q1[j]), sc1) : ldexpf(float(q1[j]), k0 - 1));
        s0 = __fadd_rn(s0, __fmul_rn(d0, d0));
        s1 = __fadd_rn(s1, __fmul_rn(d1, d1));
      }
    }
#pragma unroll
    for (int o = 1; o < 8; o <<= 1) {
      s0 = __fadd_rn(s0, __shfl_xor_sync(0xffffffffu, s0, o));
      s1 = __fadd_rn(s1, __shfl_xor_sync(0xffffffffu, s1, o));
    }
    const bool finer = k != KEMPTY && s1 < s0;
    if (finer) k -= 1;
    uint32_t packed = 0;
    if (k != KEMPTY) {
#pragma unroll
      for (int j = 0; j < 8; ++j) packed |= uint32_t((finer ? q1[j] : q0[j]) & 15) << (4 * j);
    }
    csm[c * 32 + l] = packed;
    if (l % 8 == 0) kx[4 * c + l / 8] = static_cast<signed char>(k == KEMPTY ? -128 : k);
  }
  }
#pragma unroll
  for (int o = 16; o; o >>= 1) kcm = max(kcm, __shfl_xor_sync(0xffffffffu, kcm, o));
  __syncwarp();
  const float la = lora_act ? lora_act[size_t(m) * R + l] : 0.f;
  const int cr = lr_shift ? lr_shift[l] : 0;
  const float lr = lr_shift ? fabsf(ldexpf(la, -cr)) : 0.f;
  float lrmax = lr;
#pragma unroll
  for (int o = 16; o; o >>= 1) lrmax = fmaxf(lrmax, __shfl_xor_sync(0xffffffffu, lrmax, o));
  int E = kcm == -128 ? 0 : kcm - EMAX;
  if (lrmax > 0.f) {
    int ex;
    const float f = frexpf(__fdiv_rn(lrmax, 256.f), &ex);
    const int elr = f == 0.5f ? ex - 1 : ex;
    if (kcm == -128 || elr > E) E = elr;
  }
  if (l == 0) sx[m] = ldexpf(1.f, E);
  uint8_t* arow = a8 + size_t(m) * Kx;
#pragma unroll 2
  for (int c = 0; c < NCH; ++c) {
    const uint32_t cw = csm[c * 32 + l];
    const int kg = kx[4 * c + l / 8];
    uint32_t lo = 0, hi = 0;
    if (kg != -128) {
      int e = kg - E;
      if (FAST && e >= -6) {
        // E4M3 bytes of |q| = 0..7 (0x00 0x38 0x40 0x44 | 0x48 0x4A 0x4C 0x4E), |q| = 8 is 0x50; q·2^e adds e to
        // the exponent field (bits 3..6), the sign is bit 7
        const uint32_t add = uint32_t(e) << 3;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const int q = int(cw << (28 - 4 * j)) >> 28;
          const uint32_t aq = uint32_t(q < 0 ? -q : q);
          uint32_t b = aq == 8 ? 0x50u : (__byte_perm(0x44403800u, 0x4E4C4A48u, aq) & 0xFFu);
          b = q == 0 ? 0u : (((b + add) & 0x7Fu) | (q < 0 ? 0x80u : 0u));
          if (j < 4) lo |= b << (8 * j);
          else hi |= b << (8 * (j - 4));
        }
      } else {
        const int shift = e < EMIN ? e - EMIN : 0;
        if (e < EMIN) e = EMIN;
        const float pe = pow2f(e);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          int q = int(cw << (28 - 4 * j)) >> 28;
          if (shift) q = __float2int_rn(ldexpf(float(q), shift));
          const uint32_t b = __nv_cvt_float_to_fp8(__fmul_rn(float(q), pe), __NV_SATFINITE, __NV_E4M3);
          if (j < 4) lo |= b << (8 * j);
          else hi |= b << (8 * (j - 4));
        }
      }
    }
    __stcs(reinterpret_cast<uint2*>(arow + c * 256 + 8 * l), make_uint2(lo, hi));
  }
  if (lr_shift) {
    const float a = ldexpf(la, -cr - E);
    const __nv_fp8_storage_t h = __nv_cvt_float_to_fp8(a, __NV_SATFINITE, __NV_E4M3);
    __nv_fp8_e4m3 hv;
    hv.__x = h;
    const __nv_fp8_storage_t lo8 = __nv_cvt_float_to_fp8(a - float(hv), __NV_SATFINITE, __NV_E4M3);
    arow[K + l] = h;
    arow[K + R + l] = h;
    arow[K + 2 * R + l] = lo8;
  }
#endif
}

}  // namespace p2q_old
