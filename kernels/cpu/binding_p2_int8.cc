// Node-API entry points of the int4p2 layer's AMX-INT8 path (p2_int8.h), registered by binding.cc. The weight and
// activation band operands live in native objects (Napi::External) that the prepared layer / operand holds;
// TypeScript validates every argument first (packages/kernels/src/p2-layer.ts).
#include <napi.h>

#include <mutex>
#include <string>
#include <vector>

#include "binding_p2_args.h"
#include "napi_args.h"
#include "p2_int8.h"
#include "p2_layer.h"

namespace {

using svdq::KernelError;
using namespace svdq::napi_args;  // num, flag, arr<T>, guarded, obj0
using namespace svdq::p2::napi;   // dims, aligned, branch_of, common_quant
namespace p2 = svdq::p2;
namespace p2i8 = svdq::p2i8;

template <typename T>
T* handle(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsExternal()) throw KernelError(std::string("p2i8: ") + key + " is not a native handle");
  return v.As<Napi::External<T>>().Data();
}

// The quantizer's row scales, which the band operand's factors read, besides the bf16 operand (whose branch tiles
// the GEMM reads).
struct QuantOut {
  std::vector<float> row_scales;
};

// Quantizes x (the bf16 operand with its branch, or its branch tiles only; sx) and writes the int8 band operand into
// `act`.
int64_t quantize_pack(const Napi::Object& o, uint16_t* aop, bool branch_only, float* sx, QuantOut& q8,
                      p2i8::Act& act) {
  p2::QuantArgs q{};
  common_quant(o, q, 1);
  q8.row_scales.resize(q.M);
  q.aop = aop;
  q.aop_branch_only = branch_only;
  q.sx = sx;
  q.row_scales = q8.row_scales.data();
#if SVDQ_X86
  return p2i8::quantize_act(q, act);  // the band operand written from each row's codes while they are in cache
#else  // the AMX-INT8 kernels are x86 code (p2i8Available() is false elsewhere)
  throw KernelError("p2i8: the AMX-INT8 int4p2 kernels need an x86-64 CPU with AMX");
#endif
}

void gemm_out(const Napi::Object& o, p2i8::GemmArgs& g, const p2i8::Weight& w, int64_t M) {
  g.w = &w;
  g.bias = arr<float>(o, "bias", w.N, true);
  Napi::Value gl = o.Get("gelu");
  g.gelu = gl.IsBoolean() && gl.As<Napi::Boolean>().Value();
  g.y = arr<float>(o, "y", M * w.N);
}

// p2i8PackWeight: the band weight operand from the int4p2 weight and its bf16 operand (wop at wopOffset, sw).
Napi::Value PackWeight(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    p2::PackArgs a{};
    a.N = num(o, "N");
    a.K = num(o, "K");
    a.R = num(o, "R");
    dims(0, a.K, a.N, a.R, "p2i8PackWeight");
    a.codes = arr<int8_t>(o, "codes", a.N * a.K);
    a.exponents = arr<int8_t>(o, "exponents", a.N * (a.K / 64));
    a.row_scales = arr<float>(o, "rowScales", a.N);
    a.branch = branch_of(o);
    const int64_t off = num(o, "wopOffset");
    if (off < 0 || off > 32) throw KernelError("p2i8PackWeight: bad wopOffset");
    const uint16_t* wop = arr<uint16_t>(o, "wop", p2::round_up(a.N, 32) * p2::kt_of(a.K, a.R, a.branch) + off) + off;
    const float* sw = arr<float>(o, "sw", p2::round_up(a.N, 32));
    auto* w = new p2i8::Weight();
    try {
      p2i8::pack_weight(a, wop, sw, *w);
    } catch (...) {
      delete w;
      throw;
    }
    const int64_t bytes = static_cast<int64_t>(w->w8_store.size() + w->wbr_store.size() * 2 +
                                               (w->pw.size() + w->sw.size() + w->swa.size() + w->wpar.size()) * 4);
    Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
    auto ext = Napi::External<p2i8::Weight>::New(env, w, [bytes](Napi::Env e, p2i8::Weight* p) {
      Napi::MemoryManagement::AdjustExternalMemory(e, -bytes);
      delete p;
    });
    auto r = Napi::Object::New(env);
    r.Set("handle", ext);
    r.Set("bytes", Napi::Number::New(env, static_cast<double>(bytes)));
    r.Set("shadowColumns", Napi::Number::New(env, static_cast<double>(w->Sw)));
    return r;
  });
}

std::mutex g_mu;
std::vector<uint16_t> g_aop;
std::vector<float> g_sx;
QuantOut g_q8;
p2i8::Act g_act;

// p2i8Forward: quantize + band pack + GEMM into y; returns quantize()'s status (y is written only when it is −1).
Napi::Value Forward(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    const p2i8::Weight& w = *handle<p2i8::Weight>(o, "weight");
    const int64_t M = num(o, "M");
    if (num(o, "K") != w.K || p2::kt_of(w.K, num(o, "R"), branch_of(o)) != w.Kt) throw KernelError("p2i8Forward: K/R mismatch");
    std::lock_guard<std::mutex> lock(g_mu);
    uint16_t* aop = svdq::align64(g_aop, static_cast<size_t>(p2::round_up(M, 32) * w.Kt));
    if (static_cast<int64_t>(g_sx.size()) < M) g_sx.resize(M);
    // the private operand: only its branch tiles are read (the int8 GEMM), so the bf16 codes part is not written
    const int64_t st = quantize_pack(o, aop, true, g_sx.data(), g_q8, g_act);
    if (st != -1) return Napi::Number::New(env, static_cast<double>(st));
    p2i8::GemmArgs g{};
    g.act = &g_act;
    g.abr = w.Kt > w.K ? aop : nullptr;
    g.sx = g_sx.data();
    gemm_out(o, g, w, M);
#if SVDQ_X86
    p2i8::gemm(g);
#else
    throw KernelError("p2i8: the AMX-INT8 int4p2 kernels need an x86-64 CPU with AMX");
#endif
    return Napi::Number::New(env, -1);
  });
}

// p2i8QuantizeOperand: the bf16 operand into the caller's aop (Mp·Kt + 32) and sx [M], plus the band operand;
// returns {status, handle} (handle only when status is −1).
Napi::Value QuantizeOperand(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    const int64_t M = num(o, "M"), K = num(o, "K"), R = num(o, "R");
    dims(M, K, 1, R, "p2i8QuantizeOperand");
    uint16_t* aop = aligned(arr<uint16_t>(o, "aop", p2::round_up(M, 32) * p2::kt_of(K, R, branch_of(o)) + 32));
    float* sx = arr<float>(o, "sx", M);
    auto* act = new p2i8::Act();
    QuantOut q8;
    int64_t st;
    try {
      st = quantize_pack(o, aop, false, sx, q8, *act);  // whole: layers on other paths may share the operand
    } catch (...) {
      delete act;
      throw;
    }
    auto r = Napi::Object::New(env);
    r.Set("status", Napi::Number::New(env, static_cast<double>(st)));
    if (st != -1) {
      delete act;
      return r;
    }
    const int64_t bytes = static_cast<int64_t>(act->a8_store.size() + (act->pa.size() + act->sxa.size()) * 4);
    Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
    r.Set("handle", Napi::External<p2i8::Act>::New(env, act, [bytes](Napi::Env e, p2i8::Act* p) {
            Napi::MemoryManagement::AdjustExternalMemory(e, -bytes);
            delete p;
          }));
    return r;
  });
}

// p2i8Gemm: y [M,N] from an operand of p2i8QuantizeOperand (its aop array and handle) and a band weight.
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    const p2i8::Weight& w = *handle<p2i8::Weight>(o, "weight");
    const p2i8::Act& act = *handle<p2i8::Act>(o, "act");
    const int64_t M = num(o, "M");
    if (M != act.M || num(o, "K") != w.K) throw KernelError("p2i8Gemm: operand shape mismatch");
    p2i8::GemmArgs g{};
    g.act = &act;
    g.abr = w.Kt > w.K ? aligned(arr<uint16_t>(o, "aop", p2::round_up(M, 32) * w.Kt + 32)) : nullptr;
    g.sx = arr<float>(o, "sx", M);
    gemm_out(o, g, w, M);
#if SVDQ_X86
    p2i8::gemm(g);
#else
    throw KernelError("p2i8: the AMX-INT8 int4p2 kernels need an x86-64 CPU with AMX");
#endif
    return env.Undefined();
  });
}

// Whether forward() of a layer with a band weight takes the AMX-INT8 path now: the active ISA is AMX (setIsa /
// SVDQ_KERNELS_ISA) and the CPU has AMX-INT8 and AMX-BF16 with the tile state granted.
Napi::Value Available(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    return Napi::Boolean::New(env, p2::gemm_path() == 3 && p2i8::available());
  });
}

}  // namespace

namespace svdq {
void register_p2_int8(Napi::Env env, Napi::Object exports) {
  exports.Set("p2i8PackWeight", Napi::Function::New(env, PackWeight));
  exports.Set("p2i8Forward", Napi::Function::New(env, Forward));
  exports.Set("p2i8QuantizeOperand", Napi::Function::New(env, QuantizeOperand));
  exports.Set("p2i8Gemm", Napi::Function::New(env, Gemm));
  exports.Set("p2i8Available", Napi::Function::New(env, Available));
}
}  // namespace svdq
