// The int4p2 FP8 path for Hopper (issue 16; C API and layouts in p2_fp8.h): the one-pass activation quantizer
// (FP8 operand + per-token scale + x·lora_downᵀ) and the FP8 GEMM through cuBLASLt with outer-vector scales.
// The kernel body is built for sm_89+ only (E4M3 conversions in hardware; cuBLASLt FP8 needs sm_89+); older targets
// get a stub and the launcher reports the compute capability.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "cublaslt_api.h"
#include "p2_fp8.h"

namespace {

[[maybe_unused]] constexpr int G = 64, EMIN = SVDQ_P2_EXP_MIN, EMAX = SVDQ_P2_EXP_MAX, R = 32, KEMPTY = -1000;
thread_local std::string g_err;

const char* fail(const std::string& m) {
  g_err = m;
  return g_err.c_str();
}

// 2^e as a float for e in [-126, 127] (exact; multiplying by it is exact unless the product leaves the normal range)
[[maybe_unused]] __device__ __forceinline__ float pow2f(int e) { return __int_as_float((e + 127) << 23); }

// ---- device: the activation quantizer (one read of x, one write of the FP8 operand; the low-rank down x·lora_downᵀ
// comes from the caller, e.g. one cuBLAS GEMM). Both kernels below give the same bytes.
//
// Per group of 64 (lanes of an octet hold 8 consecutive values each, the octet a whole group):
//   v = x·(1/λ) in f32 (__frcp_rn(λ), then __fmul_rn); k = ⌈log2(amax/7)⌉; codes of k (no clipping) and k − 1
//   (finer, clips); squared errors summed in f32 per lane in order, then over the octet as the tree
//   ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)); k − 1 if its error is smaller. Row: E = max k − 5 (raised when a low-rank
//   value |lora_act·2^-c_r| would pass 256), S_x = 2^E, bytes = E4M3(q·2^(k_g − E)) (requantized below 2^EMIN).

// the arithmetic of one lane's 8 values as the reference does it (conversion instructions): q[8] the chosen codes,
// kq the group exponent as stored (signed char of k or -128), kc its contribution to the row maximum (KEMPTY: none).
// `mask`: the octet's lanes (the shuffles stay inside the octet)
[[maybe_unused]] __device__ __forceinline__ void group_ref(const float (&v)[8], unsigned mask, int (&q)[8], int& kq,
                                                           int& kc) {
  float amax = 0.f;
#pragma unroll
  for (int j = 0; j < 8; ++j) amax = fmaxf(amax, fabsf(v[j]));
  amax = fmaxf(amax, __shfl_xor_sync(mask, amax, 1));
  amax = fmaxf(amax, __shfl_xor_sync(mask, amax, 2));
  amax = fmaxf(amax, __shfl_xor_sync(mask, amax, 4));
  int k = KEMPTY;
  if (amax > 0.f) {
    const float ts = __fdiv_rn(amax, 7.f);
    int ex;
    const float f = frexpf(ts, &ex);
    k = f == 0.5f ? ex - 1 : ex;
  }
  kc = k;
  const int k0 = k == KEMPTY ? 0 : k;
  // powers of two by exponent bits where that is exact (|k0| < 120 covers any real activation), else ldexpf
  const bool fast = k0 > -120 && k0 < 120;
  const float inv0 = fast ? pow2f(-k0) : 0.f, inv1 = fast ? pow2f(1 - k0) : 0.f;
  const float sc0 = fast ? pow2f(k0) : 0.f, sc1 = fast ? pow2f(k0 - 1) : 0.f;
  int q0[8], q1[8];
  float s0 = 0.f, s1 = 0.f;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    q0[j] = max(-8, min(7, __float2int_rn(fast ? __fmul_rn(v[j], inv0) : ldexpf(v[j], -k0))));
    q1[j] = max(-8, min(7, __float2int_rn(fast ? __fmul_rn(v[j], inv1) : ldexpf(v[j], 1 - k0))));
    const float d0 = __fsub_rn(v[j], fast ? __fmul_rn(float(q0[j]), sc0) : ldexpf(float(q0[j]), k0));
    const float d1 = __fsub_rn(v[j], fast ? __fmul_rn(float(q1[j]), sc1) : ldexpf(float(q1[j]), k0 - 1));
    s0 = __fadd_rn(s0, __fmul_rn(d0, d0));
    s1 = __fadd_rn(s1, __fmul_rn(d1, d1));
  }
#pragma unroll
  for (int o = 1; o < 8; o <<= 1) {
    s0 = __fadd_rn(s0, __shfl_xor_sync(mask, s0, o));
    s1 = __fadd_rn(s1, __shfl_xor_sync(mask, s1, o));
  }
  const bool finer = k != KEMPTY && s1 < s0;
  if (finer) k -= 1;
#pragma unroll
  for (int j = 0; j < 8; ++j) q[j] = k == KEMPTY ? 0 : (finer ? q1[j] : q0[j]);
  kq = static_cast<signed char>(k == KEMPTY ? -128 : k);
}

// the row exponent E from the row's largest group exponent kcm (-128: none) and the low-rank values of lane l
// (la = lora_act[m, l], cr = c_l); writes sx[m] and the 3R low-rank columns of the row (arow = a8 + m·Kx)
[[maybe_unused]] __device__ __forceinline__ int row_exponent(int kcm, float la, int cr, bool lowrank, int K,
                                                             uint8_t* arow, float* sxm, int l) {
  const float lr = lowrank ? fabsf(ldexpf(la, -cr)) : 0.f;
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
  if (l == 0) *sxm = ldexpf(1.f, E);
  if (lowrank) {
    const float a = ldexpf(la, -cr - E);
    const __nv_fp8_storage_t h = __nv_cvt_float_to_fp8(a, __NV_SATFINITE, __NV_E4M3);
    __nv_fp8_e4m3 hv;
    hv.__x = h;
    const __nv_fp8_storage_t lo8 = __nv_cvt_float_to_fp8(a - float(hv), __NV_SATFINITE, __NV_E4M3);
    arow[K + l] = h;
    arow[K + R + l] = h;
    arow[K + 2 * R + l] = lo8;
  }
  return E;
}

// the E4M3 bytes of q·2^e (kg: the group exponent as stored, E the row's) for 8 codes, the reference way
[[maybe_unused]] __device__ __forceinline__ uint2 bytes_ref(const int (&q)[8], int kg, int E) {
  uint32_t lo = 0, hi = 0;
  if (kg != -128) {
    int e = kg - E;
    const int shift = e < EMIN ? e - EMIN : 0;  // below the window: requantize the code, rint(q·2^shift)
    if (e < EMIN) e = EMIN;
    const float pe = pow2f(e);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      int qq = q[j];
      if (shift) qq = __float2int_rn(ldexpf(float(qq), shift));
      const uint32_t b = __nv_cvt_float_to_fp8(__fmul_rn(float(qq), pe), __NV_SATFINITE, __NV_E4M3);
      if (j < 4) lo |= b << (8 * j);
      else hi |= b << (8 * (j - 4));
    }
  }
  return make_uint2(lo, hi);
}

// The reference kernel (svdq_p2_rows_args.reference = 1; tests): one warp per row, 8 rows per block; lane l holds the
// values k = 256c + 8l .. +7 of chunk c (group 4c + l/8; the last chunk may be half: K = 1152), codes in shared
// memory until E is known, every value through the conversion instructions.
__global__ void __launch_bounds__(256)
    p2_rows_ref_kernel(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ smooth,
                       const float* __restrict__ lora_act, const int* __restrict__ lr_shift, int M, int K, int Kx,
                       uint8_t* __restrict__ a8, float* __restrict__ sx) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 890
  __trap();  // not built below sm_89 (the launcher refuses first)
#else
  const int NCH = (K + 255) / 256;
  extern __shared__ uint32_t rsm[];  // codes [8 warps][NCH·32][8] int8, then group exponents [8][NCH·4] int8
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  int8_t* csm = reinterpret_cast<int8_t*>(rsm) + size_t(w) * NCH * 256;
  signed char* kx = reinterpret_cast<signed char*>(rsm) + size_t(8) * NCH * 256 + w * NCH * 4;
  const int m = blockIdx.x * 8 + w;
  if (m >= M) return;  // whole warps leave: no block-wide barrier below
  int kcm = -128;
  for (int c = 0; c < NCH; ++c) {
    const int k0 = 256 * c + 8 * l;
    const bool in = k0 < K;  // octet-uniform (K % 64 == 0)
    uint4 raw = make_uint4(0, 0, 0, 0), sr = make_uint4(0, 0, 0, 0);
    if (in) {
      raw = *reinterpret_cast<const uint4*>(x + size_t(m) * K + k0);
      if (smooth) sr = *reinterpret_cast<const uint4*>(smooth + k0);
    }
    const __nv_bfloat16* xv = reinterpret_cast<const __nv_bfloat16*>(&raw);
    const __nv_bfloat16* sv = reinterpret_cast<const __nv_bfloat16*>(&sr);
    float v[8];
#pragma unroll
    for (int j = 0; j < 8; ++j)
      v[j] = smooth ? __fmul_rn(__bfloat162float(xv[j]), __frcp_rn(__bfloat162float(sv[j]))) : __bfloat162float(xv[j]);
    int q[8], kq, kc;
    group_ref(v, 0xffffffffu, q, kq, kc);
    if (in) {
      if (kc != KEMPTY) kcm = max(kcm, kc);
#pragma unroll
      for (int j = 0; j < 8; ++j) csm[k0 + j] = static_cast<int8_t>(q[j]);
      if (l % 8 == 0) kx[4 * c + l / 8] = static_cast<signed char>(kq);
    }
  }
#pragma unroll
  for (int o = 16; o; o >>= 1) kcm = max(kcm, __shfl_xor_sync(0xffffffffu, kcm, o));
  __syncwarp();
  const float la = lora_act ? lora_act[size_t(m) * R + l] : 0.f;
  uint8_t* arow = a8 + size_t(m) * Kx;
  const int E = row_exponent(kcm, la, lr_shift ? lr_shift[l] : 0, lr_shift != nullptr, K, arow, sx + m, l);
  for (int c = 0; c < NCH; ++c) {
    const int k0 = 256 * c + 8 * l;
    if (k0 >= K) break;
    int q[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) q[j] = csm[k0 + j];
    *reinterpret_cast<uint2*>(arow + k0) = bytes_ref(q, kx[4 * c + l / 8], E);
  }
#endif
}

// ---- the fast kernel: persistent blocks of NT threads (NT/8 octets); block b owns the contiguous rows
// [b·M/grid, (b+1)·M/grid) (balanced to one row) and takes them in sets of RB rows (the last set may be short). Per set:
// (1) each octet quantizes its share of the set's (row, 64-group) units — unit u of a set is the 64 values at u·64 of
// the set's first row, so addresses advance linearly — x arrives by cp.async PF units ahead per lane, across set
// boundaries, so loads stay in flight through the barriers and phase 3; 1/λ comes from shared memory (computed once
// per block); codes (4 bits), the stored and the searched group exponents go to shared memory (two buffers); (2) one
// warp per row: the row's largest group exponent, E, S_x, the low-rank columns, and each group's byte exponent
// e = k_g − E (or "reference path"); (3) all threads write the operand, 16 bytes per store, at 16·i + 96·row.
// Same bytes as p2_rows_ref_kernel, with fewer instructions:
//  - k from the bits of amax: amax <= 7·2^k exactly when RN(amax/7) <= 2^k (the next float above 7·2^k divides to
//    more than half an ulp above 2^k), so k = ((bits(amax) + 0x1FFFFF) >> 23) − 129 (mantissa > 1.75 rounds up);
//  - codes by the 1.5·2^23 magic addition in one FMA (v·2^-k is exact), the k codes need no clamp (|v·2^-k| <= 7),
//    the error v − q·2^k in one FMA (q·2^k exact), squares and sums rounded as the reference rounds them;
//  - the octet's two sums in 4 shuffles (even lanes carry the k sums, odd lanes the k − 1 sums: same tree);
//  - bytes of q·2^e (e in [EMIN, EMAX], all exact in E4M3) as f16 (1024 + q + 8)·2^e − 1032·2^e in one HFMA2, then
//    the f16x2 → e4m3x2 conversion: 2 values per conversion, exact, so the same bytes as the f32 conversion.
// Groups with amax outside [2^-100, 2^100) (zero, subnormal, huge, Inf/NaN) and bytes below the window (e < EMIN)
// take the reference arithmetic.
[[maybe_unused]] __device__ __forceinline__ float fmax_nan(float a, float b) {
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t s) { return __byte_perm(a, b, s); }
// 8 codes as 4-bit two's complement nibbles (q0 q4 q1 q5 q2 q6 q3 q7 from bit 0) → 8 E4M3 bytes of q·2^e
[[maybe_unused]] __device__ __forceinline__ uint2 bytes_fast(uint32_t nib, uint32_t sc2, uint32_t bi2) {
  const uint32_t ev = (nib & 0x0F0F0F0Fu) ^ 0x08080808u, od = ((nib >> 4) & 0x0F0F0F0Fu) ^ 0x08080808u;
  const uint32_t h[4] = {prmt(ev, 0x64u, 0x4140), prmt(ev, 0x64u, 0x4342), prmt(od, 0x64u, 0x4140),
                         prmt(od, 0x64u, 0x4342)};
  uint32_t b[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    uint32_t f;
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(f) : "r"(h[i]), "r"(sc2), "r"(bi2));
    uint16_t o;
    asm("cvt.rn.satfinite.e4m3x2.f16x2 %0, %1;" : "=h"(o) : "r"(f));
    b[i] = o;
  }
  return make_uint2(prmt(b[0], b[1], 0x5410), prmt(b[2], b[3], 0x5410));
}
[[maybe_unused]] __device__ __forceinline__ void unpack_nib(uint32_t nib, int (&q)[8]) {
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int c = (nib >> (j < 4 ? 8 * j : 8 * (j - 4) + 4)) & 15;
    q[j] = (c ^ 8) - 8;
  }
}
// bytes q0..q3, q4..q7 (low nibbles used)
[[maybe_unused]] __device__ __forceinline__ uint32_t pack_nib(uint32_t b0, uint32_t b1) {
  return (b0 & 0x0F0F0F0Fu) | ((b1 << 4) & 0xF0F0F0F0u);
}
// 1/λ in shared memory: 16-byte quad Q stored at Q ^ ((Q >> 3) & 1), so an octet's two 16-byte loads per lane (quads
// 2s and 2s + 1 of its group) hit 8 distinct 16-byte bank groups
[[maybe_unused]] __device__ __forceinline__ int rinv_quad(int Q) { return Q ^ ((Q >> 3) & 1); }

template <int NT, int PF>
__global__ void __launch_bounds__(NT, 1024 / NT)  // 64 registers: two 512-thread blocks per SM
    p2_rows_kernel(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ smooth,
                   const float* __restrict__ lora_act, const int* __restrict__ lr_shift, int M, int K, int Kx, int RB,
                   uint8_t* __restrict__ a8, float* __restrict__ sx) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 890
  __trap();  // not built below sm_89 (the launcher refuses first)
#else
  constexpr int NOCT = NT / 8, NW = NT / 32;
  constexpr float MAGIC = 12582912.f;  // 1.5·2^23: t + MAGIC rounds t (|t| < 2^22) to an integer, ties to even
  constexpr signed char EB_REF = 127;  // byte exponent of a group that takes the reference arithmetic in phase 3
  const int NG = K / G, W16 = K / 16, UPO = (RB * NG + NOCT - 1) / NOCT, RNG = RB * NG;
  const int rb0 = int(static_cast<long long>(blockIdx.x) * M / gridDim.x);
  const int rb1 = int(static_cast<long long>(blockIdx.x + 1) * M / gridDim.x);
  const int nsets = (rb1 - rb0 + RB - 1) / RB;
  const int tid = threadIdx.x, w = tid / 32, l = tid % 32, s8 = l % 8, oct = tid / 8, g0 = oct % NG;
  extern __shared__ __align__(16) unsigned char smem[];
  uint4* ring = reinterpret_cast<uint4*>(smem);                                   // [PF][NT]
  float* rinv = reinterpret_cast<float*>(ring + PF * NT);                         // [K] (swizzled quads) if smooth
  uint32_t* codes = reinterpret_cast<uint32_t*>(rinv + (smooth ? K : 0));        // [2][RB][K/8]
  int* Es = reinterpret_cast<int*>(codes + 2 * RB * (K / 8));                     // [2][RB]
  short* kcs = reinterpret_cast<short*>(Es + 2 * RB);                             // [2][RB·NG] searched k (or KEMPTY)
  signed char* kx = reinterpret_cast<signed char*>(kcs + 2 * RNG);                // [2][RB·NG] stored k
  signed char* eb = kx + 2 * RNG;                                                 // [2][RB·NG] k − E, or EB_REF
  if (smooth)
    for (int k = tid; k < K; k += NT) rinv[rinv_quad(k / 4) * 4 + k % 4] = __frcp_rn(__bfloat162float(smooth[k]));
  const int cr = lr_shift ? lr_shift[l] : 0;
  // 1/λ quads 2·s8 and 2·s8 + 1 of a group as rinv_quad places them: the swizzle bit is bit 2 of s8 for every group
  const int rq0 = (2 * s8) ^ ((s8 >> 2) & 1), rq1 = (2 * s8 + 1) ^ ((s8 >> 2) & 1);
  // the prefetch cursor walks this octet's units of this block's sets (unit u = oct + NOCT·j of a set)
  int p_set = 0, p_j = 0, p_u = oct, p_lim = min(RB, rb1 - rb0) * NG;
  uint32_t p_off = uint32_t(rb0) * uint32_t(K) + uint32_t(oct * G + 8 * s8);  // element offset (M·K < 2^32: launcher)
  const uint32_t ring_s = static_cast<uint32_t>(__cvta_generic_to_shared(ring + tid));
  auto issue = [&](int slot) {
    const bool ok = p_set < nsets && p_u < p_lim;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(ring_s + uint32_t(slot * NT * 16)),
                 "l"(__cvta_generic_to_global(x + (ok ? p_off : 0u))), "r"(ok ? 16 : 0)
                 : "memory");
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    if (++p_j == UPO) {
      p_j = 0;
      p_u = oct;
      const int m = rb0 + (++p_set) * RB;
      p_lim = min(RB, rb1 - m) * NG;
      p_off = uint32_t(m) * uint32_t(K) + uint32_t(oct * G + 8 * s8);
    } else {
      p_u += NOCT;
      p_off += NOCT * G;
    }
  };
  int slot_c = 0;  // the ring slot consumed next; the one filled next is slot_c − 1 (mod PF)
#pragma unroll
  for (int i = 0; i < PF - 1; ++i) issue(i);
  __syncthreads();
  const uint32_t mW16 = 0xFFFFFFFFu / uint32_t(W16) + 1u;  // r = umulhi(i, mW16) = i / W16 for i < 2^32 / W16
  int buf = 0;
  for (int set = 0; set < nsets; ++set, buf ^= 1) {
    const int m0 = rb0 + set * RB, nrows = min(RB, rb1 - m0), ulim = nrows * NG;
    // low-rank values of this warp's first row (phase 2), loaded now so that they are here after the barrier
    const float la0 = lora_act && w < nrows ? lora_act[size_t(m0 + w) * R + l] : 0.f;
    uint32_t* cb = codes + buf * RB * (K / 8);
    short* kcb = kcs + buf * RNG;
    signed char* kb = kx + buf * RNG;
    signed char* ebb = eb + buf * RNG;
    int c_u = oct, c_g = g0;
    for (int j = 0; j < UPO; ++j) {
      issue(slot_c == 0 ? PF - 1 : slot_c - 1);
      asm volatile("cp.async.wait_group %0;\n" ::"n"(PF - 1) : "memory");
      const uint4 raw = ring[slot_c * NT + tid];
      slot_c = slot_c == PF - 1 ? 0 : slot_c + 1;
      const bool valid = c_u < ulim;  // octet-uniform
      float v[8];
      {
        const uint32_t xw[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int j2 = 0; j2 < 8; ++j2)
          v[j2] = __uint_as_float(j2 & 1 ? xw[j2 / 2] & 0xFFFF0000u : xw[j2 / 2] << 16);  // bf16 → f32, exact
        if (smooth) {
          const float4* r4 = reinterpret_cast<const float4*>(rinv) + c_g * 16;
          const float4 a = r4[rq0], b = r4[rq1];
          v[0] = __fmul_rn(v[0], a.x), v[1] = __fmul_rn(v[1], a.y), v[2] = __fmul_rn(v[2], a.z);
          v[3] = __fmul_rn(v[3], a.w), v[4] = __fmul_rn(v[4], b.x), v[5] = __fmul_rn(v[5], b.y);
          v[6] = __fmul_rn(v[6], b.z), v[7] = __fmul_rn(v[7], b.w);
        }
      }
      float am = 0.f;
#pragma unroll
      for (int j2 = 0; j2 < 8; ++j2) am = fmax_nan(am, fabsf(v[j2]));
      am = fmax_nan(am, __shfl_xor_sync(0xffffffffu, am, 1));
      am = fmax_nan(am, __shfl_xor_sync(0xffffffffu, am, 2));
      am = fmax_nan(am, __shfl_xor_sync(0xffffffffu, am, 4));
      const bool fast = am >= 0x1p-100f && am < 0x1p100f;  // false for NaN
      const int k = int((__float_as_uint(am) + 0x1FFFFFu) >> 23) - 129;
      const float inv0 = pow2f(-k), inv1 = pow2f(1 - k), sc0 = pow2f(k), sc1 = pow2f(k - 1);
      float r0[8], r1[8], s0 = 0.f, s1 = 0.f;
#pragma unroll
      for (int j2 = 0; j2 < 8; ++j2) {
        r0[j2] = __fmaf_rn(v[j2], inv0, MAGIC);
        const float d0 = __fmaf_rn(__fsub_rn(MAGIC, r0[j2]), sc0, v[j2]);
        s0 = __fadd_rn(s0, __fmul_rn(d0, d0));
        r1[j2] = fminf(fmaxf(__fmaf_rn(v[j2], inv1, MAGIC), MAGIC - 8.f), MAGIC + 7.f);
        const float d1 = __fmaf_rn(__fsub_rn(MAGIC, r1[j2]), sc1, v[j2]);
        s1 = __fadd_rn(s1, __fmul_rn(d1, d1));
      }
      const bool odd = l & 1;
      float S = __fadd_rn(odd ? s1 : s0, __shfl_xor_sync(0xffffffffu, odd ? s0 : s1, 1));
      S = __fadd_rn(S, __shfl_xor_sync(0xffffffffu, S, 2));
      S = __fadd_rn(S, __shfl_xor_sync(0xffffffffu, S, 4));
      const float So = __shfl_xor_sync(0xffffffffu, S, 1);
      const bool finer = odd ? S < So : So < S;  // s1 < s0
      uint32_t rb[8];
#pragma unroll
      for (int j2 = 0; j2 < 8; ++j2) rb[j2] = __float_as_uint(finer ? r1[j2] : r0[j2]);  // low byte: q as int8
      uint32_t nib = pack_nib(prmt(prmt(rb[0], rb[1], 0x0040), prmt(rb[2], rb[3], 0x0040), 0x5410),
                              prmt(prmt(rb[4], rb[5], 0x0040), prmt(rb[6], rb[7], 0x0040), 0x5410));
      int kq = k - (finer ? 1 : 0), kc = k;
      if (valid && !fast) {  // octet-uniform: the reference arithmetic
        int q[8];
        group_ref(v, 0xFFu << (l & 24), q, kq, kc);
        uint32_t b0 = 0, b1 = 0;
#pragma unroll
        for (int j2 = 0; j2 < 4; ++j2) b0 |= uint32_t(q[j2] & 0xFF) << (8 * j2), b1 |= uint32_t(q[j2 + 4] & 0xFF) << (8 * j2);
        nib = pack_nib(b0, b1);
      }
      if (valid) {
        cb[c_u * 8 + s8] = nib;
        if (s8 == 0) {
          kb[c_u] = static_cast<signed char>(kq);
          kcb[c_u] = static_cast<short>(kc);  // kc is KEMPTY or within ±160: fits
        }
      }
      c_u += NOCT;
      c_g += NOCT;
      while (c_g >= NG) c_g -= NG;
    }
    __syncthreads();
    for (int r = w; r < nrows; r += NW) {
      const int m = m0 + r;
      int kcm = -128;  // as the reference: the row's largest k over non-empty groups, at least -128 (-128: none)
      for (int g = l; g < NG; g += 32) {
        const int kc = kcb[r * NG + g];
        if (kc != KEMPTY) kcm = max(kcm, kc);
      }
#pragma unroll
      for (int o = 16; o; o >>= 1) kcm = max(kcm, __shfl_xor_sync(0xffffffffu, kcm, o));
      const float la = r == w ? la0 : (lora_act ? lora_act[size_t(m) * R + l] : 0.f);
      const int E = row_exponent(kcm, la, cr, lr_shift != nullptr, K, a8 + size_t(m) * Kx, sx + m, l);
      if (l == 0) Es[buf * RB + r] = E;
      for (int g = l; g < NG; g += 32) {
        const int kg = kb[r * NG + g], e = kg == -128 ? 0 : kg - E;
        ebb[r * NG + g] = e >= EMIN && e <= EMAX ? static_cast<signed char>(e) : EB_REF;
      }
    }
    __syncthreads();
    uint8_t* orow = a8 + size_t(m0) * Kx;
    const int xtra = Kx - K, nit = nrows * W16;
    for (int it = tid; it < nit; it += NT) {
      const uint2 cw = *reinterpret_cast<const uint2*>(cb + 2 * it);
      const int e = ebb[it >> 2], r = int(__umulhi(uint32_t(it), mW16));
      uint2 lo, hi;
      if (e != EB_REF) {
        const uint32_t sc = uint32_t(e + 15) << 10, bi = (uint32_t(e + 25) << 10) | 0x8008u;  // 2^e, −1032·2^e (f16)
        lo = bytes_fast(cw.x, sc | sc << 16, bi | bi << 16);
        hi = bytes_fast(cw.y, sc | sc << 16, bi | bi << 16);
      } else {
        const int kg = kb[it >> 2], E = Es[buf * RB + r];
        int q[8];
        unpack_nib(cw.x, q);
        lo = bytes_ref(q, kg, E);
        unpack_nib(cw.y, q);
        hi = bytes_ref(q, kg, E);
      }
      __stcs(reinterpret_cast<uint4*>(orow + 16 * size_t(it) + size_t(r) * xtra), make_uint4(lo.x, lo.y, hi.x, hi.y));
    }
  }
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}

int device_cc(int* sms) {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return -1;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  if (sms) cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev);
  return major * 10 + minor;
}

// ---- cuBLASLt (dlopen), one plan per shape
struct Plan {
  int M, N, Kx, fast, ldo, epi;
  lt::Desc desc;
  lt::Layout la, lb, ld;
  lt::Algo algo;
  bool heur_only;  // the caller asked for cuBLASLt's heuristic answer (svdq_p2_gemm_args::heuristic_only)
  bool tuned;      // algo is final: tuned (tune_plan), or heur_only
};
struct LtState {
  lt::Api api;
  lt::Handle handle = nullptr;
  void* ws = nullptr;
  std::string error;
  std::vector<Plan> plans;
  std::mutex mu;
};
constexpr size_t WS_BYTES = 32ull << 20;  // cuBLASLt workspace (its Hopper kernels ask for up to 32 MiB)

LtState& lts() {
  static LtState s;
  static std::once_flag once;
  std::call_once(once, [] {
    std::string why;
    if (!s.api.load(&why)) {
      s.error = why;
      return;
    }
    if (s.api.create(&s.handle) != 0) {
      s.error = "cublasLtCreate failed";
      return;
    }
    if (cudaMalloc(&s.ws, WS_BYTES) != cudaSuccess) s.error = "cudaMalloc of the cuBLASLt workspace failed";
  });
  return s;
}

}  // namespace

extern "C" int svdq_p2_supported_k(int K) {
  return K == 1024 || K == 1152 || K == 3072 || K == 4608 || K == 12288 || K == 15360;
}

extern "C" const char* svdq_cublaslt_available(void) {
  LtState& s = lts();
  return s.error.empty() ? nullptr : s.error.c_str();
}

namespace {
// the fast kernel's launch: NT threads, PF units of x in flight per thread, RB rows per set (0: chosen here)
struct RowsCfg {
  int nt, pf, rb;
};
size_t rows_smem(const RowsCfg& c, int K, bool smooth) {  // ring, 1/λ, codes, E, searched / stored / byte exponents
  return size_t(c.pf) * c.nt * 16 + (smooth ? size_t(K) * 4 : 0) + size_t(2) * c.rb * (K / 2) + size_t(8) * c.rb +
         size_t(2) * c.rb * (K / G) * 4;
}
using RowsKernel = void (*)(const __nv_bfloat16*, const __nv_bfloat16*, const float*, const int*, int, int, int, int,
                            uint8_t*, float*);
RowsKernel rows_kernel(int nt, int pf) {
  if (nt == 256) return pf == 16 ? p2_rows_kernel<256, 16> : pf == 8 ? p2_rows_kernel<256, 8> : p2_rows_kernel<256, 4>;
  return pf == 8 ? p2_rows_kernel<512, 8> : p2_rows_kernel<512, 4>;
}
int gcd_int(int a, int b) { return b ? gcd_int(b, a % b) : a; }

const char* launch_rows(const svdq_p2_rows_args* a, RowsCfg c, cudaStream_t s) {
  int sms = 0;
  const int cc = device_cc(&sms);
  if (cc < 89) return fail("svdq_p2_quantize_rows: needs compute capability 8.9+ (E4M3), got " + std::to_string(cc));
  const int K = a->K, M = a->M, NG = K / G, Kx = K + (a->lr_shift ? 3 * R : 0);
  const auto* x = static_cast<const __nv_bfloat16*>(a->x);
  const auto* lam = static_cast<const __nv_bfloat16*>(a->smooth);
  auto* a8 = static_cast<uint8_t*>(a->a8);
  if ((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(a8)) % 16)
    return fail("svdq_p2_quantize_rows: x and a8 must be 16-byte aligned");
  if (a->reference) {
    const size_t sh = size_t(8) * ((K + 255) / 256) * 260;
    if (sh > 48 * 1024) {
      const cudaError_t e = cudaFuncSetAttribute(p2_rows_ref_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(sh));
      if (e != cudaSuccess) return fail(std::string("svdq_p2_quantize_rows: cudaFuncSetAttribute: ") + cudaGetErrorString(e));
    }
    p2_rows_ref_kernel<<<(M + 7) / 8, 256, sh, s>>>(x, lam, a->lora_act, a->lr_shift, M, K, Kx, a8, a->sx);
  } else {
    const bool smooth = lam != nullptr;
    if (size_t(M) * K >= (size_t(1) << 32))  // the kernel's element offsets are 32-bit
      return fail("svdq_p2_quantize_rows: M·K must be below 2^32; got M=" + std::to_string(M) + " K=" + std::to_string(K));
    if (c.rb <= 0) {  // sets of RB rows whose RB·K/64 units split evenly over the octets, at least one set per SM;
      // at least 2 rows per set: at K = 12288 (one row = 3 units per octet) 2 rows ran 1.11x faster than 1 on an H100
      // (fewer barriers per value; docs/benchmarks.md "The rows quantizer, second pass")
      const int noct = c.nt / 8;
      c.rb = std::max(2, noct / gcd_int(NG, noct));
      while (c.rb > 1 && (M + c.rb - 1) / c.rb < sms) c.rb /= 2;
    }
    while (c.rb > 1 && rows_smem(c, K, smooth) > 200 * 1024) c.rb /= 2;
    const size_t sh = rows_smem(c, K, smooth);
    RowsKernel kern = rows_kernel(c.nt, c.pf);
    static std::mutex mu;
    static std::vector<std::pair<RowsKernel, size_t>> seen;  // kernels whose shared-memory limit is raised, occupancy
    static std::vector<std::pair<size_t, int>> occ;
    int per_sm = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      bool raised = false;
      for (auto& p : seen) raised |= p.first == kern;
      if (!raised) {
        const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
        if (e != cudaSuccess)
          return fail(std::string("svdq_p2_quantize_rows: cudaFuncSetAttribute: ") + cudaGetErrorString(e));
        seen.push_back({kern, 0});
      }
      const size_t key = (sh << 12) | (size_t(c.nt) << 4) | size_t(c.pf);
      for (auto& p : occ)
        if (p.first == key) per_sm = p.second;
      if (!per_sm) {
        const cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, c.nt, sh);
        if (e != cudaSuccess || per_sm < 1)
          return fail("svdq_p2_quantize_rows: no occupancy for K=" + std::to_string(K) + " (" + std::to_string(sh) +
                      " bytes of shared memory)");
        occ.push_back({key, per_sm});
      }
    }
    const int nsets = (M + c.rb - 1) / c.rb;
    const int grid = std::min(nsets, sms * per_sm);
    kern<<<grid, c.nt, sh, s>>>(x, lam, a->lora_act, a->lr_shift, M, K, Kx, c.rb, a8, a->sx);
  }
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return fail(std::string("svdq_p2_quantize_rows: launch: ") + cudaGetErrorString(e));
  return nullptr;
}

const char* check_rows(const svdq_p2_rows_args* a) {
  if (!a) return fail("svdq_p2_quantize_rows: NULL arguments");
  if (a->M <= 0 || !svdq_p2_supported_k(a->K))
    return fail("svdq_p2_quantize_rows: M > 0 and K in {1024, 1152, 3072, 4608, 12288, 15360} needed; got M=" +
                std::to_string(a->M) + " K=" + std::to_string(a->K));
  if (a->lr_shift && !a->lora_act) return fail("svdq_p2_quantize_rows: lr_shift (low-rank columns) needs lora_act");
  if (!a->x || !a->a8 || !a->sx) return fail("svdq_p2_quantize_rows: x, a8 and sx are required");
  return nullptr;
}
}  // namespace

extern "C" const char* svdq_p2_quantize_rows(const svdq_p2_rows_args* a, void* stream) {
  if (const char* m = check_rows(a)) return m;
  // 512 threads, 4 units in flight per thread: see docs/benchmarks.md (issue 16, the rows quantizer)
  return launch_rows(a, RowsCfg{512, 4, 0}, static_cast<cudaStream_t>(stream));
}

// the harness's hook (kernels/cuda/bench/p2q_bench.cu declares it): the fast kernel with a given launch
extern "C" const char* svdq_p2_quantize_rows_cfg(const svdq_p2_rows_args* a, int nt, int pf, int rb, void* stream) {
  if (const char* m = check_rows(a)) return m;
  if ((nt != 256 && nt != 512) || (pf != 4 && pf != 8 && (pf != 16 || nt != 256)))
    return fail("svdq_p2_quantize_rows_cfg: nt 256|512, pf 4|8 (or 16 with nt 256)");
  svdq_p2_rows_args b = *a;
  b.reference = 0;
  return launch_rows(&b, RowsCfg{nt, pf, rb}, static_cast<cudaStream_t>(stream));
}

namespace {
// The algorithm choice within cuBLASLt's answer. For E4M3 x E4M3 with outer-vector scales cuBLASLt 13 has one
// algorithm (id 66, 128 x 128 tiles, no split-K) and its heuristic picks the thread-block cluster shape and "custom
// option"; on an H100 (kernels/cuda/bench/lt_search.cu, docs/benchmarks.md "cuBLASLt algorithm search") other cluster
// shapes ran 1.17-1.32x faster than the heuristic's 1 x 1 with exact accumulation at M = 4608 and up to 1.19x at
// M = 256, with the output bit-identical. So on a plan's first call outside stream capture: time the heuristic's
// algorithm with every cluster shape cuBLASLt accepts (its custom option kept), then every custom option with the
// best cluster (3 calls each, the best of 2 timed; events on the caller's stream, which is synchronized once), and
// keep the fastest. Calls made during capture use the heuristic's answer until a later call outside capture tunes.
void tune_plan(LtState& st, Plan& p, const void* a8, const void* b8, void* out, cudaStream_t stream) {
  p.tuned = true;
  lt::Api& api = st.api;
  cudaEvent_t e0, e1;
  if (cudaEventCreate(&e0) != cudaSuccess) return;
  if (cudaEventCreate(&e1) != cudaSuccess) {
    cudaEventDestroy(e0);
    return;
  }
  const float one = 1.f, zero = 0.f;
  bool failed = false;
  auto time_algo = [&](const lt::Algo& a) {  // µs of one call, best of 2 after a warm-up; INFINITY if it fails
    float best = INFINITY;
    for (int r = 0; r < 3; ++r) {
      if (cudaEventRecord(e0, stream) != cudaSuccess) return INFINITY;
      if (api.matmul(st.handle, p.desc, &one, b8, p.la, a8, p.lb, &zero, out, p.ld, out, p.ld, &a, st.ws, WS_BYTES,
                     stream)) {
        failed = true;
        return INFINITY;
      }
      if (cudaEventRecord(e1, stream) != cudaSuccess || cudaEventSynchronize(e1) != cudaSuccess) return INFINITY;
      float ms = 0;
      cudaEventElapsedTime(&ms, e0, e1);
      if (r > 0) best = std::min(best, ms * 1000.f);
    }
    return best;
  };
  auto with = [&](const lt::Algo& base, int attr, uint32_t v, size_t bytes, lt::Algo* out_algo) {
    *out_algo = base;
    const uint16_t v16 = uint16_t(v);
    if (api.algoCfgSet(out_algo, attr, bytes == 2 ? static_cast<const void*>(&v16) : &v, bytes)) return false;
    lt::Heur h{};
    return api.algoCheck(st.handle, p.desc, p.la, p.lb, p.ld, p.ld, out_algo, &h) == 0 && h.state == 0 &&
           h.workspaceSize <= WS_BYTES;
  };
  lt::Algo best = p.algo;
  float best_us = time_algo(best);
  if (std::isfinite(best_us)) {
    const lt::Algo base = best;
    for (uint32_t cl = 0; cl <= 16; ++cl) {  // cublasLtClusterShape_t ids (0 = auto)
      lt::Algo a;
      if (!with(base, lt::CFG_CLUSTER_SHAPE_ID, cl, 2, &a)) continue;
      const float t = time_algo(a);
      if (t < best_us) best_us = t, best = a;
    }
    const lt::Algo base2 = best;
    for (uint32_t cu = 0; cu <= 15; ++cu) {
      lt::Algo a;
      if (!with(base2, lt::CFG_CUSTOM_OPTION, cu, 4, &a)) continue;
      const float t = time_algo(a);
      if (t < best_us) best_us = t, best = a;
    }
    p.algo = best;
  }
  if (failed) cudaGetLastError();  // a candidate that failed to launch must not leave its error behind
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
}
}  // namespace

extern "C" const char* svdq_p2_gemm(const void* a8, const float* sx, const void* b8, const float* sw, void* out,
                                    int M, int N, int Kx, int fast_accum, void* stream) {
  svdq_p2_gemm_args g{};
  g.a8 = a8;
  g.sx = sx;
  g.b8 = b8;
  g.sw = sw;
  g.out = out;
  g.M = M;
  g.N = N;
  g.Kx = Kx;
  g.fast_accum = fast_accum;
  return svdq_p2_gemm_ex(&g, stream);
}

extern "C" const char* svdq_p2_gemm_ex(const svdq_p2_gemm_args* g, void* stream) {
  if (!g) return fail("svdq_p2_gemm: NULL arguments");
  const int M = g->M, N = g->N, Kx = g->Kx, fast_accum = g->fast_accum;
  const int ldo = g->ldo ? g->ldo : N;
  const int epi = g->bias ? (g->gelu ? lt::EPILOGUE_GELU_BIAS : lt::EPILOGUE_BIAS)
                          : (g->gelu ? lt::EPILOGUE_GELU : lt::EPILOGUE_DEFAULT);
  const void *a8 = g->a8, *b8 = g->b8, *bias = g->bias;
  const float *sx = g->sx, *sw = g->sw;
  void* out = g->out;
  if (M <= 0 || N <= 0 || Kx <= 0 || Kx % 16 || N % 8 || ldo < N || ldo % 8)
    return fail("svdq_p2_gemm: M, N, Kx > 0, Kx % 16 == 0, N % 8 == 0 and ldo >= N (ldo % 8 == 0) needed; got M=" +
                std::to_string(M) + " N=" + std::to_string(N) + " Kx=" + std::to_string(Kx) + " ldo=" +
                std::to_string(ldo));
  if (!a8 || !sx || !b8 || !sw || !out) return fail("svdq_p2_gemm: NULL operand");
  if (device_cc(nullptr) < 89) return fail("svdq_p2_gemm: cuBLASLt FP8 needs compute capability 8.9+");
  LtState& st = lts();
  if (!st.error.empty()) return fail("svdq_p2_gemm: " + st.error);
  std::lock_guard<std::mutex> lock(st.mu);
  Plan* p = nullptr;
  for (Plan& q : st.plans)
    if (q.M == M && q.N == N && q.Kx == Kx && q.fast == (fast_accum != 0) && q.ldo == ldo && q.epi == epi &&
        q.heur_only == (g->heuristic_only != 0))
      p = &q;
  if (!p) {
    Plan q{M, N, Kx, fast_accum != 0, ldo, epi, nullptr, nullptr, nullptr, nullptr, {}, g->heuristic_only != 0,
           g->heuristic_only != 0};
    lt::Api& api = st.api;
    int rc = api.descCreate(&q.desc, lt::COMPUTE_32F, CUDA_R_32F);
    const int ta = lt::OP_T, tb = lt::OP_N, mode = lt::SCALE_OUTER_VEC_32F;
    const int8_t fa = fast_accum ? 1 : 0;
    rc |= api.descSet(q.desc, lt::DESC_TRANSA, &ta, sizeof ta);
    rc |= api.descSet(q.desc, lt::DESC_TRANSB, &tb, sizeof tb);
    rc |= api.descSet(q.desc, lt::DESC_FAST_ACCUM, &fa, sizeof fa);
    rc |= api.descSet(q.desc, lt::DESC_A_SCALE_MODE, &mode, sizeof mode);
    rc |= api.descSet(q.desc, lt::DESC_B_SCALE_MODE, &mode, sizeof mode);
    // the heuristic refuses outer-vector scale modes without scale pointers (status 7): set this call's
    rc |= api.descSet(q.desc, lt::DESC_A_SCALE_POINTER, &sw, sizeof sw);
    rc |= api.descSet(q.desc, lt::DESC_B_SCALE_POINTER, &sx, sizeof sx);
    // epilogue: bias [N] bf16 (one value per row of the column-major N x M result), then GELU (tanh form)
    rc |= api.descSet(q.desc, lt::DESC_EPILOGUE, &epi, sizeof epi);
    if (bias) {
      const int bt = CUDA_R_16BF;
      rc |= api.descSet(q.desc, lt::DESC_BIAS_DATA_TYPE, &bt, sizeof bt);
      rc |= api.descSet(q.desc, lt::DESC_BIAS_POINTER, &bias, sizeof bias);
    }
    // column-major view: A = weights (Kx x N), op T; B = activations (Kx x M); D = N x M (ld ldo) = row-major [M, N]
    rc |= api.layoutCreate(&q.la, CUDA_R_8F_E4M3, Kx, N, Kx);
    rc |= api.layoutCreate(&q.lb, CUDA_R_8F_E4M3, Kx, M, Kx);
    rc |= api.layoutCreate(&q.ld, CUDA_R_16BF, N, M, ldo);
    if (rc) return fail("svdq_p2_gemm: cuBLASLt descriptor setup failed (status " + std::to_string(rc) + ")");
    lt::Pref pref;
    api.prefCreate(&pref);
    const uint64_t wsb = WS_BYTES;
    api.prefSet(pref, lt::PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
    lt::Heur h[1];
    int n = 0;
    rc = api.heuristic(st.handle, q.desc, q.la, q.lb, q.ld, q.ld, pref, 1, h, &n);
    if (rc || n == 0)
      return fail("svdq_p2_gemm: cuBLASLt has no FP8 algorithm with outer-vector scales for M=" + std::to_string(M) +
                  " N=" + std::to_string(N) + " Kx=" + std::to_string(Kx) + " ldo=" + std::to_string(ldo) +
                  " epilogue=" + std::to_string(epi) + " (status " + std::to_string(rc) + ")");
    q.algo = h[0].algo;
    st.plans.push_back(q);
    p = &st.plans.back();
  }
  // the scale (and bias) pointers change per call: set them on the plan's descriptor (calls serialized by the mutex)
  int rc = st.api.descSet(p->desc, lt::DESC_A_SCALE_POINTER, &sw, sizeof sw);
  rc |= st.api.descSet(p->desc, lt::DESC_B_SCALE_POINTER, &sx, sizeof sx);
  if (bias) rc |= st.api.descSet(p->desc, lt::DESC_BIAS_POINTER, &bias, sizeof bias);
  const float one = 1.f, zero = 0.f;
  if (!rc && !p->tuned) {
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(static_cast<cudaStream_t>(stream), &cap) == cudaSuccess &&
        cap == cudaStreamCaptureStatusNone)
      tune_plan(st, *p, a8, b8, out, static_cast<cudaStream_t>(stream));
  }
  rc |= st.api.matmul(st.handle, p->desc, &one, b8, p->la, a8, p->lb, &zero, out, p->ld, out, p->ld, &p->algo, st.ws,
                      WS_BYTES, static_cast<cudaStream_t>(stream));
  if (rc) return fail("svdq_p2_gemm: cublasLtMatmul status " + std::to_string(rc));
  return nullptr;
}
