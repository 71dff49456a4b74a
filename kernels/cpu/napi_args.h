// Reading the one argument object of a Node-API entry point: numbers, flags and typed arrays by name, each with
// one clear KernelError naming the argument (and, in the `who` forms, the entry point). TypeScript validates
// first; these checks are the second line of defence, so a wrong length can never read or write out of bounds.
// Shared by binding.cc, binding_p2.cc, gemm_f32_split_napi.cc and norm_f32.cc.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

#include "common.h"

namespace svdq::napi_args {

template <typename T>
struct TypedKind;
template <> struct TypedKind<float> { static constexpr napi_typedarray_type value = napi_float32_array; };
template <> struct TypedKind<double> { static constexpr napi_typedarray_type value = napi_float64_array; };
template <> struct TypedKind<int32_t> { static constexpr napi_typedarray_type value = napi_int32_array; };
template <> struct TypedKind<int8_t> { static constexpr napi_typedarray_type value = napi_int8_array; };
template <> struct TypedKind<uint8_t> { static constexpr napi_typedarray_type value = napi_uint8_array; };
template <> struct TypedKind<uint16_t> { static constexpr napi_typedarray_type value = napi_uint16_array; };
template <> struct TypedKind<uint32_t> { static constexpr napi_typedarray_type value = napi_uint32_array; };

inline std::string arg_name(const char* who, const char* key) {
  return (who != nullptr ? std::string(who) + ": argument '" : std::string("argument '")) + key + "'";
}

inline int64_t num(const Napi::Object& o, const char* key, const char* who = nullptr) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw KernelError(arg_name(who, key) + " must be a number");
  return v.As<Napi::Number>().Int64Value();
}
inline double fnum(const Napi::Object& o, const char* key, const char* who = nullptr) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw KernelError(arg_name(who, key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}
inline bool flag(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

// The data of typed array o[key] of element type T holding at least `len` elements; null when optional and absent.
template <typename T>
T* arr(const Napi::Object& o, const char* key, int64_t len, bool optional = false, const char* who = nullptr) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return nullptr;
    throw KernelError(arg_name(who, key) + " is required");
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != TypedKind<T>::value)
    throw KernelError(arg_name(who, key) + " has the wrong typed-array type");
  auto ta = v.As<Napi::TypedArray>();
  if (static_cast<int64_t>(ta.ElementLength()) < len)
    throw KernelError(arg_name(who, key) + " holds " + std::to_string(ta.ElementLength()) + " elements, expected " +
                      std::to_string(len));
  return reinterpret_cast<T*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

// Runs f(env) and turns a C++ exception into one JavaScript Error "@svdquant/kernels native: …".
template <typename F>
Napi::Value guarded(const Napi::CallbackInfo& info, F&& f) {
  Napi::Env env = info.Env();
  try {
    return f(env);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("@svdquant/kernels native: ") + e.what());
  }
}

// The entry point's one argument object.
inline Napi::Object obj0(const Napi::CallbackInfo& info, const char* who = nullptr) {
  if (info.Length() < 1 || !info[0].IsObject())
    throw KernelError(who != nullptr ? std::string(who) + ": expected one argument object"
                                     : std::string("expected one argument object"));
  return info[0].As<Napi::Object>();
}

}  // namespace svdq::napi_args
