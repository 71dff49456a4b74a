// Engine state shared by the FLUX step (flux.cpp) and the PixArt step (pixart.cpp): named device tensors, the
// stream, linear-layer resolution and dispatch (16-bit cuBLAS, W4A4 kernels, W4A16 GEMV; defined in flux.cpp),
// profiling marks, the workspace and the captured CUDA graph. Internal to the engine (the C API is flux.h / pixart.h).
#ifndef SVDQ_ENGINE_CORE_H
#define SVDQ_ENGINE_CORE_H

#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "engine_ops.h"
#include "flux.h"
#include "p2_fp8.h"
#include "pixart.h"
#include "svdq_cuda.h"

namespace eng {
// The message of the last failure on this thread (valid until the next failure).
const char* err(const std::string& m);
struct Fail {
  std::string msg;
};
inline void ck(const char* m) {
  if (m) throw Fail{m};
}
inline void ckc(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Fail{std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")"};
}

enum LinKind { LIN_BF16 = 1, LIN_W4A4 = 2, LIN_W4A16 = 3, LIN_P2 = 4 };
constexpr int P2_R = 32;  // the int4p2 kernels' rank (p2_fp8.h)
struct Lin {
  std::string name;
  int kind = 0, N = 0, K = 0, R = 0, Kx = 0;
  bool unsig = false;
  void *p2_w = nullptr, *p2_sw = nullptr, *p2_lr = nullptr;  // int4p2: [N, Kx] e4m3, [N] f32, [32] int32
  // int4p2 kept 4-bit (instead of p2_w): codes [N, K/2] u8, exponents [N, K/64] i8, low-rank columns [N, 96] e4m3,
  // expanded into the engine's p2_wbuf before each GEMM (eng_p2_expand)
  void *p2_codes = nullptr, *p2_exps = nullptr, *p2_lowrank = nullptr;
  void *w = nullptr, *bias = nullptr, *qweight = nullptr, *wscales = nullptr, *lora_down = nullptr,
       *lora_up = nullptr, *smooth = nullptr, *codes = nullptr, *scales = nullptr, *zeros = nullptr;
};
struct Double {
  Lin norm1, norm1c, qkv, add_qkv, to_out, to_add_out, ff0, ff2, ffc0, ffc2;
  void *nq, *nk, *naq, *nak;
};
struct Single {
  Lin norm, qkv, mlp, proj_out;
  void *nq, *nk;
};
// One calibration observer slot: the input of engine linear `layer` (K channels), its device statistics.
struct ObsSlot {
  std::string layer;
  int K = 0;
  unsigned* absmax = nullptr;  // f32 bit patterns [K]
  float* res = nullptr;        // [capacity, K]
  int* plan = nullptr;         // [1 + 2·capacity]: count, (slot, row) pairs
};
struct Tensor {
  void* p = nullptr;
  size_t bytes = 0;
  bool work = false;
};
// Runs f, turning a Fail (or std::exception) into the C API's error message.
template <class F>
const char* guarded(F f) {
  try {
    f();
    return nullptr;
  } catch (const Fail& x) {
    return err(x.msg);
  } catch (const std::exception& x) {
    return err(std::string("engine: ") + x.what());
  }
}
}  // namespace eng
using namespace eng;  // NOLINT: internal header of two translation units

struct PixArtState;  // pixart.cpp

struct eng_engine {
  std::map<std::string, Tensor> t;
  std::map<std::string, int> ints;
  size_t weights = 0, work = 0, peak = 0;
  cudaStream_t stream = nullptr;
  // prepared model
  bool ready = false;
  eng_flux_config c{};
  int B = 0, St = 0, Si = 0, S = 0, D = 0;
  Lin te1, te2, ge1, ge2, pe1, pe2, ctx, xemb, norm_out, proj_out;
  std::vector<Double> dbl;
  std::vector<Single> sgl;
  int codes_format = 0;
  int p2_fast = 0;
  void *p2_a8 = nullptr, *p2_sx = nullptr, *p2_lact = nullptr;
  size_t p2_a8_bytes = 0;
  int p2_rows = 0;
  void* p2_wbuf = nullptr;  // [N, Kx] e4m3 operand of the 4-bit-stored int4p2 layer being run
  size_t p2_wbuf_bytes = 0;
  std::set<std::string> p2_no_epilogue;  // shapes whose epilogue cuBLASLt refused (then a separate bias/GELU pass)
  // workspace pointers
  float* X = nullptr;
  void *nrm, *qkv, *Q, *K, *V, *cat, *y, *h, *modA, *modB, *tproj, *e1, *tt, *tg, *tp, *temb, *codes, *ascales,
      *rope_c, *rope_s;
  float* lora_act = nullptr;
  int lora_max = 0;
  // profiling
  bool prof = false;
  std::vector<std::pair<std::string, cudaEvent_t>> marks;
  std::vector<cudaEvent_t> pool;
  std::map<std::string, std::pair<double, int>> totals;
  cudaGraphExec_t graph = nullptr;
  // calibration observer (eng_observe; FLUX steps only)
  std::vector<ObsSlot> obs;
  std::multimap<std::string, int> obs_by_layer;
  int obs_cap = 0;
  bool in_step = false;
  // which model the last prepare set up (the step functions run it): 1 FLUX, 2 PixArt; PixArt's own state
  int model = 0;
  std::shared_ptr<void> pixart;


  ~eng_engine() {
    if (graph) cudaGraphExecDestroy(graph);
    for (auto& kv : t)
      if (kv.second.p) cudaFree(kv.second.p);
    for (cudaEvent_t ev : pool) cudaEventDestroy(ev);
    if (stream) cudaStreamDestroy(stream);
  }

  void* alloc(const std::string& name, size_t bytes, bool work_) {
    auto it = t.find(name);
    if (it != t.end()) {
      cudaFree(it->second.p);
      (it->second.work ? work : weights) -= it->second.bytes;
      t.erase(it);
    }
    void* p = nullptr;
    ckc(cudaMalloc(&p, bytes), ("cudaMalloc(" + name + ", " + std::to_string(bytes) + " bytes)").c_str());
    t[name] = Tensor{p, bytes, work_};
    (work_ ? work : weights) += bytes;
    if (weights + work > peak) peak = weights + work;
    return p;
  }
  void* need(const std::string& name, size_t bytes) {
    auto it = t.find(name);
    if (it == t.end()) throw Fail{"missing device tensor " + name};
    if (it->second.bytes != bytes)
      throw Fail{"tensor " + name + " holds " + std::to_string(it->second.bytes) + " bytes, expected " +
                 std::to_string(bytes)};
    return it->second.p;
  }
  void* opt(const std::string& name, size_t bytes) { return t.count(name) ? need(name, bytes) : nullptr; }
  bool has(const std::string& name) { return t.count(name) > 0; }

  // frees the workspace (tensors created by a prepare) and the captured graph
  void drop_workspace() {
    for (auto it = t.begin(); it != t.end();) {
      if (it->second.work) {
        cudaFree(it->second.p);
        work -= it->second.bytes;
        it = t.erase(it);
      } else {
        ++it;
      }
    }
    if (graph) {
      cudaGraphExecDestroy(graph);
      graph = nullptr;
    }
    p2_a8 = p2_sx = p2_lact = nullptr;
    p2_rows = 0;
    p2_a8_bytes = 0;
    p2_wbuf = nullptr;
    p2_wbuf_bytes = 0;
  }

  // ---- linears (flux.cpp) ----
  // Records x [M, K] (the input of linear L) into every observer slot of L: absmax, then the planned rows.
  void observe(const Lin& L, const void* x, int M) {
    if (!in_step || obs.empty()) return;
    const auto r = obs_by_layer.equal_range(L.name);
    for (auto it = r.first; it != r.second; ++it) {
      const ObsSlot& o = obs[it->second];
      if (o.K != L.K)
        throw Fail{"observer slot " + std::to_string(it->second) + " of " + L.name + ": K " + std::to_string(o.K) +
                   ", the layer reads " + std::to_string(L.K)};
      mark("calibration observer");
      ck(eng_observe_absmax(x, M, L.K, o.absmax, stream));
      ck(eng_observe_gather(x, M, L.K, o.plan, obs_cap, o.res, stream));
    }
  }
  // shared_input: a layer whose int4p2 activation operand is another layer's (single blocks: proj_mlp reads
  // attn.qkv's, low-rank columns included), so it has no lora_down of its own
  Lin lin(const std::string& name, int N, int K, bool allow_w4a4 = true, bool shared_input = false);
  void mark(const char* kind);
  struct QAct {
    int M, K, R;
  };
  QAct quant(const void* x, int M, const Lin& L, bool fuse_lora);
  void gemm_q(const QAct& q, const void* x, const Lin& L, void* out, bool gelu);
  // int4p2: x [M, K] → p2_a8 [M, Kx] + p2_sx (the low-rank down through cuBLAS into p2_lact first)
  void quant_p2(const void* x, int M, const Lin& L);
  // out [M, N] (ldo) = gelu?(p2 GEMM + bias) on the quantized operand of quant_p2 (Kx must match)
  void gemm_p2(int M, int Kx, const Lin& L, void* out, int ldo, const void* bias, bool gelu);
  void p2_workspace(int rows, size_t a8_bytes);
  // the operand buffer of 4-bit-stored int4p2 layers: the largest N·Kx of those in `layers`
  void p2_weight_buffer(const std::vector<const Lin*>& layers);
  const void* linear(const void* x, int M, const Lin& L, void* out, int ldo, int act = ENG_ACT_NONE);
  void linear_full(const void* x, int M, const Lin& L, void* out, int act = ENG_ACT_NONE);

  // ---- FLUX (flux.cpp) ----
  void prepare(const eng_flux_config& cfg, int B_, int St_, int Si_);
  void step();
  // ---- PixArt (pixart.cpp) ----
  void pixart_prepare(const eng_pixart_config& cfg, int B_, int St_, int Si_);
  void pixart_step();
  // the prepared model's step
  void step_model() {
    if (model == 2) pixart_step();
    else step();
  }
};

#endif
