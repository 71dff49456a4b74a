// Fused element-wise ops of the PixArt-Σ step (pixart_ops.h): each reads and writes its operands once with 8- or
// 16-byte accesses and 32-bit index math, where the engine_ops.h passes they replace take one element per thread
// with 64-bit division (the 1.0–1.6 TB/s of docs/benchmarks.md's PixArt breakdown).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "cublaslt_api.h"
#include "pixart_ops.h"

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
bool a16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }
bool a8(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 8 == 0; }

__device__ __forceinline__ float rbf(float v) { return __bfloat162float(__float2bfloat16(v)); }
// 4 bf16 (8 bytes) ↔ 4 floats
__device__ __forceinline__ void load4(const void* p, float (&v)[4]) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const __nv_bfloat162 lo = *reinterpret_cast<const __nv_bfloat162*>(&u.x);
  const __nv_bfloat162 hi = *reinterpret_cast<const __nv_bfloat162*>(&u.y);
  v[0] = __low2float(lo);
  v[1] = __high2float(lo);
  v[2] = __low2float(hi);
  v[3] = __high2float(hi);
}
__device__ __forceinline__ void ldg4(const void* p, float (&v)[4]) {
  const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
  const __nv_bfloat162 lo = *reinterpret_cast<const __nv_bfloat162*>(&u.x);
  const __nv_bfloat162 hi = *reinterpret_cast<const __nv_bfloat162*>(&u.y);
  v[0] = __low2float(lo);
  v[1] = __high2float(lo);
  v[2] = __low2float(hi);
  v[3] = __high2float(hi);
}
__device__ __forceinline__ void store4(void* p, const float (&v)[4]) {
  const __nv_bfloat162 lo = __floats2bfloat162_rn(v[0], v[1]);
  const __nv_bfloat162 hi = __floats2bfloat162_rn(v[2], v[3]);
  uint2 u;
  u.x = *reinterpret_cast<const uint32_t*>(&lo);
  u.y = *reinterpret_cast<const uint32_t*>(&hi);
  *reinterpret_cast<uint2*>(p) = u;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the total.
__device__ __forceinline__ float block_total(float v, float* sh) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int w = threadIdx.x / 32, l = threadIdx.x % 32, nw = blockDim.x / 32;
  __syncthreads();  // sh may still be read by the previous call
  if (l == 0) sh[w] = v;
  __syncthreads();
  float t = l < nw ? sh[l] : 0.f;
  for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
  return t;
}

__device__ __forceinline__ float gelu_tanh(float x) {
  // torch GELU(approximate="tanh"): 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))), as eng_bias_act
  const float k = 0.7978845608028654f;
  return 0.5f * x * (1.f + tanhf(k * (x + 0.044715f * x * x * x)));
}

// One block per row; thread t holds columns 4q..4q+3 for q = t + j·blockDim.x, j < CH (D <= 4·CH·blockDim.x).
template <int CH>
__global__ void __launch_bounds__(256) rows_kernel(const pix_rows_args a) {
  __shared__ float sh[32];
  const int r = blockIdx.x, D = a.D, b = r / a.n;
  float* x = a.X + size_t(r) * D;
  const __nv_bfloat16* y = static_cast<const __nv_bfloat16*>(a.y);
  const __nv_bfloat16* bias = static_cast<const __nv_bfloat16*>(a.bias);
  const __nv_bfloat16* gate = static_cast<const __nv_bfloat16*>(a.gate);
  const __nv_bfloat16* add = static_cast<const __nv_bfloat16*>(a.add);
  float v[CH][4];
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < CH; j++) {
    const int c = 4 * (threadIdx.x + j * blockDim.x);
#pragma unroll
    for (int i = 0; i < 4; i++) v[j][i] = 0.f;
    if (c >= D) continue;
    float4 xv = make_float4(0.f, 0.f, 0.f, 0.f);
    if (!(y && a.store)) xv = *reinterpret_cast<const float4*>(x + c);
    float xs[4] = {xv.x, xv.y, xv.z, xv.w};
    if (y) {
      float u[4], t[4];
      load4(y + size_t(r) * a.ld_y + c, u);
      if (bias) {
        ldg4(bias + c, t);
#pragma unroll
        for (int i = 0; i < 4; i++) u[i] = rbf(u[i] + t[i]);  // the bias add rounds to bf16 first, as torch
      }
      if (gate) {
        ldg4(gate + size_t(b) * a.mod_stride + c, t);
#pragma unroll
        for (int i = 0; i < 4; i++) u[i] = u[i] * t[i];
      }
#pragma unroll
      for (int i = 0; i < 4; i++) xs[i] = a.store ? u[i] : xs[i] + u[i];
      if (add) {
        ldg4(add + size_t(r % a.n) * D + c, t);
#pragma unroll
        for (int i = 0; i < 4; i++) xs[i] += t[i];
      }
      *reinterpret_cast<float4*>(x + c) = make_float4(xs[0], xs[1], xs[2], xs[3]);
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
      v[j][i] = xs[i];
      s += xs[i];
    }
  }
  __nv_bfloat16* out = static_cast<__nv_bfloat16*>(a.out);
  if (a.out_mode == 1) {
#pragma unroll
    for (int j = 0; j < CH; j++) {
      const int c = 4 * (threadIdx.x + j * blockDim.x);
      if (c < D) store4(out + size_t(r) * D + c, v[j]);
    }
    return;
  }
  if (a.out_mode != 2) return;
  const float mean = block_total(s, sh) / D;
  float q = 0.f;
#pragma unroll
  for (int j = 0; j < CH; j++) {
    const int c = 4 * (threadIdx.x + j * blockDim.x);
    if (c < D)
#pragma unroll
      for (int i = 0; i < 4; i++) q += (v[j][i] - mean) * (v[j][i] - mean);
  }
  const float inv = rsqrtf(block_total(q, sh) / D + a.eps);  // biased variance, as torch.nn.LayerNorm
  const __nv_bfloat16* shift = static_cast<const __nv_bfloat16*>(a.shift) + size_t(b) * a.mod_stride;
  const __nv_bfloat16* scale = static_cast<const __nv_bfloat16*>(a.scale) + size_t(b) * a.mod_stride;
#pragma unroll
  for (int j = 0; j < CH; j++) {
    const int c = 4 * (threadIdx.x + j * blockDim.x);
    if (c >= D) continue;
    float sc[4], sf[4], o[4];
    ldg4(scale + c, sc);
    ldg4(shift + c, sf);
#pragma unroll
    for (int i = 0; i < 4; i++) {
      // torch: norm(x) in the activation dtype, then x·(1 + scale) + shift, each rounded to bf16
      const float nx = rbf((v[j][i] - mean) * inv);
      o[i] = rbf(nx * rbf(1.f + sc[i])) + sf[i];
    }
    store4(out + size_t(r) * D + c, o);
  }
}

__global__ void bias_gelu_kernel(__nv_bfloat16* h, int ld, const __nv_bfloat16* bias, int rows, int cols8) {
  const int total = rows * cols8;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const int r = i / cols8, c = (i - r * cols8) * 8;
    uint4* p = reinterpret_cast<uint4*>(h + size_t(r) * ld + c);
    uint4 u = *p;
    __nv_bfloat162* w = reinterpret_cast<__nv_bfloat162*>(&u);
    uint4 bu = make_uint4(0, 0, 0, 0);
    if (bias) bu = __ldg(reinterpret_cast<const uint4*>(bias + c));
    const __nv_bfloat162* bw = reinterpret_cast<const __nv_bfloat162*>(&bu);
#pragma unroll
    for (int k = 0; k < 4; k++) {
      float v0 = __low2float(w[k]), v1 = __high2float(w[k]);
      if (bias) {
        v0 = rbf(v0 + __low2float(bw[k]));
        v1 = rbf(v1 + __high2float(bw[k]));
      }
      w[k] = __floats2bfloat162_rn(gelu_tanh(v0), gelu_tanh(v1));
    }
    *p = u;
  }
}

// One block per source row r = b·n + s: 16-byte chunks of its parts·D columns.
__global__ void split_heads_kernel(const __nv_bfloat16* src, int ld, const __nv_bfloat16* bias, int n, int H, int Dh,
                                   int parts, __nv_bfloat16* d0, __nv_bfloat16* d1, __nv_bfloat16* d2) {
  const int r = blockIdx.x, b = r / n, s = r - b * n, D = H * Dh, chunks = parts * D / 8;
  const __nv_bfloat16* row = src + size_t(r) * ld;
  for (int q = threadIdx.x; q < chunks; q += blockDim.x) {
    const int c = q * 8, p = c / D, rem = c - p * D, h = rem / Dh, d = rem - h * Dh;
    uint4 u = *reinterpret_cast<const uint4*>(row + c);
    if (bias) {
      const uint4 bu = __ldg(reinterpret_cast<const uint4*>(bias + c));
      __nv_bfloat162* w = reinterpret_cast<__nv_bfloat162*>(&u);
      const __nv_bfloat162* bw = reinterpret_cast<const __nv_bfloat162*>(&bu);
#pragma unroll
      for (int k = 0; k < 4; k++)
        w[k] = __floats2bfloat162_rn(__low2float(w[k]) + __low2float(bw[k]), __high2float(w[k]) + __high2float(bw[k]));
    }
    __nv_bfloat16* dst = p == 0 ? d0 : p == 1 ? d1 : d2;
    *reinterpret_cast<uint4*>(dst + ((size_t(b) * H + h) * n + s) * Dh + d) = u;
  }
}

__global__ void modulation_all_kernel(const __nv_bfloat16* t, const void* const* tables, int L, int B, int W,
                                      __nv_bfloat16* out) {
  const int total = L * B * W;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const int l = i / (B * W), rem = i - l * (B * W), b = rem / W, j = rem - b * W;
    const __nv_bfloat16* tab = static_cast<const __nv_bfloat16*>(tables[l]);
    out[i] = __float2bfloat16(__bfloat162float(t[size_t(b) * W + j]) + __bfloat162float(tab[j]));
  }
}

// ---- cuBLASLt BF16 GEMM with the bias + GELU epilogue (dlopen, one plan per shape)
struct LtPlan {
  int M, N, K, has_bias;
  lt::Desc desc;
  lt::Layout la, lb, ld;
  lt::Algo algo;
  size_t ws;
};
struct LtState {
  lt::Api api;
  lt::Handle handle = nullptr;
  std::string error;
  std::vector<LtPlan> plans;
  std::mutex mu;
};
LtState& lt_state() {
  static LtState s;
  static std::once_flag once;
  std::call_once(once, [] {
    std::string why;
    if (!s.api.load(&why)) s.error = why;
    else if (s.api.create(&s.handle) != 0) s.error = "cublasLtCreate failed";
  });
  return s;
}

int grid_for(long long n, int threads) {
  const long long b = (n + threads - 1) / threads;
  return int(b < 132 * 16 ? (b < 1 ? 1 : b) : 132 * 16);
}

}  // namespace

extern "C" const char* pix_rows(const pix_rows_args* a, void* stream) {
  const char* op = "pix_rows";
  if (!a) return fail(op, "null arguments");
  if (!a->X || a->M <= 0 || a->n <= 0 || a->M % a->n || a->D <= 0 || a->D % 4)
    return fail(op, "bad shape: M=" + std::to_string(a->M) + " n=" + std::to_string(a->n) + " D=" +
                        std::to_string(a->D) + " (M a multiple of n, D % 4 == 0)");
  if (a->out_mode < 0 || a->out_mode > 2) return fail(op, "out_mode must be 0, 1 or 2");
  if (a->out_mode && !a->out) return fail(op, "out_mode " + std::to_string(a->out_mode) + " needs out");
  if (a->store && !a->y) return fail(op, "store needs y");
  if (a->y && (a->ld_y < a->D || a->ld_y % 4)) return fail(op, "ld_y=" + std::to_string(a->ld_y) + " (>= D, % 4 == 0)");
  if ((a->gate || a->out_mode == 2) && a->mod_stride < 0) return fail(op, "mod_stride must be >= 0");
  if (a->out_mode == 2 && (!a->shift || !a->scale)) return fail(op, "out_mode 2 (LayerNorm-modulate) needs shift and scale");
  if (!a16(a->X) || !a8(a->y) || !a8(a->bias) || !a8(a->gate) || !a8(a->add) || !a8(a->shift) || !a8(a->scale) ||
      !a8(a->out) || a->mod_stride % 4)
    return fail(op, "operands must be 8-byte aligned (X 16-byte) and mod_stride % 4 == 0");
  const int q = a->D / 4;
  int ch = 1;
  while (ch < 8 && (q + ch - 1) / ch > 256) ch *= 2;
  if ((q + ch - 1) / ch > 256) return fail(op, "D=" + std::to_string(a->D) + " > 8192");
  const int threads = ((q + ch - 1) / ch + 31) / 32 * 32;
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  switch (ch) {
    case 1: rows_kernel<1><<<a->M, threads, 0, st>>>(*a); break;
    case 2: rows_kernel<2><<<a->M, threads, 0, st>>>(*a); break;
    case 4: rows_kernel<4><<<a->M, threads, 0, st>>>(*a); break;
    default: rows_kernel<8><<<a->M, threads, 0, st>>>(*a); break;
  }
  return launched(op);
}

extern "C" const char* pix_bias_gelu(void* h, int ld, const void* bias, int rows, int cols, void* stream) {
  const char* op = "pix_bias_gelu";
  if (!h || rows <= 0 || cols <= 0 || cols % 8 || ld < cols || ld % 8 || !a16(h) || !a16(bias))
    return fail(op, "bad shape: rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) + " ld=" +
                        std::to_string(ld) + " (cols, ld % 8 == 0, 16-byte aligned)");
  if (double(rows) * (cols / 8) >= 2147483647.0) return fail(op, "rows·cols/8 must fit in 31 bits");
  const int cols8 = cols / 8;
  bias_gelu_kernel<<<grid_for(static_cast<long long>(rows) * cols8, 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<__nv_bfloat16*>(h), ld, static_cast<const __nv_bfloat16*>(bias), rows, cols8);
  return launched(op);
}

extern "C" const char* pix_split_heads(const void* src, int ld, const void* bias, int B, int n, int H, int Dh,
                                       int parts, void* d0, void* d1, void* d2, void* stream) {
  const char* op = "pix_split_heads";
  if (B <= 0 || n <= 0 || H <= 0 || Dh <= 0 || Dh % 8 || parts < 1 || parts > 3 || ld < parts * H * Dh || ld % 8 ||
      !src || !d0 || (parts > 1 && !d1) || (parts > 2 && !d2))
    return fail(op, "bad shape: B=" + std::to_string(B) + " n=" + std::to_string(n) + " H=" + std::to_string(H) +
                        " Dh=" + std::to_string(Dh) + " parts=" + std::to_string(parts) + " ld=" + std::to_string(ld) +
                        " (Dh % 8 == 0, ld % 8 == 0)");
  if (!a16(src) || !a16(bias) || !a16(d0) || !a16(d1) || !a16(d2)) return fail(op, "operands must be 16-byte aligned");
  if (double(B) * n > 2147483647.0) return fail(op, "B·n must fit in 31 bits");
  split_heads_kernel<<<B * n, 128, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const __nv_bfloat16*>(src), ld, static_cast<const __nv_bfloat16*>(bias), n, H, Dh, parts,
      static_cast<__nv_bfloat16*>(d0), static_cast<__nv_bfloat16*>(d1), static_cast<__nv_bfloat16*>(d2));
  return launched(op);
}

extern "C" const char* pix_modulation_all(const void* t, const void* const* tables, int L, int B, int W, void* mod_all,
                                          void* stream) {
  const char* op = "pix_modulation_all";
  if (!t || !tables || !mod_all || L <= 0 || B <= 0 || W <= 0 || double(L) * B * W >= 2147483647.0)
    return fail(op, "bad shape: L=" + std::to_string(L) + " B=" + std::to_string(B) + " W=" + std::to_string(W));
  modulation_all_kernel<<<grid_for(static_cast<long long>(L) * B * W, 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const __nv_bfloat16*>(t), tables, L, B, W, static_cast<__nv_bfloat16*>(mod_all));
  return launched(op);
}

extern "C" const char* pix_gemm_gelu_lt(const void* x, const void* w, const void* bias, void* out, int M, int N, int K,
                                        void* workspace, size_t workspace_bytes, void* stream) {
  const char* op = "pix_gemm_gelu_lt";
  if (!x || !w || !out || M <= 0 || N <= 0 || K <= 0 || N % 8 || K % 8)
    return fail(op, "bad shape: M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
                        " (N, K % 8 == 0)");
  LtState& st = lt_state();
  if (!st.error.empty()) return fail(op, "unsupported: " + st.error);
  std::lock_guard<std::mutex> lock(st.mu);
  LtPlan* p = nullptr;
  const int hb = bias != nullptr;
  for (LtPlan& q : st.plans)
    if (q.M == M && q.N == N && q.K == K && q.has_bias == hb && q.ws <= workspace_bytes) p = &q;
  if (!p) {
    LtPlan q{M, N, K, hb, nullptr, nullptr, nullptr, nullptr, {}, 0};
    lt::Api& api = st.api;
    int rc = api.descCreate(&q.desc, lt::COMPUTE_32F, CUDA_R_32F);
    const int ta = lt::OP_T, tb = lt::OP_N, epi = hb ? lt::EPILOGUE_GELU_BIAS : lt::EPILOGUE_GELU;
    rc |= api.descSet(q.desc, lt::DESC_TRANSA, &ta, sizeof ta);
    rc |= api.descSet(q.desc, lt::DESC_TRANSB, &tb, sizeof tb);
    // epilogue: + bias [N] bf16 (one value per row of the column-major N x M result), then GELU (tanh form)
    rc |= api.descSet(q.desc, lt::DESC_EPILOGUE, &epi, sizeof epi);
    if (hb) {
      const int bt = CUDA_R_16BF;
      rc |= api.descSet(q.desc, lt::DESC_BIAS_DATA_TYPE, &bt, sizeof bt);
      rc |= api.descSet(q.desc, lt::DESC_BIAS_POINTER, &bias, sizeof bias);
    }
    // column-major view: A = weights (K x N), op T; B = activations (K x M); D = N x M = row-major out [M, N]
    rc |= api.layoutCreate(&q.la, CUDA_R_16BF, K, N, K);
    rc |= api.layoutCreate(&q.lb, CUDA_R_16BF, K, M, K);
    rc |= api.layoutCreate(&q.ld, CUDA_R_16BF, N, M, N);
    if (rc) return fail(op, "cuBLASLt descriptor setup failed (status " + std::to_string(rc) + ")");
    lt::Pref pref;
    api.prefCreate(&pref);
    const uint64_t wsb = workspace ? workspace_bytes : 0;
    api.prefSet(pref, lt::PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
    lt::Heur h[1];
    int n = 0;
    rc = api.heuristic(st.handle, q.desc, q.la, q.lb, q.ld, q.ld, pref, 1, h, &n);
    if (rc || n == 0)
      return fail(op, "unsupported: cuBLASLt has no BF16 algorithm with the GELU epilogue for M=" + std::to_string(M) +
                          " N=" + std::to_string(N) + " K=" + std::to_string(K) + " (status " + std::to_string(rc) + ")");
    q.algo = h[0].algo;
    q.ws = h[0].workspaceSize;
    st.plans.push_back(q);
    p = &st.plans.back();
  }
  int rc = hb ? st.api.descSet(p->desc, lt::DESC_BIAS_POINTER, &bias, sizeof bias) : 0;
  const float one = 1.f, zero = 0.f;
  rc |= st.api.matmul(st.handle, p->desc, &one, w, p->la, x, p->lb, &zero, out, p->ld, out, p->ld, &p->algo,
                      workspace, workspace_bytes, static_cast<cudaStream_t>(stream));
  if (rc) return fail(op, "cublasLtMatmul status " + std::to_string(rc));
  return nullptr;
}
