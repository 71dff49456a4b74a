// Thread pool, ISA dispatch and small shared helpers of the SVDQuant CPU kernels.
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common.h"

namespace svdq {

bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

static int g_isa_mode = 0;
void set_isa_mode(int mode) {
  if (mode == 2 && !cpu_has_avx2_fma()) throw KernelError("this CPU has no AVX2+FMA; cannot force the avx2 path");
  if (mode < 0 || mode > 2) throw KernelError("isa mode must be 0 (auto), 1 (scalar) or 2 (avx2)");
  g_isa_mode = mode;
}
Isa active_isa() {
  static const bool has = cpu_has_avx2_fma();
  if (g_isa_mode == 1) return Isa::Scalar;
  return has ? Isa::Avx2 : Isa::Scalar;
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
  void loop(int thread) {
    uint64_t seen = 0;
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
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i] { loop(i); });
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
void gelu_avx2(float* v, int64_t n);  // simd.cc
void gelu_inplace(float* v, int64_t n) {
  if (active_isa() == Isa::Avx2)
    gelu_avx2(v, n);
  else
    gelu_scalar(v, n);
}

// ---- per-token INT8 ----
void act_quant_int8(const float* x, int64_t M, int64_t K, int8_t* codes, float* scales) {
  parallel_for(M, [&](int64_t m, int) {
    const float* r = x + m * K;
    float amax = 0.f;
    for (int64_t k = 0; k < K; ++k) amax = std::fmax(amax, std::fabs(r[k]));
    const float scale = amax / 127.f;  // symmetric INT8, codes in [-127, 127]
    scales[m] = scale;
    const float inv = amax > 0.f ? 127.f / amax : 0.f;
    for (int64_t k = 0; k < K; ++k) {
      float q = round_even(r[k] * inv);
      q = q > 127.f ? 127.f : (q < -127.f ? -127.f : q);
      codes[m * K + k] = static_cast<int8_t>(q);
    }
  });
}

}  // namespace svdq
