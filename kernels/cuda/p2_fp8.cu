// The int4p2 FP8 path for Hopper (issue 16; C API and layouts in p2_fp8.h): the one-pass activation quantizer
// (FP8 operand + per-token scale + x·lora_downᵀ) and the FP8 GEMM through cuBLASLt with outer-vector scales.
// The kernel body is built for sm_89+ only (E4M3 conversions in hardware; cuBLASLt FP8 needs sm_89+); older targets
// get a stub and the launcher reports the compute capability.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

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

// ---- device: one-pass activation quantizer. CTA = 16 warps over ROWS rows (16, or 4 when M is small: each row then
// split in PARTS = 16/ROWS contiguous K ranges, one warp each); warp w owns row m0 + w % ROWS, part p = w / ROWS;
// lane l holds the 8 values k = 256c + 8l .. +7 of chunk c (group 4c + l/8). Codes stay in registers (4-bit) until
// the row's exponent is known. Low-rank down on tensor cores: per chunk, part p's ROWS rows (zero-padded to 16) times
// lora_down, the 64 mma (16 k-steps × 4 rank tiles) spread over the part's ROWS warps.
// (Left out of builds with SVDQ_P2_NO_FUSED_QUANT: the engine addon uses svdq_p2_quantize_rows only, and these
// eight instantiations are most of this file's machine code.)
#ifndef SVDQ_P2_NO_FUSED_QUANT
template <int NCH, int ROWS>
__global__ void __launch_bounds__(512, 1)
    p2_quant_kernel(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ smooth,
                    const __nv_bfloat16* __restrict__ lora_down, const int* __restrict__ lr_shift, int M, int Kx,
                    uint8_t* __restrict__ a8, float* __restrict__ sx, float* __restrict__ lora_act) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 890
  __trap();  // not built below sm_89 (the launcher refuses first)
#else
  constexpr int K = NCH * 256, XS = 256 + 8, PARTS = 16 / ROWS, NCP = NCH / PARTS, KQ = ROWS / 4;
  static_assert(NCH % PARTS == 0, "chunks must split evenly over the parts");
  __shared__ __align__(16) __nv_bfloat16 xs[2][16][XS];
  __shared__ signed char kex[ROWS][K / G];
  __shared__ float lacc[4][16][R];
  __shared__ int kpart[16];
  const int w = threadIdx.x / 32, l = threadIdx.x % 32, g = l / 4, t = l % 4;
  const int row = w % ROWS, part = w / ROWS, c0 = part * NCP;
  const int m = blockIdx.x * ROWS + row;
  const bool live = m < M;
  const uint4* xrow = reinterpret_cast<const uint4*>(x + size_t(live ? m : 0) * K) + c0 * 32;
  uint32_t codes[NCP];
  int kcm = -128;  // this lane's largest ⌈log2(amax/7)⌉ (the row scale is 2^(max − 5))
  float acc[4] = {0, 0, 0, 0};
  // low-rank: this warp's rank tile (8 ranks) and its share of the 16 k-steps of a chunk
  const int nt = row % 4, kq = row / 4;
  constexpr int KSTEPS = 16 / KQ;
  // loads in flight: x and λ PF chunks ahead (16-byte loads); the chunk's lora_down fragments at the top of its
  // iteration, so their latency overlaps the quantization math and the barrier
  constexpr int PF = NCP < 4 ? NCP : 4;
  const uint4* srow = reinterpret_cast<const uint4*>(smooth) + c0 * 32;
  uint4 pf[PF], pfs[PF];
#pragma unroll
  for (int i = 0; i < PF; ++i) {
    pf[i] = live ? __ldg(xrow + i * 32 + l) : make_uint4(0, 0, 0, 0);
    if (smooth) pfs[i] = __ldg(srow + i * 32 + l);
  }
#pragma unroll
  for (int c = 0; c < NCP; ++c) {
    const int cg = c0 + c;  // chunk index in the row
    uint32_t bf[KSTEPS][2];
    if (lora_down != nullptr) {
#pragma unroll
      for (int i = 0; i < KSTEPS; ++i) {
        const __nv_bfloat16* ld = lora_down + size_t(nt * 8 + g) * K + cg * 256 + (kq * KSTEPS + i) * 16 + 2 * t;
        bf[i][0] = __ldg(reinterpret_cast<const unsigned int*>(ld));
        bf[i][1] = __ldg(reinterpret_cast<const unsigned int*>(ld + 8));
      }
    }
    const uint4 raw = pf[c % PF];
    const uint4 sr = pfs[c % PF];
    if (c + PF < NCP) {
      pf[c % PF] = live ? __ldg(xrow + (c + PF) * 32 + l) : make_uint4(0, 0, 0, 0);
      if (smooth) pfs[c % PF] = __ldg(srow + (c + PF) * 32 + l);
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
    // group exponent: k = ⌈log2(amax/7)⌉ (no clipping) or k − 1 (finer, clips the largest values), whichever has the
    // smaller squared error (f32, summed per lane then over the 8 lanes of the group); shuffles outside branches
    int k = KEMPTY;
    if (amax > 0.f) {
      const float ts = __fdiv_rn(amax, 7.f);
      int ex;
      const float f = frexpf(ts, &ex);
      k = f == 0.5f ? ex - 1 : ex;
      kcm = max(kcm, k);
    }
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
    codes[c] = packed;
    if (l % 8 == 0) kex[row][4 * cg + l / 8] = static_cast<signed char>(k == KEMPTY ? -128 : k);
    // stage the raw x for the low-rank mma: staging row w = part·ROWS + row
    *reinterpret_cast<uint4*>(&xs[c & 1][w][8 * l]) = raw;
    __syncthreads();
    const int sb = part * ROWS;  // this part's staging rows
#pragma unroll
    for (int i = 0; i < KSTEPS && lora_down != nullptr; ++i) {
      const int kk = (kq * KSTEPS + i) * 16;  // k offset inside the chunk
      const uint32_t a0 = g < ROWS ? *reinterpret_cast<const uint32_t*>(&xs[c & 1][sb + g][kk + 2 * t]) : 0u;
      const uint32_t a1 = g + 8 < ROWS ? *reinterpret_cast<const uint32_t*>(&xs[c & 1][sb + g + 8][kk + 2 * t]) : 0u;
      const uint32_t a2 = g < ROWS ? *reinterpret_cast<const uint32_t*>(&xs[c & 1][sb + g][kk + 8 + 2 * t]) : 0u;
      const uint32_t a3 = g + 8 < ROWS ? *reinterpret_cast<const uint32_t*>(&xs[c & 1][sb + g + 8][kk + 8 + 2 * t]) : 0u;
      const uint32_t b0 = bf[i][0], b1 = bf[i][1];
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
          "{%0,%1,%2,%3};\n"
          : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
          : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    }
  }
  // low-rank partial sums: 4 per row (k-quarters when ROWS = 16, parts when ROWS = 4) -> lacc, summed below
  {
    const int s4 = part * KQ + kq;
    lacc[s4][g][nt * 8 + 2 * t] = acc[0];
    lacc[s4][g][nt * 8 + 2 * t + 1] = acc[1];
    lacc[s4][g + 8][nt * 8 + 2 * t] = acc[2];
    lacc[s4][g + 8][nt * 8 + 2 * t + 1] = acc[3];
  }
#pragma unroll
  for (int o = 16; o; o >>= 1) kcm = max(kcm, __shfl_xor_sync(0xffffffffu, kcm, o));
  if (l == 0) kpart[w] = kcm;
  __syncthreads();
  const float la = ((lacc[0][row][l] + lacc[1][row][l]) + lacc[2][row][l]) + lacc[3][row][l];
  if (!live) return;
  if (lora_act && part == 0) lora_act[size_t(m) * R + l] = la;
  // row exponent: top group at EMAX, and the low-rank columns within ±256
  int kmax = kpart[row];
#pragma unroll
  for (int p = 1; p < PARTS; ++p) kmax = max(kmax, kpart[p * ROWS + row]);
  const int cr = lr_shift ? lr_shift[l] : 0;
  const float lr = lr_shift ? fabsf(ldexpf(la, -cr)) : 0.f;
  float lrmax = lr;
#pragma unroll
  for (int o = 16; o; o >>= 1) lrmax = fmaxf(lrmax, __shfl_xor_sync(0xffffffffu, lrmax, o));
  int E = kmax == -128 ? 0 : kmax - EMAX;
  if (lrmax > 0.f) {
    int ex;
    const float f = frexpf(__fdiv_rn(lrmax, 256.f), &ex);
    const int elr = f == 0.5f ? ex - 1 : ex;
    if (kmax == -128 || elr > E) E = elr;
  }
  if (l == 0 && part == 0) sx[m] = ldexpf(1.f, E);
  uint8_t* arow = a8 + size_t(m) * Kx;
#pragma unroll
  for (int c = 0; c < NCP; ++c) {
    const int kg = kex[row][4 * (c0 + c) + l / 8];
    uint32_t lo = 0, hi = 0;
    if (kg != -128) {
      int e = kg - E;
      const int shift = e < EMIN ? e - EMIN : 0;  // requantize codes below the window: rint(q·2^shift)
      if (e < EMIN) e = EMIN;
      const float pe = pow2f(e);  // e in [-9, 5]
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        int q = int(codes[c] << (28 - 4 * j)) >> 28;
        if (shift) q = __float2int_rn(ldexpf(float(q), shift));
        const uint32_t b = __nv_cvt_float_to_fp8(__fmul_rn(float(q), pe), __NV_SATFINITE, __NV_E4M3);
        if (j < 4) lo |= b << (8 * j);
        else hi |= b << (8 * (j - 4));
      }
    }
    *reinterpret_cast<uint2*>(arow + (c0 + c) * 256 + 8 * l) = make_uint2(lo, hi);
  }
  if (lr_shift && part == 0) {
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

#endif  // SVDQ_P2_NO_FUSED_QUANT

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
    p2_rows_kernel(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ smooth,
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

extern "C" int svdq_p2_supported_k(int K) { return K == 1024 || K == 3072 || K == 12288 || K == 15360; }

extern "C" const char* svdq_cublaslt_available(void) {
  LtState& s = lts();
  return s.error.empty() ? nullptr : s.error.c_str();
}

extern "C" const char* svdq_p2_quantize_act(const svdq_p2_quantize_args* a, void* stream) {
  if (!a) return fail("svdq_p2_quantize_act: NULL arguments");
  if (a->M <= 0 || !svdq_p2_supported_k(a->K))
    return fail("svdq_p2_quantize_act: M > 0 and K in {1024, 3072, 12288, 15360} needed; got M=" + std::to_string(a->M) +
                " K=" + std::to_string(a->K));
  if (a->R != 0 && a->R != R) return fail("svdq_p2_quantize_act: R must be 0 or 32, got " + std::to_string(a->R));
  if ((a->R == 0) != (a->lora_down == nullptr))
    return fail("svdq_p2_quantize_act: lora_down is needed exactly when R = 32");
  if (a->lr_shift && a->R == 0) return fail("svdq_p2_quantize_act: lr_shift needs R = 32");
  if (!a->x || !a->a8 || !a->sx) return fail("svdq_p2_quantize_act: x, a8 and sx are required");
  if (a->rows_per_block != 0 && a->rows_per_block != 4 && a->rows_per_block != 16)
    return fail("svdq_p2_quantize_act: rows_per_block must be 0, 4 or 16");
  int sms = 0;
  const int cc = device_cc(&sms);
  if (cc < 89) return fail("svdq_p2_quantize_act: needs compute capability 8.9+ (E4M3), got " + std::to_string(cc));
  // 4-row blocks (each row over 4 warps) by default: on the H100 they beat 16-row blocks at every measured shape
  // (docs/benchmarks.md, round 3: M=4608 K=3072 147 vs 165 µs, K=12288 732 vs 1293 µs; M=256 15 vs 47 µs)
  (void)sms;
#ifdef SVDQ_P2_NO_FUSED_QUANT
  (void)stream;
  return fail("svdq_p2_quantize_act: not in this build (SVDQ_P2_NO_FUSED_QUANT); use svdq_p2_quantize_rows");
#else
  const int rows = a->rows_per_block ? a->rows_per_block : 4;
  const int Kx = a->K + (a->lr_shift ? 3 * R : 0);
  const dim3 grid((a->M + rows - 1) / rows);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const auto* x = static_cast<const __nv_bfloat16*>(a->x);
  const auto* lam = static_cast<const __nv_bfloat16*>(a->smooth);
  const auto* ldn = static_cast<const __nv_bfloat16*>(a->lora_down);
  auto* a8 = static_cast<uint8_t*>(a->a8);
  float* la = a->R ? a->lora_act : nullptr;
#define P2Q(NCH)                                                                                               \
  (rows == 16 ? p2_quant_kernel<NCH, 16><<<grid, 512, 0, s>>>(x, lam, ldn, a->lr_shift, a->M, Kx, a8, a->sx, la) \
              : p2_quant_kernel<NCH, 4><<<grid, 512, 0, s>>>(x, lam, ldn, a->lr_shift, a->M, Kx, a8, a->sx, la))
  switch (a->K) {
    case 1024: P2Q(4); break;
    case 3072: P2Q(12); break;
    case 12288: P2Q(48); break;
    default: P2Q(60); break;
  }
#undef P2Q
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return fail(std::string("svdq_p2_quantize_act: launch: ") + cudaGetErrorString(e));
  return nullptr;
#endif
}

extern "C" const char* svdq_p2_quantize_rows(const svdq_p2_rows_args* a, void* stream) {
  if (!a) return fail("svdq_p2_quantize_rows: NULL arguments");
  if (a->M <= 0 || !svdq_p2_supported_k(a->K))
    return fail("svdq_p2_quantize_rows: M > 0 and K in {1024, 3072, 12288, 15360} needed; got M=" +
                std::to_string(a->M) + " K=" + std::to_string(a->K));
  if (a->lr_shift && !a->lora_act) return fail("svdq_p2_quantize_rows: lr_shift (low-rank columns) needs lora_act");
  if (!a->x || !a->a8 || !a->sx) return fail("svdq_p2_quantize_rows: x, a8 and sx are required");
  const int cc = device_cc(nullptr);
  if (cc < 89) return fail("svdq_p2_quantize_rows: needs compute capability 8.9+ (E4M3), got " + std::to_string(cc));
  const int Kx = a->K + (a->lr_shift ? 3 * R : 0);
  const dim3 grid((a->M + 7) / 8);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const auto* x = static_cast<const __nv_bfloat16*>(a->x);
  const auto* lam = static_cast<const __nv_bfloat16*>(a->smooth);
  auto* a8 = static_cast<uint8_t*>(a->a8);
  const size_t sh = size_t(8) * (a->K / 256) * 32 * 4 + size_t(8) * (a->K / G);
  auto* kern = a->reference ? p2_rows_kernel<false> : p2_rows_kernel<true>;
  if (sh > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(sh));
    if (e != cudaSuccess) return fail(std::string("svdq_p2_quantize_rows: cudaFuncSetAttribute: ") + cudaGetErrorString(e));
  }
  kern<<<grid, 256, sh, s>>>(x, lam, a->lora_act, a->lr_shift, a->M, a->K, Kx, a8, a->sx);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return fail(std::string("svdq_p2_quantize_rows: launch: ") + cudaGetErrorString(e));
  return nullptr;
}

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
    if (q.M == M && q.N == N && q.Kx == Kx && q.fast == (fast_accum != 0) && q.ldo == ldo && q.epi == epi) p = &q;
  if (!p) {
    Plan q{M, N, Kx, fast_accum != 0, ldo, epi, nullptr, nullptr, nullptr, nullptr, {}};
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
  rc |= st.api.matmul(st.handle, p->desc, &one, b8, p->la, a8, p->lb, &zero, out, p->ld, out, p->ld, &p->algo, st.ws,
                      WS_BYTES, static_cast<cudaStream_t>(stream));
  if (rc) return fail("svdq_p2_gemm: cublasLtMatmul status " + std::to_string(rc));
  return nullptr;
}
