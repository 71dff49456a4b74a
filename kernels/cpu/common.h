// Shared pieces of the SVDQuant CPU kernels: the thread pool, ISA dispatch and small helpers.
// Layouts of every packed tensor are documented in packages/kernels/src/layout.ts (tables) and
// docs/kernels-cpu.md; the comments here name the same symbols (M tokens, K in, N out, G group, R rank).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace svdq {

// Thrown by kernels on conditions TypeScript validation cannot see (it should never fire);
// the binding turns it into a JS Error.
struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- ISA dispatch ----
// Paths, each a superset of the one before on x86-64 (a path is only chosen when the CPU and OS support it):
//   Scalar: portable C++ (every CPU, ARM included).
//   Avx2:   AVX2 + FMA (vpmaddubsw int8 dot products, 8-wide f32 FMA).
//   Avx512: AVX-512 F/BW/DQ/VL + VNNI (vpdpbusd int8 dot products, 16-wide f32 FMA).
//   Amx:    Avx512 + AMX-TILE/AMX-INT8 (tdpbssd 16x16x64 int8 tiles) once Linux granted the tile state
//           (arch_prctl ARCH_REQ_XCOMP_PERM); operators without an AMX kernel run their Avx512 kernel.
// Every kernel is compiled with per-function target attributes, so the addon loads on any x86-64 CPU.
enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2, Amx = 3 };
bool cpu_has_avx2_fma();
bool cpu_has_avx512_vnni();  // AVX-512 F/BW/DQ/VL/VNNI with the OS saving ZMM state
bool cpu_has_amx_int8();     // AMX-TILE + AMX-INT8 with the tile state granted by the OS (Linux only)
bool cpu_has_amx_bf16();     // cpu_has_amx_int8() and AMX-BF16 (the split-bf16 f32 GEMM, attention, int4p2 layer)

// The 64-byte LDTILECFG operand of AMX (Intel SDM vol. 2A, LDTILECFG): palette 1, then per tile its bytes per row
// (colsb) and rows. Every AMX kernel (W4A4, W8A8, int4p2, split-bf16 f32, the peaks) fills one.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
// All 8 tile registers 16 rows × 64 bytes (int32/f32 C tiles 16 × 16, int8 A/B tiles 16 × 64, bf16 16 × 32): the
// shape every AMX kernel here uses.
inline TileConfig full_tiles() {
  TileConfig cfg;
  for (int i = 0; i < 8; ++i) {
    cfg.colsb[i] = 64;
    cfg.rows[i] = 16;
  }
  return cfg;
}

// The first 64-byte aligned element of v after growing it (never shrinking) to hold n elements from there.
template <typename T>
inline T* align64(std::vector<T>& v, size_t n) {
  if (v.size() < n + 64 / sizeof(T)) v.resize(n + 64 / sizeof(T));
  return reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(v.data()) + 63) & ~uintptr_t{63});
}
// Software prefetch into L2 of a GEMM task's next K chunk while it computes the current one (the AMX GEMMs:
// gemm_p2_amx.cc, gemm_w8a8_x86.cc): two lists of equal segments (the activation rows or row blocks of the chunk,
// then its weight columns or column blocks), `seg` bytes each, `stride` bytes apart; step() issues per_step lines
// (__builtin_prefetch locality 2: prefetcht1 on x86) before each K step, so the chunk's L3 traffic overlaps the
// tile products instead of stalling the first tile loads of the next chunk.
struct ChunkPrefetch {
  struct List {
    const char* base = nullptr;
    int64_t seg = 0, stride = 0, count = 0;
    int64_t lines() const { return count * ((seg + 63) / 64); }
  };
  List list[2];
  int64_t pos = 0, end = 0, per_step = 0;
  void plan(int64_t steps) {
    end = list[0].lines() + list[1].lines();
    per_step = steps > 0 ? (end + steps - 1) / steps : 0;
  }
  inline void step() {
    for (int64_t i = 0; i < per_step && pos < end; ++i, ++pos) {
      const int64_t n0 = list[0].lines();
      const List& l = pos < n0 ? list[0] : list[1];
      const int64_t q = pos < n0 ? pos : pos - n0, per_seg = (l.seg + 63) / 64;
      __builtin_prefetch(l.base + (q / per_seg) * l.stride + (q % per_seg) * 64, 0, 2);
    }
  }
};

Isa active_isa();
// True when the active path can run kernels of path `want` (Amx ⊇ Avx512 ⊇ Avx2).
inline bool isa_at_least(Isa want) { return static_cast<int>(active_isa()) >= static_cast<int>(want); }
// 0 auto (best available), 1 force scalar, 2 force avx2, 3 force avx512, 4 force amx (throws when the CPU lacks it).
void set_isa_mode(int mode);
const char* isa_name(Isa isa);

// ---- thread pool ----
int num_threads();
void set_num_threads(int n);  // n <= 0: hardware concurrency
// Runs fn(task) for task in [0, tasks) on the pool (the calling thread takes part). Rethrows the first
// exception a task threw.
void parallel_for(int64_t tasks, const std::function<void(int64_t task, int thread)>& fn);

// ---- quantization constants ----
constexpr int kGroup = 64;  // W4A4 group size along K (SVDQuant §4/Nunchaku: per-64-channel INT4 groups)

// Activation 4-bit formats: signed INT4 codes in [-8, 7] with scale amax/7, or unsigned UINT4 codes in
// [0, 15] of (x + shift)/λ with scale max/15 (for non-negative inputs such as GELU outputs).
enum ActFormat { kActInt4 = 0, kActUint4 = 1 };

// Round half to even like the TS reference (and like _mm256_round_ps with _MM_FROUND_TO_NEAREST_INT).
float round_even(float v);

// ---- operators (dispatching to AVX2 or scalar) ----
struct ActQuantArgs {
  const float* x_f32;       // [M, K] or null
  const uint16_t* x_bf16;   // [M, K] or null
  int64_t M, K;
  const float* smooth;      // [K] λ (divides X), or null for λ = 1
  const float* ldown;       // [R, K] low-rank down, or null (R = 0)
  int64_t R;
  int format;               // ActFormat
  float shift;              // UINT4 only
  int8_t* codes;            // out [M, K]
  float* scales;            // out [M, K/64]
  float* lora_act;          // out [M, R] or null
  // L_downᵀ [K][Rp] as lowrank_down.h lays it out (Rp = R rounded up to 16, zero columns, 64-byte aligned), prepared
  // once by a layer; null: the AVX-512 path transposes `ldown` per call.
  const float* ldown_t = nullptr;
};
// Returns the first row holding a NaN/Inf in X (or λ), or -1 when all are finite.
int64_t act_quant(const ActQuantArgs& a);

struct W4A4Args {
  const int8_t* codes;   // [M, K] activation codes
  const float* ascales;  // [M, K/64]
  const float* lora_act; // [M, R] or null
  int64_t M, K, N, R;
  const uint8_t* qweight;  // [Np/8][K/64][8 q][8 c][4 t] (see layout.ts)
  const float* wscales;    // [Np/8][K/64][8]
  const float* lup;        // [Np/8][R][8] or null
  const float* bias;       // [N] or null
  bool gelu;
  float* y;                // out [M, N]
};
void gemm_w4a4(const W4A4Args& a);

struct F32Args {
  const float* x;      // [M, K]
  int64_t M, K, N;
  const float* wpanel; // [Np/16][K][16]
  const float* bias;   // [N] or null
  bool gelu;
  float* y;            // [M, N]
};
void gemm_f32(const F32Args& a);

struct W4A16Args {
  const float* x;          // [M, K]
  int64_t M, K, N, G;
  const uint32_t* qweight; // [Np/16][K][2] : nibble c of word h = code of column 16p + 8h + c
  const float* wscales;    // [Np/16][K/G][16]
  const float* lut;        // [16] code -> value (INT4: -8..7 after the +8 offset; NF4 table)
  const float* bias;       // [N] or null
  float* y;                // [M, N]
};
void gemm_w4a16(const W4A16Args& a);

struct W8A8Args {
  const int8_t* codes;    // [M, K] activation int8 codes
  const float* ascales;   // [M]
  int64_t M, K, N;
  const int8_t* qweight;  // [Np/8][K/4][8][4]
  const float* wscales;   // [Np]
  const float* bias;      // [N] or null
  float* y;               // [M, N]
};
void gemm_w8a8(const W8A8Args& a);

// Per-token symmetric INT8 quantization of X [M,K]: scale = amax/127. Returns the first row holding a NaN/Inf
// (that row's codes and scale are not written), or -1.
int64_t act_quant_int8(const float* x, int64_t M, int64_t K, int8_t* codes, float* scales);

struct AttentionArgs {
  const float* q;     // [B, Sq, H·Dh]
  const float* k;     // [B, Skv, H·Dh]
  const float* v;     // [B, Skv, H·Dh]
  const float* bias;  // [B, Skv] additive key bias, or null
  int64_t B, Sq, Skv, H, Dh;
  float* out;         // [B, Sq, H·Dh]
};
// softmax(q·kᵀ/√Dh + bias)·v per batch and head, online softmax over key blocks (attention_f32.cc).
void attention_f32(const AttentionArgs& a);

// GELU with the tanh approximation applied in place to n floats.
void gelu_inplace(float* v, int64_t n);

// ---- float64 symmetric linear algebra (linalg_f64.cc), row-major n x n, lower triangle (j <= i) ----
// In-place Cholesky A = L·Lᵀ; returns -1, or the first column whose pivot is <= tol·max(diag A) (or NaN).
int64_t cholesky_f64(double* a, int64_t n, double tol);
// Pivoted Cholesky P·A·Pᵀ ≈ L·Lᵀ (L n x rank, lower trapezoidal, columns >= rank zeroed) stopping at a pivot
// <= tol·max(diag A); perm [n]: original index of row i. Returns the rank.
int64_t pivoted_cholesky_f64(double* a, int64_t n, double tol, int32_t* perm);
// Lower triangle of M = Lᵀ·S·L (L lower triangular with ZERO upper part, S full symmetric); w: n x n scratch.
void congruence_f64(const double* l, const double* s, int64_t n, double* w, double* m);
// Householder tridiagonalization of the lower triangle of a (destroyed): diagonal d [n], off-diagonal e [n]
// (e[i] couples i and i+1, e[n-1] = 0).
void sym_tridiag_f64(double* a, int64_t n, double* d, double* e);
// Eigenvalues of the tridiagonal (d, e) into d; false when the QL iteration does not converge.
bool tridiagonal_ql(double* d, double* e, int64_t n);

}  // namespace svdq
