// Node-API binding of kernels/cuda (svdq_cuda.h): device buffers owned by JS objects (freed by free() or, failing
// that, by the garbage collector), upload/download, the W4A4 kernels, the cuBLAS peer GEMM and event timing.
// Every CUDA call is checked; a failure throws a JS Error whose message names the call.
#include <cuda_runtime.h>

#include <napi.h>

#include <string>

#include "p2_fp8.h"
#include "svdq_cuda.h"

namespace {

// Stream the kernels are enqueued on: the legacy default stream, or the capture stream inside timeGraphMs.
cudaStream_t g_stream = nullptr;

void check(Napi::Env env, cudaError_t e, const char* call) {
  if (e != cudaSuccess) {
    throw Napi::Error::New(env, std::string(call) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
  }
}
void check_msg(Napi::Env env, const char* msg) {
  if (msg != nullptr) throw Napi::Error::New(env, msg);
}

class DeviceBuffer : public Napi::ObjectWrap<DeviceBuffer> {
 public:
  static Napi::FunctionReference* ctor;

  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "DeviceBuffer",
                                   {InstanceMethod("upload", &DeviceBuffer::Upload),
                                    InstanceMethod("download", &DeviceBuffer::Download),
                                    InstanceMethod("fill", &DeviceBuffer::Fill),
                                    InstanceMethod("free", &DeviceBuffer::Free),
                                    InstanceAccessor("byteLength", &DeviceBuffer::ByteLength, nullptr),
                                    InstanceAccessor("freed", &DeviceBuffer::Freed, nullptr)});
    ctor = new Napi::FunctionReference(Napi::Persistent(f));
    return f;
  }

  explicit DeviceBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceBuffer>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "DeviceBuffer(byteLength): number expected");
    const double n = info[0].As<Napi::Number>().DoubleValue();
    if (!(n > 0) || n != static_cast<double>(static_cast<size_t>(n)))
      throw Napi::RangeError::New(env, "DeviceBuffer(byteLength): positive integer expected, got " + std::to_string(n));
    bytes_ = static_cast<size_t>(n);
    check(env, cudaMalloc(&ptr_, bytes_), "cudaMalloc");
  }
  ~DeviceBuffer() override {
    if (ptr_) cudaFree(ptr_);  // GC fallback; errors cannot be reported from a finalizer
  }

  void* ptr(Napi::Env env, const char* name) const {
    if (!ptr_) throw Napi::Error::New(env, std::string(name) + ": device buffer was freed");
    return ptr_;
  }
  size_t bytes() const { return bytes_; }

 private:
  Napi::Value Upload(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray()) throw Napi::TypeError::New(env, "upload(data): typed array expected");
    auto ta = info[0].As<Napi::TypedArray>();
    const size_t off = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
    const size_t n = ta.ByteLength();
    if (off + n > bytes_)
      throw Napi::RangeError::New(env, "upload: " + std::to_string(n) + " bytes at offset " + std::to_string(off) +
                                           " exceed the buffer's " + std::to_string(bytes_));
    const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    check(env, cudaMemcpy(static_cast<uint8_t*>(ptr(env, "upload")) + off, src, n, cudaMemcpyHostToDevice),
          "cudaMemcpy(HostToDevice)");
    return env.Undefined();
  }
  Napi::Value Download(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const size_t n = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int64Value() : bytes_;
    if (n > bytes_) throw Napi::RangeError::New(env, "download: more bytes than the buffer holds");
    Napi::ArrayBuffer out = Napi::ArrayBuffer::New(env, n);
    check(env, cudaMemcpy(out.Data(), ptr(env, "download"), n, cudaMemcpyDeviceToHost), "cudaMemcpy(DeviceToHost)");
    return out;
  }
  Napi::Value Fill(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int v = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    check(env, cudaMemset(ptr(env, "fill"), v & 0xff, bytes_), "cudaMemset");
    return env.Undefined();
  }
  Napi::Value Free(const Napi::CallbackInfo& info) {
    if (ptr_) {
      void* p = ptr_;
      ptr_ = nullptr;
      check(info.Env(), cudaFree(p), "cudaFree");
    }
    return info.Env().Undefined();
  }
  Napi::Value ByteLength(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(bytes_)); }
  Napi::Value Freed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), ptr_ == nullptr); }

  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};
Napi::FunctionReference* DeviceBuffer::ctor = nullptr;

DeviceBuffer* as_buffer(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(DeviceBuffer::ctor->Value()))
    throw Napi::TypeError::New(env, std::string(name) + ": DeviceBuffer expected");
  return DeviceBuffer::Unwrap(v.As<Napi::Object>());
}
// The buffer `key` of `o`, checked to hold at least `need` bytes; NULL when absent and optional.
void* buf(Napi::Env env, Napi::Object o, const char* op, const char* key, size_t need, bool optional = false) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (optional) return nullptr;
    throw Napi::TypeError::New(env, std::string(op) + ": missing buffer " + key);
  }
  DeviceBuffer* b = as_buffer(env, v, key);
  if (b->bytes() < need)
    throw Napi::RangeError::New(env, std::string(op) + ": buffer " + key + " holds " + std::to_string(b->bytes()) +
                                         " bytes, the shapes need " + std::to_string(need));
  return b->ptr(env, key);
}
int int_of(Napi::Env env, Napi::Object o, const char* op, const char* key, int dflt = -1) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) {
    if (dflt >= 0) return dflt;
    throw Napi::TypeError::New(env, std::string(op) + ": missing number " + key);
  }
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string(op) + ": " + key + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<int>(d)) throw Napi::RangeError::New(env, std::string(op) + ": " + key + " must be an integer");
  return static_cast<int>(d);
}
svdq_dtype dtype_of(Napi::Env env, Napi::Object o, const char* op) {
  const std::string s = o.Get("dtype").ToString();
  if (s == "bf16") return SVDQ_BF16;
  if (s == "f16") return SVDQ_F16;
  throw Napi::TypeError::New(env, std::string(op) + ": dtype must be \"bf16\" or \"f16\", got " + s);
}

int format_of(Napi::Env env, Napi::Object o, const char* op, const char* key = "format") {
  const std::string s = o.Get(key).ToString();
  if (s == "s4") return SVDQ_CODES_S4;
  if (s == "s8") return SVDQ_CODES_S8;
  if (s == "f8") return SVDQ_CODES_F8;
  throw Napi::TypeError::New(env, std::string(op) + ": " + key + " must be \"s4\", \"s8\" or \"f8\", got " + s);
}

Napi::Value QuantizeAct(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "quantizeAct";
  Napi::Object o = info[0].As<Napi::Object>();
  svdq_quantize_args a{};
  a.dtype = dtype_of(env, o, op);
  a.M = int_of(env, o, op, "M");
  a.K = int_of(env, o, op, "K");
  a.R = int_of(env, o, op, "R", 0);
  a.act_unsigned = o.Get("actUnsigned").ToBoolean() ? 1 : 0;
  a.codes_format = format_of(env, o, op);
  if (a.M <= 0 || a.K <= 0 || a.K % 64 != 0 || a.R < 0)
    throw Napi::RangeError::New(env, std::string(op) + ": bad shape M=" + std::to_string(a.M) +
                                         " K=" + std::to_string(a.K) + " R=" + std::to_string(a.R));
  const size_t Mp = size_t(svdq_pad_m(a.M)), M = size_t(a.M), K = size_t(a.K), R = size_t(a.R);
  a.x = buf(env, o, op, "x", M * K * 2);
  a.smooth = buf(env, o, op, "smooth", K * 2, true);
  a.lora_down = buf(env, o, op, "loraDown", R * K * 2, a.R == 0);
  a.codes = buf(env, o, op, "codes", a.codes_format == SVDQ_CODES_S4 ? Mp * K / 2 : Mp * K);
  a.ascales = buf(env, o, op, "ascales", Mp * (K / 64) * 2);
  a.lora_act = static_cast<float*>(buf(env, o, op, "loraAct", Mp * R * 4, a.R == 0));
  check_msg(env, svdq_quantize_act(&a, g_stream));
  return env.Undefined();
}

Napi::Value GemmW4A4(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "gemmW4A4";
  Napi::Object o = info[0].As<Napi::Object>();
  svdq_gemm_args a{};
  a.dtype = dtype_of(env, o, op);
  a.M = int_of(env, o, op, "M");
  a.N = int_of(env, o, op, "N");
  a.K = int_of(env, o, op, "K");
  a.R = int_of(env, o, op, "R", 0);
  a.act_unsigned = o.Get("actUnsigned").ToBoolean() ? 1 : 0;
  a.gelu = o.Get("gelu").ToBoolean() ? 1 : 0;
  a.block_m = int_of(env, o, op, "blockM", 0);
  a.codes_format = format_of(env, o, op);
  if (a.M <= 0 || a.N <= 0 || a.K <= 0 || a.K % 64 != 0 || a.N % 128 != 0 || a.R < 0)
    throw Napi::RangeError::New(env, std::string(op) + ": bad shape M=" + std::to_string(a.M) + " N=" +
                                         std::to_string(a.N) + " K=" + std::to_string(a.K) + " (N % 128, K % 64)");
  const size_t Mp = size_t(svdq_pad_m(a.M)), M = size_t(a.M), N = size_t(a.N), K = size_t(a.K), R = size_t(a.R);
  a.codes = buf(env, o, op, "codes", a.codes_format == SVDQ_CODES_S4 ? Mp * K / 2 : Mp * K);
  a.ascales = buf(env, o, op, "ascales", Mp * (K / 64) * 2);
  a.qweight = buf(env, o, op, "qweight", N * K / 2);
  a.wscales = buf(env, o, op, "wscales", N * (K / 64) * 2);
  a.lora_act = static_cast<const float*>(buf(env, o, op, "loraAct", Mp * R * 4, a.R == 0));
  a.lora_up = buf(env, o, op, "loraUp", N * R * 2, a.R == 0);
  a.bias = buf(env, o, op, "bias", N * 2, true);
  a.out = buf(env, o, op, "out", M * N * 2);
  a.qweight_wg = buf(env, o, op, "qweightWg", N * K, true);
  a.wscales_wg = buf(env, o, op, "wscalesWg", N * (K / 64) * 4, true);
  // optional quantized output for the next layer (its K is N)
  const bool has_next = !o.Get("nextCodes").IsUndefined() && !o.Get("nextCodes").IsNull();
  a.next_codes_format = has_next ? format_of(env, o, op, "nextFormat") : SVDQ_CODES_S4;
  a.next_codes = buf(env, o, op, "nextCodes", a.next_codes_format == SVDQ_CODES_S4 ? Mp * N / 2 : Mp * N, true);
  if (a.next_codes != nullptr) {
    a.next_R = int_of(env, o, op, "nextR", 0);
    if (a.next_R < 0) throw Napi::RangeError::New(env, std::string(op) + ": nextR=" + std::to_string(a.next_R) + " < 0");
    const size_t NR = size_t(a.next_R);
    a.next_unsigned = o.Get("nextUnsigned").ToBoolean() ? 1 : 0;
    a.next_ascales = buf(env, o, op, "nextAscales", Mp * (N / 64) * 2);
    a.next_smooth = buf(env, o, op, "nextSmooth", N * 2, true);
    a.next_lora_down = buf(env, o, op, "nextLoraDown", NR * N * 2, a.next_R == 0);
    a.next_lora_act = static_cast<float*>(buf(env, o, op, "nextLoraAct", Mp * NR * 4, a.next_R == 0));
  }
  check_msg(env, svdq_gemm_w4a4(&a, g_stream));
  return env.Undefined();
}

Napi::Value RepackWeightWg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "repackWeightWg";
  Napi::Object o = info[0].As<Napi::Object>();
  const svdq_dtype dt = dtype_of(env, o, op);
  const int N = int_of(env, o, op, "N"), K = int_of(env, o, op, "K");
  if (N <= 0 || K <= 0 || N % 128 != 0 || K % 64 != 0)
    throw Napi::RangeError::New(env, std::string(op) + ": bad shape N=" + std::to_string(N) + " K=" +
                                         std::to_string(K) + " (N % 128, K % 64)");
  const size_t n = size_t(N), k = size_t(K);
  void* qw = buf(env, o, op, "qweight", n * k / 2);
  void* ws = buf(env, o, op, "wscales", n * (k / 64) * 2);
  void* qo = buf(env, o, op, "qweightWg", n * k);
  void* so = buf(env, o, op, "wscalesWg", n * (k / 64) * 4);
  check_msg(env, svdq_repack_weight_wg(dt, qw, ws, N, K, qo, so, g_stream));
  return env.Undefined();
}

Napi::Value GemmCublas(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "gemmCublas";
  Napi::Object o = info[0].As<Napi::Object>();
  const svdq_dtype dt = dtype_of(env, o, op);
  const int M = int_of(env, o, op, "M"), N = int_of(env, o, op, "N"), K = int_of(env, o, op, "K");
  if (M <= 0 || N <= 0 || K <= 0) throw Napi::RangeError::New(env, std::string(op) + ": M, N, K must be positive");
  void* x = buf(env, o, op, "x", size_t(M) * K * 2);
  void* w = buf(env, o, op, "w", size_t(N) * K * 2);
  void* out = buf(env, o, op, "out", size_t(M) * N * 2);
  check_msg(env, svdq_gemm_bf16_cublas(dt, x, w, out, M, N, K, g_stream));
  return env.Undefined();
}

Napi::Value GemmCublasInt8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "gemmCublasInt8";
  Napi::Object o = info[0].As<Napi::Object>();
  const int M = int_of(env, o, op, "M"), N = int_of(env, o, op, "N"), K = int_of(env, o, op, "K");
  if (M <= 0 || N <= 0 || K <= 0) throw Napi::RangeError::New(env, std::string(op) + ": M, N, K must be positive");
  void* x = buf(env, o, op, "x", size_t(M) * K);
  void* w = buf(env, o, op, "w", size_t(N) * K);
  void* out = buf(env, o, op, "out", size_t(M) * N * 4);
  check_msg(env, svdq_gemm_s8_cublas(x, w, out, M, N, K, g_stream));
  return env.Undefined();
}

// int4p2 FP8 path (p2_fp8.h): activation quantize (bf16 in: the low-rank down through cuBLAS, then the rows kernel),
// the rows kernel alone, and the cuBLASLt FP8 GEMM (plain, and with output stride / bias / GELU)
void p2_shape(Napi::Env env, const char* op, int M, int K) {
  if (M <= 0 || !svdq_p2_supported_k(K))
    throw Napi::RangeError::New(env, std::string(op) + ": bad shape M=" + std::to_string(M) + " K=" + std::to_string(K) +
                                         " (M > 0, K in 1024, 1152, 3072, 4608, 12288, 15360)");
}

Napi::Value QuantizeActP2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "quantizeActP2";
  Napi::Object o = info[0].As<Napi::Object>();
  svdq_p2_rows_args a{};
  a.M = int_of(env, o, op, "M");
  a.K = int_of(env, o, op, "K");
  const int R = int_of(env, o, op, "R", 0);
  p2_shape(env, op, a.M, a.K);
  if (R != 0 && R != 32) throw Napi::RangeError::New(env, std::string(op) + ": R must be 0 or 32, got " + std::to_string(R));
  const size_t M = size_t(a.M), K = size_t(a.K), r = size_t(R);
  a.x = buf(env, o, op, "x", M * K * 2);
  a.smooth = buf(env, o, op, "smooth", K * 2, true);
  const void* ldn = buf(env, o, op, "loraDown", r * K * 2, R == 0);
  a.lr_shift = static_cast<const int32_t*>(buf(env, o, op, "lrShift", r * 4, true));
  if (a.lr_shift && R == 0) throw Napi::RangeError::New(env, std::string(op) + ": lrShift needs R = 32");
  const size_t Kx = K + (a.lr_shift ? 3 * r : 0);
  a.a8 = buf(env, o, op, "a8", M * Kx);
  a.sx = static_cast<float*>(buf(env, o, op, "sx", M * 4));
  float* lact = static_cast<float*>(buf(env, o, op, "loraAct", M * r * 4, R == 0));
  if (R) check_msg(env, svdq_gemm_cublas_ex(SVDQ_BF16, 1, a.x, a.K, ldn, a.K, lact, R, a.M, R, a.K, 0.f, g_stream));
  a.lora_act = R ? lact : nullptr;
  check_msg(env, svdq_p2_quantize_rows(&a, g_stream));
  return env.Undefined();
}

Napi::Value QuantizeRowsP2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "quantizeRowsP2";
  Napi::Object o = info[0].As<Napi::Object>();
  svdq_p2_rows_args a{};
  a.M = int_of(env, o, op, "M");
  a.K = int_of(env, o, op, "K");
  p2_shape(env, op, a.M, a.K);
  const size_t M = size_t(a.M), K = size_t(a.K);
  a.x = buf(env, o, op, "x", M * K * 2);
  a.smooth = buf(env, o, op, "smooth", K * 2, true);
  a.lora_act = static_cast<const float*>(buf(env, o, op, "loraAct", M * 32 * 4, true));
  a.lr_shift = static_cast<const int32_t*>(buf(env, o, op, "lrShift", 32 * 4, true));
  if ((a.lora_act == nullptr) != (a.lr_shift == nullptr))
    throw Napi::TypeError::New(env, std::string(op) + ": loraAct and lrShift go together (the 3R low-rank columns)");
  const size_t Kx = K + (a.lr_shift ? 96 : 0);
  a.a8 = buf(env, o, op, "a8", M * Kx);
  a.sx = static_cast<float*>(buf(env, o, op, "sx", M * 4));
  a.reference = o.Get("reference").ToBoolean() ? 1 : 0;
  check_msg(env, svdq_p2_quantize_rows(&a, g_stream));
  return env.Undefined();
}

Napi::Value GemmP2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "gemmP2";
  Napi::Object o = info[0].As<Napi::Object>();
  svdq_p2_gemm_args g{};
  g.M = int_of(env, o, op, "M");
  g.N = int_of(env, o, op, "N");
  g.Kx = int_of(env, o, op, "Kx");
  g.ldo = int_of(env, o, op, "ldo", 0);
  const int ldo = g.ldo ? g.ldo : g.N;
  if (g.M <= 0 || g.N <= 0 || g.Kx <= 0 || g.Kx % 16 != 0 || g.N % 8 != 0 || ldo < g.N || ldo % 8 != 0)
    throw Napi::RangeError::New(env, std::string(op) + ": bad shape M=" + std::to_string(g.M) + " N=" +
                                         std::to_string(g.N) + " Kx=" + std::to_string(g.Kx) + " ldo=" +
                                         std::to_string(ldo) + " (Kx % 16, N % 8, ldo >= N, ldo % 8)");
  const size_t m = size_t(g.M), n = size_t(g.N), k = size_t(g.Kx);
  g.a8 = buf(env, o, op, "a8", m * k);
  g.sx = static_cast<const float*>(buf(env, o, op, "sx", m * 4));
  g.b8 = buf(env, o, op, "b8", n * k);
  g.sw = static_cast<const float*>(buf(env, o, op, "sw", n * 4));
  g.out = buf(env, o, op, "out", ((m - 1) * size_t(ldo) + n) * 2);
  g.bias = buf(env, o, op, "bias", n * 2, true);
  g.gelu = o.Get("gelu").ToBoolean() ? 1 : 0;
  g.fast_accum = o.Get("fastAccum").ToBoolean() ? 1 : 0;
  check_msg(env, svdq_p2_gemm_ex(&g, g_stream));
  return env.Undefined();
}

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
  check(env, cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
  r.Set("available", true);
  r.Set("name", std::string(p.name));
  r.Set("computeCapability", p.major * 10 + p.minor);
  r.Set("multiprocessors", p.multiProcessorCount);
  r.Set("l2Bytes", p.l2CacheSize);
  r.Set("defaultFormat", svdq_default_codes_format() == SVDQ_CODES_S8 ? "s8" : "s4");
  r.Set("globalBytes", double(p.totalGlobalMem));
  const char* cb = svdq_cublas_available();
  r.Set("cublas", cb == nullptr ? std::string("ok") : std::string(cb));
  const char* lt = svdq_cublaslt_available();
  r.Set("cublasLt", lt == nullptr ? std::string("ok") : std::string(lt));
  return r;
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  check(info.Env(), cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  return info.Env().Undefined();
}

// timeMs(fn, iterations): milliseconds per call of fn (which enqueues GPU work), between CUDA events.
Napi::Value TimeMs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Function fn = info[0].As<Napi::Function>();
  const int iters = info[1].As<Napi::Number>().Int32Value();
  cudaEvent_t a, b;
  check(env, cudaEventCreate(&a), "cudaEventCreate");
  check(env, cudaEventCreate(&b), "cudaEventCreate");
  check(env, cudaEventRecord(a, nullptr), "cudaEventRecord");
  for (int i = 0; i < iters; i++) fn.Call({});
  check(env, cudaEventRecord(b, nullptr), "cudaEventRecord");
  check(env, cudaEventSynchronize(b), "cudaEventSynchronize");
  float ms = 0;
  check(env, cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return Napi::Number::New(env, ms / iters);
}

// timeGraphMs(fn, iterations): captures the device work fn enqueues into a CUDA graph and returns milliseconds per
// replay (median-free mean over `iterations` replays between events): device time without host launch overhead.
Napi::Value TimeGraphMs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Function fn = info[0].As<Napi::Function>();
  const int iters = info[1].As<Napi::Number>().Int32Value();
  cudaStream_t s = nullptr;
  check(env, cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  check(env, cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
  g_stream = s;
  try {
    fn.Call({});
  } catch (...) {
    g_stream = nullptr;
    cudaStreamEndCapture(s, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaStreamDestroy(s);
    throw;
  }
  g_stream = nullptr;
  check(env, cudaStreamEndCapture(s, &graph), "cudaStreamEndCapture");
  check(env, cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
  for (int i = 0; i < 3; i++) check(env, cudaGraphLaunch(exec, s), "cudaGraphLaunch");
  cudaEvent_t a, b;
  check(env, cudaEventCreate(&a), "cudaEventCreate");
  check(env, cudaEventCreate(&b), "cudaEventCreate");
  check(env, cudaEventRecord(a, s), "cudaEventRecord");
  for (int i = 0; i < iters; i++) check(env, cudaGraphLaunch(exec, s), "cudaGraphLaunch");
  check(env, cudaEventRecord(b, s), "cudaEventRecord");
  check(env, cudaEventSynchronize(b), "cudaEventSynchronize");
  float ms = 0;
  check(env, cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(s);
  return Napi::Number::New(env, ms / iters);
}

Napi::Value PadM(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), svdq_pad_m(info[0].As<Napi::Number>().Int32Value()));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("DeviceBuffer", DeviceBuffer::Init(env));
  exports.Set("quantizeAct", Napi::Function::New(env, QuantizeAct));
  exports.Set("gemmW4A4", Napi::Function::New(env, GemmW4A4));
  exports.Set("gemmCublasInt8", Napi::Function::New(env, GemmCublasInt8));
  exports.Set("gemmCublas", Napi::Function::New(env, GemmCublas));
  exports.Set("repackWeightWg", Napi::Function::New(env, RepackWeightWg));
  exports.Set("quantizeActP2", Napi::Function::New(env, QuantizeActP2));
  exports.Set("quantizeRowsP2", Napi::Function::New(env, QuantizeRowsP2));
  exports.Set("gemmP2", Napi::Function::New(env, GemmP2));
  exports.Set("deviceInfo", Napi::Function::New(env, DeviceInfo));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize));
  exports.Set("timeMs", Napi::Function::New(env, TimeMs));
  exports.Set("timeGraphMs", Napi::Function::New(env, TimeGraphMs));
  exports.Set("padM", Napi::Function::New(env, PadM));
  return exports;
}

}  // namespace

NODE_API_MODULE(svdq_cuda, Init)
