// Node-API entry points of the int4p2 layer's AVX2 integer path (p2_avx2.h), registered by binding.cc. The packed
// weight and the activation operand are Uint8Arrays made here (layout bytes + 64: each used from its first 64-byte
// aligned byte), held by the TypeScript layer (packages/kernels/src/p2-layer.ts), which validates every argument
// first; the length checks here keep a wrong call from reading or writing out of bounds.
#include <napi.h>

#include <mutex>
#include <vector>

#include "binding_p2_args.h"
#include "napi_args.h"
#include "p2_avx2.h"

namespace {

using svdq::KernelError;
using namespace svdq::napi_args;  // num, arr<T>, guarded, obj0
using namespace svdq::p2::napi;   // dims, branch_of, common_quant, pack_args
namespace a2 = svdq::p2::a2;

uint8_t* aligned_bytes(uint8_t* p) { return p + (64 - reinterpret_cast<uintptr_t>(p) % 64) % 64; }

// o[key]: a Uint8Array of at least bytes + 64 elements, from its first 64-byte aligned byte.
uint8_t* bytes_of(const Napi::Object& o, const char* key, int64_t bytes) {
  return aligned_bytes(arr<uint8_t>(o, key, bytes + 64));
}

// p2a2PackWeight: the packed weight as a new Uint8Array.
Napi::Value PackWeight(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    svdq::p2::PackArgs a = pack_args(o, "p2a2PackWeight");
    const a2::WeightLayout l(a.N, a.K, a.R);
    Napi::Uint8Array w = Napi::Uint8Array::New(env, static_cast<size_t>(l.bytes + 64));
    a2::pack_weight(a, aligned_bytes(w.Data()));
    return w;
  });
}

a2::Weight weight_of(const Napi::Object& o, int64_t N, int64_t K, int64_t R) {
  return a2::weight_view(bytes_of(o, "weight", a2::WeightLayout(N, K, R).bytes), N, K, R);
}

// The operand buffer of p2a2Forward, grown to the largest call and reused; one forward at a time.
std::mutex g_mu;
std::vector<uint8_t> g_op;

// p2a2Forward: quantize + GEMM into y [M,N]; returns quantize()'s status (y is not written unless it is −1).
Napi::Value Forward(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    svdq::p2::QuantArgs q{};
    const int64_t N = num(o, "N");
    common_quant(o, q, N);
    const a2::Weight w = weight_of(o, N, q.K, q.R);
    const float* bias = arr<float>(o, "bias", N, true);
    float* y = arr<float>(o, "y", q.M * N);
    std::lock_guard<std::mutex> lock(g_mu);
    const a2::ActLayout l(q.M, q.K, q.R);
    const a2::Act x = a2::act_view(svdq::align64(g_op, static_cast<size_t>(l.bytes)), q.M, q.K, q.R);
#if SVDQ_X86
    const int64_t st = a2::quantize(q, x);
    if (st != -1) return Napi::Number::New(env, static_cast<double>(st));
    a2::gemm(x, w, bias, flag(o, "gelu"), y);
    return Napi::Number::New(env, -1);
#else  // the avx2-int8 kernels are x86 code (p2a2Available() is false elsewhere)
    (void)w, (void)bias, (void)y, (void)x;
    throw KernelError("p2a2Forward: the avx2-int8 int4p2 kernels need an x86-64 CPU with AVX2");
#endif
  });
}

// p2a2QuantizeOperand: {status, op}: the activation operand of x as a new Uint8Array (op absent unless status −1).
Napi::Value QuantizeOperand(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    svdq::p2::QuantArgs q{};
    common_quant(o, q, 1);
    const a2::ActLayout l(q.M, q.K, q.R);
    Napi::Uint8Array op = Napi::Uint8Array::New(env, static_cast<size_t>(l.bytes + 64));
#if SVDQ_X86
    const int64_t st = a2::quantize(q, a2::act_view(aligned_bytes(op.Data()), q.M, q.K, q.R));
    Napi::Object r = Napi::Object::New(env);
    r.Set("status", Napi::Number::New(env, static_cast<double>(st)));
    if (st == -1) r.Set("op", op);
    return r;
#else
    (void)op;
    throw KernelError("p2a2QuantizeOperand: the avx2-int8 int4p2 kernels need an x86-64 CPU with AVX2");
#endif
  });
}

// p2a2Gemm: y [M,N] from an operand of p2a2QuantizeOperand and a packed weight.
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    const int64_t M = num(o, "M"), K = num(o, "K"), N = num(o, "N"), R = num(o, "R");
    dims(M, K, N, R, "p2a2Gemm");
    const a2::Weight w = weight_of(o, N, K, R);
    const a2::Act x = a2::act_view(bytes_of(o, "op", a2::ActLayout(M, K, R).bytes), M, K, R);
#if SVDQ_X86
    a2::gemm(x, w, arr<float>(o, "bias", N, true), flag(o, "gelu"), arr<float>(o, "y", M * N));
    return env.Undefined();
#else
    (void)w, (void)x;
    throw KernelError("p2a2Gemm: the avx2-int8 int4p2 kernels need an x86-64 CPU with AVX2");
#endif
  });
}

Napi::Value Available(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value { return Napi::Boolean::New(env, a2::available()); });
}

}  // namespace

namespace svdq {
void register_p2_avx2(Napi::Env env, Napi::Object exports) {
  exports.Set("p2a2PackWeight", Napi::Function::New(env, PackWeight));
  exports.Set("p2a2Forward", Napi::Function::New(env, Forward));
  exports.Set("p2a2QuantizeOperand", Napi::Function::New(env, QuantizeOperand));
  exports.Set("p2a2Gemm", Napi::Function::New(env, Gemm));
  exports.Set("p2a2Available", Napi::Function::New(env, Available));
}
}  // namespace svdq
