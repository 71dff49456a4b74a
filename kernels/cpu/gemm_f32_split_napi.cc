// N-API entry points of the split-bf16 f32 GEMM (gemm_f32_amx.h), registered by binding.cc:
//   packF32Split({w, N, K, splits, out})              W [N,K] f32 → out (Uint16Array, f32SplitElems(N, K, splits))
//   gemmF32Split({x, M, K, N, wsplit, splits, bias?, gelu?, y})
//   f32SplitInfo() → {amxBf16: the CPU has AMX-BF16, amx: gemmF32Split runs on AMX-BF16 tiles on the active path}
// TypeScript validates first (packages/kernels/src/split.ts); these checks keep a wrong length from reading or
// writing out of bounds.
#include <napi.h>

#include <string>

#include "common.h"
#include "napi_args.h"
#include "gemm_f32_amx.h"

namespace svdq {
namespace {

using namespace napi_args;  // num, arr<T>, flag, guarded, obj0

int splits(const Napi::Object& o, const char* who) {
  const int64_t s = num(o, "splits", who);
  if (s != 2 && s != 3) throw KernelError(std::string(who) + ": splits must be 2 or 3");
  return static_cast<int>(s);
}

Napi::Value PackF32Split(const Napi::CallbackInfo& info) {
  constexpr const char* who = "packF32Split";
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    const Napi::Object o = obj0(info, who);
    const int64_t N = num(o, "N", who), K = num(o, "K", who);
    if (N <= 0 || K <= 0) throw KernelError("packF32Split: bad N/K");
    const int S = splits(o, who);
    const float* w = arr<float>(o, "w", N * K, false, who);
    uint16_t* out = arr<uint16_t>(o, "out", f32_split_elems(N, K, S), false, who);
    pack_f32_split(w, N, K, S, out);
    return env.Undefined();
  });
}

Napi::Value GemmF32Split(const Napi::CallbackInfo& info) {
  constexpr const char* who = "gemmF32Split";
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    const Napi::Object o = obj0(info, who);
    F32SplitArgs a{};
    a.M = num(o, "M", who);
    a.K = num(o, "K", who);
    a.N = num(o, "N", who);
    if (a.M < 0 || a.K <= 0 || a.N <= 0) throw KernelError("gemmF32Split: bad M/K/N");
    a.S = splits(o, who);
    a.x = arr<float>(o, "x", a.M * a.K, false, who);
    a.wsplit = arr<uint16_t>(o, "wsplit", f32_split_elems(a.N, a.K, a.S), false, who);
    a.bias = arr<float>(o, "bias", a.N, true, who);
    a.gelu = flag(o, "gelu");
    a.y = arr<float>(o, "y", a.M * a.N, false, who);
    gemm_f32_split(a);
    return env.Undefined();
  });
}

Napi::Value F32SplitInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("amxBf16", Napi::Boolean::New(env, cpu_has_amx_bf16()));
  out.Set("amx", Napi::Boolean::New(env, f32_split_uses_amx()));
  return out;
}

}  // namespace

void register_gemm_f32_split(Napi::Env env, Napi::Object exports) {
  exports.Set("packF32Split", Napi::Function::New(env, PackF32Split));
  exports.Set("gemmF32Split", Napi::Function::New(env, GemmF32Split));
  exports.Set("f32SplitInfo", Napi::Function::New(env, F32SplitInfo));
}

}  // namespace svdq
