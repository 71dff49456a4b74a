// SVDQuant W4A4 kernels: fused activation quantize + low-rank down, and the W4A4 GEMM with the fused epilogue
// (per-group scales, + lora_act · lora_upᵀ, + bias, optional GELU). Layouts: svdq_cuda.h.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "svdq_cuda.h"

namespace {

thread_local std::string g_err;

const char* fail(const std::string& msg) {
  g_err = msg;
  return g_err.c_str();
}

const char* check_cuda(cudaError_t e, const char* call) {
  if (e == cudaSuccess) return nullptr;
  return fail(std::string(call) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

// ---- 16-bit helpers ------------------------------------------------------------------------------------------
template <bool BF16>
__device__ __forceinline__ float h2f(uint16_t b) {
  if constexpr (BF16) return __uint_as_float(uint32_t(b) << 16);
  else return __half2float(__ushort_as_half(b));
}
template <bool BF16>
__device__ __forceinline__ uint16_t f2h(float f) {
  if constexpr (BF16) return __bfloat16_as_ushort(__float2bfloat16_rn(f));
  else return __half_as_ushort(__float2half_rn(f));
}
template <bool BF16>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  return uint32_t(f2h<BF16>(lo)) | (uint32_t(f2h<BF16>(hi)) << 16);
}

// ---- PTX wrappers --------------------------------------------------------------------------------------------
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// D = A(16x32 int8) · B(32x8 int8) + (ZC ? 0x4B400000 : D); A unsigned when AU. Starting a group's sum at
// 0x4B400000 (the bits of 1.5·2^23) makes the int32 result, read as a float, exactly 1.5·2^23 + sum while
// |sum| < 2^22: the int->float conversion becomes one FADD on the FMA pipe instead of an I2F on the ALU pipe.
[[maybe_unused]] constexpr int MAGIC_I = 0x4B400000;
constexpr float MAGIC_F = 12582912.0f;
template <bool AU, bool ZC = false>
__device__ __forceinline__ void mma_s8(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                       uint32_t b1) {
  if constexpr (ZC) {
    if constexpr (AU) {
      asm volatile(
          "mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};\n"
          : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
          : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(MAGIC_I));
    } else {
      asm volatile(
          "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};\n"
          : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
          : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(MAGIC_I));
    }
  } else if constexpr (AU) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}
// D += A(16x64 int4) · B(64x8 int4): native on sm_80/86/89, emulated on sm_90.
template <bool AU>
__device__ __forceinline__ void mma_s4(int (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                       uint32_t b1) {
  if constexpr (AU) {
    asm volatile(
        "mma.sync.aligned.m16n8k64.row.col.s32.u4.s4.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k64.row.col.s32.s4.s4.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}
// D += A(16x16) · B(16x8), 16-bit operands, f32 accumulators.
template <bool BF16>
__device__ __forceinline__ void mma_h(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                      uint32_t b1) {
  if constexpr (BF16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}

__device__ __forceinline__ uint32_t nib_lo(uint32_t w) { return (w << 4) & 0xF0F0F0F0u; }
__device__ __forceinline__ uint32_t nib_hi(uint32_t w) { return w & 0xF0F0F0F0u; }

// FP8 E4M3 encoding (OCP 8-bit floating point spec: 1 sign, 4 exponent bits with bias 7, 3 mantissa bits) of an
// integer |v| <= 15: every INT4 code (and every u4 code) is exact. v = 2^e (1 + m/8) with e = floor(log2 |v|).
__device__ __forceinline__ uint32_t e4m3_of_int(int v) {
  if (v == 0) return 0u;
  const uint32_t a = uint32_t(v < 0 ? -v : v);
  const int e = 31 - __clz(a);
  return (v < 0 ? 0x80u : 0u) | (uint32_t(e + 7) << 3) | (((a << 3) >> e) & 7u);
}
// Four e4m3 bytes (a in the lowest byte) of small exact integers held as floats.
__device__ __forceinline__ uint32_t e4m3x4_f(float a, float b, float c, float d) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  // cvt.rn.satfinite.e4m3x2.f32 d, x, y puts x in the upper byte and y in the lower one (PTX ISA, cvt)
  uint16_t lo, hi;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(lo) : "f"(b), "f"(a));
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(hi) : "f"(d), "f"(c));
  return uint32_t(lo) | (uint32_t(hi) << 16);
#else
  return e4m3_of_int(int(a)) | (e4m3_of_int(int(b)) << 8) | (e4m3_of_int(int(c)) << 16) | (e4m3_of_int(int(d)) << 24);
#endif
}
__device__ __forceinline__ float gelu_tanh(float x) {
  // GELU, tanh approximation (Hendrycks & Gimpel 2016; diffusers "gelu-approximate"): sqrt(2/pi) = 0.7978845608.
  const float u = 0.7978845608f * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + tanhf(u));
}

// per-row-per-64 quantization and low-rank-down helpers shared by kernel 1 and the GEMM's next-layer epilogue
#include "next_quant.cuh"

// ---- kernel 1: quantize activations + low-rank down --------------------------------------------------------------
constexpr int Q_ROWS = 32;  // rows per block: 2 m16 tiles
constexpr int Q_WARPS = 8;  // warps split the K/64 groups

template <bool BF16, bool AU, int R, int FMT>
__global__ void __launch_bounds__(Q_WARPS * 32) quantize_kernel(const svdq_quantize_args p, int Mp) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int m0 = blockIdx.x * Q_ROWS;
  const int K = p.K, KT = K / 64;
  const uint16_t* X = static_cast<const uint16_t*>(p.x);
  const uint16_t* L = static_cast<const uint16_t*>(p.lora_down);
  const uint16_t* S = static_cast<const uint16_t*>(p.smooth);
  uint8_t* codes = static_cast<uint8_t*>(p.codes);
  uint16_t* asc = static_cast<uint16_t*>(p.ascales);
  constexpr int NT = R > 0 ? R / 8 : 1;
  float lacc[2][NT][4];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
      for (int c = 0; c < 4; c++) lacc[i][j][c] = 0.f;

  // blocks along y split K: this warp takes groups kt = y*Q_WARPS + warp, stepping Q_WARPS * gridDim.y
  for (int kt = blockIdx.y * Q_WARPS + warp; kt < KT; kt += Q_WARPS * gridDim.y) {
    // x[mi][rowhalf][khalf]: 8 consecutive 16-bit values of row (m0 + 16mi + g + 8rowhalf), k = kt*64 + 32khalf + 8t
    uint4 x[2][2][2];
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
      for (int rh = 0; rh < 2; rh++) {
        const int row = m0 + mi * 16 + g + rh * 8;
#pragma unroll
        for (int kh = 0; kh < 2; kh++) {
          if (row < p.M) {
            x[mi][rh][kh] = __ldg(reinterpret_cast<const uint4*>(X + (size_t)row * K + kt * 64 + kh * 32 + t * 8));
          } else {
            x[mi][rh][kh] = make_uint4(0, 0, 0, 0);
          }
        }
      }
    if constexpr (R > 0) {
#pragma unroll
      for (int nt = 0; nt < NT; nt++) {
        uint4 l0, l1;
        nq_load_lora_down(L, K, nt * 8, kt * 64, g, t, l0, l1);
#pragma unroll
        for (int mi = 0; mi < 2; mi++) nq_lora_mma<BF16>(lacc[mi][nt], x[mi], l0, l1);
      }
    }
    // reciprocal smoothing factors for k = kt*64 + 32kh + 8t + j
    float inv[2][8];
#pragma unroll
    for (int kh = 0; kh < 2; kh++) nq_inv_smooth<BF16>(S, kt * 64 + kh * 32 + t * 8, inv[kh]);
#pragma unroll
    for (int mi = 0; mi < 2; mi++) {
      uint32_t words[2][2];  // [rowhalf][khalf]
      uint32_t f8w[2][2][2];  // "f8": [rowhalf][khalf][even/odd elements], four e4m3 bytes each
      uint16_t sc16[2];
#pragma unroll
      for (int rh = 0; rh < 2; rh++) {
        const bool valid = m0 + mi * 16 + g + rh * 8 < p.M;  // padded rows stay all-zero codes and scales
        sc16[rh] = nq_quantize_row<BF16, AU, FMT == SVDQ_CODES_F8>(x[mi][rh], inv, valid, words[rh], f8w[rh]);
      }
      const int mt = m0 / 16 + mi;
      nq_store_codes<FMT>(codes, mt, kt, KT, lane, words, f8w);
      nq_store_scales(asc, Mp, kt, m0 + mi * 16, g, t, sc16);
    }
  }

  if constexpr (R > 0) {
    // deterministic reduction of the per-warp partial products over the K split
    __shared__ float red[Q_ROWS][R];
    for (int i = threadIdx.x; i < Q_ROWS * R; i += blockDim.x) (&red[0][0])[i] = 0.f;
    __syncthreads();
    for (int w = 0; w < Q_WARPS; w++) {
      if (warp == w) {
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
          for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int c = 0; c < 4; c++) red[mi * 16 + g + (c >> 1) * 8][nt * 8 + t * 2 + (c & 1)] += lacc[mi][nt][c];
      }
      __syncthreads();
    }
    if (gridDim.y == 1) {
      for (int i = threadIdx.x; i < Q_ROWS * R; i += blockDim.x) p.lora_act[(size_t)m0 * R + i] = (&red[0][0])[i];
    } else {  // K split over blocks: lora_act was zeroed by the host; float atomics (order not deterministic)
      for (int i = threadIdx.x; i < Q_ROWS * R; i += blockDim.x) atomicAdd(&p.lora_act[(size_t)m0 * R + i], (&red[0][0])[i]);
    }
  }
}

// ---- GEMM epilogue pieces shared by both GEMM kernels ---------------------------------------------------------------
// A warp's 16-row strip of outputs (rows row0 + g and row0 + g + 8 in this lane) over NJ n8 tiles from col0, in the
// mma.sync m16n8 accumulator layout (which is also a wgmma accumulator's per-warp layout): acc[j][c] is row
// row0 + g + 8·(c/2), column col0 + 8j + 2t + c%2.

// acc += lora_act[rows, :] · lora_up[cols, :]ᵀ on tensor cores (lora_act rounded to the 16-bit dtype, f32 accumulate).
template <bool BF16, int NJ>
__device__ __forceinline__ void epi_lowrank(float (&acc)[NJ][4], const svdq_gemm_args& p, int row0, int col0, int g,
                                            int t) {
  const uint16_t* U = static_cast<const uint16_t*>(p.lora_up);
  for (int r0 = 0; r0 < p.R; r0 += 16) {
    const float* la = p.lora_act + (size_t)(row0 + g) * p.R + r0 + t * 2;
    const float2 x00 = *reinterpret_cast<const float2*>(la);
    const float2 x10 = *reinterpret_cast<const float2*>(la + 8 * p.R);
    const float2 x01 = *reinterpret_cast<const float2*>(la + 8);
    const float2 x11 = *reinterpret_cast<const float2*>(la + 8 * p.R + 8);
    const uint32_t a0 = pack2<BF16>(x00.x, x00.y), a1 = pack2<BF16>(x10.x, x10.y);
    const uint32_t a2 = pack2<BF16>(x01.x, x01.y), a3 = pack2<BF16>(x11.x, x11.y);
#pragma unroll
    for (int nj = 0; nj < NJ; nj++) {
      const uint16_t* u = U + (size_t)(col0 + nj * 8 + g) * p.R + r0 + t * 2;
      const uint32_t ub0 = *reinterpret_cast<const uint32_t*>(u), ub1 = *reinterpret_cast<const uint32_t*>(u + 8);
      mma_h<BF16>(acc[nj], a0, a1, a2, a3, ub0, ub1);
    }
  }
}

// out = acc + bias, optional GELU, rounded to the 16-bit dtype (rows >= M skipped). With NEXT the same 16-bit
// values also go to the block's shared-memory tile sOut (row stride NQ_LD, origin sRow0/sCol0), and zeros for rows
// >= M (kernel 1 reads zeros there).
template <bool BF16, int NJ, bool NEXT>
__device__ __forceinline__ void epi_store(const float (&acc)[NJ][4], const svdq_gemm_args& p, int row0, int col0, int g,
                                          int t, uint16_t* sOut, int sRow0, int sCol0) {
  const uint16_t* B = static_cast<const uint16_t*>(p.bias);
  uint16_t* O = static_cast<uint16_t*>(p.out);
#pragma unroll
  for (int nj = 0; nj < NJ; nj++) {
    const int col = col0 + nj * 8 + t * 2;
    float bias0 = 0.f, bias1 = 0.f;
    if (B != nullptr) {
      bias0 = h2f<BF16>(B[col]);
      bias1 = h2f<BF16>(B[col + 1]);
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int row = row0 + g + h * 8;
      if (row < p.M) {
        float v0 = acc[nj][h * 2] + bias0, v1 = acc[nj][h * 2 + 1] + bias1;
        if (p.gelu) {
          v0 = gelu_tanh(v0);
          v1 = gelu_tanh(v1);
        }
        const uint32_t hv = pack2<BF16>(v0, v1);
        *reinterpret_cast<uint32_t*>(O + (size_t)row * p.N + col) = hv;
        if constexpr (NEXT) *reinterpret_cast<uint32_t*>(sOut + (row - sRow0) * NQ_LD + col - sCol0) = hv;
      } else if constexpr (NEXT) {
        *reinterpret_cast<uint32_t*>(sOut + (row - sRow0) * NQ_LD + col - sCol0) = 0u;
      }
    }
  }
}

// ---- kernel 2: W4A4 GEMM + fused epilogue ------------------------------------------------------------------------
constexpr int G_BN = 128;
constexpr int G_THREADS = 256;  // 8 warps: 2 along M x 4 along N; warp tile (16*MI) x 32

template <int MI, bool S4>
struct GemmTile {
  static constexpr int BM = 32 * MI;
  static constexpr int A_TILE = S4 ? 512 : 1024;  // bytes of one 16 x 64 activation tile (4-bit or x16 int8)
  static constexpr int A_BYTES = BM / 16 * A_TILE; // one k-group of the block's rows
  static constexpr int B_BYTES = 4096;            // 128 n x 64 k x 4 bit
  static constexpr int SA_BYTES = BM * 2;
  static constexpr int SW_BYTES = 256;
  // a stage holds TWO k-groups (128 k): one barrier per two groups, and the second group's mmas can overlap the
  // first group's scale arithmetic. Layout: [A g0][A g1][B g0][B g1][SA g0][SA g1][SW g0][SW g1]
  static constexpr int OFF_B = 2 * A_BYTES;
  static constexpr int OFF_SA = OFF_B + 2 * B_BYTES;
  static constexpr int OFF_SW = OFF_SA + 2 * SA_BYTES;
  static constexpr int STAGE = OFF_SW + 2 * SW_BYTES;
  static constexpr int STAGES = MI == 1 ? 6 : 4;
  static constexpr int SMEM = STAGE * STAGES;
};

// NEXT: also quantize the 16-bit output for the next layer (svdq_gemm_args.next_*; next_quant.cuh)
template <bool BF16, bool AU, bool S4, int MI, bool NEXT>
__global__ void __launch_bounds__(G_THREADS, MI == 4 ? 1 : 2) gemm_kernel(const svdq_gemm_args p, int Mp) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
  if constexpr (!S4) {
    __trap();  // the s8 path is only built for sm_90 (host code never launches it below)
    return;
  } else
#endif
  {
    using TL = GemmTile<MI, S4>;
    constexpr int G_STAGES = TL::STAGES;
    extern __shared__ __align__(16) uint8_t smem[];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 2, wn = warp & 3;
    const int g = lane >> 2, t = lane & 3;
    const int bn = blockIdx.x, bm = blockIdx.y;
    const int KT = p.K / 64;
    const int KT2 = (KT + 1) / 2;  // stages of two groups; with odd KT the last holds one
    const uint8_t* gA = static_cast<const uint8_t*>(p.codes) + (size_t)bm * (TL::BM / 16) * KT * TL::A_TILE;
    const uint8_t* gB = static_cast<const uint8_t*>(p.qweight) + (size_t)bn * KT * 4096;
    const uint16_t* gSA = static_cast<const uint16_t*>(p.ascales) + (size_t)bm * TL::BM;
    const uint16_t* gSW = static_cast<const uint16_t*>(p.wscales) + (size_t)bn * KT * 128;

    // Per-thread copy plan, computed once: each 16-byte chunk has a fixed shared-memory offset inside a stage, a
    // k-group (0/1) inside the stage and a global address that advances by a fixed stride per k-group.
    constexpr int A_CHUNKS = 2 * TL::A_BYTES / 16;
    constexpr int A_PER_THREAD = (A_CHUNKS + G_THREADS - 1) / G_THREADS;
    constexpr int CPT = TL::A_TILE / 16;  // 16-byte chunks per tile
    constexpr int CPG = TL::A_BYTES / 16; // chunks per group
    const uint8_t* a_src[A_PER_THREAD];
    int a_dst[A_PER_THREAD], a_grp[A_PER_THREAD];
#pragma unroll
    for (int j = 0; j < A_PER_THREAD; j++) {
      const int c = tid + j * G_THREADS;
      const int grp = c / CPG, r = c % CPG;
      a_dst[j] = c * 16;
      a_grp[j] = grp;
      a_src[j] = gA + ((size_t)(r / CPT) * KT + grp) * TL::A_TILE + (r % CPT) * 16;
    }
    // scales: threads [0, BM/4) copy the two groups' activation scales, [128, 160) the weight scales
    const int sa_per_grp = TL::BM / 8;
    const bool sa_thread = tid < 2 * sa_per_grp, sw_thread = tid >= 128 && tid < 160;
    const int s_grp = sa_thread ? tid / sa_per_grp : (tid - 128) / 16;
    const uint8_t* s_src = sa_thread ? reinterpret_cast<const uint8_t*>(gSA + (size_t)s_grp * Mp + (tid % sa_per_grp) * 8)
                                     : reinterpret_cast<const uint8_t*>(gSW + s_grp * 128 + ((tid - 128) % 16) * 8);
    const size_t s_stride = sa_thread ? (size_t)Mp * 2 : 256;  // bytes per k-group
    const int s_dst = sa_thread ? TL::OFF_SA + s_grp * TL::SA_BYTES + (tid % sa_per_grp) * 16
                                : TL::OFF_SW + s_grp * TL::SW_BYTES + ((tid - 128) % 16) * 16;
    auto load_stage = [&](int slot, int kt2) {
      uint8_t* s = smem + slot * TL::STAGE;
      const int k0 = 2 * kt2;
      const bool two = k0 + 1 < KT;
#pragma unroll
      for (int j = 0; j < A_PER_THREAD; j++) {
        if ((A_CHUNKS % G_THREADS == 0 || tid + j * G_THREADS < A_CHUNKS) && (two || a_grp[j] == 0))
          cp_async16(s + a_dst[j], a_src[j] + (size_t)k0 * TL::A_TILE);
      }
      cp_async16(s + TL::OFF_B + tid * 16, gB + (size_t)k0 * 4096 + tid * 16);
      if (two) cp_async16(s + TL::OFF_B + 4096 + tid * 16, gB + (size_t)(k0 + 1) * 4096 + tid * 16);
      if ((sa_thread || sw_thread) && (two || s_grp == 0)) cp_async16(s + s_dst, s_src + (size_t)k0 * s_stride);
    };

    float acc[MI][4][4];
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
      for (int j = 0; j < 4; j++)
#pragma unroll
        for (int c = 0; c < 4; c++) acc[i][j][c] = 0.f;

#pragma unroll
    for (int st = 0; st < G_STAGES - 1; st++) {
      if (st < KT2) load_stage(st, st);
      cp_async_commit();
    }

    int rd_slot = 0, wr_slot = G_STAGES - 1;  // rotating stage indices (no modulo in the loop)
    for (int kt2 = 0; kt2 < KT2; kt2++) {
      cp_async_wait<G_STAGES - 2>();
      __syncthreads();
      {
        const int nk = kt2 + G_STAGES - 1;
        if (nk < KT2) load_stage(wr_slot, nk);
        cp_async_commit();
        wr_slot = wr_slot + 1 == G_STAGES ? 0 : wr_slot + 1;
      }
      const uint8_t* s = smem + rd_slot * TL::STAGE;
      rd_slot = rd_slot + 1 == G_STAGES ? 0 : rd_slot + 1;
      const int ngrp = 2 * kt2 + 1 < KT ? 2 : 1;
#pragma unroll
      for (int grp = 0; grp < 2; grp++) {
        if (grp >= ngrp) break;
        const uint8_t* sa_ = s + grp * TL::A_BYTES;
        const uint8_t* sb_ = s + TL::OFF_B + grp * TL::B_BYTES;
        uint32_t b0[4], b1[4];  // per n8 tile nj = 2*pj + nps: k half 0 and 1
#pragma unroll
        for (int pj = 0; pj < 2; pj++) {
          const uint4 w = *reinterpret_cast<const uint4*>(sb_ + (wn * 2 + pj) * 512 + lane * 16);
          b0[pj * 2] = w.x;
          b1[pj * 2] = w.y;
          b0[pj * 2 + 1] = w.z;
          b1[pj * 2 + 1] = w.w;
        }
        int ci[MI][4][4];
        if constexpr (S4) {
#pragma unroll
          for (int i = 0; i < MI; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
              for (int c = 0; c < 4; c++) ci[i][j][c] = 0;
#pragma unroll
          for (int mi = 0; mi < MI; mi++) {
            const uint4 af = *reinterpret_cast<const uint4*>(sa_ + (wm * MI + mi) * 512 + lane * 16);
#pragma unroll
            for (int nj = 0; nj < 4; nj++) mma_s4<AU>(ci[mi][nj], af.x, af.y, af.z, af.w, b0[nj], b1[nj]);
          }
        } else {
          uint32_t bl0[4], bh0[4], bl1[4], bh1[4];
#pragma unroll
          for (int nj = 0; nj < 4; nj++) {
            bl0[nj] = nib_lo(b0[nj]);
            bh0[nj] = nib_hi(b0[nj]);
            bl1[nj] = nib_lo(b1[nj]);
            bh1[nj] = nib_hi(b1[nj]);
          }
#pragma unroll
          for (int mi = 0; mi < MI; mi++) {
            // activations arrive pre-split (int8 fragment layout): no unpacking on this side
            const uint4 a01 = *reinterpret_cast<const uint4*>(sa_ + (wm * MI + mi) * 1024 + lane * 32);
            const uint4 a23 = *reinterpret_cast<const uint4*>(sa_ + (wm * MI + mi) * 1024 + lane * 32 + 16);
#pragma unroll
            for (int nj = 0; nj < 4; nj++) mma_s8<AU, true>(ci[mi][nj], a01.x, a01.y, a01.z, a01.w, bl0[nj], bh0[nj]);
#pragma unroll
            for (int nj = 0; nj < 4; nj++) mma_s8<AU>(ci[mi][nj], a23.x, a23.y, a23.z, a23.w, bl1[nj], bh1[nj]);
          }
        }
        // per-group scales: s_x(row) * s_w(col), with the 1/256 of the x16 nibble split folded in
        const uint16_t* sSA = reinterpret_cast<const uint16_t*>(s + TL::OFF_SA + grp * TL::SA_BYTES);
        const uint16_t* sSW = reinterpret_cast<const uint16_t*>(s + TL::OFF_SW + grp * TL::SW_BYTES);
        constexpr float FOLD = S4 ? 1.0f : 1.0f / 256.0f;
        float sa[MI][2];
#pragma unroll
        for (int mi = 0; mi < MI; mi++) {
          sa[mi][0] = h2f<BF16>(sSA[(wm * MI + mi) * 16 + g]) * FOLD;
          sa[mi][1] = h2f<BF16>(sSA[(wm * MI + mi) * 16 + g + 8]) * FOLD;
        }
        float nms[MI][2];  // -1.5·2^23 · s_x (s8 path)
#pragma unroll
        for (int mi = 0; mi < MI; mi++) {
          nms[mi][0] = -MAGIC_F * sa[mi][0];
          nms[mi][1] = -MAGIC_F * sa[mi][1];
        }
        float sw[4][2];
#pragma unroll
        for (int pj = 0; pj < 2; pj++) {
          const uint2 v = *reinterpret_cast<const uint2*>(sSW + (wn * 2 + pj) * 16 + t * 4);
          sw[pj * 2][0] = h2f<BF16>(uint16_t(v.x));
          sw[pj * 2][1] = h2f<BF16>(uint16_t(v.x >> 16));
          sw[pj * 2 + 1][0] = h2f<BF16>(uint16_t(v.y));
          sw[pj * 2 + 1][1] = h2f<BF16>(uint16_t(v.y >> 16));
        }
#pragma unroll
        for (int mi = 0; mi < MI; mi++)
#pragma unroll
          for (int nj = 0; nj < 4; nj++)
#pragma unroll
            for (int c = 0; c < 4; c++)
              if constexpr (S4) {
                acc[mi][nj][c] = fmaf(__int2float_rn(ci[mi][nj][c]), sa[mi][c >> 1] * sw[nj][c & 1], acc[mi][nj][c]);
              } else {
                // ci reads as the float 1.5·2^23 + P; (1.5·2^23 + P)·s_x − 1.5·2^23·s_x = P·s_x in one FFMA (the
                // constant is exact: 16-bit scales have <= 11 significant bits), then one FFMA with s_w.
                const float ps = fmaf(__int_as_float(ci[mi][nj][c]), sa[mi][c >> 1], nms[mi][c >> 1]);
                acc[mi][nj][c] = fmaf(ps, sw[nj][c & 1], acc[mi][nj][c]);
              }
      }
    }
    cp_async_wait<0>();

    // ---- epilogue: + lora_act · lora_upᵀ on tensor cores, + bias, GELU, store
    const int row_base = bm * TL::BM + wm * MI * 16;
    const int col_base = bn * G_BN + wn * 32;
    // NEXT: the block's 16-bit output tile also goes to shared memory (free once every warp has left the main loop)
    uint16_t* sOut = reinterpret_cast<uint16_t*>(smem);
    if constexpr (NEXT) {
      static_assert(TL::BM * NQ_LD * 2 <= TL::SMEM, "next-layer output tile must fit the pipeline's shared memory");
      __syncthreads();
    }
#pragma unroll
    for (int mi = 0; mi < MI; mi++) {
      if (p.R > 0) epi_lowrank<BF16, 4>(acc[mi], p, row_base + mi * 16, col_base, g, t);
      epi_store<BF16, 4, NEXT>(acc[mi], p, row_base + mi * 16, col_base, g, t, sOut, bm * TL::BM, bn * G_BN);
    }
    if constexpr (NEXT) {
      __syncthreads();
      nq_block_epilogue<BF16, TL::BM / 16, G_THREADS / 32>(p, Mp, sOut, bm * TL::BM, bn * G_BN, warp, lane);
    }
  }
}

// ---- kernel 2b: W4A4 GEMM on wgmma with FP8 E4M3 operands (sm_90a) --------------------------------------------------
// Block tile (64*WGS) x 128: WGS warpgroups, each owning 64 rows x all 128 columns (one m64n128k32 wgmma per k32
// step). One 64-wide k-group per pipeline stage, F8Tile::STAGES stages filled with 1D bulk copies (cp.async.bulk +
// mbarrier complete_tx) issued by thread 0. A ("f8" activation codes) and B ("wg" weights), both e4m3, are read by
// the tensor cores from shared memory through 64-byte-swizzled K-major descriptors.
// Codes are integers in [-8, 15], so each group's sum P = Σ_k a·w (|P| <= 64·15·8 < 2^13) is exact in the f32
// accumulators: every group starts from zero (scale-d = 0) and is then folded into the f32 result as
// acc += (P·s_x)·s_w, two FP32 instructions per output and group (the s8 path needs a third for int -> float).
// Two accumulator sets alternate between groups: while the tensor cores run group kt+1 into one, the warpgroup
// folds group kt from the other, so the scale arithmetic overlaps the MMAs.
constexpr int F8_BN = 128;   // width of a "wg" weight chunk
template <int WGS>
struct F8Tile {
  static constexpr int BM = 64 * WGS;
  static constexpr int B_BYTES = 8192;            // 128 n x 64 k e4m3 ("wg" weight layout)
  static constexpr int A_BYTES = BM * 64;         // the block's rows of the f8 layout, one k-group
  static constexpr int SA_BYTES = BM * 2;         // 16-bit activation scales
  static constexpr int SW_BYTES = 512;            // 128 f32 weight scales ("wg" scale layout)
  static constexpr int OFF_B = 0;
  static constexpr int OFF_A = OFF_B + B_BYTES;
  static constexpr int OFF_SA = OFF_A + A_BYTES;
  static constexpr int OFF_SW = OFF_SA + SA_BYTES;
  static constexpr int TX = OFF_SW + SW_BYTES;    // bytes a stage receives
  static constexpr int STAGE = (TX + 1023) / 1024 * 1024;  // B tiles 1 KiB aligned (swizzle)
  static constexpr int STAGES = 8;  // a power of two (cheap stage/phase arithmetic); 136 KiB with 128-row tiles
  static constexpr int OFF_BAR = STAGE * STAGES;
  static constexpr int SMEM = OFF_BAR + 2 * STAGES * 8 + 1024;  // + alignment slack
  static constexpr int THREADS = 128 * WGS;
};

[[maybe_unused]] __device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
[[maybe_unused]] __device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
[[maybe_unused]] __device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
[[maybe_unused]] __device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
[[maybe_unused]] __device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t ok = 0;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(ok)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!ok);
}
[[maybe_unused]] __device__ __forceinline__ void bulk_g2s(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}
[[maybe_unused]] __device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
[[maybe_unused]] __device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// keeps the compiler from moving accesses of wgmma accumulators across the asynchronous wgmma window
[[maybe_unused]] __device__ __forceinline__ void fence_regs(float (&d)[64]) {
#pragma unroll
  for (int i = 0; i < 64; i++) asm volatile("" : "+f"(d[i])::"memory");
}
// K-major shared-memory matrix descriptor with the 64-byte swizzle (PTX ISA, "Matrix Descriptor Format"): start
// address, leading byte offset (unused for swizzled K-major operands whose k extent stays in one 64-byte row),
// stride byte offset (between 8-row groups: 8 x 64 B), all >> 4; bits 62-63 = 2 (64-byte swizzle).
[[maybe_unused]] __device__ __forceinline__ uint64_t wg_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t(lbo >> 4) << 16) | (uint64_t(sbo >> 4) << 32) | (2ull << 62);
}
// D(64x128 f32) = A(64x32 e4m3, shared memory) · B(32x128 e4m3, shared memory) (+ D when ACC)
template <bool ACC>
__device__ __forceinline__ void wgmma_f8_n128(float (&d)[64], uint64_t adesc, uint64_t bdesc) {
#define SVDQ_D8(i) "+f"(d[i + 0]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
                   "+f"(d[i + 6]), "+f"(d[i + 7])
  asm volatile(
      "{\n .reg .pred p;\n setp.ne.b32 p, %66, 0;\n"
      " wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 "
      "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,"
      "%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,"
      "%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1;\n}\n"
      : SVDQ_D8(0), SVDQ_D8(8), SVDQ_D8(16), SVDQ_D8(24), SVDQ_D8(32), SVDQ_D8(40), SVDQ_D8(48), SVDQ_D8(56)
      : "l"(adesc), "l"(bdesc), "n"(ACC ? 1 : 0)
      : "memory");
#undef SVDQ_D8
}

// NEXT: also quantize the 16-bit output for the next layer (svdq_gemm_args.next_*; next_quant.cuh)
template <bool BF16, int WGS, bool NEXT>
__global__ void __launch_bounds__(F8Tile<WGS>::THREADS, WGS == 1 ? 2 : 1)
    gemm_f8_kernel(const svdq_gemm_args p, int Mp, uint32_t lbo, uint32_t sbo) {
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ < 900 || !defined(__CUDA_ARCH_FEAT_SM90_ALL))
  __trap();  // wgmma needs sm_90a; the host only launches this kernel on sm_90
#else
  using TL = F8Tile<WGS>;
  extern __shared__ __align__(16) uint8_t smem_raw[];
  // the 64-byte swizzle of the B tiles is a function of the shared-memory address bits: align the stages to 1 KiB
  uint8_t* smem = smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int bn = blockIdx.x, bm = blockIdx.y;
  const int KT = p.K / 64;
  const uint32_t sbase = smem_u32(smem);
  const uint32_t full0 = sbase + TL::OFF_BAR, empty0 = full0 + TL::STAGES * 8;
  if (tid == 0) {
    for (int s = 0; s < TL::STAGES; s++) {
      mbar_init(full0 + 8 * s, 1);
      mbar_init(empty0 + 8 * s, 4 * WGS);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  // Producer: thread 0 issues the bulk copies of group kt into stage kt % TL::STAGES (after every warp released the
  // stage's previous group). No separate producer warp: the whole register file goes to the consumers.
  // the block's rows: WGS/2 of the 128-row blocks of the f8 layout, or half of one (64-row tiles)
  const uint8_t* gA = static_cast<const uint8_t*>(p.codes) + ((size_t)(bm * TL::BM / 128) * KT) * 8192 + (TL::BM == 64 ? (bm & 1) * 4096 : 0);
  const uint8_t* gB = static_cast<const uint8_t*>(p.qweight_wg) + (size_t)bn * KT * 8192;
  const uint8_t* gSA = static_cast<const uint8_t*>(p.ascales) + (size_t)bm * TL::BM * 2;
  const uint8_t* gSW = static_cast<const uint8_t*>(p.wscales_wg) + (size_t)bn * KT * 512;
  auto produce = [&](int kt) {
    if (kt >= KT) return;
    const int s = kt % TL::STAGES, use = kt / TL::STAGES;
    if (use > 0) mbar_wait(empty0 + 8 * s, (use - 1) & 1);
    const uint32_t bar = full0 + 8 * s, st = sbase + s * TL::STAGE;
    mbar_expect_tx(bar, TL::TX);
    bulk_g2s(st + TL::OFF_B, gB + (size_t)kt * 8192, TL::B_BYTES, bar);
    bulk_g2s(st + TL::OFF_A, gA + (size_t)kt * 8192, TL::A_BYTES, bar);  // the block's rows: one piece
    bulk_g2s(st + TL::OFF_SA, gSA + (size_t)kt * Mp * 2, TL::SA_BYTES, bar);
    bulk_g2s(st + TL::OFF_SW, gSW + (size_t)kt * 512, TL::SW_BYTES, bar);
  };
  if (tid == 0)
    for (int kt = 0; kt < TL::STAGES; kt++) produce(kt);

  // consumers: warpgroup wg owns rows 64*wg .. +63 of the block; warp wl of it rows 16*wl .. +15
  const int wg = warp >> 2, wl = warp & 3;
  const int g = lane >> 2, t = lane & 3;
  float acc[16][4];
  float pa[64], pb[64];  // the two per-group accumulator sets (no initial value: each group starts with scale-d 0)
#pragma unroll
  for (int i = 0; i < 16; i++)
#pragma unroll
    for (int c = 0; c < 4; c++) acc[i][c] = 0.f;

  // A: this warpgroup's 64 rows of 64 B, B: 128 rows of 64 B; k32 step 0 in bytes 0..31 of each row, 1 in 32..63
  auto issue = [&](float (&pc)[64], int s) {
    const uint32_t a = sbase + s * TL::STAGE + TL::OFF_A + wg * 4096, b = sbase + s * TL::STAGE + TL::OFF_B;
    wg_fence();
    wgmma_f8_n128<false>(pc, wg_desc(a, lbo, sbo), wg_desc(b, lbo, sbo));  // each group starts from zero
    wgmma_f8_n128<true>(pc, wg_desc(a + 32, lbo, sbo), wg_desc(b + 32, lbo, sbo));
    wg_commit();
  };
  // acc += (P·s_x)·s_w; the group sums P are only read (writing them would make ptxas serialize the wgmmas).
  // The scales are loaded by load_scales before the wait for the group's MMAs, so their latency overlaps it.
  struct Scales {
    float sx0, sx1;
    float4 w[4];  // s_w of the first 64 columns (the second half is loaded inside flush, behind the first's FMAs)
  };
  auto load_scales = [&](int s, Scales& sc) {
    const uint16_t* sSA = reinterpret_cast<const uint16_t*>(smem + s * TL::STAGE + TL::OFF_SA);
    sc.sx0 = h2f<BF16>(sSA[wg * 64 + wl * 16 + g]);
    sc.sx1 = h2f<BF16>(sSA[wg * 64 + wl * 16 + g + 8]);
    const float4* sw = reinterpret_cast<const float4*>(smem + s * TL::STAGE + TL::OFF_SW + t * 64);
#pragma unroll
    for (int q = 0; q < 4; q++) sc.w[q] = sw[q];
  };
  auto flush = [&](const float (&pc)[64], const Scales& sc, int s) {
    const float4* sw = reinterpret_cast<const float4*>(smem + s * TL::STAGE + TL::OFF_SW + t * 64);
    float4 w1[4];
#pragma unroll
    for (int q = 0; q < 4; q++) w1[q] = sw[16 + q];
#pragma unroll
    for (int hf = 0; hf < 2; hf++)
#pragma unroll
      for (int q = 0; q < 4; q++) {
        const float4 w = hf == 0 ? sc.w[q] : w1[q];
        const float wv[2][2] = {{w.x, w.y}, {w.z, w.w}};
#pragma unroll
        for (int jj = 0; jj < 2; jj++) {
          const int j = hf * 8 + 2 * q + jj;
#pragma unroll
          for (int c = 0; c < 4; c++)
            acc[j][c] = fmaf(pc[j * 4 + c] * (c < 2 ? sc.sx0 : sc.sx1), wv[jj][c & 1], acc[j][c]);
        }
      }
  };
  // One k-group: issue group kt+1 into one set, then fold group kt from the other while the tensor cores run.
  // Branch-free (the last group is peeled) so that ptxas can track the wgmma groups.
  auto step = [&](int kt, float (&cur)[64], float (&nx)[64]) {
    const int s = kt % TL::STAGES, s1 = (kt + 1) % TL::STAGES;
    mbar_wait(full0 + 8 * s1, ((kt + 1) / TL::STAGES) & 1);
    fence_regs(nx);
    issue(nx, s1);
    if (tid == 0 && kt > 1) produce(kt - 2 + TL::STAGES);  // refill the stage released two steps ago (slack)
    Scales sc;
    load_scales(s, sc);
    wg_wait<1>();
    fence_regs(cur);
    flush(cur, sc, s);
    fence_regs(cur);
    __syncwarp();
    if (lane == 0) mbar_arrive(empty0 + 8 * s);
  };
  auto last = [&](int kt, float (&cur)[64]) {
    Scales sc;
    load_scales(kt % TL::STAGES, sc);
    wg_wait<0>();
    fence_regs(cur);
    flush(cur, sc, kt % TL::STAGES);
  };
  mbar_wait(full0, 0);
  fence_regs(pa);
  issue(pa, 0);
  int kt = 0;
  for (; kt + 2 < KT; kt += 2) {
    step(kt, pa, pb);
    step(kt + 1, pb, pa);
  }
  if (kt + 1 < KT) {
    step(kt, pa, pb);
    last(kt + 1, pb);
  } else {
    last(kt, pa);
  }

  // ---- epilogue: + lora_act · lora_upᵀ (mma.sync on the same fragment layout), + bias, GELU, store
  const int row_base = bm * TL::BM + wg * 64 + wl * 16;
  const int col_base = bn * F8_BN;
  // NEXT: the block's 16-bit output tile also goes to shared memory (free once every warp has left the main loop:
  // all bulk copies have landed, all wgmmas have completed)
  uint16_t* sOut = reinterpret_cast<uint16_t*>(smem);
  if constexpr (NEXT) {
    static_assert(TL::BM * NQ_LD * 2 <= TL::OFF_BAR, "next-layer output tile must fit the pipeline's shared memory");
    __syncthreads();
  }
  if (p.R > 0) epi_lowrank<BF16, 16>(acc, p, row_base, col_base, g, t);
  epi_store<BF16, 16, NEXT>(acc, p, row_base, col_base, g, t, sOut, bm * TL::BM, col_base);
  if constexpr (NEXT) {
    __syncthreads();
    nq_block_epilogue<BF16, TL::BM / 16, TL::THREADS / 32>(p, Mp, sOut, bm * TL::BM, col_base, warp, lane);
  }
#endif
}

// Load-time repack of the checkpoint weights into the "wg" layouts (svdq_cuda.h): one thread per output byte/scale.
__global__ void repack_wg_qweight_kernel(const uint8_t* __restrict__ qw, uint8_t* __restrict__ out, size_t total) {
  const size_t o = (size_t)blockIdx.x * blockDim.x + threadIdx.x;  // logical byte: chunk, row n, byte kb of the row
  if (o >= total) return;
  const size_t chunk = o / 8192;
  const int rem = int(o % 8192);
  const int n = rem / 64, kb = rem % 64;
  const int s = kb / 32, h = (kb % 32) / 16, c = kb % 16;
  const int k = 32 * s + 8 * (c / 4) + 2 * (c % 4) + h;  // k inside the 64-wide group (the s8 code order)
  const int pk = n / 16, nps = (n / 8) % 2, gg = n % 8, kps = k / 32, tt = (k % 32) / 8, e = k % 8;
  const uint8_t b = qw[chunk * 4096 + pk * 512 + (4 * gg + tt) * 16 + (nps * 2 + kps) * 4 + e / 2];
  const int nib = (b >> (4 * (e & 1))) & 15;
  // 64-byte swizzle: the 16-byte chunk kb/16 of row n sits at chunk (kb/16) ^ ((n/2) % 4)
  out[chunk * 8192 + n * 64 + (((kb / 16) ^ ((n >> 1) & 3)) * 16) + kb % 16] = uint8_t(e4m3_of_int(nib >= 8 ? nib - 16 : nib));
}
template <bool BF16>
__global__ void repack_wg_wscales_kernel(const uint16_t* __restrict__ ws, float* __restrict__ out, size_t total) {
  const size_t o = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= total) return;
  const size_t chunk = o / 128;
  const int rem = int(o % 128);
  const int half = rem / 64, tt = (rem / 16) % 4, jj = (rem / 2) % 8, e = rem % 2;
  const int n = half * 64 + jj * 8 + 2 * tt + e;
  const int a = n / 16, b = (n / 8) % 2, c = (n / 2) % 4, d = n % 2;
  out[o] = h2f<BF16>(ws[chunk * 128 + 16 * a + 4 * c + 2 * b + d]);
}

// ---- host side ---------------------------------------------------------------------------------------------------
std::string shape_msg(const char* fn, const char* what) { return std::string(fn) + ": " + what; }

// Compute capability and multiprocessor count of the current device, cached per device (host overhead matters
// for the small-M launches).
int device_cc(int* out_sms) {
  constexpr int MAX_DEV = 64;
  static int cc_cache[MAX_DEV] = {0}, sm_cache[MAX_DEV] = {0};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return -1;
  if (dev < 0 || dev >= MAX_DEV || cc_cache[dev] == 0) {
    int major = 0, minor = 0, sms = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (dev < 0 || dev >= MAX_DEV) {
      if (out_sms) *out_sms = sms;
      return major * 10 + minor;
    }
    cc_cache[dev] = major * 10 + minor;
    sm_cache[dev] = sms;
  }
  if (out_sms) *out_sms = sm_cache[dev];
  return cc_cache[dev];
}

template <bool BF16, bool AU, int R>
const char* launch_quantize(const svdq_quantize_args& a, cudaStream_t st) {
  const int Mp = svdq_pad_m(a.M);
  int sms = 0;
  device_cc(&sms);
  // split K over blocks until there are >= 4 blocks per multiprocessor (each warp keeps >= 1 group)
  const int KT = a.K / 64, rb = Mp / Q_ROWS;
  int ks = 1;
  while (rb * ks < 4 * sms && KT >= Q_WARPS * ks * 2) ks *= 2;
  if (R > 0 && ks > 1) {
    const char* e = check_cuda(cudaMemsetAsync(a.lora_act, 0, size_t(Mp) * R * 4, st), "cudaMemsetAsync(lora_act)");
    if (e) return e;
  }
  dim3 grid(rb, ks);
  if (a.codes_format == SVDQ_CODES_S8) quantize_kernel<BF16, AU, R, SVDQ_CODES_S8><<<grid, Q_WARPS * 32, 0, st>>>(a, Mp);
  else if (a.codes_format == SVDQ_CODES_F8) quantize_kernel<BF16, AU, R, SVDQ_CODES_F8><<<grid, Q_WARPS * 32, 0, st>>>(a, Mp);
  else quantize_kernel<BF16, AU, R, SVDQ_CODES_S4><<<grid, Q_WARPS * 32, 0, st>>>(a, Mp);
  return check_cuda(cudaGetLastError(), "cudaLaunchKernel(quantize_kernel)");
}

template <bool BF16, bool AU>
const char* dispatch_quantize_r(const svdq_quantize_args& a, cudaStream_t st) {
  switch (a.R) {
    case 0: return launch_quantize<BF16, AU, 0>(a, st);
    case 16: return launch_quantize<BF16, AU, 16>(a, st);
    case 32: return launch_quantize<BF16, AU, 32>(a, st);
    case 64: return launch_quantize<BF16, AU, 64>(a, st);
    default: return fail("svdq_quantize_act: rank R must be 0, 16, 32 or 64");
  }
}

template <bool BF16, bool AU, bool S4, int MI, bool NEXT>
const char* launch_gemm(const svdq_gemm_args& a, cudaStream_t st) {
  using TL = GemmTile<MI, S4>;
  const int Mp = svdq_pad_m(a.M);
  if (NEXT && a.next_R > 0) {
    // the N/128 column blocks add their partial next lora_act
    const char* e = check_cuda(cudaMemsetAsync(a.next_lora_act, 0, size_t(Mp) * a.next_R * 4, st),
                               "cudaMemsetAsync(next_lora_act)");
    if (e) return e;
  }
  auto kern = gemm_kernel<BF16, AU, S4, MI, NEXT>;
  static bool smem_set = false;  // once per instantiation (per process; the attribute is per function)
  if (!smem_set) {
    const char* e = check_cuda(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, TL::SMEM),
                               "cudaFuncSetAttribute(gemm_kernel, MaxDynamicSharedMemorySize)");
    if (e) return e;
    smem_set = true;
  }
  dim3 grid(a.N / G_BN, Mp / TL::BM);
  kern<<<grid, G_THREADS, TL::SMEM, st>>>(a, Mp);
  return check_cuda(cudaGetLastError(), "cudaLaunchKernel(gemm_kernel)");
}

template <bool BF16, bool AU, bool S4, bool NEXT>
const char* dispatch_gemm_mi_next(const svdq_gemm_args& a, int bm, cudaStream_t st) {
  switch (bm) {
    case 32: return launch_gemm<BF16, AU, S4, 1, NEXT>(a, st);
    case 64: return launch_gemm<BF16, AU, S4, 2, NEXT>(a, st);
    default: return launch_gemm<BF16, AU, S4, 4, NEXT>(a, st);
  }
}
template <bool BF16, bool AU, bool S4>
const char* dispatch_gemm_mi(const svdq_gemm_args& a, int bm, cudaStream_t st) {
  return a.next_codes != nullptr ? dispatch_gemm_mi_next<BF16, AU, S4, true>(a, bm, st)
                                 : dispatch_gemm_mi_next<BF16, AU, S4, false>(a, bm, st);
}

template <bool BF16, int WGS, bool NEXT>
const char* launch_gemm_f8(const svdq_gemm_args& a, cudaStream_t st) {
  using TL = F8Tile<WGS>;
  const int Mp = svdq_pad_m(a.M);
  if (NEXT && a.next_R > 0) {
    // the N/128 column blocks add their partial next lora_act
    const char* e = check_cuda(cudaMemsetAsync(a.next_lora_act, 0, size_t(Mp) * a.next_R * 4, st),
                               "cudaMemsetAsync(next_lora_act)");
    if (e) return e;
  }
  auto kern = gemm_f8_kernel<BF16, WGS, NEXT>;
  static bool smem_set = false;
  if (!smem_set) {
    const char* e = check_cuda(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, TL::SMEM),
                               "cudaFuncSetAttribute(gemm_f8_kernel, MaxDynamicSharedMemorySize)");
    if (e) return e;
    smem_set = true;
  }
  // descriptor strides of the "wg" B layout: 512 B between 8-row groups (LBO unused: 16).
  // SVDQ_WG_SWAP=1 sets a wrong stride (a negative control: results must then be wrong).
  static const bool swap = [] {
    const char* e = getenv("SVDQ_WG_SWAP");
    return e != nullptr && e[0] == '1';
  }();
  const uint32_t lbo = 16, sbo = swap ? 1024 : 512;
  dim3 grid(a.N / F8_BN, Mp / TL::BM);
  kern<<<grid, TL::THREADS, TL::SMEM, st>>>(a, Mp, lbo, sbo);
  return check_cuda(cudaGetLastError(), "cudaLaunchKernel(gemm_f8_kernel)");
}

}  // namespace

extern "C" int svdq_pad_m(int M) { return (M + 127) / 128 * 128; }
extern "C" int svdq_default_codes_format(void) { return device_cc(nullptr) >= 90 ? SVDQ_CODES_S8 : SVDQ_CODES_S4; }

extern "C" const char* svdq_quantize_act(const svdq_quantize_args* a, void* stream) {
  const char* fn = "svdq_quantize_act";
  if (!a) return fail(shape_msg(fn, "null arguments"));
  if (a->M <= 0 || a->K <= 0) return fail(shape_msg(fn, "M and K must be positive"));
  if (a->K % 64 != 0) return fail(std::string(fn) + ": K=" + std::to_string(a->K) + " must be a multiple of 64");
  if (!a->x || !a->codes || !a->ascales) return fail(shape_msg(fn, "x, codes and ascales must be non-null"));
  if (a->R > 0 && (!a->lora_down || !a->lora_act)) return fail(shape_msg(fn, "R > 0 needs lora_down and lora_act"));
  if (a->dtype != SVDQ_BF16 && a->dtype != SVDQ_F16) return fail(shape_msg(fn, "dtype must be bf16 or f16"));
  if (a->codes_format != SVDQ_CODES_S4 && a->codes_format != SVDQ_CODES_S8 && a->codes_format != SVDQ_CODES_F8)
    return fail(std::string(fn) + ": codes_format=" + std::to_string(a->codes_format) + " is not s4 (0), s8 (1) or f8 (2)");
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  if (a->dtype == SVDQ_BF16)
    return a->act_unsigned ? dispatch_quantize_r<true, true>(*a, st) : dispatch_quantize_r<true, false>(*a, st);
  return a->act_unsigned ? dispatch_quantize_r<false, true>(*a, st) : dispatch_quantize_r<false, false>(*a, st);
}

extern "C" const char* svdq_gemm_w4a4(const svdq_gemm_args* a, void* stream) {
  const char* fn = "svdq_gemm_w4a4";
  if (!a) return fail(shape_msg(fn, "null arguments"));
  if (a->M <= 0 || a->N <= 0 || a->K <= 0) return fail(shape_msg(fn, "M, N and K must be positive"));
  if (a->N % 128 != 0) return fail(std::string(fn) + ": N=" + std::to_string(a->N) + " must be a multiple of 128");
  if (a->K % 64 != 0) return fail(std::string(fn) + ": K=" + std::to_string(a->K) + " must be a multiple of 64");
  if (a->R < 0 || a->R % 16 != 0 || a->R > 256)
    return fail(std::string(fn) + ": rank R=" + std::to_string(a->R) + " must be a multiple of 16 in [0, 256]");
  if (!a->codes || !a->ascales || !a->qweight || !a->wscales || !a->out)
    return fail(shape_msg(fn, "codes, ascales, qweight, wscales and out must be non-null"));
  if (a->R > 0 && (!a->lora_act || !a->lora_up)) return fail(shape_msg(fn, "R > 0 needs lora_act and lora_up"));
  if (a->dtype != SVDQ_BF16 && a->dtype != SVDQ_F16) return fail(shape_msg(fn, "dtype must be bf16 or f16"));
  int sms = 0;
  const int cc = device_cc(&sms);
  if (cc < 80) return fail(std::string(fn) + ": needs compute capability >= 8.0, device has " + std::to_string(cc));
  if (a->codes_format != SVDQ_CODES_S4 && a->codes_format != SVDQ_CODES_S8 && a->codes_format != SVDQ_CODES_F8)
    return fail(std::string(fn) + ": codes_format=" + std::to_string(a->codes_format) + " is not s4 (0), s8 (1) or f8 (2)");
  const bool s4 = a->codes_format == SVDQ_CODES_S4;
  if (a->codes_format == SVDQ_CODES_S8 && cc < 90)
    return fail(shape_msg(fn, "s8-format codes: the s8 path is built for sm_90 only"));
  const bool next = a->next_codes != nullptr;
  if (next) {
    if (a->next_R != 0 && a->next_R != 16 && a->next_R != 32 && a->next_R != 64)
      return fail(std::string(fn) + ": next_R=" + std::to_string(a->next_R) + " must be 0, 16, 32 or 64");
    if (!a->next_ascales) return fail(shape_msg(fn, "next_codes given: next_ascales must be non-null"));
    if (a->next_R > 0 && (!a->next_lora_down || !a->next_lora_act))
      return fail(shape_msg(fn, "next_R > 0 needs next_lora_down and next_lora_act"));
    if (a->next_codes_format != SVDQ_CODES_S4 && a->next_codes_format != SVDQ_CODES_S8 &&
        a->next_codes_format != SVDQ_CODES_F8)
      return fail(std::string(fn) + ": next_codes_format=" + std::to_string(a->next_codes_format) +
                  " is not s4 (0), s8 (1) or f8 (2)");
    if (a->next_codes_format != SVDQ_CODES_S4 && cc < 90)
      return fail(shape_msg(fn, "next_codes_format: the s8 and f8 code formats are for sm_90 only"));
  }
  if (a->codes_format == SVDQ_CODES_F8) {
    // wgmma path (sm_90a)
    if (cc != 90)
      return fail(std::string(fn) + ": f8-format codes run on the sm_90a wgmma path only, device has compute capability " +
                  std::to_string(cc));
    if (a->qweight_wg == nullptr || a->wscales_wg == nullptr)
      return fail(shape_msg(fn, "f8-format codes need qweight_wg and wscales_wg (svdq_repack_weight_wg)"));
    int bm = a->block_m;
    if (bm != 0 && bm != 64 && bm != 128) return fail(shape_msg(fn, "block_m must be 0, 64 or 128 on the wgmma path"));
    // 128-row tiles (two consumer warpgroups sharing each weight tile) when they still fill every multiprocessor
    if (bm == 0) bm = (svdq_pad_m(a->M) / 128) * (a->N / F8_BN) >= sms ? 128 : 64;
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (next) {
      if (a->dtype == SVDQ_BF16)
        return bm == 128 ? launch_gemm_f8<true, 2, true>(*a, st) : launch_gemm_f8<true, 1, true>(*a, st);
      return bm == 128 ? launch_gemm_f8<false, 2, true>(*a, st) : launch_gemm_f8<false, 1, true>(*a, st);
    }
    if (a->dtype == SVDQ_BF16)
      return bm == 128 ? launch_gemm_f8<true, 2, false>(*a, st) : launch_gemm_f8<true, 1, false>(*a, st);
    return bm == 128 ? launch_gemm_f8<false, 2, false>(*a, st) : launch_gemm_f8<false, 1, false>(*a, st);
  }
  int bm = a->block_m;
  if (bm != 0 && bm != 32 && bm != 64 && bm != 128) return fail(shape_msg(fn, "block_m must be 0, 32, 64 or 128"));
  if (bm == 0) {
    // fill the machine: the largest tile that still gives every multiprocessor a block
    const int Mp = svdq_pad_m(a->M), nb = a->N / G_BN;
    // measured on H100 (docs/benchmarks.md, bare GEMM): 64-row tiles (two blocks per SM) beat 128- and 32-row
    // ones at M=4608 and at M=256; 32-row tiles only when 64-row ones would leave most multiprocessors idle
    bm = 64;
    if ((Mp / 64) * nb * 2 < sms) bm = 32;
  }
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const bool bf = a->dtype == SVDQ_BF16, au = a->act_unsigned != 0;
  if (bf) {
    if (au) return s4 ? dispatch_gemm_mi<true, true, true>(*a, bm, st) : dispatch_gemm_mi<true, true, false>(*a, bm, st);
    return s4 ? dispatch_gemm_mi<true, false, true>(*a, bm, st) : dispatch_gemm_mi<true, false, false>(*a, bm, st);
  }
  if (au) return s4 ? dispatch_gemm_mi<false, true, true>(*a, bm, st) : dispatch_gemm_mi<false, true, false>(*a, bm, st);
  return s4 ? dispatch_gemm_mi<false, false, true>(*a, bm, st) : dispatch_gemm_mi<false, false, false>(*a, bm, st);
}

extern "C" const char* svdq_repack_weight_wg(svdq_dtype dtype, const void* qweight, const void* wscales, int N, int K,
                                             void* qweight_wg, void* wscales_wg, void* stream) {
  const char* fn = "svdq_repack_weight_wg";
  if (N <= 0 || N % 128 != 0) return fail(std::string(fn) + ": N=" + std::to_string(N) + " must be a positive multiple of 128");
  if (K <= 0 || K % 64 != 0) return fail(std::string(fn) + ": K=" + std::to_string(K) + " must be a positive multiple of 64");
  if (!qweight || !wscales || !qweight_wg || !wscales_wg) return fail(shape_msg(fn, "all buffers must be non-null"));
  if (dtype != SVDQ_BF16 && dtype != SVDQ_F16) return fail(shape_msg(fn, "dtype must be bf16 or f16"));
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  const size_t nq = size_t(N) * K, ns = size_t(N) * (K / 64);
  repack_wg_qweight_kernel<<<unsigned((nq + 255) / 256), 256, 0, st>>>(static_cast<const uint8_t*>(qweight),
                                                                       static_cast<uint8_t*>(qweight_wg), nq);
  const char* e = check_cuda(cudaGetLastError(), "cudaLaunchKernel(repack_wg_qweight_kernel)");
  if (e) return e;
  if (dtype == SVDQ_BF16)
    repack_wg_wscales_kernel<true><<<unsigned((ns + 255) / 256), 256, 0, st>>>(static_cast<const uint16_t*>(wscales),
                                                                               static_cast<float*>(wscales_wg), ns);
  else
    repack_wg_wscales_kernel<false><<<unsigned((ns + 255) / 256), 256, 0, st>>>(static_cast<const uint16_t*>(wscales),
                                                                                static_cast<float*>(wscales_wg), ns);
  return check_cuda(cudaGetLastError(), "cudaLaunchKernel(repack_wg_wscales_kernel)");
}
