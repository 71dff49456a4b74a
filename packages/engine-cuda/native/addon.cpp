// Node-API binding of the engine (kernels/cuda/engine/flux.h, pixart.h): one native Engine object owns every device
// allocation of a model (weights, inputs, output, workspace); free() releases them all at once, the garbage
// collector does it otherwise. Every failure throws a JS Error whose message names the tensor, op or CUDA call.
#include <cuda_runtime.h>

#include <napi.h>

#include <string>
#include <vector>

#include "engine_ops.h"
#include "flux.h"
#include "p2_fp8.h"
#include "pixart.h"
#include "svdq_cuda.h"

namespace {

void check(Napi::Env env, const char* msg) {
  if (msg != nullptr) throw Napi::Error::New(env, msg);
}

class Engine : public Napi::ObjectWrap<Engine> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Engine",
                       {InstanceMethod("alloc", &Engine::Alloc), InstanceMethod("upload", &Engine::Upload),
                        InstanceMethod("download", &Engine::Download), InstanceMethod("fillRandom", &Engine::FillRandom),
                        InstanceMethod("has", &Engine::Has), InstanceMethod("freeTensor", &Engine::FreeTensor),
                        InstanceMethod("setInt", &Engine::SetInt), InstanceMethod("prepareFlux", &Engine::PrepareFlux),
                        InstanceMethod("preparePixArt", &Engine::PreparePixArt),
                        InstanceMethod("step", &Engine::Step), InstanceMethod("stepGraph", &Engine::StepGraph),
                        InstanceMethod("synchronize", &Engine::Synchronize), InstanceMethod("profile", &Engine::Profile),
                        InstanceMethod("bytes", &Engine::Bytes), InstanceMethod("timeSteps", &Engine::TimeSteps),
                        InstanceMethod("attention", &Engine::Attention), InstanceMethod("gemvW4A16", &Engine::GemvW4A16),
                        InstanceMethod("linear", &Engine::Linear), InstanceMethod("observe", &Engine::Observe),
                        InstanceMethod("free", &Engine::Free),
                        InstanceAccessor("freed", &Engine::Freed, nullptr)});
  }
  explicit Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info) {
    check(info.Env(), eng_create(&e_));
  }
  ~Engine() override {
    if (e_) eng_destroy(e_);
  }

 private:
  eng_engine* get(Napi::Env env) {
    if (!e_) throw Napi::Error::New(env, "engine was freed");
    return e_;
  }
  static std::string str(const Napi::CallbackInfo& info, size_t i, const char* what) {
    if (info.Length() <= i || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), std::string(what) + ": string expected");
    return info[i].As<Napi::String>().Utf8Value();
  }
  static double num(const Napi::CallbackInfo& info, size_t i, const char* what) {
    if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + ": number expected");
    return info[i].As<Napi::Number>().DoubleValue();
  }
  void* ptr(Napi::Env env, const std::string& name, size_t* bytes = nullptr) {
    void* p = nullptr;
    size_t b = 0;
    check(env, eng_tensor(get(env), name.c_str(), &p, &b));
    if (bytes) *bytes = b;
    return p;
  }

  Napi::Value Alloc(const Napi::CallbackInfo& info) {
    const std::string name = str(info, 0, "alloc(name, bytes)");
    const double n = num(info, 1, "alloc(name, bytes)");
    if (!(n > 0) || n != double(size_t(n))) throw Napi::RangeError::New(info.Env(), "alloc(" + name + "): bytes must be a positive integer");
    check(info.Env(), eng_alloc(get(info.Env()), name.c_str(), size_t(n), nullptr));
    return info.Env().Undefined();
  }
  Napi::Value Upload(const Napi::CallbackInfo& info) {
    const std::string name = str(info, 0, "upload(name, data)");
    if (info.Length() < 2 || !info[1].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "upload(" + name + "): typed array expected");
    auto ta = info[1].As<Napi::TypedArray>();
    const size_t off = info.Length() > 2 && info[2].IsNumber() ? size_t(info[2].As<Napi::Number>().Int64Value()) : 0;
    const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    check(info.Env(), eng_upload(get(info.Env()), name.c_str(), src, ta.ByteLength(), off));
    return info.Env().Undefined();
  }
  Napi::Value Download(const Napi::CallbackInfo& info) {
    const std::string name = str(info, 0, "download(name)");
    size_t bytes = 0;
    ptr(info.Env(), name, &bytes);
    if (info.Length() > 1 && info[1].IsNumber()) bytes = size_t(info[1].As<Napi::Number>().Int64Value());
    Napi::ArrayBuffer out = Napi::ArrayBuffer::New(info.Env(), bytes);
    check(info.Env(), eng_download(get(info.Env()), name.c_str(), out.Data(), bytes));
    return out;
  }
  // fillRandom(name, kind "bf16" | "f32" | "bytes", seed, center, scale)
  Napi::Value FillRandom(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string name = str(info, 0, "fillRandom"), kind = str(info, 1, "fillRandom");
    const uint32_t seed = uint32_t(num(info, 2, "fillRandom seed"));
    size_t bytes = 0;
    char* p = static_cast<char*>(ptr(env, name, &bytes));
    const int dt = kind == "bf16" ? 0 : kind == "f32" ? 1 : kind == "bytes" ? 2 : kind == "e4m3" ? 3 : -1;
    if (dt < 0) throw Napi::TypeError::New(env, "fillRandom(" + name + "): kind must be bf16, f32, e4m3 or bytes");
    const size_t item = dt == 0 ? 2 : dt == 1 ? 4 : 1;
    // optional (byteOffset, count): fill count items from byteOffset (a parameter stacked into a fused tensor)
    const size_t off = info.Length() > 5 && info[5].IsNumber() ? size_t(info[5].As<Napi::Number>().Int64Value()) : 0;
    size_t count = info.Length() > 6 && info[6].IsNumber() ? size_t(info[6].As<Napi::Number>().Int64Value()) : 0;
    if (off > bytes) throw Napi::RangeError::New(env, "fillRandom(" + name + "): byteOffset past the tensor");
    if (count == 0) count = (bytes - off) / item;
    if (off + count * item > bytes) throw Napi::RangeError::New(env, "fillRandom(" + name + "): range past the tensor");
    if (dt == 2) {
      check(env, eng_fill_random_bytes(p + off, count, seed, nullptr));
    } else {
      const float center = float(num(info, 3, "fillRandom center")), scale = float(num(info, 4, "fillRandom scale"));
      check(env, eng_fill_random(p + off, count, dt == 3 ? 2 : dt, seed, center, scale, nullptr));
    }
    const cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) throw Napi::Error::New(env, std::string("fillRandom: cudaDeviceSynchronize: ") + cudaGetErrorName(e));
    return env.Undefined();
  }
  Napi::Value Has(const Napi::CallbackInfo& info) {
    void* p = nullptr;
    size_t b = 0;
    return Napi::Boolean::New(info.Env(), eng_tensor(get(info.Env()), str(info, 0, "has").c_str(), &p, &b) == nullptr);
  }
  Napi::Value FreeTensor(const Napi::CallbackInfo& info) {
    check(info.Env(), eng_free_tensor(get(info.Env()), str(info, 0, "freeTensor").c_str()));
    return info.Env().Undefined();
  }
  Napi::Value SetInt(const Napi::CallbackInfo& info) {
    eng_set_int(get(info.Env()), str(info, 0, "setInt").c_str(), int(num(info, 1, "setInt")));
    return info.Env().Undefined();
  }
  Napi::Value PrepareFlux(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "prepareFlux(config, B, St, Si)");
    Napi::Object o = info[0].As<Napi::Object>();
    auto gi = [&](const char* k) {
      Napi::Value v = o.Get(k);
      if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("prepareFlux: config.") + k + " must be a number");
      return v.As<Napi::Number>().Int32Value();
    };
    eng_flux_config c{};
    c.heads = gi("heads");
    c.head_dim = gi("headDim");
    c.in_channels = gi("inChannels");
    c.out_channels = gi("outChannels");
    c.joint_dim = gi("jointDim");
    c.pooled_dim = gi("pooledDim");
    c.num_layers = gi("numLayers");
    c.num_single_layers = gi("numSingleLayers");
    c.guidance = gi("guidance");
    c.axes[0] = gi("axes0");
    c.axes[1] = gi("axes1");
    c.axes[2] = gi("axes2");
    check(env, eng_flux_prepare(get(env), &c, int(num(info, 1, "B")), int(num(info, 2, "St")), int(num(info, 3, "Si"))));
    return env.Undefined();
  }
  Napi::Value PreparePixArt(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "preparePixArt(config, B, St, Si)");
    Napi::Object o = info[0].As<Napi::Object>();
    auto gn = [&](const char* k) {
      Napi::Value v = o.Get(k);
      if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("preparePixArt: config.") + k + " must be a number");
      return v.As<Napi::Number>();
    };
    eng_pixart_config c{};
    c.heads = gn("heads").Int32Value();
    c.head_dim = gn("headDim").Int32Value();
    c.patch_channels = gn("patchChannels").Int32Value();
    c.out_channels = gn("outChannels").Int32Value();
    c.caption_channels = gn("captionChannels").Int32Value();
    c.cross_dim = gn("crossDim").Int32Value();
    c.num_layers = gn("numLayers").Int32Value();
    c.norm_eps = gn("normEps").FloatValue();
    check(env, eng_pixart_prepare(get(env), &c, int(num(info, 1, "B")), int(num(info, 2, "St")), int(num(info, 3, "Si"))));
    return env.Undefined();
  }
  Napi::Value Step(const Napi::CallbackInfo& info) {
    const bool prof = info.Length() > 0 && info[0].ToBoolean();
    check(info.Env(), eng_flux_step(get(info.Env()), prof ? 1 : 0));
    return info.Env().Undefined();
  }
  Napi::Value StepGraph(const Napi::CallbackInfo& info) {
    check(info.Env(), eng_flux_step_graph(get(info.Env())));
    return info.Env().Undefined();
  }
  Napi::Value Synchronize(const Napi::CallbackInfo& info) {
    check(info.Env(), eng_synchronize(get(info.Env())));
    return info.Env().Undefined();
  }
  Napi::Value Profile(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* names[32];
    double ms[32];
    int counts[32];
    int n = 0;
    check(env, eng_profile(get(env), names, ms, counts, &n));
    Napi::Array out = Napi::Array::New(env, n);
    for (int i = 0; i < n; i++) {
      Napi::Object r = Napi::Object::New(env);
      r.Set("op", names[i]);
      r.Set("ms", ms[i]);
      r.Set("count", counts[i]);
      out.Set(uint32_t(i), r);
    }
    return out;
  }
  Napi::Value Bytes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t w = 0, ws = 0, pk = 0;
    eng_bytes(get(env), &w, &ws, &pk);
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    Napi::Object r = Napi::Object::New(env);
    r.Set("weights", double(w));
    r.Set("workspace", double(ws));
    r.Set("peak", double(pk));
    r.Set("deviceFree", double(fr));
    r.Set("deviceTotal", double(tot));
    return r;
  }
  Napi::Value TimeSteps(const Napi::CallbackInfo& info) {
    double ms = 0;
    check(info.Env(), eng_time_steps(get(info.Env()), int(num(info, 0, "timeSteps(iters, graph)")),
                                     info.Length() > 1 && info[1].ToBoolean() ? 1 : 0, &ms));
    return Napi::Number::New(info.Env(), ms);
  }
  // attention(q, k, v, out, B, H, S, Dh): out [B, S, H·Dh] from [B, H, S, Dh] operands (all named tensors)
  Napi::Value Attention(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int B = int(num(info, 4, "B")), H = int(num(info, 5, "H")), S = int(num(info, 6, "S")), Dh = int(num(info, 7, "Dh"));
    size_t bq, bk, bv, bo;
    void* q = ptr(env, str(info, 0, "q"), &bq);
    void* k = ptr(env, str(info, 1, "k"), &bk);
    void* v = ptr(env, str(info, 2, "v"), &bv);
    void* o = ptr(env, str(info, 3, "out"), &bo);
    const size_t need = size_t(B) * H * S * Dh * 2;
    if (bq < need || bk < need || bv < need || bo < need) throw Napi::RangeError::New(env, "attention: tensors smaller than B·H·S·Dh bf16");
    check(env, eng_attention(q, k, v, B, H, S, Dh, 0, nullptr, o, H * Dh, nullptr));
    const cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) throw Napi::Error::New(env, std::string("attention: ") + cudaGetErrorName(e));
    return env.Undefined();
  }
  // gemvW4A16(x, codes, scales, zeros, bias | "", out, M, K, N, variant = 0): variant 0 auto, 1 CUDA cores, 2 mma
  Napi::Value GemvW4A16(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int M = int(num(info, 6, "M")), K = int(num(info, 7, "K")), N = int(num(info, 8, "N"));
    const int variant = info.Length() > 9 && info[9].IsNumber() ? info[9].As<Napi::Number>().Int32Value() : 0;
    const std::string bn = str(info, 4, "bias");
    check(env, eng_gemv_w4a16_variant(ptr(env, str(info, 0, "x")), M, K,
                                      static_cast<const uint8_t*>(ptr(env, str(info, 1, "codes"))),
                                      ptr(env, str(info, 2, "scales")), ptr(env, str(info, 3, "zeros")),
                                      bn.empty() ? nullptr : ptr(env, bn), N, ptr(env, str(info, 5, "out")), variant,
                                      nullptr));
    const cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) throw Napi::Error::New(env, std::string("gemvW4A16: ") + cudaGetErrorName(e));
    return env.Undefined();
  }
  // linear(layer, N, K, x, out, M, act = 0): one layer of the prepared model on named tensors (act: eng_act)
  Napi::Value Linear(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int act = info.Length() > 6 && info[6].IsNumber() ? info[6].As<Napi::Number>().Int32Value() : 0;
    if (act < 0 || act > 2) throw Napi::RangeError::New(env, "linear: act must be 0 (none), 1 (GELU-tanh) or 2 (SiLU)");
    check(env, eng_linear_act(get(env), str(info, 0, "layer").c_str(), int(num(info, 1, "N")), int(num(info, 2, "K")),
                              str(info, 3, "x").c_str(), str(info, 4, "out").c_str(), int(num(info, 5, "M")), act));
    return env.Undefined();
  }
  // observe(layers: string[], K: number[], capacity): the calibration observer's slots (flux.h eng_observe)
  Napi::Value Observe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsArray())
      throw Napi::TypeError::New(env, "observe(layers, K, capacity): arrays expected");
    auto la = info[0].As<Napi::Array>();
    auto ka = info[1].As<Napi::Array>();
    if (la.Length() != ka.Length()) throw Napi::RangeError::New(env, "observe: layers and K differ in length");
    std::vector<std::string> names;
    std::vector<const char*> ptrs;
    std::vector<int> K;
    for (uint32_t i = 0; i < la.Length(); i++) {
      Napi::Value v = la.Get(i);
      Napi::Value k = ka.Get(i);
      if (!v.IsString() || !k.IsNumber()) throw Napi::TypeError::New(env, "observe: layer names and K numbers expected");
      names.push_back(v.As<Napi::String>().Utf8Value());
      K.push_back(int(k.As<Napi::Number>().Int32Value()));
    }
    for (const auto& n : names) ptrs.push_back(n.c_str());
    check(env, eng_observe(get(env), int(names.size()), ptrs.data(), K.data(), int(num(info, 2, "capacity"))));
    return env.Undefined();
  }
  Napi::Value Free(const Napi::CallbackInfo& info) {
    if (e_) {
      eng_destroy(e_);
      e_ = nullptr;
    }
    return info.Env().Undefined();
  }
  Napi::Value Freed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), e_ == nullptr); }

  eng_engine* e_ = nullptr;
};

Napi::Value DeviceInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  Napi::Object r = Napi::Object::New(env);
  if (e != cudaSuccess || count == 0) {
    r.Set("available", false);
    r.Set("reason", e != cudaSuccess ? std::string("cudaGetDeviceCount: ") + cudaGetErrorName(e) : "no CUDA device");
    return r;
  }
  cudaDeviceProp p{};
  cudaGetDeviceProperties(&p, 0);
  r.Set("available", true);
  r.Set("name", std::string(p.name));
  r.Set("computeCapability", p.major * 10 + p.minor);
  const char* cb = svdq_cublas_available();
  r.Set("cublas", cb == nullptr ? std::string("ok") : std::string(cb));
  const char* lt = svdq_cublaslt_available();
  r.Set("cublasLt", lt == nullptr ? std::string("ok") : std::string(lt));
  size_t fr = 0, tot = 0;
  cudaMemGetInfo(&fr, &tot);
  r.Set("globalBytes", double(tot));
  return r;
}

// Whether the int4p2 FP8 kernels take in-features K (p2_fp8.h svdq_p2_supported_k): the loader's one source of the
// list, so a checkpoint layer the engine cannot run is named before anything is uploaded. Needs no device.
Napi::Value P2SupportedK(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "p2SupportedK(K: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Boolean::New(env, svdq_p2_supported_k(info[0].As<Napi::Number>().Int32Value()) != 0);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", Engine::Init(env));
  exports.Set("deviceInfo", Napi::Function::New(env, DeviceInfo));
  exports.Set("p2SupportedK", Napi::Function::New(env, P2SupportedK));
  return exports;
}

}  // namespace

NODE_API_MODULE(svdq_engine, Init)
