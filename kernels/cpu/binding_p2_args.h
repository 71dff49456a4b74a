// Argument readers shared by the int4p2 layer's Node-API entry points (binding_p2.cc: the bf16 / f32 paths,
// binding_p2_int8.cc: the AMX-INT8 path). TypeScript validates every argument first (packages/kernels/src/p2-layer.ts);
// these checks keep a wrong call from reading or writing out of bounds.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

#include "lowrank_down.h"
#include "napi_args.h"
#include "p2_layer.h"

namespace svdq {
namespace p2 {
namespace napi {

inline void dims(int64_t M, int64_t K, int64_t N, int64_t R, const char* what) {
  if (M < 0 || K <= 0 || K % 64 || N <= 0 || R < 0) throw KernelError(std::string(what) + ": bad M/K/N/R");
}

// The first 64-byte aligned element of a caller's Uint16Array (the caller adds 32 elements of slack).
inline uint16_t* aligned(uint16_t* p) {
  if (reinterpret_cast<uintptr_t>(p) % 2) throw KernelError("p2: a Uint16Array that is not 2-byte aligned");
  return p + (64 - reinterpret_cast<uintptr_t>(p) % 64) % 64 / 2;
}

// The branch precision: o.branch 0 (f32, also when absent) or 1 (bf16) (p2-layer.ts P2BranchPrecision).
inline Branch branch_of(const Napi::Object& o) {
  Napi::Value v = o.Get("branch");
  if (v.IsUndefined()) return Branch::F32;
  const int64_t b = napi_args::num(o, "branch");
  if (b != 0 && b != 1) throw KernelError("p2: argument 'branch' must be 0 (f32) or 1 (bf16)");
  return static_cast<Branch>(b);
}

// The weight inputs of the pack entry points p2PackWeight and p2a2PackWeight (p2i8PackWeight reads no L_up): N, K, R, the
// 4-bit codes, the group exponents, the row scales, L_up and the branch precision; `what` names the call in errors.
inline PackArgs pack_args(const Napi::Object& o, const char* what) {
  using napi_args::arr;
  using napi_args::num;
  PackArgs a{};
  a.N = num(o, "N");
  a.K = num(o, "K");
  a.R = num(o, "R");
  dims(0, a.K, a.N, a.R, what);
  a.codes = arr<int8_t>(o, "codes", a.N * a.K);
  a.exponents = arr<int8_t>(o, "exponents", a.N * (a.K / 64));
  a.row_scales = arr<float>(o, "rowScales", a.N);
  a.lup = a.R ? arr<float>(o, "lowRankUp", a.N * a.R) : nullptr;
  a.branch = branch_of(o);
  return a;
}

// The activation pass's inputs (x, λ⁻¹, L_down in the forms the layer prepared, branch precision); N only for dims.
inline void common_quant(const Napi::Object& o, QuantArgs& q, int64_t N) {
  using napi_args::arr;
  using napi_args::num;
  q.M = num(o, "M");
  q.K = num(o, "K");
  q.R = num(o, "R");
  dims(q.M, q.K, N, q.R, "p2");
  q.x = arr<float>(o, "x", q.M * q.K);
  q.inv_smooth = arr<float>(o, "invSmooth", q.K, true);
  q.ldown = q.R ? arr<float>(o, "lowRankDown", q.R * q.K) : nullptr;
  q.ldown_t = q.R ? lowrank::aligned_ldt(arr<float>(o, "lowRankDownT", q.K * lowrank::rank_pad(q.R) + 16, true))
                  : nullptr;
  q.branch = branch_of(o);
  uint16_t* ldb = q.R && q.branch == Branch::Bf16
                      ? arr<uint16_t>(o, "lowRankDownBf16", down_bf16_len(q.K, q.R) + 32, true)
                      : nullptr;
  q.ldown_bf16 = ldb ? aligned(ldb) : nullptr;
  q.ldown_t_bf16 = q.R && q.branch == Branch::Bf16
                       ? lowrank::aligned_ldt(arr<float>(o, "lowRankDownTBf16", q.K * lowrank::rank_pad(q.R) + 16, true))
                       : nullptr;
}

}  // namespace napi
}  // namespace p2
}  // namespace svdq
