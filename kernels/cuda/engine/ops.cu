// Elementwise, normalization, RoPE, embedding, W4A16 GEMV and fill kernels of the engine (engine_ops.h).
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cmath>
#include <algorithm>
#include <cstdint>
#include <string>

#include "engine_ops.h"
#include "gemv_stream.cuh"

#define BF(p) static_cast<const __nv_bfloat16*>(p)
#define BFW(p) static_cast<__nv_bfloat16*>(p)

namespace {

thread_local std::string g_err;

const char* fail(const char* op, const std::string& why) {
  g_err = std::string(op) + ": " + why;
  return g_err.c_str();
}
const char* launched(const char* op) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return fail(op, std::string("launch: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
  return nullptr;
}
cudaStream_t st(void* s) { return static_cast<cudaStream_t>(s); }

__device__ __forceinline__ float bf(const __nv_bfloat16* p, size_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float gelu_tanh(float x) {
  // torch GELU(approximate="tanh"): 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))
  const float k = 0.7978845608028654f;
  return 0.5f * x * (1.f + tanhf(k * (x + 0.044715f * x * x * x)));
}
__device__ __forceinline__ float silu(float x) { return x / (1.f + __expf(-x)); }

__device__ __forceinline__ float block_sum(float v, float* sh) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int w = threadIdx.x / 32, l = threadIdx.x % 32, nw = blockDim.x / 32;
  __syncthreads();
  if (l == 0) sh[w] = v;
  __syncthreads();
  float t = l < nw ? sh[l] : 0.f;
  for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
  return t;
}

// ---- timestep embedding ----
__global__ void temb_kernel(const float* t, float mult, int dim, __nv_bfloat16* out) {
  const int b = blockIdx.x, half = dim / 2;
  // diffusers get_timestep_embedding in f32: exponent = -ln(10000)·i / half, emb = t·exp(exponent)
  const float c = -logf(10000.f);
  const float tv = t[b] * mult;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float f = expf(c * static_cast<float>(i) / static_cast<float>(half));
    const float a = tv * f;
    out[size_t(b) * dim + i] = __float2bfloat16(cosf(a));
    out[size_t(b) * dim + half + i] = __float2bfloat16(sinf(a));
  }
}

// ---- bias + activation, strided ----
__global__ void bias_act_kernel(const __nv_bfloat16* in, int ld_in, __nv_bfloat16* out, int ld_out,
                                const __nv_bfloat16* bias, int rows, int cols, int act) {
  const size_t total = size_t(rows) * cols;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const size_t r = i / cols, c = i % cols;
    float v = __bfloat162float(in[r * ld_in + c]);
    if (bias) v = __bfloat162float(__float2bfloat16(v + bf(bias, c)));  // the bias add rounds to bf16 first, as torch
    if (act == ENG_ACT_GELU_TANH) v = gelu_tanh(v);
    else if (act == ENG_ACT_SILU) v = silu(v);
    out[r * ld_out + c] = __float2bfloat16(v);
  }
}

__global__ void sum_silu_kernel(const __nv_bfloat16* a, const __nv_bfloat16* b, const __nv_bfloat16* c, int n,
                                __nv_bfloat16* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float v = bf(a, i);
  if (b) v = __bfloat162float(__float2bfloat16(v + bf(b, i)));
  if (c) v = __bfloat162float(__float2bfloat16(v + bf(c, i)));
  out[i] = __float2bfloat16(silu(v));
}

__device__ __forceinline__ size_t seg_row(int r, int n, int S, int off) {
  return size_t(r / n) * S + off + r % n;
}

// ---- LayerNorm + AdaLN modulation: one block per row, values kept in registers (D <= 256·VPT) ----
template <int VPT>
__global__ void ln_mod_kernel(const float* X, int S, int off, int n, int D, float eps, const __nv_bfloat16* mod,
                              int mod_stride, int shift_off, int scale_off, __nv_bfloat16* out) {
  __shared__ float sh[32];
  const int r = blockIdx.x, b = r / n;
  const float* x = X + seg_row(r, n, S, off) * D;
  float v[VPT];
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < VPT; j++) {
    const int i = threadIdx.x + j * blockDim.x;
    v[j] = i < D ? x[i] : 0.f;
    s += v[j];
  }
  const float mean = block_sum(s, sh) / D;
  float q = 0.f;
#pragma unroll
  for (int j = 0; j < VPT; j++) {
    const int i = threadIdx.x + j * blockDim.x;
    const float d = i < D ? v[j] - mean : 0.f;
    q += d * d;
  }
  const float inv = rsqrtf(block_sum(q, sh) / D + eps);  // biased variance, as torch.nn.LayerNorm
  const __nv_bfloat16* m = mod + size_t(b) * mod_stride;
#pragma unroll
  for (int j = 0; j < VPT; j++) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < D) {
      // torch: norm(x) in the activation dtype, then x·(1 + scale) + shift, each rounded to bf16
      const float nx = __bfloat162float(__float2bfloat16((v[j] - mean) * inv));
      const float sc = __bfloat162float(__float2bfloat16(1.f + bf(m, scale_off + i)));
      const float y = __bfloat162float(__float2bfloat16(nx * sc));
      out[size_t(r) * D + i] = __float2bfloat16(y + bf(m, shift_off + i));
    }
  }
}

__global__ void gated_residual_kernel(float* X, int S, int off, int n, int B, int D, const __nv_bfloat16* y, int ld_y,
                                      const __nv_bfloat16* bias, const __nv_bfloat16* mod, int mod_stride,
                                      int gate_off) {
  const size_t total = size_t(B) * n * D;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const int r = int(i / D), c = int(i % D);
    float v = __bfloat162float(y[size_t(r) * ld_y + c]);
    if (bias) v = __bfloat162float(__float2bfloat16(v + bf(bias, c)));
    if (gate_off >= 0) v = v * bf(mod, size_t(r / n) * mod_stride + gate_off + c);
    X[seg_row(r, n, S, off) * D + c] += v;
  }
}

__global__ void residual_store_kernel(float* X, int S, int off, int n, int B, int D, const __nv_bfloat16* src,
                                      const __nv_bfloat16* bias) {
  const size_t total = size_t(B) * n * D;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const int r = int(i / D), c = int(i % D);
    float v = __bfloat162float(src[i]);
    if (bias) v = __bfloat162float(__float2bfloat16(v + bf(bias, c)));
    X[seg_row(r, n, S, off) * D + c] = v;
  }
}

__global__ void residual_load_kernel(const float* X, int S, int off, int n, int B, int D, __nv_bfloat16* out) {
  const size_t total = size_t(B) * n * D;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const int r = int(i / D), c = int(i % D);
    out[i] = __float2bfloat16(X[seg_row(r, n, S, off) * D + c]);
  }
}

__global__ void rope_table_kernel(const float* ids, int S, int a0, int a1, int a2, float* cos_t, float* sin_t) {
  const int half = (a0 + a1 + a2) / 2;
  const int total = S * half;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const int s = i / half, p = i % half;
    int axis, j, da;
    if (p < a0 / 2) { axis = 0; j = p; da = a0; }
    else if (p < (a0 + a1) / 2) { axis = 1; j = p - a0 / 2; da = a1; }
    else { axis = 2; j = p - (a0 + a1) / 2; da = a2; }
    // FluxPosEmbed: frequencies 1/θ^(2j/d) and angles in float64, then cos/sin cast to f32
    const double freq = 1.0 / pow(10000.0, (2.0 * j) / da);
    const double ang = double(ids[s * 3 + axis]) * freq;
    cos_t[i] = float(cos(ang));
    sin_t[i] = float(sin(ang));
  }
}

// One warp per (token row, head): bias, RMSNorm (q, k), RoPE, scatter to [B, H, S, Dh].
__global__ void qk_norm_rope_kernel(const __nv_bfloat16* qkv, int ld, const __nv_bfloat16* bias, int B, int n, int off,
                                    int S, int H, int Dh, const __nv_bfloat16* wq, const __nv_bfloat16* wk, float eps,
                                    const float* cos_t, const float* sin_t, __nv_bfloat16* Q, __nv_bfloat16* K,
                                    __nv_bfloat16* V) {
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  if (warp >= B * n * H) return;
  const int h = warp % H, r = warp / H, b = r / n, s = off + r % n;
  const int D = H * Dh, half = Dh / 2;
  const __nv_bfloat16* row = qkv + size_t(r) * ld;
  const size_t dst = ((size_t(b) * H + h) * S + s) * Dh;
  for (int which = 0; which < 3; which++) {
    const int col = which * D + h * Dh;
    float ss = 0.f;
    // each lane holds up to 2 pairs (Dh <= 128)
    float x0[2], x1[2];
#pragma unroll
    for (int j = 0; j < 2; j++) {
      const int p = lane + 32 * j;
      x0[j] = x1[j] = 0.f;
      if (p < half) {
        float a = __bfloat162float(row[col + 2 * p]), c = __bfloat162float(row[col + 2 * p + 1]);
        if (bias) {
          a = __bfloat162float(__float2bfloat16(a + bf(bias, col + 2 * p)));
          c = __bfloat162float(__float2bfloat16(c + bf(bias, col + 2 * p + 1)));
        }
        x0[j] = a;
        x1[j] = c;
        ss += a * a + c * c;
      }
    }
    __nv_bfloat16* out = which == 0 ? Q : which == 1 ? K : V;
    if (which < 2) {
      for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
      const float inv = rsqrtf(ss / Dh + eps);
      const __nv_bfloat16* w = which == 0 ? wq : wk;
#pragma unroll
      for (int j = 0; j < 2; j++) {
        const int p = lane + 32 * j;
        if (p < half) {
          // diffusers RMSNorm: x·rsqrt(mean(x²)+eps) in f32, cast to bf16, times the bf16 weight
          float a = __bfloat162float(__float2bfloat16(x0[j] * inv)) * bf(w, 2 * p);
          float c = __bfloat162float(__float2bfloat16(x1[j] * inv)) * bf(w, 2 * p + 1);
          a = __bfloat162float(__float2bfloat16(a));
          c = __bfloat162float(__float2bfloat16(c));
          if (cos_t) {
            const float cs = cos_t[size_t(s) * half + p], sn = sin_t[size_t(s) * half + p];
            const float ra = a * cs - c * sn, rc = c * cs + a * sn;  // rotation in f32 (diffusers: x.float())
            a = ra;
            c = rc;
          }
          out[dst + 2 * p] = __float2bfloat16(a);
          out[dst + 2 * p + 1] = __float2bfloat16(c);
        }
      }
    } else {
#pragma unroll
      for (int j = 0; j < 2; j++) {
        const int p = lane + 32 * j;
        if (p < half) {
          out[dst + 2 * p] = __float2bfloat16(x0[j]);
          out[dst + 2 * p + 1] = __float2bfloat16(x1[j]);
        }
      }
    }
  }
}

// W4A16 GEMV (M <= 8): streams the 4-bit weights once. A block of 8 warps stages x [M, K] in shared memory as f32
// (once per block; chunk c of 32 values at c·36 floats, so the 16-byte reads of a warp's 32 lanes hit distinct banks)
// with the sum of each 32-value chunk, xsum[m, c]. Grid-stride over groups of RW output rows per warp: lane l takes
// the 16-byte code chunks c = l + 32i of each of the RW rows (every load of an iteration issued before any math, the
// next iteration's loads in flight during this one's math), so each x value read from shared memory serves RW rows.
// Per code the math is 2 integer ops and one FMA per token: f = 1 + q/16 as float bits (0x3F800000 | q << 19), so
//   Σ_k (q·s + z)·x = 16s·Σ f·x + (z − 16s)·Σ x        (per 32-code chunk; s, z the group's scale and zero)
// f32 throughout, like the formula in engine_ops.h; the bias is added to the bf16-rounded product (as torch's
// F.linear(x, w) + b rounds twice). Codes are read with ld.global.cs (streamed once, no reuse).
constexpr int GEMV_XPAD = 36;  // floats per 32-value chunk in shared memory (32 + 4: bank-conflict-free LDS.128)
constexpr int GEMV_THREADS = 256;
// the smallest M the automatic choice gives to the tensor-core kernel
#ifndef SVDQ_GEMV_MMA_FROM
#define SVDQ_GEMV_MMA_FROM 4
#endif

template <int MM, int RW>
__global__ void __launch_bounds__(GEMV_THREADS, 2)
    gemv_w4a16_kernel(const __nv_bfloat16* __restrict__ x, int M, int K, const uint8_t* __restrict__ codes,
                      const __nv_bfloat16* __restrict__ scales, const __nv_bfloat16* __restrict__ zeros,
                      const __nv_bfloat16* __restrict__ bias, int N, __nv_bfloat16* __restrict__ out) {
  extern __shared__ __align__(16) float gsm[];
  const int C = K / 32;                // 32-code chunks per row
  float* xs = gsm;                     // [MM][C][36]
  float* xsum = gsm + MM * C * GEMV_XPAD;  // [MM][C]
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // stage x: each thread converts 8 bf16 (one 16-byte load); 4 lanes make one chunk and its sum
  const int total = MM * C * 4;
  for (int i0 = 0; i0 < total; i0 += GEMV_THREADS) {  // uniform trip count: the shuffles below see whole warps
    const int i = i0 + threadIdx.x;
    const int m = i / (C * 4), r = i % (C * 4), c = r / 4, q = r % 4;
    float v[8];
    if (i < total && m < M) {
      const uint4 u = __ldg(reinterpret_cast<const uint4*>(x + size_t(m) * K) + c * 4 + q);
      const __nv_bfloat16* h = reinterpret_cast<const __nv_bfloat16*>(&u);
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = __bfloat162float(h[j]);
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) v[j] = 0.f;
    }
    float s = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
    s += __shfl_xor_sync(0xffffffffu, s, 1);  // the 4 threads of a chunk are consecutive (i % 4 == q)
    s += __shfl_xor_sync(0xffffffffu, s, 2);
    if (i < total) {
      float* d = xs + (m * C + c) * GEMV_XPAD + 8 * q;
      *reinterpret_cast<float4*>(d) = make_float4(v[0], v[1], v[2], v[3]);
      *reinterpret_cast<float4*>(d + 4) = make_float4(v[4], v[5], v[6], v[7]);
      if (q == 0) xsum[m * C + c] = s;
    }
  }
  __syncthreads();
  const int G = K / 64;
  const int iters = (C + 31) / 32;
  const int groups = (N + RW - 1) / RW;
  for (int grp = blockIdx.x * (GEMV_THREADS / 32) + warp; grp < groups; grp += gridDim.x * (GEMV_THREADS / 32)) {
    const int n0 = grp * RW;
    float acc[RW][MM];
#pragma unroll
    for (int r = 0; r < RW; ++r)
#pragma unroll
      for (int m = 0; m < MM; ++m) acc[r][m] = 0.f;
    uint4 w[RW];
    float sc[RW], ze[RW];
    auto load = [&](int it) {
      const int c = it * 32 + lane;
#pragma unroll
      for (int r = 0; r < RW; ++r) {
        const int n = n0 + r;
        if (c < C && n < N) {
          w[r] = __ldcs(reinterpret_cast<const uint4*>(codes + size_t(n) * (K / 2)) + c);
          sc[r] = __bfloat162float(scales[size_t(n) * G + c / 2]);
          ze[r] = __bfloat162float(zeros[size_t(n) * G + c / 2]);
        } else {
          w[r] = make_uint4(0, 0, 0, 0);
          sc[r] = ze[r] = 0.f;
        }
      }
    };
    load(0);
    for (int it = 0; it < iters; ++it) {
      const int c = it * 32 + lane;
      uint4 cw[RW];
      float cs[RW], cz[RW];
#pragma unroll
      for (int r = 0; r < RW; ++r) cw[r] = w[r], cs[r] = sc[r], cz[r] = ze[r];
      if (it + 1 < iters) load(it + 1);
      if (c >= C) continue;
      float P[RW][MM];
#pragma unroll
      for (int r = 0; r < RW; ++r)
#pragma unroll
        for (int m = 0; m < MM; ++m) P[r][m] = 0.f;
#pragma unroll
      for (int e = 0; e < 4; ++e) {  // word e: codes 8e .. 8e+7 of the chunk
        float4 xa[MM], xb[MM];
#pragma unroll
        for (int m = 0; m < MM; ++m) {
          const float* xp = xs + (m * C + c) * GEMV_XPAD + 8 * e;
          xa[m] = *reinterpret_cast<const float4*>(xp);
          xb[m] = *reinterpret_cast<const float4*>(xp + 4);
        }
#pragma unroll
        for (int r = 0; r < RW; ++r) {
          const uint32_t wd = e == 0 ? cw[r].x : e == 1 ? cw[r].y : e == 2 ? cw[r].z : cw[r].w;
          float f[8];
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            const uint32_t b = j <= 4 ? (wd << (19 - 4 * j)) : (wd >> (4 * j - 19));
            f[j] = __uint_as_float((b & 0x00780000u) | 0x3F800000u);  // 1 + q/16
          }
#pragma unroll
          for (int m = 0; m < MM; ++m) {
            float p = P[r][m];
            p = fmaf(f[0], xa[m].x, p);
            p = fmaf(f[1], xa[m].y, p);
            p = fmaf(f[2], xa[m].z, p);
            p = fmaf(f[3], xa[m].w, p);
            p = fmaf(f[4], xb[m].x, p);
            p = fmaf(f[5], xb[m].y, p);
            p = fmaf(f[6], xb[m].z, p);
            p = fmaf(f[7], xb[m].w, p);
            P[r][m] = p;
          }
        }
      }
#pragma unroll
      for (int m = 0; m < MM; ++m) {
        const float xsm = xsum[m * C + c];
#pragma unroll
        for (int r = 0; r < RW; ++r) {
          const float s16 = 16.f * cs[r];
          acc[r][m] = fmaf(s16, P[r][m], fmaf(cz[r] - s16, xsm, acc[r][m]));
        }
      }
    }
#pragma unroll
    for (int r = 0; r < RW; ++r)
#pragma unroll
      for (int m = 0; m < MM; ++m) {
        float v = acc[r][m];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        const int n = n0 + r;
        if (lane == (r * MM + m) % 32 && m < M && n < N) {
          if (bias) v = __bfloat162float(__float2bfloat16(v)) + bf(bias, n);
          out[size_t(m) * N + n] = __float2bfloat16(v);
        }
      }
  }
}

// The same GEMV on tensor cores (M <= 8 tokens as the n8 side of mma.m16n8k16, bf16 in, f32 accumulate). The codes
// enter as f = 1 + q/16 in bf16 (exact: 0x3F80 | q << 3), so every product f·x is exact and the per-group algebra
// is the f32 kernel's: Σ_k (q·s + z)·x = 16s·Σ f·x + (z − 16s)·Σ x. A block owns 32 output rows (two m16 tiles) and
// splits K over its 8 warps (contiguous 64-groups each: enough loads in flight when N is small), then sums the 8
// partial tiles in shared memory. The mma's k order is permuted (both operands alike): lane (g, t) loads 8 bytes =
// 16 codes of a row's group at 16t, and the 16 matching x values, so loads stay contiguous.
__device__ __forceinline__ uint32_t nib_pair_bf16(uint32_t u, int j) {
  // byte j of u (two codes lo, hi) → bf16x2 {1 + lo/16, 1 + hi/16}
  const uint32_t a = j == 0 ? (u << 3) : (u >> (8 * j - 3));
  const uint32_t b = j < 2 ? (u << (15 - 8 * j)) : (u >> (8 * j - 15));
  return (a & 0x78u) | (b & 0x780000u) | 0x3F803F80u;
}

__global__ void __launch_bounds__(256)
    gemv_w4a16_mma_kernel(const __nv_bfloat16* __restrict__ x, int M, int K, const uint8_t* __restrict__ codes,
                          const __nv_bfloat16* __restrict__ scales, const __nv_bfloat16* __restrict__ zeros,
                          const __nv_bfloat16* __restrict__ bias, int N, __nv_bfloat16* __restrict__ out) {
  extern __shared__ __align__(16) float gxs[];  // xsum [8][G]
  __shared__ float red[8][32][9];
  const int G = K / 64;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  for (int i = threadIdx.x; i < 8 * G; i += 256) {
    const int m = i / G, gp = i % G;
    float sum = 0.f;
    if (m < M) {
      const uint4* xp = reinterpret_cast<const uint4*>(x + size_t(m) * K + gp * 64);
#pragma unroll
      for (int v = 0; v < 8; ++v) {
        const uint4 u = __ldg(xp + v);
        const __nv_bfloat16* h = reinterpret_cast<const __nv_bfloat16*>(&u);
#pragma unroll
        for (int j = 0; j < 8; ++j) sum += __bfloat162float(h[j]);
      }
    }
    gxs[i] = sum;
  }
  __syncthreads();
  const int n0 = blockIdx.x * 32;
  const int gw = (G + 7) / 8, g0 = warp * gw, g1 = min(G, g0 + gw);
  int rows[2][2];
  bool ok[2][2];
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      rows[r][h] = n0 + 16 * r + g + 8 * h;
      ok[r][h] = rows[r][h] < N;
    }
  const bool xm = g < M;
  const __nv_bfloat16* xr = x + size_t(xm ? g : 0) * K + 16 * t;
  float acc[2][4];
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[r][i] = 0.f;
  struct Stage {
    uint2 c[2][2];
    float s[2][2], z[2][2];
    uint4 xa, xb;
  };
  auto load = [&](Stage& st, int gp) {
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int n = rows[r][h];
        if (ok[r][h]) {
          st.c[r][h] = __ldcs(reinterpret_cast<const uint2*>(codes + size_t(n) * (K / 2) + gp * 32 + 8 * t));
          st.s[r][h] = __bfloat162float(scales[size_t(n) * G + gp]);
          st.z[r][h] = __bfloat162float(zeros[size_t(n) * G + gp]);
        } else {
          st.c[r][h] = make_uint2(0, 0);
          st.s[r][h] = st.z[r][h] = 0.f;
        }
      }
    if (xm) {
      st.xa = __ldg(reinterpret_cast<const uint4*>(xr + gp * 64));
      st.xb = __ldg(reinterpret_cast<const uint4*>(xr + gp * 64 + 8));
    } else {
      st.xa = st.xb = make_uint4(0, 0, 0, 0);
    }
  };
  Stage cur, nxt;
  if (g0 < g1) load(cur, g0);
  for (int gp = g0; gp < g1; ++gp) {
    if (gp + 1 < g1) load(nxt, gp + 1);
    float P[2][4];
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int i = 0; i < 4; ++i) P[r][i] = 0.f;
#pragma unroll
    for (int s4 = 0; s4 < 4; ++s4) {
      const uint4& xv = s4 < 2 ? cur.xa : cur.xb;
      const uint32_t b0 = s4 % 2 ? xv.z : xv.x, b1 = s4 % 2 ? xv.w : xv.y;
      const int w = s4 / 2, j = 2 * (s4 % 2);  // bytes 2·s4, 2·s4 + 1 of the 8: word w, bytes j, j + 1
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const uint32_t u0 = w ? cur.c[r][0].y : cur.c[r][0].x, u1 = w ? cur.c[r][1].y : cur.c[r][1].x;
        const uint32_t a0 = nib_pair_bf16(u0, j), a1 = nib_pair_bf16(u1, j);
        const uint32_t a2 = nib_pair_bf16(u0, j + 1), a3 = nib_pair_bf16(u1, j + 1);
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(P[r][0]), "+f"(P[r][1]), "+f"(P[r][2]), "+f"(P[r][3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
      }
    }
    const float xs0 = gxs[(2 * t) * G + gp], xs1 = gxs[(2 * t + 1) * G + gp];
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float s16 = 16.f * cur.s[r][h], zz = cur.z[r][h] - s16;
        acc[r][2 * h] = fmaf(s16, P[r][2 * h], fmaf(zz, xs0, acc[r][2 * h]));
        acc[r][2 * h + 1] = fmaf(s16, P[r][2 * h + 1], fmaf(zz, xs1, acc[r][2 * h + 1]));
      }
    if (gp + 1 < g1) cur = nxt;
  }
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int i = 0; i < 4; ++i) red[warp][lane][4 * r + i] = acc[r][i];
  __syncthreads();
  // thread → (row rr of the 32, token m): c fragment i = 2h + (m & 1) of lane 4g + m/2, tile r
  const int rr = threadIdx.x / 8, m = threadIdx.x % 8;
  const int r = rr / 16, q = rr % 16, h = q / 8, gg = q % 8;
  const int ln = 4 * gg + m / 2, ci = 4 * r + 2 * h + (m & 1);
  float v = 0.f;
#pragma unroll
  for (int w = 0; w < 8; ++w) v += red[w][ln][ci];
  const int n = n0 + rr;
  if (m < M && n < N) {
    if (bias) v = __bfloat162float(__float2bfloat16(v)) + bf(bias, n);
    out[size_t(m) * N + n] = __float2bfloat16(v);
  }
}

const char* launch_gemv_mma(const void* x, int M, int K, const uint8_t* codes, const void* scales, const void* zeros,
                            const void* bias, int N, void* out, cudaStream_t s) {
  const size_t sh = size_t(8) * (K / 64) * 4;
  if (sh > 48 * 1024) return fail("eng_gemv_w4a16", "K=" + std::to_string(K) + " too large for the tensor-core GEMV");
  gemv_w4a16_mma_kernel<<<(N + 31) / 32, 256, sh, s>>>(BF(x), M, K, codes, BF(scales), BF(zeros), BF(bias), N,
                                                      BFW(out));
  return launched("eng_gemv_w4a16");
}

template <int MM, int RW>
const char* launch_gemv(const void* x, int M, int K, const uint8_t* codes, const void* scales, const void* zeros,
                        const void* bias, int N, void* out, cudaStream_t s) {
  const size_t C = size_t(K) / 32;
  const size_t sh = (size_t(MM) * C * GEMV_XPAD + size_t(MM) * C) * 4;
  if (sh > 200 * 1024) return fail("eng_gemv_w4a16", "M·K too large for shared memory (K=" + std::to_string(K) + ")");
  auto* kern = gemv_w4a16_kernel<MM, RW>;
  if (sh > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(sh));
    if (e != cudaSuccess) return fail("eng_gemv_w4a16", std::string("cudaFuncSetAttribute: ") + cudaGetErrorName(e));
  }
  int dev = 0, sms = 0, per = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, kern, GEMV_THREADS, sh) != cudaSuccess || per <= 0) per = 1;
  const int groups = (N + RW - 1) / RW;
  const int need = (groups + GEMV_THREADS / 32 - 1) / (GEMV_THREADS / 32);
  const int grid = std::min(need, sms * per);  // persistent: x is staged once per resident block
  kern<<<grid, GEMV_THREADS, sh, s>>>(BF(x), M, K, codes, BF(scales), BF(zeros), BF(bias), N, BFW(out));
  return launched("eng_gemv_w4a16");
}

__device__ __forceinline__ uint32_t hash32(uint32_t i, uint32_t seed) {
  uint32_t x = i * 0x9E3779B1u + seed;
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

__global__ void fill_random_kernel(void* p, size_t n, int dtype, uint32_t seed, float center, float scale) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float u = float(hash32(uint32_t(i), seed) >> 8) * 5.9604644775390625e-8f;  // 2^-24
    const float v = __fadd_rn(center, __fmul_rn(scale, u - 0.5f));
    if (dtype == 0) static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
    else if (dtype == 1) static_cast<float*>(p)[i] = v;
    else static_cast<uint8_t*>(p)[i] = __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
  }
}
__global__ void fill_bytes_kernel(uint8_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = uint8_t(hash32(uint32_t(i / 4), seed) >> (8 * (i % 4)));
}

__global__ void copy_2d_kernel(const __nv_bfloat16* src, int ld_src, __nv_bfloat16* dst, int ld_dst, int rows,
                               int cols) {
  // 8 bf16 per thread when aligned (cols, lds multiples of 8), else one
  const bool vec = cols % 8 == 0 && ld_src % 8 == 0 && ld_dst % 8 == 0;
  const int per = vec ? 8 : 1;
  const size_t total = size_t(rows) * (cols / per);
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const size_t r = i / (cols / per), c = (i % (cols / per)) * per;
    if (vec) *reinterpret_cast<uint4*>(dst + r * ld_dst + c) = *reinterpret_cast<const uint4*>(src + r * ld_src + c);
    else dst[r * ld_dst + c] = src[r * ld_src + c];
  }
}

// Head split of a projection output: part p of row r (columns p·H·Dh + h·Dh + d) → dst_p[b, h, s, d] with
// r = b·n + s; the bias is added and rounded to bf16 first, as the GEMM epilogue would.
__global__ void split_heads_kernel(const __nv_bfloat16* src, int ld, const __nv_bfloat16* bias, int B, int n, int H,
                                   int Dh, int parts, __nv_bfloat16* d0, __nv_bfloat16* d1, __nv_bfloat16* d2) {
  const int D = H * Dh;
  const size_t total = size_t(B) * n * parts * D;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const int c = int(i % (size_t(parts) * D));
    const size_t r = i / (size_t(parts) * D);
    const int p = c / D, h = (c % D) / Dh, d = c % Dh;
    const int b = int(r / n), s = int(r % n);
    float v = __bfloat162float(src[r * ld + c]);
    if (bias) v = v + bf(bias, c);
    __nv_bfloat16* dst = p == 0 ? d0 : p == 1 ? d1 : d2;
    dst[((size_t(b) * H + h) * n + s) * Dh + d] = __float2bfloat16(v);
  }
}
// The same, 8 columns (16 bytes) per thread when Dh, ld and the pointers allow it.
__global__ void split_heads8_kernel(const __nv_bfloat16* src, int ld, const __nv_bfloat16* bias, int B, int n, int H,
                                    int Dh, int parts, __nv_bfloat16* d0, __nv_bfloat16* d1, __nv_bfloat16* d2) {
  const int D = H * Dh, per_row = parts * D / 8;
  const size_t total = size_t(B) * n * per_row;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const int c = int(i % per_row) * 8;
    const size_t r = i / per_row;
    const int p = c / D, h = (c % D) / Dh, d = c % Dh;
    const int b = int(r / n), s = int(r % n);
    uint4 raw = *reinterpret_cast<const uint4*>(src + r * ld + c);
    if (bias) {
      __nv_bfloat16* v = reinterpret_cast<__nv_bfloat16*>(&raw);
#pragma unroll
      for (int j = 0; j < 8; j++) v[j] = __float2bfloat16(__bfloat162float(v[j]) + bf(bias, c + j));
    }
    __nv_bfloat16* dst = p == 0 ? d0 : p == 1 ? d1 : d2;
    *reinterpret_cast<uint4*>(dst + ((size_t(b) * H + h) * n + s) * Dh + d) = raw;
  }
}

int grid_for(size_t n, int threads = 256) {
  const size_t b = (n + threads - 1) / threads;
  return int(b < 132 * 32 ? (b == 0 ? 1 : b) : 132 * 32);
}

}  // namespace


extern "C" const char* eng_timestep_embedding(const float* t, int B, float mult, int dim, void* out, void* stream) {
  if (B <= 0 || dim <= 0 || dim % 2) return fail("eng_timestep_embedding", "B > 0 and an even dim needed");
  temb_kernel<<<B, 128, 0, st(stream)>>>(t, mult, dim, BFW(out));
  return launched("eng_timestep_embedding");
}

extern "C" const char* eng_bias_act(const void* in, int ld_in, void* out, int ld_out, const void* bias, int rows,
                                    int cols, int act, void* stream) {
  if (rows <= 0 || cols <= 0 || ld_in < cols || ld_out < cols) return fail("eng_bias_act", "bad shape");
  bias_act_kernel<<<grid_for(size_t(rows) * cols), 256, 0, st(stream)>>>(BF(in), ld_in, BFW(out), ld_out, BF(bias),
                                                                         rows, cols, act);
  return launched("eng_bias_act");
}

extern "C" const char* eng_sum_silu(const void* a, const void* b, const void* c, int n, void* out, void* stream) {
  if (n <= 0) return fail("eng_sum_silu", "n must be positive");
  sum_silu_kernel<<<(n + 255) / 256, 256, 0, st(stream)>>>(BF(a), BF(b), BF(c), n, BFW(out));
  return launched("eng_sum_silu");
}

extern "C" const char* eng_layernorm_modulate(const float* X, int S, int off, int n, int B, int D, float eps,
                                              const void* mod, int mod_stride, int shift_off, int scale_off, void* out,
                                              void* stream) {
  if (B <= 0 || n <= 0 || D <= 0 || off + n > S) return fail("eng_layernorm_modulate", "bad segment");
  const int threads = D >= 1024 ? 256 : 128;
  const int vpt = (D + threads - 1) / threads;
  const int rows = B * n;
  if (vpt <= 4)
    ln_mod_kernel<4><<<rows, threads, 0, st(stream)>>>(X, S, off, n, D, eps, BF(mod), mod_stride, shift_off, scale_off, BFW(out));
  else if (vpt <= 16)
    ln_mod_kernel<16><<<rows, threads, 0, st(stream)>>>(X, S, off, n, D, eps, BF(mod), mod_stride, shift_off, scale_off, BFW(out));
  else
    return fail("eng_layernorm_modulate", "D=" + std::to_string(D) + " > 4096 not supported");
  return launched("eng_layernorm_modulate");
}

extern "C" const char* eng_gated_residual(float* X, int S, int off, int n, int B, int D, const void* y, int ld_y,
                                          const void* bias, const void* mod, int mod_stride, int gate_off,
                                          void* stream) {
  if (B <= 0 || n <= 0 || D <= 0 || off + n > S || ld_y < D) return fail("eng_gated_residual", "bad segment");
  gated_residual_kernel<<<grid_for(size_t(B) * n * D), 256, 0, st(stream)>>>(X, S, off, n, B, D, BF(y), ld_y, BF(bias),
                                                                              BF(mod), mod_stride, gate_off);
  return launched("eng_gated_residual");
}

extern "C" const char* eng_residual_store(float* X, int S, int off, int n, int B, int D, const void* src,
                                          const void* bias, void* stream) {
  if (B <= 0 || n <= 0 || D <= 0 || off + n > S) return fail("eng_residual_store", "bad segment");
  residual_store_kernel<<<grid_for(size_t(B) * n * D), 256, 0, st(stream)>>>(X, S, off, n, B, D, BF(src), BF(bias));
  return launched("eng_residual_store");
}

extern "C" const char* eng_residual_load(const float* X, int S, int off, int n, int B, int D, void* out,
                                         void* stream) {
  if (B <= 0 || n <= 0 || D <= 0 || off + n > S) return fail("eng_residual_load", "bad segment");
  residual_load_kernel<<<grid_for(size_t(B) * n * D), 256, 0, st(stream)>>>(X, S, off, n, B, D, BFW(out));
  return launched("eng_residual_load");
}

extern "C" const char* eng_rope_table(const float* ids, int S, int a0, int a1, int a2, float* cos_t, float* sin_t,
                                      void* stream) {
  if (S <= 0 || a0 % 2 || a1 % 2 || a2 % 2) return fail("eng_rope_table", "S > 0 and even axis widths needed");
  rope_table_kernel<<<grid_for(size_t(S) * (a0 + a1 + a2) / 2), 256, 0, st(stream)>>>(ids, S, a0, a1, a2, cos_t, sin_t);
  return launched("eng_rope_table");
}

extern "C" const char* eng_qk_norm_rope(const void* qkv, int ld, const void* bias, int B, int n, int off, int S, int H,
                                        int Dh, const void* wq, const void* wk, float eps, const float* cos_t,
                                        const float* sin_t, void* Q, void* K, void* V, void* stream) {
  if (Dh % 2 || Dh > 128 || Dh <= 0) return fail("eng_qk_norm_rope", "Dh=" + std::to_string(Dh) + " (even, <= 128)");
  if (ld < 3 * H * Dh || off + n > S || B <= 0 || n <= 0) return fail("eng_qk_norm_rope", "bad shape");
  const size_t warps = size_t(B) * n * H;
  qk_norm_rope_kernel<<<int((warps + 7) / 8), 256, 0, st(stream)>>>(BF(qkv), ld, BF(bias), B, n, off, S, H, Dh, BF(wq),
                                                                    BF(wk), eps, cos_t, sin_t, BFW(Q), BFW(K), BFW(V));
  return launched("eng_qk_norm_rope");
}

extern "C" const char* eng_split_heads(const void* src, int ld, const void* bias, int B, int n, int H, int Dh,
                                       int parts, void* d0, void* d1, void* d2, void* stream) {
  if (B <= 0 || n <= 0 || H <= 0 || Dh <= 0 || parts < 1 || parts > 3 || ld < parts * H * Dh || !d0 ||
      (parts > 1 && !d1) || (parts > 2 && !d2))
    return fail("eng_split_heads", "bad shape: B=" + std::to_string(B) + " n=" + std::to_string(n) + " H=" +
                                       std::to_string(H) + " Dh=" + std::to_string(Dh) + " parts=" +
                                       std::to_string(parts) + " ld=" + std::to_string(ld));
  auto a16 = [](const void* q) { return q == nullptr || reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  if (Dh % 8 == 0 && ld % 8 == 0 && a16(src) && a16(d0) && a16(d1) && a16(d2))
    split_heads8_kernel<<<grid_for(size_t(B) * n * parts * H * Dh / 8), 256, 0, st(stream)>>>(
        BF(src), ld, BF(bias), B, n, H, Dh, parts, BFW(d0), BFW(d1), BFW(d2));
  else
    split_heads_kernel<<<grid_for(size_t(B) * n * parts * H * Dh), 256, 0, st(stream)>>>(
        BF(src), ld, BF(bias), B, n, H, Dh, parts, BFW(d0), BFW(d1), BFW(d2));
  return launched("eng_split_heads");
}

extern "C" const char* eng_gemv_w4a16_variant(const void* x, int M, int K, const uint8_t* codes, const void* scales,
                                              const void* zeros, const void* bias, int N, void* out, int variant,
                                              void* stream) {
  if (M <= 0 || M > 8 || K <= 0 || K % 64 || N <= 0)
    return fail("eng_gemv_w4a16", "M in 1..8, K % 64 == 0, N > 0 needed; got M=" + std::to_string(M) +
                                      " K=" + std::to_string(K) + " N=" + std::to_string(N));
  // every kernel reads x and the codes as 16-byte vectors (the engine's tensors are cudaMalloc'd: 256-byte aligned)
  if (reinterpret_cast<uintptr_t>(x) % 16) return fail("eng_gemv_w4a16", "x must be 16-byte aligned");
  if (reinterpret_cast<uintptr_t>(codes) % 16) return fail("eng_gemv_w4a16", "codes must be 16-byte aligned");
  if (variant < 0 || variant > 3)
    return fail("eng_gemv_w4a16", "variant must be 0 (auto), 1 (CUDA cores), 2 (mma) or 3 (cp.async stream)");
  const bool stream_ok = gemv_stream::supports(x, M, K, codes, scales, zeros, N);
  if (variant == 3 && !stream_ok)
    return fail("eng_gemv_w4a16", "the streaming kernel needs K % 128 == 0 and 4-byte aligned scales / zeros; got K=" +
                                      std::to_string(K));
  // auto: the streaming kernel (gemv_stream.cuh) where it applies; else the CUDA-core kernel at small M and the
  // tensor-core kernel above, where its FMAs (M per code) outweigh the memory time (docs/benchmarks.md, GEMV tables)
  if (variant == 0) variant = stream_ok ? 3 : M < SVDQ_GEMV_MMA_FROM ? 1 : 2;
  if (variant == 3) {
    const cudaError_t e = gemv_stream::launch_tpw(0, BF(x), M, K, codes, BF(scales), BF(zeros), BF(bias), N,
                                                  BFW(out), st(stream));
    if (e != cudaSuccess)
      return fail("eng_gemv_w4a16", std::string("streaming kernel launch: ") + cudaGetErrorName(e) + " (" +
                                        cudaGetErrorString(e) + ")");
    return nullptr;
  }
  if (variant == 2) return launch_gemv_mma(x, M, K, codes, scales, zeros, bias, N, out, st(stream));
  // rows per warp: 4 up to M = 2 (each x value read from shared memory serves 4 rows), 2 above (registers: at
  // most 128 per thread for 2 blocks of 8 warps per SM)
  if (M == 1) return launch_gemv<1, 4>(x, M, K, codes, scales, zeros, bias, N, out, st(stream));
  if (M == 2) return launch_gemv<2, 4>(x, M, K, codes, scales, zeros, bias, N, out, st(stream));
  if (M <= 4) return launch_gemv<4, 2>(x, M, K, codes, scales, zeros, bias, N, out, st(stream));
  return launch_gemv<8, 2>(x, M, K, codes, scales, zeros, bias, N, out, st(stream));
}

extern "C" const char* eng_gemv_w4a16(const void* x, int M, int K, const uint8_t* codes, const void* scales,
                                      const void* zeros, const void* bias, int N, void* out, void* stream) {
  return eng_gemv_w4a16_variant(x, M, K, codes, scales, zeros, bias, N, out, 0, stream);
}

extern "C" const char* eng_fill_random(void* p, size_t n, int dtype, uint32_t seed, float center, float scale,
                                       void* stream) {
  if (!p || n == 0 || dtype < 0 || dtype > 2) return fail("eng_fill_random", "bad arguments");
  fill_random_kernel<<<grid_for(n), 256, 0, st(stream)>>>(p, n, dtype, seed, center, scale);
  return launched("eng_fill_random");
}
extern "C" const char* eng_fill_random_bytes(void* p, size_t n, uint32_t seed, void* stream) {
  if (!p || n == 0) return fail("eng_fill_random_bytes", "bad arguments");
  fill_bytes_kernel<<<grid_for(n), 256, 0, st(stream)>>>(static_cast<uint8_t*>(p), n, seed);
  return launched("eng_fill_random_bytes");
}

extern "C" const char* eng_copy_2d(const void* src, int ld_src, void* dst, int ld_dst, int rows, int cols,
                                   void* stream) {
  if (rows <= 0 || cols <= 0 || ld_src < cols || ld_dst < cols) return fail("eng_copy_2d", "bad shape");
  copy_2d_kernel<<<grid_for(size_t(rows) * cols / 8 + 1), 256, 0, st(stream)>>>(BF(src), ld_src, BFW(dst), ld_dst, rows, cols);
  return launched("eng_copy_2d");
}
