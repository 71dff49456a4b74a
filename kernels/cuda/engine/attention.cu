// Fused multi-head attention for the engine (eng_attention and eng_attention_cross in engine_ops.h):
// flash-attention-2 style, bf16 mma.sync m16n8k16 with f32 accumulation, online softmax in registers, K/V tiles
// double-buffered in shared memory with cp.async. No [Sq, Skv] buffer exists: each block of 64 queries streams the
// keys in tiles of 64. Self attention is the case Sq = Skv with no key mask; cross attention masks keys j >= kv_len[b]
// (a row with no key at all gets zeros).
//
// Block: 4 warps, 16 query rows per warp. Shared memory rows are DK + 8 bf16 long (DK = Dh rounded up to 16; the
// 16-byte pad keeps ldmatrix conflict-free): Q [64][DK+8], then 2 stages of K [64][DK+8] and V [64][DK+8].
// For Dh = 72 the columns 72..79 of Q and K stay zero, so Q·Kᵀ runs over k = 80.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "engine_ops.h"

namespace {

thread_local std::string g_err;

constexpr int BQ = 64, BKV = 64, WARPS = 4;

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;  // src-size 0: the 16 bytes are zero-filled
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ void ldsm_x4(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x2_t(uint32_t& r0, uint32_t& r1, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(r0), "=r"(r1) : "r"(smem_u32(p)));
}
__device__ __forceinline__ void mma_bf16(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

template <int DH>
__global__ void __launch_bounds__(WARPS * 32) attention_kernel(const __nv_bfloat16* __restrict__ Q,
                                                               const __nv_bfloat16* __restrict__ K,
                                                               const __nv_bfloat16* __restrict__ V, int H, int Sq,
                                                               int Skv, const int* __restrict__ kv_len,
                                                               float scale_log2, int split, __nv_bfloat16* out_txt,
                                                               __nv_bfloat16* out_img, int ld) {
  constexpr int DK = (DH + 15) / 16 * 16;  // k extent of Q·Kᵀ
  constexpr int ROW = DK + 8;              // shared row length (bf16)
  constexpr int NT = DH / 8;               // n8 tiles of the output
  constexpr int CH = DH / 8;               // 16-byte chunks per global row
  extern __shared__ __align__(16) __nv_bfloat16 sm[];
  __nv_bfloat16* sQ = sm;
  __nv_bfloat16* sK = sm + BQ * ROW;                // [2][BKV][ROW]
  __nv_bfloat16* sV = sm + BQ * ROW + 2 * BKV * ROW;  // [2][BKV][ROW]

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int bh = blockIdx.y, q0 = blockIdx.x * BQ;
  const int b = bh / H, h = bh % H;
  const __nv_bfloat16* Qg = Q + size_t(bh) * Sq * DH;
  const __nv_bfloat16* Kg = K + size_t(bh) * Skv * DH;
  const __nv_bfloat16* Vg = V + size_t(bh) * Skv * DH;
  const int S = kv_len ? min(max(kv_len[b], 0), Skv) : Skv;  // keys of this item

  if (DK > DH) {  // zero the k pad of Q and of both K stages once (cp.async never writes it)
    for (int r = tid; r < BQ + 2 * BKV; r += blockDim.x) {
      __nv_bfloat16* row = r < BQ ? sQ + r * ROW : sK + (r - BQ) * ROW;
      for (int c = DH; c < DK; c++) row[c] = __float2bfloat16(0.f);
    }
  }
  auto load_rows = [&](__nv_bfloat16* dst, const __nv_bfloat16* src, int r0, int n) {  // rows >= n zero-filled
    for (int i = tid; i < BKV * CH; i += blockDim.x) {
      const int r = i / CH, c = i % CH;
      const bool ok = r0 + r < n;
      cp_async16(dst + r * ROW + c * 8, src + size_t(ok ? r0 + r : 0) * DH + c * 8, ok);
    }
  };
  load_rows(sQ, Qg, q0, Sq);
  load_rows(sK, Kg, 0, S);
  load_rows(sV, Vg, 0, S);
  cp_async_commit();

  const int nkv = (S + BKV - 1) / BKV;
  uint32_t qf[DK / 16][4];
  float o[NT][4];
#pragma unroll
  for (int j = 0; j < NT; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};

  for (int t = 0; t < nkv; t++) {
    const int stage = t & 1;
    if (t + 1 < nkv) {
      load_rows(sK + (stage ^ 1) * BKV * ROW, Kg, (t + 1) * BKV, S);
      load_rows(sV + (stage ^ 1) * BKV * ROW, Vg, (t + 1) * BKV, S);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (t == 0) {
#pragma unroll
      for (int kk = 0; kk < DK / 16; kk++) {
        const __nv_bfloat16* p = sQ + (warp * 16 + (lane % 8) + 8 * ((lane / 8) % 2)) * ROW + kk * 16 + 8 * (lane / 16);
        ldsm_x4(qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], p);
      }
    }
    const __nv_bfloat16* k_s = sK + stage * BKV * ROW;
    const __nv_bfloat16* v_s = sV + stage * BKV * ROW;
    // scores S = Q Kᵀ for 16 rows x 64 keys: 8 n8 tiles
    float s[BKV / 8][4];
#pragma unroll
    for (int j = 0; j < BKV / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < DK / 16; kk++) {
#pragma unroll
      for (int jp = 0; jp < BKV / 16; jp++) {
        uint32_t b0, b1, b2, b3;
        const __nv_bfloat16* p = k_s + (jp * 16 + (lane % 8) + 8 * (lane / 16)) * ROW + kk * 16 + 8 * ((lane / 8) % 2);
        ldsm_x4(b0, b1, b2, b3, p);
        mma_bf16(s[2 * jp], qf[kk], b0, b1);
        mma_bf16(s[2 * jp + 1], qf[kk], b2, b3);
      }
    }
    // mask keys >= S (last tile), online softmax (base 2) for rows g and g+8 of this warp
    const int kv0 = t * BKV;
    float mx[2] = {m_run[0], m_run[1]};
#pragma unroll
    for (int j = 0; j < BKV / 8; j++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int key = kv0 + 8 * j + 2 * (lane % 4) + (e & 1);
        float v = s[j][e] * scale_log2;
        if (key >= S) v = -INFINITY;
        s[j][e] = v;
        mx[e / 2] = fmaxf(mx[e / 2], v);
      }
    }
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      alpha[r] = exp2f(m_run[r] - mx[r]);
      m_run[r] = mx[r];
    }
    float rs[2] = {0.f, 0.f};
    uint32_t pf[BKV / 16][4];
#pragma unroll
    for (int j = 0; j < BKV / 8; j++) {
      const float p0 = exp2f(s[j][0] - mx[0]), p1 = exp2f(s[j][1] - mx[0]);
      const float p2 = exp2f(s[j][2] - mx[1]), p3 = exp2f(s[j][3] - mx[1]);
      rs[0] += p0 + p1;
      rs[1] += p2 + p3;
      pf[j / 2][(j % 2) * 2 + 0] = pack_bf16(p0, p1);
      pf[j / 2][(j % 2) * 2 + 1] = pack_bf16(p2, p3);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) l_run[r] = l_run[r] * alpha[r] + rs[r];
#pragma unroll
    for (int j = 0; j < NT; j++) {
      o[j][0] *= alpha[0];
      o[j][1] *= alpha[0];
      o[j][2] *= alpha[1];
      o[j][3] *= alpha[1];
    }
    // O += P V: k = 64 keys (4 chunks of 16), n = DH (NT tiles)
#pragma unroll
    for (int kk = 0; kk < BKV / 16; kk++) {
#pragma unroll
      for (int jp = 0; jp < NT / 2; jp++) {
        uint32_t b0, b1, b2, b3;
        const __nv_bfloat16* p = v_s + (kk * 16 + (lane % 8) + 8 * ((lane / 8) % 2)) * ROW + jp * 16 + 8 * (lane / 16);
        ldsm_x4_t(b0, b1, b2, b3, p);
        mma_bf16(o[2 * jp], pf[kk], b0, b1);
        mma_bf16(o[2 * jp + 1], pf[kk], b2, b3);
      }
      if (NT % 2) {
        uint32_t b0, b1;
        const __nv_bfloat16* p = v_s + (kk * 16 + (lane % 8) + 8 * ((lane / 8) % 2)) * ROW + (NT - 1) * 8;
        ldsm_x2_t(b0, b1, p);
        mma_bf16(o[NT - 1], pf[kk], b0, b1);
      }
    }
    __syncthreads();  // the stage is refilled in the next iteration
  }
  if (nkv == 0) cp_async_wait<0>();  // kv_len 0: nothing was consumed
  // normalize and store
#pragma unroll
  for (int r = 0; r < 2; r++) {
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 1);
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 2);
  }
#pragma unroll
  for (int r = 0; r < 2; r++) {
    const int s_tok = q0 + warp * 16 + lane / 4 + 8 * r;
    if (s_tok >= Sq) continue;
    const float inv = l_run[r] > 0.f ? 1.f / l_run[r] : 0.f;  // no key (kv_len 0): zeros, not NaN
    __nv_bfloat16* dst = s_tok < split ? out_txt + (size_t(b) * split + s_tok) * ld
                                       : out_img + (size_t(b) * (Sq - split) + (s_tok - split)) * ld;
    dst += h * DH;
#pragma unroll
    for (int j = 0; j < NT; j++) {
      const int d = 8 * j + 2 * (lane % 4);
      *reinterpret_cast<uint32_t*>(dst + d) = pack_bf16(o[j][2 * r] * inv, o[j][2 * r + 1] * inv);
    }
  }
}

template <int DH>
const char* launch(const void* Q, const void* K, const void* V, int B, int H, int Sq, int Skv, const int* kv_len,
                   int split, void* out_txt, void* out_img, int ld, cudaStream_t stream) {
  constexpr int ROW = (DH + 15) / 16 * 16 + 8;
  const size_t smem = size_t(BQ + 4 * BKV) * ROW * 2;
  static bool set = false;  // raise the dynamic shared memory limit once per instantiation
  if (!set) {
    const cudaError_t e = cudaFuncSetAttribute(attention_kernel<DH>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) {
      g_err = std::string("eng_attention: cudaFuncSetAttribute: ") + cudaGetErrorName(e);
      return g_err.c_str();
    }
    set = true;
  }
  const float scale_log2 = 1.4426950408889634f / sqrtf(float(DH));  // log2(e)/√Dh
  dim3 grid((Sq + BQ - 1) / BQ, B * H);
  attention_kernel<DH><<<grid, WARPS * 32, smem, stream>>>(
      static_cast<const __nv_bfloat16*>(Q), static_cast<const __nv_bfloat16*>(K), static_cast<const __nv_bfloat16*>(V),
      H, Sq, Skv, kv_len, scale_log2, split, static_cast<__nv_bfloat16*>(out_txt), static_cast<__nv_bfloat16*>(out_img), ld);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    g_err = std::string("eng_attention: launch: ") + cudaGetErrorName(e);
    return g_err.c_str();
  }
  return nullptr;
}

}  // namespace

namespace {
const char* dispatch(const char* op, const void* Q, const void* K, const void* V, int B, int H, int Sq, int Skv,
                     int Dh, const int* kv_len, int split, void* out_txt, void* out_img, int ld, cudaStream_t s) {
  switch (Dh) {
    case 16: return launch<16>(Q, K, V, B, H, Sq, Skv, kv_len, split, out_txt, out_img, ld, s);
    case 32: return launch<32>(Q, K, V, B, H, Sq, Skv, kv_len, split, out_txt, out_img, ld, s);
    case 64: return launch<64>(Q, K, V, B, H, Sq, Skv, kv_len, split, out_txt, out_img, ld, s);
    case 72: return launch<72>(Q, K, V, B, H, Sq, Skv, kv_len, split, out_txt, out_img, ld, s);
    case 128: return launch<128>(Q, K, V, B, H, Sq, Skv, kv_len, split, out_txt, out_img, ld, s);
    default:
      g_err = std::string(op) + ": head dim " + std::to_string(Dh) + " not in {16, 32, 64, 72, 128}";
      return g_err.c_str();
  }
}
}  // namespace

extern "C" const char* eng_attention(const void* Q, const void* K, const void* V, int B, int H, int S, int Dh,
                                     int split, void* out_txt, void* out_img, int ld, void* stream) {
  if (B <= 0 || H <= 0 || S <= 0 || split < 0 || split > S || ld < H * Dh) {
    g_err = "eng_attention: bad shape B=" + std::to_string(B) + " H=" + std::to_string(H) + " S=" + std::to_string(S) +
            " split=" + std::to_string(split) + " ld=" + std::to_string(ld);
    return g_err.c_str();
  }
  if (split > 0 && !out_txt) {
    g_err = "eng_attention: out_txt is NULL but split > 0";
    return g_err.c_str();
  }
  if (!Q || !K || !V || (split < S && !out_img)) {
    g_err = "eng_attention: NULL Q, K, V or out_img";
    return g_err.c_str();
  }
  return dispatch("eng_attention", Q, K, V, B, H, S, S, Dh, nullptr, split, out_txt, out_img, ld,
                  static_cast<cudaStream_t>(stream));
}

extern "C" const char* eng_attention_cross(const void* Q, const void* K, const void* V, int B, int H, int Sq, int Skv,
                                           int Dh, const int* kv_len, void* out, int ld, void* stream) {
  if (B <= 0 || H <= 0 || Sq <= 0 || Skv <= 0 || ld < H * Dh) {
    g_err = "eng_attention_cross: bad shape B=" + std::to_string(B) + " H=" + std::to_string(H) +
            " Sq=" + std::to_string(Sq) + " Skv=" + std::to_string(Skv) + " ld=" + std::to_string(ld);
    return g_err.c_str();
  }
  if (!Q || !K || !V || !out) {
    g_err = "eng_attention_cross: NULL Q, K, V or out";
    return g_err.c_str();
  }
  return dispatch("eng_attention_cross", Q, K, V, B, H, Sq, Skv, Dh, kv_len, 0, nullptr, out, ld,
                  static_cast<cudaStream_t>(stream));
}
