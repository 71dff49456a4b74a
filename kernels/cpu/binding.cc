// Node-API binding of the SVDQuant CPU kernels. Every entry point takes one object of named typed arrays
// and integers. TypeScript validates shapes/dtypes/lengths first (packages/kernels/src/validate.ts); the
// checks here are a second line of defence so a wrong length can never read or write out of bounds.
#include <napi.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common.h"
#include "lowrank_down.h"
#include "napi_args.h"

namespace {

using svdq::KernelError;

using namespace svdq::napi_args;  // num, fnum, flag, arr<T>, guarded, obj0

int64_t pad(int64_t n, int64_t to) { return (n + to - 1) / to * to; }

Napi::Value ActQuant(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    svdq::ActQuantArgs a{};
    a.M = num(o, "M");
    a.K = num(o, "K");
    a.R = num(o, "R");
    if (a.M < 0 || a.K <= 0 || a.K % 64 || a.R < 0) throw KernelError("actQuant: bad M/K/R");
    const bool bf16 = flag(o, "bf16");
    if (bf16)
      a.x_bf16 = arr<uint16_t>(o, "x", a.M * a.K);
    else
      a.x_f32 = arr<float>(o, "x", a.M * a.K);
    a.smooth = arr<float>(o, "smooth", a.K, true);
    a.ldown = a.R ? arr<float>(o, "ldown", a.R * a.K) : nullptr;
    a.format = static_cast<int>(num(o, "format"));
    a.shift = static_cast<float>(fnum(o, "shift"));
    a.codes = arr<int8_t>(o, "codes", a.M * a.K);
    a.scales = arr<float>(o, "scales", a.M * (a.K / 64));
    a.lora_act = a.R ? arr<float>(o, "loraAct", a.M * a.R) : nullptr;
    a.ldown_t = a.R ? svdq::lowrank::aligned_ldt(arr<float>(o, "ldownT", a.K * svdq::lowrank::rank_pad(a.R) + 16, true))
                    : nullptr;
    return Napi::Number::New(env, static_cast<double>(svdq::act_quant(a)));
  });
}

// transposeLowRankDown: L_downᵀ [K][Rp] (lowrank_down.h) written at the first 64-byte aligned element of `out`
// (length ≥ K·Rp + 16), for a layer to prepare once and pass to actQuant / the int4p2 entry points.
Napi::Value TransposeLowRankDown(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    const int64_t R = num(o, "R"), K = num(o, "K");
    if (R <= 0 || K <= 0) throw KernelError("transposeLowRankDown: bad R/K");
    const int64_t Rp = svdq::lowrank::rank_pad(R);
    const float* ld = arr<float>(o, "ldown", R * K);
    float* out = const_cast<float*>(svdq::lowrank::aligned_ldt(arr<float>(o, "out", K * Rp + 16)));
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t r = 0; r < R; ++r) out[k * Rp + r] = ld[r * K + k];
      for (int64_t r = R; r < Rp; ++r) out[k * Rp + r] = 0.f;
    }
    return env.Undefined();
  });
}

Napi::Value GemmW4A4(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    svdq::W4A4Args a{};
    a.M = num(o, "M");
    a.K = num(o, "K");
    a.N = num(o, "N");
    a.R = num(o, "R");
    if (a.M < 0 || a.K <= 0 || a.K % 64 || a.N <= 0 || a.R < 0) throw KernelError("gemmW4A4: bad M/K/N/R");
    const int64_t Np = pad(a.N, 8), G = a.K / 64;
    a.codes = arr<int8_t>(o, "codes", a.M * a.K);
    a.ascales = arr<float>(o, "ascales", a.M * G);
    a.qweight = arr<uint8_t>(o, "qweight", Np * a.K / 2);
    a.wscales = arr<float>(o, "wscales", Np * G);
    if (a.R) {
      a.lora_act = arr<float>(o, "loraAct", a.M * a.R);
      a.lup = arr<float>(o, "lup", Np * a.R);
    }
    a.bias = arr<float>(o, "bias", a.N, true);
    a.gelu = flag(o, "gelu");
    a.y = arr<float>(o, "y", a.M * a.N);
    svdq::gemm_w4a4(a);
    return env.Undefined();
  });
}

Napi::Value GemmF32(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    svdq::F32Args a{};
    a.M = num(o, "M");
    a.K = num(o, "K");
    a.N = num(o, "N");
    if (a.M < 0 || a.K <= 0 || a.N <= 0) throw KernelError("gemmF32: bad M/K/N");
    a.x = arr<float>(o, "x", a.M * a.K);
    a.wpanel = arr<float>(o, "wpanel", pad(a.N, 16) * a.K);
    a.bias = arr<float>(o, "bias", a.N, true);
    a.gelu = flag(o, "gelu");
    a.y = arr<float>(o, "y", a.M * a.N);
    svdq::gemm_f32(a);
    return env.Undefined();
  });
}

Napi::Value GemmW4A16(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    svdq::W4A16Args a{};
    a.M = num(o, "M");
    a.K = num(o, "K");
    a.N = num(o, "N");
    a.G = num(o, "G");
    if (a.M < 0 || a.K <= 0 || a.N <= 0 || a.G <= 0 || a.K % a.G) throw KernelError("gemmW4A16: bad M/K/N/G");
    const int64_t Np = pad(a.N, 16);
    a.x = arr<float>(o, "x", a.M * a.K);
    a.qweight = arr<uint32_t>(o, "qweight", Np / 8 * a.K);
    a.wscales = arr<float>(o, "wscales", Np * (a.K / a.G));
    a.lut = arr<float>(o, "lut", 16);
    a.bias = arr<float>(o, "bias", a.N, true);
    a.y = arr<float>(o, "y", a.M * a.N);
    svdq::gemm_w4a16(a);
    return env.Undefined();
  });
}

Napi::Value GemmW8A8(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    svdq::W8A8Args a{};
    a.M = num(o, "M");
    a.K = num(o, "K");
    a.N = num(o, "N");
    if (a.M < 0 || a.K <= 0 || a.K % 4 || a.N <= 0) throw KernelError("gemmW8A8: bad M/K/N");
    const int64_t Np = pad(a.N, 8);
    a.codes = arr<int8_t>(o, "codes", a.M * a.K);
    a.ascales = arr<float>(o, "ascales", a.M);
    a.qweight = arr<int8_t>(o, "qweight", Np * a.K);
    a.wscales = arr<float>(o, "wscales", Np);
    a.bias = arr<float>(o, "bias", a.N, true);
    a.y = arr<float>(o, "y", a.M * a.N);
    svdq::gemm_w8a8(a);
    return env.Undefined();
  });
}

Napi::Value AttentionF32(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    svdq::AttentionArgs a{};
    a.B = num(o, "B");
    a.Sq = num(o, "Sq");
    a.Skv = num(o, "Skv");
    a.H = num(o, "H");
    a.Dh = num(o, "Dh");
    if (a.B < 0 || a.Sq < 0 || a.Skv <= 0 || a.H <= 0 || a.Dh <= 0) throw KernelError("attentionF32: bad B/Sq/Skv/H/Dh");
    const int64_t d = a.H * a.Dh;
    a.q = arr<float>(o, "q", a.B * a.Sq * d);
    a.k = arr<float>(o, "k", a.B * a.Skv * d);
    a.v = arr<float>(o, "v", a.B * a.Skv * d);
    a.bias = arr<float>(o, "bias", a.B * a.Skv, true);
    a.out = arr<float>(o, "out", a.B * a.Sq * d);
    svdq::attention_f32(a);
    return env.Undefined();
  });
}

Napi::Value ActQuantInt8(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    const int64_t M = num(o, "M"), K = num(o, "K");
    if (M < 0 || K <= 0) throw KernelError("actQuantInt8: bad M/K");
    const int64_t bad =
        svdq::act_quant_int8(arr<float>(o, "x", M * K), M, K, arr<int8_t>(o, "codes", M * K), arr<float>(o, "scales", M));
    return Napi::Number::New(env, static_cast<double>(bad));
  });
}

Napi::Value Gelu(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    const int64_t n = num(o, "n");
    svdq::gelu_inplace(arr<float>(o, "v", n), n);
    return env.Undefined();
  });
}

// Operator 6 (float64 linear algebra, linalg_f64.cc).
Napi::Value CholeskyF64(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    const int64_t n = num(o, "n");
    if (n <= 0) throw KernelError("choleskyF64: bad n");
    double* a = arr<double>(o, "a", n * n);
    return Napi::Number::New(env, static_cast<double>(svdq::cholesky_f64(a, n, fnum(o, "tol"))));
  });
}

Napi::Value PivotedCholeskyF64(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    const int64_t n = num(o, "n");
    if (n <= 0 || n > 2147483647) throw KernelError("pivotedCholeskyF64: bad n");
    double* a = arr<double>(o, "a", n * n);
    int32_t* perm = arr<int32_t>(o, "perm", n);
    return Napi::Number::New(env, static_cast<double>(svdq::pivoted_cholesky_f64(a, n, fnum(o, "tol"), perm)));
  });
}

Napi::Value CongruenceF64(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    const int64_t n = num(o, "n");
    if (n <= 0) throw KernelError("congruenceF64: bad n");
    const double* l = arr<double>(o, "l", n * n);
    const double* s = arr<double>(o, "s", n * n);
    double* m = arr<double>(o, "m", n * n);
    std::vector<double> lz(n * n, 0.0), w(n * n);  // L with its upper triangle zeroed
    for (int64_t i = 0; i < n; ++i) std::copy(l + i * n, l + i * n + i + 1, lz.data() + i * n);
    svdq::congruence_f64(lz.data(), s, n, w.data(), m);
    return env.Undefined();
  });
}

Napi::Value SymEigvalsF64(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    const int64_t n = num(o, "n");
    if (n <= 0) throw KernelError("symEigvalsF64: bad n");
    double* a = arr<double>(o, "a", n * n);
    double* w = arr<double>(o, "w", n);
    std::vector<double> e(n);
    svdq::sym_tridiag_f64(a, n, w, e.data());
    if (!svdq::tridiagonal_ql(w, e.data(), n)) throw KernelError("symEigvalsF64: the tridiagonal QL iteration did not converge");
    return env.Undefined();
  });
}

}  // namespace
namespace svdq {
double peak_ops(int kind, int64_t iters);
void register_residual_quant(Napi::Env env, Napi::Object exports);  // residual_quant.cc
void register_cholqr_f64(Napi::Env env, Napi::Object exports);      // cholqr_f64.cc
void register_gemm_f32_split(Napi::Env env, Napi::Object exports);  // gemm_f32_split_napi.cc
void register_norm_f32(Napi::Env env, Napi::Object exports);        // norm_f32.cc
void register_p2(Napi::Env env, Napi::Object exports);              // binding_p2.cc (the int4p2 layer)
void register_p2_int8(Napi::Env env, Napi::Object exports);         // binding_p2_int8.cc (its AMX-INT8 path)
void register_p2_avx2(Napi::Env env, Napi::Object exports);         // binding_p2_avx2.cc (its AVX2 integer path)
}
namespace {

Napi::Value Peak(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    return Napi::Number::New(env, svdq::peak_ops(static_cast<int>(num(o, "kind")), num(o, "iters")));
  });
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber()) throw KernelError("setThreads(n): n must be a number");
    svdq::set_num_threads(info[0].As<Napi::Number>().Int32Value());
    return Napi::Number::New(env, svdq::num_threads());
  });
}
Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), svdq::num_threads()); }
Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber()) throw KernelError("setIsa(mode): mode must be 0 to 4");
    svdq::set_isa_mode(info[0].As<Napi::Number>().Int32Value());
    return env.Undefined();
  });
}
Napi::Value GetIsa(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), svdq::isa_name(svdq::active_isa()));
}
Napi::Value HasAvx2(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), svdq::cpu_has_avx2_fma()); }
// The native paths this CPU (and OS) can run, best last.
Napi::Value SupportedIsas(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<const char*> names{"scalar"};
  if (svdq::cpu_has_avx2_fma()) names.push_back("avx2");
  if (svdq::cpu_has_avx512_vnni()) names.push_back("avx512");
  if (svdq::cpu_has_amx_int8()) names.push_back("amx");
  Napi::Array out = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); ++i) out.Set(static_cast<uint32_t>(i), Napi::String::New(env, names[i]));
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("actQuant", Napi::Function::New(env, ActQuant));
  exports.Set("transposeLowRankDown", Napi::Function::New(env, TransposeLowRankDown));
  exports.Set("gemmW4A4", Napi::Function::New(env, GemmW4A4));
  exports.Set("gemmF32", Napi::Function::New(env, GemmF32));
  exports.Set("gemmW4A16", Napi::Function::New(env, GemmW4A16));
  exports.Set("gemmW8A8", Napi::Function::New(env, GemmW8A8));
  exports.Set("actQuantInt8", Napi::Function::New(env, ActQuantInt8));
  exports.Set("attentionF32", Napi::Function::New(env, AttentionF32));
  exports.Set("gelu", Napi::Function::New(env, Gelu));
  exports.Set("peak", Napi::Function::New(env, Peak));
  exports.Set("choleskyF64", Napi::Function::New(env, CholeskyF64));
  exports.Set("congruenceF64", Napi::Function::New(env, CongruenceF64));
  exports.Set("pivotedCholeskyF64", Napi::Function::New(env, PivotedCholeskyF64));
  exports.Set("symEigvalsF64", Napi::Function::New(env, SymEigvalsF64));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa));
  exports.Set("getIsa", Napi::Function::New(env, GetIsa));
  exports.Set("hasAvx2", Napi::Function::New(env, HasAvx2));
  exports.Set("supportedIsas", Napi::Function::New(env, SupportedIsas));
  svdq::register_residual_quant(env, exports);
  svdq::register_cholqr_f64(env, exports);
  svdq::register_gemm_f32_split(env, exports);
  svdq::register_norm_f32(env, exports);
  svdq::register_p2(env, exports);
  svdq::register_p2_int8(env, exports);
  svdq::register_p2_avx2(env, exports);
  exports.Set("abiVersion", Napi::Number::New(env, 2));
  return exports;
}

}  // namespace

NODE_API_MODULE(svdquant_kernels, Init)
