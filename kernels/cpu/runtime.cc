// Thread pool, ISA dispatch and small shared helpers of the SVDQuant CPU kernels.
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <string>
#include <vector>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "common.h"
#include "simd.h"

namespace svdq {

bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512_vnni() {
#if defined(__x86_64__)
  __builtin_cpu_init();  // __builtin_cpu_supports checks XCR0 (OS-enabled ZMM/opmask state) for AVX-512 too
  return cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

namespace {
#if defined(SVDQ_EMU_AMX)
// A test build with the tiles emulated in software (tools/avx512-emu/emu.h defines SVDQ_EMU_AMX): AMX is "there"
// wherever that build runs. Never defined in the shipped addon.
bool cpuid_amx_int8() { return true; }
bool cpuid_amx_bf16() { return true; }
bool request_amx_state() { return true; }
#elif defined(__x86_64__)
// CPUID.(EAX=7,ECX=0):EDX bit 24 AMX-TILE, bit 25 AMX-INT8 (Intel SDM vol. 2A, CPUID).
bool cpuid_amx_int8() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
  return ((d >> 24) & 1) && ((d >> 25) & 1);
}
// CPUID.(EAX=7,ECX=0):EDX bit 22 AMX-BF16 (Intel SDM vol. 2A, CPUID).
bool cpuid_amx_bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
  return ((d >> 22) & 1) != 0;
}

// Linux keeps the 8 KiB AMX tile data (XFEATURE_XTILEDATA = 18) disabled until the process asks for it with
// arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023, 18) (Linux 5.16+, Documentation/arch/x86/xstate.rst); the grant
// covers every thread of the process. Without it the first tile instruction raises SIGILL.
bool request_amx_state() {
#if defined(__linux__) && defined(__x86_64__)
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}
#endif  // defined(__x86_64__)
}  // namespace

bool cpu_has_amx_int8() {
#if defined(__x86_64__)
  static const bool ok = cpu_has_avx512_vnni() && cpuid_amx_int8() && request_amx_state();
  return ok;
#else
  return false;
#endif
}

bool cpu_has_amx_bf16() {
#if defined(__x86_64__)
  static const bool ok = cpu_has_amx_int8() && cpuid_amx_bf16();
  return ok;
#else
  return false;
#endif
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Amx: return "amx";
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

namespace {
Isa best_isa() {
  static const Isa best = cpu_has_amx_int8()      ? Isa::Amx
                          : cpu_has_avx512_vnni() ? Isa::Avx512
                          : cpu_has_avx2_fma()    ? Isa::Avx2
                                                  : Isa::Scalar;
  return best;
}
std::atomic<int> g_isa{-1};  // the forced path, or -1 for auto
}  // namespace

void set_isa_mode(int mode) {
  if (mode < 0 || mode > 4)
    throw KernelError("isa mode must be 0 (auto), 1 (scalar), 2 (avx2), 3 (avx512) or 4 (amx)");
  if (mode == 0) {
    g_isa.store(-1);
    return;
  }
  const Isa want = static_cast<Isa>(mode - 1);
  if (static_cast<int>(want) > static_cast<int>(best_isa()))
    throw KernelError(std::string("this CPU (or OS) cannot run the ") + isa_name(want) + " path; the best it has is " +
                      isa_name(best_isa()));
  g_isa.store(static_cast<int>(want));
}
Isa active_isa() {
  const int forced = g_isa.load(std::memory_order_relaxed);
  return forced < 0 ? best_isa() : static_cast<Isa>(forced);
}

float round_even(float v) { return std::nearbyint(v); }  // default FE_TONEAREST: ties to even

// ---- pool ----
namespace {
class Pool {
 public:
  ~Pool() { stop(); }
  int size() {
    std::lock_guard<std::mutex> g(api_);
    return total_;
  }
  // When the OS refuses a thread, the pool goes back to its previous size (or to the caller alone) and throws: it
  // never claims workers it does not have (run() would wait for them forever).
  void resize(int n) {
    std::lock_guard<std::mutex> g(api_);
    const int before = total_;
    n = n < 1 ? 1 : n;
    try {
      start(n);
    } catch (const std::exception& e) {
      try {
        start(before);
      } catch (const std::exception&) {
        start(1);
      }
      throw KernelError("cannot start " + std::to_string(n) + " threads (" + e.what() + "); the pool keeps " +
                        std::to_string(total_));
    }
  }
  void run(int64_t tasks, const std::function<void(int64_t, int)>& fn) {
    std::lock_guard<std::mutex> g(api_);
    if (tasks <= 0) return;
    if (total_ == 1 || tasks == 1) {
      for (int64_t t = 0; t < tasks; ++t) fn(t, 0);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(m_);
      fn_ = &fn;
      tasks_ = tasks;
      next_.store(0);
      error_ = nullptr;
      busy_ = total_ - 1;
      ++gen_;
    }
    cv_.notify_all();
    work(0);
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [this] { return busy_ == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work(int thread) {
    for (;;) {
      int64_t t = next_.fetch_add(1);
      if (t >= tasks_) break;
      try {
        (*fn_)(t, thread);
      } catch (...) {
        std::lock_guard<std::mutex> lk(m_);
        if (!error_) error_ = std::current_exception();
        next_.store(tasks_);
      }
    }
  }
  // seen: the generation the worker last ran (at start: the current one, so a worker started by resize() between
  // two runs joins the next run only — starting it at 0 let its first pass overlap the next run's setup, run that
  // generation twice and drive busy_ below zero, and the caller then waited for busy_ == 0 forever).
  void loop(int thread, uint64_t seen) {
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return quit_ || gen_ != seen; });
        if (quit_) return;
        seen = gen_;
      }
      work(thread);
      std::lock_guard<std::mutex> lk(m_);
      if (--busy_ == 0) done_cv_.notify_one();
    }
  }
  void start(int n) {  // api_ held; the caller is thread 0, so n - 1 workers
    stop();
    quit_ = false;
    total_ = 1;
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lk(m_);
      gen = gen_;
    }
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, gen] { loop(i, gen); });
    total_ = n;
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lk(m_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }
  std::mutex api_, m_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  int total_ = 1;
  bool quit_ = false;
  uint64_t gen_ = 0;
  int busy_ = 0;
  int64_t tasks_ = 0;
  std::atomic<int64_t> next_{0};
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool* p = [] {
    auto* q = new Pool();  // never destroyed: worker threads must not be joined during static teardown
    unsigned hc = std::thread::hardware_concurrency();
    q->resize(hc == 0 ? 1 : static_cast<int>(hc));
    return q;
  }();
  return *p;
}
}  // namespace

int num_threads() { return pool().size(); }
void set_num_threads(int n) {
  if (n <= 0) {
    unsigned hc = std::thread::hardware_concurrency();
    n = hc == 0 ? 1 : static_cast<int>(hc);
  }
  pool().resize(n);
}
void parallel_for(int64_t tasks, const std::function<void(int64_t, int)>& fn) { pool().run(tasks, fn); }

// ---- GELU(tanh) ----
static void gelu_scalar(float* v, int64_t n) {
  const float c = 0.7978845608028654f;  // sqrt(2/pi)  (Hendrycks & Gimpel 2016, tanh approximation)
  for (int64_t i = 0; i < n; ++i) {
    float x = v[i];
    v[i] = 0.5f * x * (1.0f + std::tanh(c * (x + 0.044715f * x * x * x)));
  }
}
#if SVDQ_X86
void gelu_avx2(float* v, int64_t n);  // simd.cc
#endif  // SVDQ_X86
void gelu_inplace(float* v, int64_t n) {
#if SVDQ_X86
  if (isa_at_least(Isa::Avx2))
    gelu_avx2(v, n);
  else
#endif  // SVDQ_X86
    gelu_scalar(v, n);
}

// ---- per-token INT8 ----
#if SVDQ_X86
// AVX-512 row (same values as the scalar row: amax, scale = amax/127, codes = clamp(rne(x·127/amax))); false when
// the row holds a NaN or ±Inf (nothing is written then).
SVDQ_TARGET_AVX512 static bool int8_row_avx512(const float* r, int64_t K, int8_t* codes, float* scale) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 mx = zero;
  __mmask16 bad = 0;
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    const __m512 v = _mm512_loadu_ps(r + k);
    bad |= _mm512_cmp_ps_mask(_mm512_mul_ps(v, zero), zero, _CMP_NEQ_UQ);
    mx = _mm512_max_ps(mx, _mm512_abs_ps(v));
  }
  float amax = _mm512_reduce_max_ps(mx);
  for (int64_t t = k; t < K; ++t) {
    if (!std::isfinite(r[t])) return false;
    amax = std::fmax(amax, std::fabs(r[t]));
  }
  if (bad) return false;
  *scale = amax / 127.f;  // symmetric INT8, codes in [-127, 127]
  const float inv = amax > 0.f ? 127.f / amax : 0.f;
  const __m512 vinv = _mm512_set1_ps(inv), lo = _mm512_set1_ps(-127.f), hi = _mm512_set1_ps(127.f);
  for (k = 0; k + 16 <= K; k += 16) {
    const __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(r + k), vinv),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + k),
                     _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(q, lo), hi))));
  }
  for (; k < K; ++k) {
    float q = round_even(r[k] * inv);
    q = q > 127.f ? 127.f : (q < -127.f ? -127.f : q);
    codes[k] = static_cast<int8_t>(q);
  }
  return true;
}
#endif  // SVDQ_X86

static bool int8_row_scalar(const float* r, int64_t K, int8_t* codes, float* scale) {
  float amax = 0.f;
  for (int64_t k = 0; k < K; ++k) {
    if (!std::isfinite(r[k])) return false;
    amax = std::fmax(amax, std::fabs(r[k]));
  }
  *scale = amax / 127.f;  // symmetric INT8, codes in [-127, 127]
  const float inv = amax > 0.f ? 127.f / amax : 0.f;
  for (int64_t k = 0; k < K; ++k) {
    float q = round_even(r[k] * inv);
    q = q > 127.f ? 127.f : (q < -127.f ? -127.f : q);
    codes[k] = static_cast<int8_t>(q);
  }
  return true;
}

int64_t act_quant_int8(const float* x, int64_t M, int64_t K, int8_t* codes, float* scales) {
#if SVDQ_X86
  const bool avx512 = isa_at_least(Isa::Avx512);
#endif  // SVDQ_X86
  std::atomic<int64_t> first_bad{M};
  parallel_for(M, [&](int64_t m, int) {
    const float* r = x + m * K;
#if SVDQ_X86
    const bool ok = avx512 ? int8_row_avx512(r, K, codes + m * K, scales + m)
                           : int8_row_scalar(r, K, codes + m * K, scales + m);
#else
    const bool ok = int8_row_scalar(r, K, codes + m * K, scales + m);
#endif  // SVDQ_X86
    if (!ok) {
      int64_t cur = first_bad.load();
      while (m < cur && !first_bad.compare_exchange_weak(cur, m)) {
      }
    }
  });
  const int64_t fb = first_bad.load();
  return fb == M ? -1 : fb;
}

}  // namespace svdq
