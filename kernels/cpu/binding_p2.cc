// Node-API entry points of the int4p2 layer (p2_layer.h), registered by binding.cc. TypeScript validates every
// argument first (packages/kernels/src/p2-layer.ts); the length checks here keep a wrong call from reading or
// writing out of bounds.
#include <napi.h>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "binding_p2_args.h"
#include "lowrank_down.h"
#include "napi_args.h"
#include "p2_layer.h"

namespace {

using svdq::KernelError;

using namespace svdq::napi_args;  // num, fnum, flag, arr<T>, guarded, obj0
using namespace svdq::p2::napi;   // dims, aligned, branch_of, common_quant, pack_args

// Transparent huge pages for the GEMM operands: the whole 2 MiB pages inside [p, p + bytes) are marked
// MADV_HUGEPAGE (this Linux's THP mode is `madvise`), so that pages first touched afterwards come as 2 MiB pages.
// The AMX int4p2 GEMM streams its operands in K chunks with a 2·Kt-byte row stride (24.6 KiB at K = 12288), one
// 4 KiB page per row and chunk: with 2 MiB pages it ran 3–10 % faster (1 thread, kernel_times p2 HUGE=1,
// docs/benchmarks.md "int4p2 GEMM, second round"). Only a hint: without THP nothing changes.
constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
void advise_huge(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHugePage - 1);
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

// Packed weight elements (p2_layer.h wop) and the 64-byte alignment slack the caller adds.
int64_t wop_len(int64_t N, int64_t K, int64_t R, svdq::p2::Branch b) {
  return svdq::p2::round_up(N, 32) * svdq::p2::kt_of(K, R, b);
}

// p2PackWeight: writes the packed operand at the first 64-byte aligned element of `wop` (length ≥ len + 32) and
// returns that element offset.
Napi::Value PackWeight(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    svdq::p2::PackArgs a = pack_args(o, "p2PackWeight");
    uint16_t* w = arr<uint16_t>(o, "wop", wop_len(a.N, a.K, a.R, a.branch) + 32);
    const int64_t off = static_cast<int64_t>((64 - reinterpret_cast<uintptr_t>(w) % 64) % 64 / 2);
    if (reinterpret_cast<uintptr_t>(w) % 2) throw KernelError("p2PackWeight: wop is not 2-byte aligned");
    a.wop = w + off;
    // A fresh Uint16Array's pages are usually not touched yet (calloc of an mmap'd block): the packer's writes then
    // fault them in as 2 MiB pages.
    advise_huge(w, static_cast<size_t>(wop_len(a.N, a.K, a.R, a.branch) + 32) * 2);
    a.sw = arr<float>(o, "sw", svdq::p2::round_up(a.N, 32));
    svdq::p2::pack_weight(a);
    return Napi::Number::New(env, static_cast<double>(off));
  });
}

// p2PackDownBf16: bf16(L_down) as the AMX B tiles (p2_layer.h ldb) into the caller's ldb (Uint16Array of
// K·roundUp(R, 16) + 32 elements), once per layer of branch precision bf16.
Napi::Value PackDownBf16(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    const int64_t K = num(o, "K"), R = num(o, "R");
    dims(0, K, 1, R, "p2PackDownBf16");
    if (R == 0) throw KernelError("p2PackDownBf16: R = 0");
    const float* ld = arr<float>(o, "lowRankDown", R * K);
    svdq::p2::pack_down_bf16(ld, R, K, aligned(arr<uint16_t>(o, "ldb", svdq::p2::down_bf16_len(K, R) + 32)));
    return env.Undefined();
  });
}

// p2Quantize: codes [M,K], exponents [M,K/64], rowScales [M], loraAct [M,R]; returns quantize()'s status.
Napi::Value Quantize(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    svdq::p2::QuantArgs q{};
    common_quant(o, q, 1);
    q.codes = arr<int8_t>(o, "codes", q.M * q.K);
    q.exponents = arr<int8_t>(o, "exponents", q.M * (q.K / 64));
    q.row_scales = arr<float>(o, "rowScales", q.M);
    q.lora_act = q.R ? arr<float>(o, "loraAct", q.M * q.R) : nullptr;
    return Napi::Number::New(env, static_cast<double>(svdq::p2::quantize(q)));
  });
}

// The activation operand of p2Forward: 2 MiB aligned (a tile row straddling two cache lines loads at half rate; whole
// huge pages, see advise_huge), grown to the largest call (zero-filled, old contents dropped) and reused; one forward
// at a time.
struct OperandBuffer {
  void* raw = nullptr;
  uint16_t* p = nullptr;
  int64_t cap = 0;  // elements
  uint16_t* get(int64_t n) {
    if (n <= cap) return p;
    std::free(raw);
    raw = nullptr;
    p = nullptr;
    cap = 0;
    const size_t bytes = (static_cast<size_t>(n) * 2 + kHugePage - 1) & ~(kHugePage - 1);
    raw = std::malloc(bytes + kHugePage);
    if (!raw) throw KernelError("p2Forward: out of memory for the activation operand");
    p = reinterpret_cast<uint16_t*>((reinterpret_cast<uintptr_t>(raw) + kHugePage - 1) & ~(kHugePage - 1));
    advise_huge(p, bytes);
    std::memset(p, 0, bytes);
    cap = static_cast<int64_t>(bytes / 2);
    return p;
  }
};
std::mutex g_mu;
OperandBuffer g_aop;
std::vector<float> g_sx;


void gemm_args(const Napi::Object& o, svdq::p2::GemmArgs& g, int64_t M, int64_t K, int64_t N, int64_t R) {
  const int64_t off = num(o, "wopOffset");
  if (off < 0 || off > 32) throw KernelError("p2: bad wopOffset");
  const svdq::p2::Branch b = branch_of(o);
  g.wop = arr<uint16_t>(o, "wop", wop_len(N, K, R, b) + off) + off;
  g.sw = arr<float>(o, "sw", svdq::p2::round_up(N, 32));
  g.bias = arr<float>(o, "bias", N, true);
  Napi::Value gl = o.Get("gelu");
  g.gelu = gl.IsBoolean() && gl.As<Napi::Boolean>().Value();
  g.y = arr<float>(o, "y", M * N);
  g.M = M;
  g.N = N;
  g.Kt = svdq::p2::kt_of(K, R, b);
}

// p2QuantizeOperand: the activation operand of x into the caller's aop (Uint16Array of Mp·Kt + 32 elements, written
// from its first 64-byte aligned element) and sx [M]; returns quantize()'s status.
Napi::Value QuantizeOperand(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    svdq::p2::QuantArgs q{};
    common_quant(o, q, 1);
    const int64_t Kt = svdq::p2::kt_of(q.K, q.R, q.branch), Mp = svdq::p2::round_up(q.M, 32);
    q.aop = aligned(arr<uint16_t>(o, "aop", Mp * Kt + 32));
    advise_huge(q.aop, static_cast<size_t>(Mp * Kt) * 2);
    q.sx = arr<float>(o, "sx", q.M);
    return Napi::Number::New(env, static_cast<double>(svdq::p2::quantize(q)));
  });
}

// p2Gemm: y [M,N] from an operand of p2QuantizeOperand (the same aop array) and a packed weight.
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    const int64_t M = num(o, "M"), K = num(o, "K"), N = num(o, "N"), R = num(o, "R");
    dims(M, K, N, R, "p2Gemm");
    svdq::p2::GemmArgs g{};
    gemm_args(o, g, M, K, N, R);
    g.aop = aligned(arr<uint16_t>(o, "aop", svdq::p2::round_up(M, 32) * g.Kt + 32));
    g.sx = arr<float>(o, "sx", M);
    svdq::p2::gemm(g);
    return env.Undefined();
  });
}

// p2Forward: quantize + GEMM into y [M,N]; returns quantize()'s status (y is not written unless it is −1).
Napi::Value Forward(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    svdq::p2::QuantArgs q{};
    const int64_t N = num(o, "N");
    common_quant(o, q, N);
    const int64_t Kt = svdq::p2::kt_of(q.K, q.R, q.branch), Mp = svdq::p2::round_up(q.M, 32);
    svdq::p2::GemmArgs g{};
    gemm_args(o, g, q.M, q.K, N, q.R);
    std::lock_guard<std::mutex> lock(g_mu);
    if (static_cast<int64_t>(g_sx.size()) < q.M) g_sx.resize(q.M);
    q.aop = g_aop.get(Mp * Kt);
    q.sx = g_sx.data();
    const int64_t st = svdq::p2::quantize(q);
    if (st != -1) return Napi::Number::New(env, static_cast<double>(st));
    g.aop = q.aop;
    g.sx = q.sx;
    svdq::p2::gemm(g);
    return Napi::Number::New(env, -1);
  });
}

Napi::Value GemmPath(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    static const char* names[] = {"scalar-f32", "avx2-f32", "avx512-f32", "amx-bf16"};
    return Napi::String::New(env, names[svdq::p2::gemm_path()]);
  });
}

Napi::Value PeakBf16(const Napi::CallbackInfo& info) {
  return guarded(info, [&](Napi::Env env) -> Napi::Value {
    auto o = obj0(info);
    return Napi::Number::New(env, svdq::p2::peak_bf16(static_cast<int>(num(o, "kind")), num(o, "iters")));
  });
}

}  // namespace

namespace svdq {
void register_p2(Napi::Env env, Napi::Object exports) {
  exports.Set("p2PackWeight", Napi::Function::New(env, PackWeight));
  exports.Set("p2PackDownBf16", Napi::Function::New(env, PackDownBf16));
  exports.Set("p2Quantize", Napi::Function::New(env, Quantize));
  exports.Set("p2Forward", Napi::Function::New(env, Forward));
  exports.Set("p2QuantizeOperand", Napi::Function::New(env, QuantizeOperand));
  exports.Set("p2Gemm", Napi::Function::New(env, Gemm));
  exports.Set("p2GemmPath", Napi::Function::New(env, GemmPath));
  exports.Set("peakBf16", Napi::Function::New(env, PeakBf16));
}
}  // namespace svdq
