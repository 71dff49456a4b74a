// N-API entry points of the split-bf16 f32 GEMM (gemm_f32_amx.h), registered by binding.cc:
//   packF32Split({w, N, K, splits, out})              W [N,K] f32 → out (Uint16Array, f32SplitElems(N, K, splits))
//   gemmF32Split({x, M, K, N, wsplit, splits, bias?, gelu?, y})
//   f32SplitInfo() → {amxBf16: the CPU has AMX-BF16, amx: gemmF32Split runs on AMX-BF16 tiles on the active path}
// TypeScript validates first (packages/kernels/src/split.ts); these checks keep a wrong length from reading or
// writing out of bounds.
#include <napi.h>

#include <string>

#include "common.h"
#include "gemm_f32_amx.h"

namespace svdq {
namespace {

int64_t num(const Napi::Object& o, const char* who, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw KernelError(std::string(who) + ": argument '" + key + "' must be a number");
  return v.As<Napi::Number>().Int64Value();
}

template <typename T>
T* typed(const Napi::Object& o, const char* who, const char* key, napi_typedarray_type type, int64_t len,
         bool optional = false) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return nullptr;
    throw KernelError(std::string(who) + ": argument '" + key + "' is required");
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw KernelError(std::string(who) + ": argument '" + key + "' has the wrong typed-array type");
  auto ta = v.As<Napi::TypedArray>();
  if (static_cast<int64_t>(ta.ElementLength()) < len)
    throw KernelError(std::string(who) + ": argument '" + key + "' holds " + std::to_string(ta.ElementLength()) +
                      " elements, expected " + std::to_string(len));
  return reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

template <typename F>
Napi::Value guarded(const Napi::CallbackInfo& info, const char* who, F&& f) {
  Napi::Env env = info.Env();
  try {
    if (info.Length() < 1 || !info[0].IsObject()) throw KernelError(std::string(who) + ": expected one argument object");
    return f(env, info[0].As<Napi::Object>());
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("@svdquant/kernels native: ") + e.what());
  }
}

int splits(const Napi::Object& o, const char* who) {
  const int64_t s = num(o, who, "splits");
  if (s != 2 && s != 3) throw KernelError(std::string(who) + ": splits must be 2 or 3");
  return static_cast<int>(s);
}

Napi::Value PackF32Split(const Napi::CallbackInfo& info) {
  constexpr const char* who = "packF32Split";
  return guarded(info, who, [&](Napi::Env env, Napi::Object o) -> Napi::Value {
    const int64_t N = num(o, who, "N"), K = num(o, who, "K");
    if (N <= 0 || K <= 0) throw KernelError("packF32Split: bad N/K");
    const int S = splits(o, who);
    const float* w = typed<float>(o, who, "w", napi_float32_array, N * K);
    uint16_t* out = typed<uint16_t>(o, who, "out", napi_uint16_array, f32_split_elems(N, K, S));
    pack_f32_split(w, N, K, S, out);
    return env.Undefined();
  });
}

Napi::Value GemmF32Split(const Napi::CallbackInfo& info) {
  constexpr const char* who = "gemmF32Split";
  return guarded(info, who, [&](Napi::Env env, Napi::Object o) -> Napi::Value {
    F32SplitArgs a{};
    a.M = num(o, who, "M");
    a.K = num(o, who, "K");
    a.N = num(o, who, "N");
    if (a.M < 0 || a.K <= 0 || a.N <= 0) throw KernelError("gemmF32Split: bad M/K/N");
    a.S = splits(o, who);
    a.x = typed<float>(o, who, "x", napi_float32_array, a.M * a.K);
    a.wsplit = typed<uint16_t>(o, who, "wsplit", napi_uint16_array, f32_split_elems(a.N, a.K, a.S));
    a.bias = typed<float>(o, who, "bias", napi_float32_array, a.N, true);
    Napi::Value g = o.Get("gelu");
    a.gelu = g.IsBoolean() && g.As<Napi::Boolean>().Value();
    a.y = typed<float>(o, who, "y", napi_float32_array, a.M * a.N);
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
