// W4A16 GEMV that streams the 4-bit weights through a per-warp cp.async ring (issue 16: "W4A16 at M <= 8: >= 3x
// cuBLAS BF16"). Included by ops.cu (eng_gemv_w4a16, variant 3 and the automatic choice) and by the GEMV harness
// (kernels/cuda/bench/gemv_bench.cu, which times every tile width). sm_80+ (cp.async, mma.sync bf16).
//
// Operands (engine_ops.h, the checkpoint layout, unchanged):
// | tensor | shape      | dtype | meaning                                                                          |
// |--------|------------|-------|----------------------------------------------------------------------------------|
// | x      | [M, K]     | bf16  | M <= 8 tokens                                                                    |
// | codes  | [N, K/2]   | u8    | q in 0..15; element k of row n: low nibble of byte (n·K + k)/2 when k is even    |
// | scales | [N, K/64]  | bf16  | s per 64-group (G = K/64 groups per row)                                         |
// | zeros  | [N, K/64]  | bf16  | z per 64-group: w = q·s + z                                                      |
// | bias   | [N]        | bf16  | optional; added to the bf16-rounded product (torch F.linear(x, w) + b)           |
// | out    | [M, N]     | bf16  |                                                                                  |
//
// Work split. A block of 8 warps owns R = 16·TPW output rows (TPW m16 tiles) and the whole K. K is cut into stages
// of 2 groups (128 codes: 64 contiguous bytes per row); warp w takes stages w, w + 8, w + 16, ... and runs its own
// cp.async ring of up to S slots over them (no block barrier inside the loop: cp.async.wait_group and __syncwarp
// only, so every wait is matched by construction). After the loop the 8 partial [R, 8] tiles are summed through
// shared memory (one __syncthreads that every thread reaches), the bias is added and bf16 written.
//
// One ring slot (bytes; R rows, M tokens):
// | part   | size     | layout                                                                                 |
// |--------|----------|----------------------------------------------------------------------------------------|
// | codes  | R·64     | [group j of the stage: 2][row: R][32 bytes]: LDS.64 of lane (g, t) conflict-free       |
// | x      | M·272    | [token][128 bf16 + 8 pad]: LDS.128 of lane (g, t) conflict-free                         |
// | scales | R·4      | [row] bf16x2 (the stage's 2 groups)                                                    |
// | zeros  | R·4      | [row] bf16x2                                                                           |
// Global reads per stage: 8 rows × 64 contiguous bytes per cp.async.cg instruction (L2 prefetch hint 128 B), the
// x slice of the stage (M·256 bytes, cp.async.ca: L1 / L2 hits), scales / zeros 4 bytes per row.
//
// Math per group on the tensor cores (mma.m16n8k16 bf16 → f32; A = 16 weight rows, B = 8 tokens; rows g, g + 8 and
// token g of lane (g = lane/4, t = lane%4)). Codes enter as f = 128 + q in bf16, exact: (word & 0x000F000F) |
// 0x43004300 turns nibbles 0 and 4 of a 32-bit word into a bf16x2 (then >> 4, >> 8, >> 12 for 1|5, 2|6, 3|7); the
// mma's k order is permuted alike on both operands (x pairs {x0, x4}, ... by one prmt each), so lane t reads 8
// contiguous code bytes (16 codes) of a row's group and the 16 matching x values. Products are exact, sums f32:
//   Σ_k (q·s + z)·x = s·Σ f·x + (z − 128·s)·Σ x        per 64-group,
// with Σ x from one more mma of the same B against an all-ones A (its C fragment holds Σ x of tokens 2t, 2t + 1,
// exactly where the data mma's outputs sit). Needs K % 128 == 0 (even G; 4-byte scale pairs), 16-byte aligned x
// and codes, 4-byte aligned scales / zeros; other shapes take the older kernels (ops.cu).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>

namespace gemv_stream {
// internal linkage: the engine (ops.cu) and the harness each compile their own copy
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kStageCodes = 128;  // codes per row per stage (2 groups of 64)
constexpr int kXStride = 272;     // bytes per token in a slot's x part: 128 bf16 + 16 bytes (bank offset)
constexpr int kRedLd = 9;         // floats per row of a warp's partial tile in the final reduction (8 tokens + pad)
constexpr int kRing = 4;          // ring slots per warp at most (fewer when a warp has fewer stages)

__host__ __device__ constexpr int slot_bytes(int R, int M) { return R * 64 + M * kXStride + 2 * R * 4; }

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16 bytes global → shared, L2 only; bytes beyond src_bytes (0 or 16) are zero-filled (src not read when 0)
__device__ __forceinline__ void cp16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
// 16 bytes global → shared through L1 (x: every block of an SM reads the same x slices)
__device__ __forceinline__ void cp16_ca(uint32_t dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp4(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;\n" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
  return r;
}
__device__ __forceinline__ void mma_bf16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
// 8 codes of a 32-bit word (nibble i = code i) → bf16x2 pairs {128 + q0, 128 + q4}, {q1, q5}, {q2, q6}, {q3, q7}
__device__ __forceinline__ void dequant8(uint32_t w, uint32_t (&o)[4]) {
  o[0] = (w & 0x000F000Fu) | 0x43004300u;
  o[1] = ((w >> 4) & 0x000F000Fu) | 0x43004300u;
  o[2] = ((w >> 8) & 0x000F000Fu) | 0x43004300u;
  o[3] = ((w >> 12) & 0x000F000Fu) | 0x43004300u;
}

template <int TPW>
__global__ void __launch_bounds__(kThreads)
    gemv_stream_kernel(const __nv_bfloat16* __restrict__ x, int M, int K, const uint8_t* __restrict__ codes,
                       const __nv_bfloat16* __restrict__ scales, const __nv_bfloat16* __restrict__ zeros,
                       const __nv_bfloat16* __restrict__ bias, int N, __nv_bfloat16* __restrict__ out, int nslots) {
  constexpr int R = 16 * TPW;
  extern __shared__ __align__(16) unsigned char gsm_stream[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
  const int G = K / 64, stages = K / kStageCodes;
  const int n0 = blockIdx.x * R;
  const int slot = slot_bytes(R, M);
  unsigned char* ring = gsm_stream + size_t(warp) * nslots * slot;
  const int nst = warp < stages ? (stages - warp + kWarps - 1) / kWarps : 0;  // this warp's stages (warp-uniform)

  // issue the copies of this warp's i-th stage (K stage warp + 8i) into slot sl
  auto issue = [&](int i, int sl) {
    const int st = warp + kWarps * i;
    unsigned char* base = ring + sl * slot;
    const uint32_t s_codes = smem_u32(base), s_x = s_codes + R * 64, s_sc = s_x + M * kXStride, s_zr = s_sc + R * 4;
#pragma unroll
    for (int i4 = 0; i4 < 2 * TPW; ++i4) {  // R rows × 4 chunks of 16 bytes
      const int c = lane + 32 * i4, row = c >> 2, p = c & 3, n = n0 + row;
      const bool ok = n < N;
      const uint8_t* src = codes + (ok ? size_t(n) * (K / 2) + size_t(st) * 64 + 16 * p : 0);
      cp16(s_codes + (p >> 1) * (R * 32) + row * 32 + (p & 1) * 16, src, ok ? 16 : 0);
    }
    for (int c = lane; c < M * 16; c += 32) {  // M tokens × 16 chunks of 8 bf16
      const int m = c >> 4, p = c & 15;
      cp16_ca(s_x + m * kXStride + p * 16, x + size_t(m) * K + size_t(st) * kStageCodes + p * 8);
    }
#pragma unroll
    for (int r0 = 0; r0 < R; r0 += 32) {
      const int r = r0 + lane, n = n0 + r;
      if (r < R) {
        const bool ok = n < N;
        const size_t e = ok ? size_t(n) * G + 2 * st : 0;
        cp4(s_sc + r * 4, scales + e, ok ? 4 : 0);
        cp4(s_zr + r * 4, zeros + e, ok ? 4 : 0);
      }
    }
  };

  float acc[TPW][4];
#pragma unroll
  for (int u = 0; u < TPW; ++u)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[u][i] = 0.f;
  const uint32_t ones = 0x3F803F80u;  // bf16x2 {1, 1}

  for (int i = 0; i < kRing - 1; ++i) {
    if (i < nst) issue(i, i);
    cp_commit();
  }
  for (int i = 0; i < nst; ++i) {
    const int ip = i + kRing - 1;
    if (ip < nst) issue(ip, ip % kRing);
    cp_commit();
    cp_wait<kRing - 1>();  // this thread's copies of stage i have landed
    __syncwarp();          // ... and every lane's (memory ordering among the warp's threads)
    const unsigned char* base = ring + (i % kRing) * slot;
    const uint32_t* scw = reinterpret_cast<const uint32_t*>(base + R * 64 + M * kXStride);
    const uint32_t* zrw = scw + R;
#pragma unroll
    for (int j = 0; j < 2; ++j) {  // the stage's two 64-groups
      uint32_t bx[8];
      if (g < M) {
        const unsigned char* xp = base + R * 64 + g * kXStride + j * 128 + t * 32;
        const uint4 xa = *reinterpret_cast<const uint4*>(xp);
        const uint4 xb = *reinterpret_cast<const uint4*>(xp + 16);
        bx[0] = prmt(xa.x, xa.z, 0x5410);  // {x0, x4}
        bx[1] = prmt(xa.x, xa.z, 0x7632);  // {x1, x5}
        bx[2] = prmt(xa.y, xa.w, 0x5410);  // {x2, x6}
        bx[3] = prmt(xa.y, xa.w, 0x7632);  // {x3, x7}
        bx[4] = prmt(xb.x, xb.z, 0x5410);
        bx[5] = prmt(xb.x, xb.z, 0x7632);
        bx[6] = prmt(xb.y, xb.w, 0x5410);
        bx[7] = prmt(xb.y, xb.w, 0x7632);
      } else {
#pragma unroll
        for (int q = 0; q < 8; ++q) bx[q] = 0u;
      }
      float xs[4] = {0.f, 0.f, 0.f, 0.f};  // Σ x of tokens 2t, 2t + 1 over the group (c0, c1)
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) mma_bf16(xs, ones, ones, ones, ones, bx[2 * jj], bx[2 * jj + 1]);
#pragma unroll
      for (int u = 0; u < TPW; ++u) {
        const int ra = 16 * u + g, rb = ra + 8;
        const uint2 ca = *reinterpret_cast<const uint2*>(base + j * (R * 32) + ra * 32 + t * 8);
        const uint2 cb = *reinterpret_cast<const uint2*>(base + j * (R * 32) + rb * 32 + t * 8);
        uint32_t a0[4], a1[4], b0[4], b1[4];
        dequant8(ca.x, a0);
        dequant8(ca.y, a1);
        dequant8(cb.x, b0);
        dequant8(cb.y, b1);
        float p[4] = {0.f, 0.f, 0.f, 0.f};
        mma_bf16(p, a0[0], b0[0], a0[1], b0[1], bx[0], bx[1]);
        mma_bf16(p, a0[2], b0[2], a0[3], b0[3], bx[2], bx[3]);
        mma_bf16(p, a1[0], b1[0], a1[1], b1[1], bx[4], bx[5]);
        mma_bf16(p, a1[2], b1[2], a1[3], b1[3], bx[6], bx[7]);
        const uint32_t wsa = scw[ra], wsb = scw[rb], wza = zrw[ra], wzb = zrw[rb];
        const float sa = __uint_as_float(j ? wsa & 0xFFFF0000u : wsa << 16);
        const float sb = __uint_as_float(j ? wsb & 0xFFFF0000u : wsb << 16);
        const float za = __uint_as_float(j ? wza & 0xFFFF0000u : wza << 16) - 128.f * sa;
        const float zb = __uint_as_float(j ? wzb & 0xFFFF0000u : wzb << 16) - 128.f * sb;
        acc[u][0] = fmaf(sa, p[0], fmaf(za, xs[0], acc[u][0]));
        acc[u][1] = fmaf(sa, p[1], fmaf(za, xs[1], acc[u][1]));
        acc[u][2] = fmaf(sb, p[2], fmaf(zb, xs[0], acc[u][2]));
        acc[u][3] = fmaf(sb, p[3], fmaf(zb, xs[1], acc[u][3]));
      }
    }
    __syncwarp();  // every lane is done with slot i % kRing before a later issue overwrites it
  }
  cp_wait<0>();  // only empty groups can be pending here; the ring is reused below
  __syncwarp();
  float* red = reinterpret_cast<float*>(ring);  // [R][kRedLd] partial of this warp (fits: R·36 <= slot bytes)
#pragma unroll
  for (int u = 0; u < TPW; ++u) {
    const int ra = 16 * u + g, rb = ra + 8;
    red[ra * kRedLd + 2 * t] = acc[u][0];
    red[ra * kRedLd + 2 * t + 1] = acc[u][1];
    red[rb * kRedLd + 2 * t] = acc[u][2];
    red[rb * kRedLd + 2 * t + 1] = acc[u][3];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < R * M; i += kThreads) {
    const int row = i % R, m = i / R, n = n0 + row;
    if (n >= N) continue;
    float v = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      // warps without stages (K < 8·128) wrote zeros
      v += reinterpret_cast<const float*>(gsm_stream + size_t(w) * nslots * slot)[row * kRedLd + m];
    }
    if (bias) v = __bfloat162float(__float2bfloat16(v)) + __bfloat162float(bias[n]);
    out[size_t(m) * N + n] = __float2bfloat16(v);
  }
}

// Whether the streaming kernel takes this call (else the caller uses another kernel).
inline bool supports(const void* x, int M, int K, const void* codes, const void* scales, const void* zeros, int N) {
  auto al = [](const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; };
  return M >= 1 && M <= 8 && K > 0 && K % kStageCodes == 0 && N > 0 && al(x, 16) && al(codes, 16) &&
         al(scales, 4) && al(zeros, 4);
}
// Dynamic shared memory of a launch (bytes).
inline size_t smem_bytes(int TPW, int M, int K) {
  const int stages = K / kStageCodes;
  const int per_warp = (stages + kWarps - 1) / kWarps;
  const int nslots = per_warp < kRing ? (per_warp < 1 ? 1 : per_warp) : kRing;
  return size_t(kWarps) * nslots * slot_bytes(16 * TPW, M);
}
// Tiles of 16 rows per block for N on an sm-count device: 2 (x and the Σx mma shared by 32 rows, half the x reads
// per weight byte) while that still gives at least 2 blocks per SM, else 1 (N = 6144 on an H100: 384 blocks of 16
// rows, all resident at once). 4 only when forced (the harness times it).
inline int auto_tpw(int N, int sms) { return (N + 31) / 32 >= 2 * sms ? 2 : 1; }

// Launches the kernel with TPW tiles of 16 rows per block; returns the CUDA error of the launch.
template <int TPW>
cudaError_t launch(const __nv_bfloat16* x, int M, int K, const uint8_t* codes, const __nv_bfloat16* scales,
                   const __nv_bfloat16* zeros, const __nv_bfloat16* bias, int N, __nv_bfloat16* out, cudaStream_t s) {
  const size_t sh = smem_bytes(TPW, M, K);
  const int nslots = int(sh / (size_t(kWarps) * slot_bytes(16 * TPW, M)));
  // every call (host-side attribute calls, legal during stream capture; per device): all of the unified L1 /
  // shared memory as shared memory, so residency is set by the ring, and the dynamic size above 48 KB
  cudaError_t e = cudaFuncSetAttribute(gemv_stream_kernel<TPW>, cudaFuncAttributePreferredSharedMemoryCarveout,
                                       int(cudaSharedmemCarveoutMaxShared));
  if (e == cudaSuccess && sh > 48 * 1024)
    e = cudaFuncSetAttribute(gemv_stream_kernel<TPW>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(sh));
  if (e != cudaSuccess) return e;
  const int grid = (N + 16 * TPW - 1) / (16 * TPW);
  gemv_stream_kernel<TPW><<<grid, kThreads, sh, s>>>(x, M, K, codes, scales, zeros, bias, N, out, nslots);
  return cudaGetLastError();
}

// TPW = 0: automatic (auto_tpw, or env SVDQ_GEMV_TPW = 1 / 2 / 4 when set: read once, for A/B runs of the engine
// without a rebuild); else 1, 2 or 4.
inline cudaError_t launch_tpw(int tpw, const __nv_bfloat16* x, int M, int K, const uint8_t* codes,
                              const __nv_bfloat16* scales, const __nv_bfloat16* zeros, const __nv_bfloat16* bias,
                              int N, __nv_bfloat16* out, cudaStream_t s) {
  static const int env_tpw = [] {
    const char* e = std::getenv("SVDQ_GEMV_TPW");
    const int v = e ? std::atoi(e) : 0;
    return v == 1 || v == 2 || v == 4 ? v : 0;
  }();
  if (tpw == 0) tpw = env_tpw;
  if (tpw == 0) {
    int dev = 0, sms = 132;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    tpw = auto_tpw(N, sms);
  }
  if (tpw == 4) return launch<4>(x, M, K, codes, scales, zeros, bias, N, out, s);
  if (tpw == 2) return launch<2>(x, M, K, codes, scales, zeros, bias, N, out, s);
  return launch<1>(x, M, K, codes, scales, zeros, bias, N, out, s);
}

}  // namespace
}  // namespace gemv_stream
