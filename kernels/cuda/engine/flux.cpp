// FLUX.1 transformer step on the GPU (flux.h): weights resolved once by name, workspace allocated once, every op
// enqueued on the engine's stream. 16-bit linears go through cuBLAS (svdq_gemm_cublas_ex), W4A4 linears through the
// kernels of @svdquant/kernels-cuda (svdq_quantize_act + svdq_gemm_w4a4 with bias / GELU in the epilogue), W4A16
// AdaNorm linears through eng_gemv_w4a16, int4p2 linears (opt-in, sm_89+) through p2_fp8.h (cuBLAS low-rank down,
// svdq_p2_quantize_rows, the cuBLASLt FP8 GEMM with bias / GELU epilogues), the rest through engine_ops.h.
#include "flux.h"

#include "engine_core.h"

namespace eng {
namespace {
thread_local std::string g_err;
}
const char* err(const std::string& m) {
  g_err = m;
  return g_err.c_str();
}
}  // namespace eng

Lin eng_engine::lin(const std::string& name, int N, int K, bool allow_w4a4, bool shared_input) {
    Lin L;
    L.name = name;
    L.N = N;
    L.K = K;
    const size_t n = size_t(N), k = size_t(K);
    if (has(name + ".weight")) {
      L.kind = LIN_BF16;
      L.w = need(name + ".weight", n * k * 2);
    } else if (has(name + ".qweight") && allow_w4a4) {
      L.kind = LIN_W4A4;
      if (N % 128 || K % 64) throw Fail{name + ": W4A4 needs N % 128 == 0 and K % 64 == 0, got N=" + std::to_string(N) + " K=" + std::to_string(K)};
      L.qweight = need(name + ".qweight", n * k / 2);
      L.wscales = need(name + ".wscales", n * (k / 64) * 2);
      if (has(name + ".lora_down")) {
        const size_t b = t[name + ".lora_down"].bytes;
        L.R = int(b / (k * 2));
        if (L.R <= 0 || L.R % 16 || L.R > 256) throw Fail{name + ".lora_down: rank " + std::to_string(L.R) + " not a multiple of 16 in 16..256"};
        L.lora_down = need(name + ".lora_down", size_t(L.R) * k * 2);
        L.lora_up = need(name + ".lora_up", n * L.R * 2);
      }
      L.smooth = opt(name + ".smooth", k * 2);
      auto u = ints.find(name + ".act_unsigned");
      L.unsig = u != ints.end() && u->second != 0;
    } else if ((has(name + ".p2_weight") || has(name + ".p2_codes")) && allow_w4a4) {
      L.kind = LIN_P2;
      if (!svdq_p2_supported_k(K) || N % 8)
        throw Fail{name + ": int4p2 needs K in {1024, 3072, 12288, 15360} and N % 8 == 0, got N=" + std::to_string(N) +
                   " K=" + std::to_string(K)};
      if (has(name + ".p2_weight")) {
        if (has(name + ".p2_codes")) throw Fail{name + ": both p2_weight (e4m3) and p2_codes (4-bit) given; keep one"};
        const size_t wb = t[name + ".p2_weight"].bytes;
        if (wb != n * k && wb != n * (k + 3 * P2_R))
          throw Fail{name + ".p2_weight holds " + std::to_string(wb) + " bytes, expected N·K = " +
                     std::to_string(n * k) + " or N·(K + 96) = " + std::to_string(n * (k + 3 * P2_R)) +
                     " (e4m3 [N, Kx])"};
        L.Kx = int(wb / n);
        L.p2_w = need(name + ".p2_weight", wb);
      } else {
        L.p2_codes = need(name + ".p2_codes", n * k / 2);
        L.p2_exps = need(name + ".p2_exps", n * (k / 64));
        L.p2_lowrank = opt(name + ".p2_lowrank", n * 3 * P2_R);
        L.Kx = K + (L.p2_lowrank ? 3 * P2_R : 0);
      }
      L.p2_sw = need(name + ".p2_wscale", n * 4);
      if (!shared_input) {
        if (L.Kx != K) {
          L.R = P2_R;
          L.lora_down = need(name + ".lora_down", size_t(P2_R) * k * 2);
          L.p2_lr = need(name + ".p2_lr_shift", size_t(P2_R) * 4);
        } else if (has(name + ".lora_down")) {
          throw Fail{name + ": lora_down given but the int4p2 weight has no low-rank columns (Kx = K)"};
        }
        L.smooth = opt(name + ".smooth", k * 2);
      }
    } else if (has(name + ".w4a16_codes")) {
      L.kind = LIN_W4A16;
      if (K % 64) throw Fail{name + ": W4A16 needs K % 64 == 0"};
      L.codes = need(name + ".w4a16_codes", n * k / 2);
      L.scales = need(name + ".w4a16_scales", n * (k / 64) * 2);
      L.zeros = need(name + ".w4a16_zeros", n * (k / 64) * 2);
    } else {
      throw Fail{"missing weights of linear " + name + " (" + name +
                 ".weight, .qweight, .p2_weight, .p2_codes or .w4a16_codes) [N=" +
                 std::to_string(N) + ", K=" + std::to_string(K) + "]"};
    }
    L.bias = opt(name + ".bias", n * 2);
    return L;
  }

void eng_engine::mark(const char* kind) {
    if (!prof) return;
    if (marks.size() >= pool.size()) {
      cudaEvent_t ev;
      ckc(cudaEventCreate(&ev), "cudaEventCreate");
      pool.push_back(ev);
    }
    cudaEvent_t ev = pool[marks.size()];
    ckc(cudaEventRecord(ev, stream), "cudaEventRecord");
    marks.emplace_back(kind, ev);
  }

  // ---- linears ----
  // W4A4: quantize x [M, K] (codes, ascales; lora_act fused when R in {16, 32, 64})
eng_engine::QAct eng_engine::quant(const void* x, int M, const Lin& L, bool fuse_lora) {
    svdq_quantize_args a{};
    a.dtype = SVDQ_BF16;
    a.x = x;
    a.smooth = L.smooth;
    a.M = M;
    a.K = L.K;
    const bool f = fuse_lora && (L.R == 16 || L.R == 32 || L.R == 64);
    a.R = f ? L.R : 0;
    a.lora_down = f ? L.lora_down : nullptr;
    a.lora_act = f ? lora_act : nullptr;
    a.act_unsigned = L.unsig;
    a.codes_format = codes_format;
    a.codes = codes;
    a.ascales = ascales;
    mark("w4a4 quantize");
    ck(svdq_quantize_act(&a, stream));
    return QAct{M, L.K, a.R};
  }
  // W4A4 GEMM on quantized codes (lora_act computed by cuBLAS when the quantizer did not fuse it); out contiguous.
void eng_engine::gemm_q(const QAct& q, const void* x, const Lin& L, void* out, bool gelu) {
    if (L.R > 0 && q.R != L.R) {
      mark("w4a4 low-rank down (cuBLAS)");
      ck(svdq_gemm_cublas_ex(SVDQ_BF16, 1, x, L.K, L.lora_down, L.K, lora_act, L.R, q.M, L.R, L.K, 0.f, stream));
    }
    svdq_gemm_args g{};
    g.dtype = SVDQ_BF16;
    g.codes = codes;
    g.codes_format = codes_format;
    g.ascales = ascales;
    g.qweight = L.qweight;
    g.wscales = L.wscales;
    g.lora_act = L.R ? lora_act : nullptr;
    g.lora_up = L.lora_up;
    g.bias = L.bias;
    g.out = out;
    g.M = q.M;
    g.N = L.N;
    g.K = L.K;
    g.R = L.R;
    g.act_unsigned = L.unsig;
    g.gelu = gelu;
    mark("w4a4 gemm");
    ck(svdq_gemm_w4a4(&g, stream));
  }
  // out [M, N] (ldo) = x [M, K] · Wᵀ; returns the bias the caller still has to add (16-bit path), else NULL.
  // act is applied here (with the bias) when given.
  // int4p2: x [M, K] → p2_a8 [M, Kx] + p2_sx (the low-rank down through cuBLAS into p2_lact first)
void eng_engine::quant_p2(const void* x, int M, const Lin& L) {
    if (M > p2_rows || size_t(M) * L.Kx > p2_a8_bytes) throw Fail{L.name + ": int4p2 workspace too small"};
    if (L.R) {
      mark("p2 low-rank down (cuBLAS)");
      ck(svdq_gemm_cublas_ex(SVDQ_BF16, 1, x, L.K, L.lora_down, L.K, p2_lact, P2_R, M, P2_R, L.K, 0.f, stream));
    }
    svdq_p2_rows_args a{};
    a.x = x;
    a.smooth = L.smooth;
    a.lora_act = L.R ? static_cast<const float*>(p2_lact) : nullptr;
    a.lr_shift = L.R ? static_cast<const int32_t*>(L.p2_lr) : nullptr;
    a.M = M;
    a.K = L.K;
    a.a8 = p2_a8;
    a.sx = static_cast<float*>(p2_sx);
    mark("p2 quantize");
    ck(svdq_p2_quantize_rows(&a, stream));
}
  // out [M, N] (ldo) = gelu?(p2 GEMM + bias) on the quantized operand of quant_p2 (Kx must match)
void eng_engine::gemm_p2(int M, int Kx, const Lin& L, void* out, int ldo, const void* bias, bool gelu) {
    if (Kx != L.Kx)
      throw Fail{L.name + ": its p2_weight has Kx=" + std::to_string(L.Kx) + " but the shared activation operand has " +
                 std::to_string(Kx)};
    const void* b8 = L.p2_w;
    if (L.p2_codes) {
      if (size_t(L.N) * L.Kx > p2_wbuf_bytes) throw Fail{L.name + ": int4p2 weight buffer too small"};
      mark("p2 weight expand (4-bit to e4m3)");
      ck(eng_p2_expand(static_cast<const uint8_t*>(L.p2_codes), static_cast<const int8_t*>(L.p2_exps),
                       static_cast<const uint8_t*>(L.p2_lowrank), L.N, L.K, L.Kx, p2_wbuf, stream));
      b8 = p2_wbuf;
    }
    svdq_p2_gemm_args g{};
    g.a8 = p2_a8;
    g.sx = static_cast<const float*>(p2_sx);
    g.b8 = b8;
    g.sw = static_cast<const float*>(L.p2_sw);
    g.out = out;
    g.ldo = ldo;
    g.bias = bias;
    g.gelu = gelu ? 1 : 0;
    g.M = M;
    g.N = L.N;
    g.Kx = L.Kx;
    g.fast_accum = p2_fast;
    mark("p2 gemm (cuBLASLt FP8)");
    const bool epi = bias || gelu;
    const std::string key = std::to_string(M) + "/" + std::to_string(L.N) + "/" + std::to_string(L.Kx) + "/" +
                            std::to_string(ldo) + "/" + std::to_string(int(bias != nullptr)) + std::to_string(int(gelu));
    if (epi && !p2_no_epilogue.count(key)) {
      const char* m = svdq_p2_gemm_ex(&g, stream);
      if (!m) return;
      // cuBLASLt may have no FP8 kernel with this epilogue and outer-vector scales: plain GEMM + a following pass
      if (std::string(m).find("no FP8 algorithm") == std::string::npos) throw Fail{m};
      p2_no_epilogue.insert(key);
    }
    g.bias = nullptr;
    g.gelu = 0;
    ck(svdq_p2_gemm_ex(&g, stream));
    if (epi) {
      mark("bias + activation");
      ck(eng_bias_act(out, ldo, out, ldo, bias, M, L.N, gelu ? ENG_ACT_GELU_TANH : ENG_ACT_NONE, stream));
    }
}
void eng_engine::p2_workspace(int rows, size_t a8_bytes) {
    if (rows <= p2_rows && a8_bytes <= p2_a8_bytes) return;
    rows = std::max(rows, p2_rows);
    a8_bytes = std::max(a8_bytes, p2_a8_bytes);
    p2_a8 = alloc("ws.p2_a8", a8_bytes, true);
    p2_sx = alloc("ws.p2_sx", size_t(rows) * 4, true);
    p2_lact = alloc("ws.p2_lora_act", size_t(rows) * P2_R * 4, true);
    p2_rows = rows;
    p2_a8_bytes = a8_bytes;
}
void eng_engine::p2_weight_buffer(const std::vector<const Lin*>& layers) {
    size_t bytes = 0;
    for (const Lin* L : layers)
      if (L->kind == LIN_P2 && L->p2_codes) bytes = std::max(bytes, size_t(L->N) * L->Kx);
    if (bytes <= p2_wbuf_bytes) return;
    p2_wbuf = alloc("ws.p2_weight_e4m3", bytes, true);
    p2_wbuf_bytes = bytes;
}

const void* eng_engine::linear(const void* x, int M, const Lin& L, void* out, int ldo, int act) {
    observe(L, x, M);
    if (L.kind == LIN_BF16) {
      mark(M <= 8 ? "cuBLAS bf16 (M <= 8)" : "cuBLAS bf16");
      ck(svdq_gemm_cublas_ex(SVDQ_BF16, 0, x, L.K, L.w, L.K, out, ldo, M, L.N, L.K, 0.f, stream));
      if (act != ENG_ACT_NONE) {
        mark("bias + activation");
        ck(eng_bias_act(out, ldo, out, ldo, L.bias, M, L.N, act, stream));
        return nullptr;
      }
      return L.bias;
    }
    if (L.kind == LIN_P2) {
      quant_p2(x, M, L);
      const bool gelu = act == ENG_ACT_GELU_TANH;
      gemm_p2(M, L.Kx, L, out, ldo, act != ENG_ACT_NONE ? L.bias : nullptr, gelu);
      if (act != ENG_ACT_NONE && !gelu) {
        mark("bias + activation");
        ck(eng_bias_act(out, ldo, out, ldo, nullptr, M, L.N, act, stream));
      }
      return act != ENG_ACT_NONE ? nullptr : L.bias;
    }
    if (L.kind == LIN_W4A16) {
      mark("w4a16 gemv");
      ck(eng_gemv_w4a16(x, M, L.K, static_cast<const uint8_t*>(L.codes), L.scales, L.zeros, L.bias, L.N, out, stream));
      if (ldo != L.N) throw Fail{L.name + ": W4A16 output must be contiguous"};
      if (act != ENG_ACT_NONE) {
        mark("bias + activation");
        ck(eng_bias_act(out, ldo, out, ldo, nullptr, M, L.N, act, stream));
      }
      return nullptr;
    }
    const QAct q = quant(x, M, L, true);
    const bool gelu = act == ENG_ACT_GELU_TANH;
    if (ldo == L.N) {
      gemm_q(q, x, L, out, gelu);
    } else {
      gemm_q(q, x, L, h, gelu);
      mark("copy");
      ck(eng_copy_2d(h, L.N, out, ldo, M, L.N, stream));
    }
    if (act != ENG_ACT_NONE && !gelu) {
      mark("bias + activation");
      ck(eng_bias_act(out, ldo, out, ldo, nullptr, M, L.N, act, stream));
    }
    return nullptr;
  }
void eng_engine::linear_full(const void* x, int M, const Lin& L, void* out, int act) {
    const void* b = linear(x, M, L, out, L.N, act);
    if (b) {
      mark("bias + activation");
      ck(eng_bias_act(out, L.N, out, L.N, b, M, L.N, ENG_ACT_NONE, stream));
    }
  }

void eng_engine::prepare(const eng_flux_config& cfg, int B_, int St_, int Si_) {
    c = cfg;
    B = B_;
    St = St_;
    Si = Si_;
    S = St + Si;
    D = c.heads * c.head_dim;
    if (B <= 0 || B > 8 || St <= 0 || Si <= 0) throw Fail{"prepare: batch in 1..8 and positive token counts needed"};
    if (c.axes[0] + c.axes[1] + c.axes[2] != c.head_dim) throw Fail{"prepare: axes_dims_rope must sum to head_dim"};
    const int d = D;
    te1 = lin("time_text_embed.timestep_embedder.linear_1", d, 256);
    te2 = lin("time_text_embed.timestep_embedder.linear_2", d, d);
    if (c.guidance) {
      ge1 = lin("time_text_embed.guidance_embedder.linear_1", d, 256);
      ge2 = lin("time_text_embed.guidance_embedder.linear_2", d, d);
    }
    pe1 = lin("time_text_embed.text_embedder.linear_1", d, c.pooled_dim);
    pe2 = lin("time_text_embed.text_embedder.linear_2", d, d);
    ctx = lin("context_embedder", d, c.joint_dim, false);
    xemb = lin("x_embedder", d, c.in_channels, false);
    norm_out = lin("norm_out.linear", 2 * d, d);
    proj_out = lin("proj_out", c.out_channels, d, false);
    const size_t dh2 = size_t(c.head_dim) * 2;
    dbl.clear();
    sgl.clear();
    int kmax = d, rmax = 0, p2kx = 0;
    std::vector<const Lin*> p2_layers;
    for (int i = 0; i < c.num_layers; i++) {
      const std::string p = "transformer_blocks." + std::to_string(i) + ".";
      Double b;
      b.norm1 = lin(p + "norm1.linear", 6 * d, d);
      b.norm1c = lin(p + "norm1_context.linear", 6 * d, d);
      b.qkv = lin(p + "attn.qkv", 3 * d, d);
      b.add_qkv = lin(p + "attn.add_qkv", 3 * d, d);
      b.to_out = lin(p + "attn.to_out.0", d, d);
      b.to_add_out = lin(p + "attn.to_add_out", d, d);
      b.ff0 = lin(p + "ff.net.0.proj", 4 * d, d);
      b.ff2 = lin(p + "ff.net.2", d, 4 * d);
      b.ffc0 = lin(p + "ff_context.net.0.proj", 4 * d, d);
      b.ffc2 = lin(p + "ff_context.net.2", d, 4 * d);
      b.nq = need(p + "attn.norm_q.weight", dh2);
      b.nk = need(p + "attn.norm_k.weight", dh2);
      b.naq = need(p + "attn.norm_added_q.weight", dh2);
      b.nak = need(p + "attn.norm_added_k.weight", dh2);
      for (const Lin* L : {&b.qkv, &b.add_qkv, &b.to_out, &b.to_add_out, &b.ff0, &b.ff2, &b.ffc0, &b.ffc2}) {
        if (L->kind == LIN_W4A4) kmax = std::max(kmax, L->K), rmax = std::max(rmax, L->R);
        if (L->kind == LIN_P2) p2kx = std::max(p2kx, L->Kx);
      }
      dbl.push_back(b);
    }
    for (int i = 0; i < c.num_single_layers; i++) {
      const std::string p = "single_transformer_blocks." + std::to_string(i) + ".";
      Single b;
      b.norm = lin(p + "norm.linear", 3 * d, d);
      b.qkv = lin(p + "attn.qkv", 3 * d, d);
      b.mlp = lin(p + "proj_mlp", 4 * d, d, true, b.qkv.kind == LIN_P2);
      b.proj_out = lin(p + "proj_out", d, 5 * d);
      b.nq = need(p + "attn.norm_q.weight", dh2);
      b.nk = need(p + "attn.norm_k.weight", dh2);
      if ((b.qkv.kind == LIN_W4A4) != (b.mlp.kind == LIN_W4A4) || (b.qkv.kind == LIN_P2) != (b.mlp.kind == LIN_P2))
        throw Fail{p + "attn.qkv and proj_mlp share one input quantization: both W4A4, both int4p2 or both 16-bit"};
      if (b.qkv.kind == LIN_P2 && b.qkv.Kx != b.mlp.Kx)
        throw Fail{p + "proj_mlp.p2_weight must have attn.qkv's Kx (" + std::to_string(b.qkv.Kx) +
                   "): it reads attn.qkv's activation operand, low-rank columns included"};
      for (const Lin* L : {&b.qkv, &b.mlp, &b.proj_out}) {
        if (L->kind == LIN_W4A4) kmax = std::max(kmax, L->K), rmax = std::max(rmax, L->R);
        if (L->kind == LIN_P2) p2kx = std::max(p2kx, L->Kx);
      }
      sgl.push_back(b);
    }
    // workspace
    drop_workspace();
    const size_t M = size_t(B) * S, bf = 2;
    auto W = [&](const char* n, size_t bytes) { return alloc(std::string("ws.") + n, bytes, true); };
    X = static_cast<float*>(W("X", M * d * 4));
    nrm = W("nrm", M * d * bf);
    qkv = W("qkv", M * 3 * d * bf);
    Q = W("Q", M * d * bf);
    K = W("K", M * d * bf);
    V = W("V", M * d * bf);
    cat = W("cat", M * 5 * d * bf);
    y = W("y", M * d * bf);
    h = W("h", M * 4 * d * bf);
    modA = W("modA", size_t(B) * 6 * d * bf);
    modB = W("modB", size_t(B) * 6 * d * bf);
    tproj = W("tproj", size_t(B) * 256 * bf);
    e1 = W("e1", size_t(B) * d * bf);
    tt = W("tt", size_t(B) * d * bf);
    tg = W("tg", size_t(B) * d * bf);
    tp = W("tp", size_t(B) * d * bf);
    temb = W("temb", size_t(B) * d * bf);
    rope_c = W("rope_cos", size_t(S) * c.head_dim / 2 * 4);
    rope_s = W("rope_sin", size_t(S) * c.head_dim / 2 * 4);
    codes_format = svdq_default_codes_format();
    const size_t Mp = size_t(svdq_pad_m(int(M)));
    codes = W("codes", Mp * kmax);
    ascales = W("ascales", Mp * (kmax / 64) * bf);
    lora_max = rmax;
    lora_act = rmax ? static_cast<float*>(W("lora_act", Mp * rmax * 4)) : nullptr;
    if (lora_act) ckc(cudaMemset(lora_act, 0, Mp * rmax * 4), "cudaMemset(lora_act)");
    p2_a8 = p2_sx = p2_lact = nullptr;
    p2_rows = 0;
    p2_a8_bytes = 0;
    if (p2kx) p2_workspace(int(M), M * size_t(p2kx));
    for (const Double& b : dbl)
      for (const Lin* L : {&b.qkv, &b.add_qkv, &b.to_out, &b.to_add_out, &b.ff0, &b.ff2, &b.ffc0, &b.ffc2})
        p2_layers.push_back(L);
    for (const Single& b : sgl)
      for (const Lin* L : {&b.qkv, &b.mlp, &b.proj_out}) p2_layers.push_back(L);
    p2_weight_buffer(p2_layers);
    auto pf = ints.find("p2.fast_accum");
    p2_fast = pf != ints.end() && pf->second != 0;
    need("in.hidden", size_t(B) * Si * c.in_channels * bf);
    need("in.encoder", size_t(B) * St * c.joint_dim * bf);
    need("in.pooled", size_t(B) * c.pooled_dim * bf);
    need("in.timestep", size_t(B) * 4);
    if (c.guidance) need("in.guidance", size_t(B) * 4);
    need("in.ids", size_t(S) * 3 * 4);
    need("out", size_t(B) * Si * c.out_channels * bf);
    model = 1;
    ready = true;
  }

void eng_engine::step() {
    if (!ready) throw Fail{"eng_flux_step: call eng_flux_prepare first"};
    struct InStep {
      bool& f;
      explicit InStep(bool& f_) : f(f_) { f = true; }
      ~InStep() { f = false; }
    } in_step_guard(in_step);
    const int d = D, H = c.heads, Dh = c.head_dim;
    const float eps = 1e-6f;  // diffusers FLUX: LayerNorm and RMSNorm eps 1e-6
    void* s = stream;
    // conditioning vector silu(temb)
    mark("embedders");
    ck(eng_timestep_embedding(static_cast<const float*>(t["in.timestep"].p), B, 1000.f, 256, tproj, s));
    linear_full(tproj, B, te1, e1, ENG_ACT_SILU);
    linear_full(e1, B, te2, tt);
    if (c.guidance) {
      mark("embedders");
      ck(eng_timestep_embedding(static_cast<const float*>(t["in.guidance"].p), B, 1000.f, 256, tproj, s));
      linear_full(tproj, B, ge1, e1, ENG_ACT_SILU);
      linear_full(e1, B, ge2, tg);
    }
    linear_full(t["in.pooled"].p, B, pe1, e1, ENG_ACT_SILU);
    linear_full(e1, B, pe2, tp);
    mark("embedders");
    ck(eng_sum_silu(tt, c.guidance ? tg : nullptr, tp, B * d, temb, s));
    // embedders into the residual stream (text first)
    const void* b = linear(t["in.hidden"].p, B * Si, xemb, y, d);
    mark("residual / gate");
    ck(eng_residual_store(X, S, St, Si, B, d, y, b, s));
    b = linear(t["in.encoder"].p, B * St, ctx, y, d);
    mark("residual / gate");
    ck(eng_residual_store(X, S, 0, St, B, d, y, b, s));
    mark("rope table");
    ck(eng_rope_table(static_cast<const float*>(t["in.ids"].p), S, c.axes[0], c.axes[1], c.axes[2],
                      static_cast<float*>(rope_c), static_cast<float*>(rope_s), s));
    const float* rc = static_cast<const float*>(rope_c);
    const float* rs = static_cast<const float*>(rope_s);
    char* cat8 = static_cast<char*>(cat);
    void* attn_txt = cat;                                   // [B·St, D]
    void* attn_img = cat8 + size_t(B) * St * d * 2;         // [B·Si, D]
    void* n_txt = nrm;
    void* n_img = static_cast<char*>(nrm) + size_t(B) * St * d * 2;
    for (const Double& k : dbl) {
      linear_full(temb, B, k.norm1, modA);
      linear_full(temb, B, k.norm1c, modB);
      mark("layernorm + modulate");
      ck(eng_layernorm_modulate(X, S, St, Si, B, d, eps, modA, 6 * d, 0, d, n_img, s));
      ck(eng_layernorm_modulate(X, S, 0, St, B, d, eps, modB, 6 * d, 0, d, n_txt, s));
      b = linear(n_img, B * Si, k.qkv, qkv, 3 * d);
      mark("qk norm + rope");
      ck(eng_qk_norm_rope(qkv, 3 * d, b, B, Si, St, S, H, Dh, k.nq, k.nk, eps, rc, rs, Q, K, V, s));
      b = linear(n_txt, B * St, k.add_qkv, qkv, 3 * d);
      mark("qk norm + rope");
      ck(eng_qk_norm_rope(qkv, 3 * d, b, B, St, 0, S, H, Dh, k.naq, k.nak, eps, rc, rs, Q, K, V, s));
      mark("attention");
      ck(eng_attention(Q, K, V, B, H, S, Dh, St, attn_txt, attn_img, d, s));
      // image stream
      b = linear(attn_img, B * Si, k.to_out, y, d);
      mark("residual / gate");
      ck(eng_gated_residual(X, S, St, Si, B, d, y, d, b, modA, 6 * d, 2 * d, s));
      mark("layernorm + modulate");
      ck(eng_layernorm_modulate(X, S, St, Si, B, d, eps, modA, 6 * d, 3 * d, 4 * d, n_img, s));
      linear_full(n_img, B * Si, k.ff0, h, ENG_ACT_GELU_TANH);
      b = linear(h, B * Si, k.ff2, y, d);
      mark("residual / gate");
      ck(eng_gated_residual(X, S, St, Si, B, d, y, d, b, modA, 6 * d, 5 * d, s));
      // text stream
      b = linear(attn_txt, B * St, k.to_add_out, y, d);
      mark("residual / gate");
      ck(eng_gated_residual(X, S, 0, St, B, d, y, d, b, modB, 6 * d, 2 * d, s));
      mark("layernorm + modulate");
      ck(eng_layernorm_modulate(X, S, 0, St, B, d, eps, modB, 6 * d, 3 * d, 4 * d, n_txt, s));
      linear_full(n_txt, B * St, k.ffc0, h, ENG_ACT_GELU_TANH);
      b = linear(h, B * St, k.ffc2, y, d);
      mark("residual / gate");
      ck(eng_gated_residual(X, S, 0, St, B, d, y, d, b, modB, 6 * d, 5 * d, s));
    }
    const int M = B * S;
    for (const Single& k : sgl) {
      linear_full(temb, B, k.norm, modA);
      mark("layernorm + modulate");
      ck(eng_layernorm_modulate(X, S, 0, S, B, d, eps, modA, 3 * d, 0, d, nrm, s));
      if (k.qkv.kind == LIN_W4A4) {
        observe(k.qkv, nrm, M);
        observe(k.mlp, nrm, M);
        const QAct q = quant(nrm, M, k.qkv, false);  // one quantization for attn.qkv and proj_mlp
        gemm_q(q, nrm, k.qkv, qkv, false);
        mark("qk norm + rope");
        ck(eng_qk_norm_rope(qkv, 3 * d, nullptr, B, S, 0, S, H, Dh, k.nq, k.nk, eps, rc, rs, Q, K, V, s));
        gemm_q(q, nrm, k.mlp, h, true);
        mark("copy");
        ck(eng_copy_2d(h, 4 * d, cat8 + size_t(d) * 2, 5 * d, M, 4 * d, s));
      } else if (k.qkv.kind == LIN_P2) {
        observe(k.qkv, nrm, M);
        observe(k.mlp, nrm, M);
        quant_p2(nrm, M, k.qkv);  // one quantization (and low-rank down) for attn.qkv and proj_mlp
        gemm_p2(M, k.qkv.Kx, k.qkv, qkv, 3 * d, nullptr, false);
        mark("qk norm + rope");
        ck(eng_qk_norm_rope(qkv, 3 * d, k.qkv.bias, B, S, 0, S, H, Dh, k.nq, k.nk, eps, rc, rs, Q, K, V, s));
        gemm_p2(M, k.qkv.Kx, k.mlp, cat8 + size_t(d) * 2, 5 * d, k.mlp.bias, true);
      } else {
        b = linear(nrm, M, k.qkv, qkv, 3 * d);
        mark("qk norm + rope");
        ck(eng_qk_norm_rope(qkv, 3 * d, b, B, S, 0, S, H, Dh, k.nq, k.nk, eps, rc, rs, Q, K, V, s));
        linear(nrm, M, k.mlp, cat8 + size_t(d) * 2, 5 * d, ENG_ACT_GELU_TANH);
      }
      mark("attention");
      ck(eng_attention(Q, K, V, B, H, S, Dh, 0, nullptr, cat, 5 * d, s));
      b = linear(cat, M, k.proj_out, y, d);
      mark("residual / gate");
      ck(eng_gated_residual(X, S, 0, S, B, d, y, d, b, modA, 3 * d, 2 * d, s));
    }
    // AdaLayerNormContinuous: scale first, then shift
    linear_full(temb, B, norm_out, modA);
    mark("layernorm + modulate");
    ck(eng_layernorm_modulate(X, S, St, Si, B, d, eps, modA, 2 * d, d, 0, n_img, s));
    linear_full(n_img, B * Si, proj_out, t["out"].p);
    mark("end");
  }

extern "C" {

const char* eng_create(eng_engine** e) {
  return guarded([&] {
    auto* n = new eng_engine();
    const cudaError_t r = cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking);
    if (r != cudaSuccess) {
      delete n;
      ckc(r, "cudaStreamCreateWithFlags");
    }
    *e = n;
  });
}
void eng_destroy(eng_engine* e) { delete e; }

const char* eng_alloc(eng_engine* e, const char* name, size_t bytes, void** ptr) {
  return guarded([&] {
    if (bytes == 0) throw Fail{std::string("eng_alloc(") + name + "): zero bytes"};
    void* p = e->alloc(name, bytes, false);
    if (ptr) *ptr = p;
  });
}
const char* eng_free_tensor(eng_engine* e, const char* name) {
  return guarded([&] {
    auto it = e->t.find(name);
    if (it == e->t.end()) throw Fail{std::string("no tensor ") + name};
    e->ready = false;
    ckc(cudaFree(it->second.p), "cudaFree");
    (it->second.work ? e->work : e->weights) -= it->second.bytes;
    e->t.erase(it);
  });
}
const char* eng_tensor(eng_engine* e, const char* name, void** ptr, size_t* bytes) {
  return guarded([&] {
    auto it = e->t.find(name);
    if (it == e->t.end()) throw Fail{std::string("no tensor ") + name};
    *ptr = it->second.p;
    *bytes = it->second.bytes;
  });
}
const char* eng_upload(eng_engine* e, const char* name, const void* host, size_t bytes, size_t offset) {
  return guarded([&] {
    auto it = e->t.find(name);
    if (it == e->t.end()) throw Fail{std::string("upload: no tensor ") + name};
    if (offset + bytes > it->second.bytes)
      throw Fail{std::string("upload: ") + std::to_string(bytes) + " bytes at " + std::to_string(offset) +
                 " exceed tensor " + name + " (" + std::to_string(it->second.bytes) + " bytes)"};
    ckc(cudaMemcpyAsync(static_cast<char*>(it->second.p) + offset, host, bytes, cudaMemcpyHostToDevice, e->stream),
        "cudaMemcpyAsync(HostToDevice)");
    ckc(cudaStreamSynchronize(e->stream), "cudaStreamSynchronize(upload)");
  });
}
const char* eng_download(eng_engine* e, const char* name, void* host, size_t bytes) {
  return guarded([&] {
    auto it = e->t.find(name);
    if (it == e->t.end()) throw Fail{std::string("download: no tensor ") + name};
    if (bytes > it->second.bytes) throw Fail{std::string("download: more bytes than tensor ") + name + " holds"};
    ckc(cudaMemcpyAsync(host, it->second.p, bytes, cudaMemcpyDeviceToHost, e->stream), "cudaMemcpyAsync(DeviceToHost)");
    ckc(cudaStreamSynchronize(e->stream), "cudaStreamSynchronize(download)");
  });
}
void eng_set_int(eng_engine* e, const char* name, int value) { e->ints[name] = value; }

const char* eng_flux_prepare(eng_engine* e, const eng_flux_config* c, int B, int St, int Si) {
  return guarded([&] {
    e->ready = false;
    e->prepare(*c, B, St, Si);
  });
}
const char* eng_flux_step(eng_engine* e, int profile) {
  return guarded([&] {
    e->prof = profile != 0;
    e->marks.clear();
    try {
      e->step_model();
    } catch (...) {
      e->prof = false;
      throw;
    }
    if (e->prof) {
      ckc(cudaStreamSynchronize(e->stream), "cudaStreamSynchronize(profiled step)");
      e->totals.clear();
      for (size_t i = 0; i + 1 < e->marks.size(); i++) {
        float ms = 0;
        ckc(cudaEventElapsedTime(&ms, e->marks[i].second, e->marks[i + 1].second), "cudaEventElapsedTime");
        auto& tot = e->totals[e->marks[i].first];
        tot.first += ms;
        tot.second += 1;
      }
      e->prof = false;
    }
    const cudaError_t r = cudaGetLastError();
    ckc(r, "eng_flux_step");
  });
}
const char* eng_flux_step_graph(eng_engine* e) {
  return guarded([&] {
    if (!e->graph) {
      e->prof = false;
      // One eager step first, unless an observer records steps (it would count the extra one): the int4p2 GEMM
      // plans time cuBLASLt's configurations on their first call outside capture (svdq_p2_gemm), and a call made
      // during capture would bake cuBLASLt's heuristic choice into the graph (1.15–1.31x slower GEMMs at M = 4608).
      if (e->obs.empty()) e->step_model();
      cudaGraph_t g = nullptr;
      ckc(cudaStreamBeginCapture(e->stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
      try {
        e->step_model();
      } catch (...) {
        cudaStreamEndCapture(e->stream, &g);
        if (g) cudaGraphDestroy(g);
        throw;
      }
      ckc(cudaStreamEndCapture(e->stream, &g), "cudaStreamEndCapture");
      const cudaError_t r = cudaGraphInstantiate(&e->graph, g, 0);
      cudaGraphDestroy(g);
      ckc(r, "cudaGraphInstantiate");
    }
    ckc(cudaGraphLaunch(e->graph, e->stream), "cudaGraphLaunch");
  });
}
const char* eng_synchronize(eng_engine* e) {
  return guarded([&] { ckc(cudaStreamSynchronize(e->stream), "cudaStreamSynchronize"); });
}
const char* eng_profile(eng_engine* e, const char** names, double* ms, int* counts, int* count) {
  return guarded([&] {
    int i = 0;
    for (auto& kv : e->totals) {
      if (i >= 32) break;
      names[i] = kv.first.c_str();
      ms[i] = kv.second.first;
      counts[i] = kv.second.second;
      i++;
    }
    *count = i;
  });
}
void eng_bytes(eng_engine* e, size_t* weights, size_t* workspace, size_t* peak) {
  *weights = e->weights;
  *workspace = e->work;
  *peak = e->peak;
}
const char* eng_linear(eng_engine* e, const char* layer, int N, int K, const char* x, const char* out, int M) {
  return eng_linear_act(e, layer, N, K, x, out, M, ENG_ACT_NONE);
}
const char* eng_linear_act(eng_engine* e, const char* layer, int N, int K, const char* x, const char* out, int M,
                           int act) {
  return guarded([&] {
    if (!e->ready) throw Fail{"eng_linear: call eng_flux_prepare first (the workspace)"};
    if (M <= 0 || M > e->B * e->S) throw Fail{"eng_linear: M must be in 1..B·S of the prepared shapes"};
    const Lin L = e->lin(layer, N, K);
    void* xp = e->need(x, size_t(M) * K * 2);
    void* op = e->need(out, size_t(M) * N * 2);
    e->prof = false;
    if (L.kind == LIN_P2) {
      e->p2_workspace(M, size_t(M) * L.Kx);
      e->p2_weight_buffer({&L});
    }
    e->linear_full(xp, M, L, op, act);
    ckc(cudaStreamSynchronize(e->stream), "cudaStreamSynchronize(eng_linear)");
  });
}

const char* eng_observe(eng_engine* e, int n, const char* const* layers, const int* K, int capacity) {
  return guarded([&] {
    auto drop = [&](const std::string& name) {
      auto it = e->t.find(name);
      if (it == e->t.end()) return;
      cudaFree(it->second.p);
      e->weights -= it->second.bytes;
      e->t.erase(it);
    };
    for (size_t i = 0; i < e->obs.size(); i++)
      for (const char* part : {".absmax", ".reservoir"}) drop("obs." + std::to_string(i) + part);
    drop("obs.plan");
    e->obs.clear();
    e->obs_by_layer.clear();
    e->obs_cap = 0;
    if (e->graph) {  // a captured step has the old slots baked in
      cudaGraphExecDestroy(e->graph);
      e->graph = nullptr;
    }
    if (n == 0) return;
    if (n < 0 || capacity <= 0) throw Fail{"eng_observe: n >= 0 slots and capacity > 0 needed"};
    e->obs_cap = capacity;
    const size_t plan_ints = size_t(1 + 2 * capacity);
    int* plan = static_cast<int*>(e->alloc("obs.plan", plan_ints * n * 4, false));
    ckc(cudaMemsetAsync(plan, 0, plan_ints * n * 4, e->stream), "cudaMemsetAsync(observer plan)");
    for (int i = 0; i < n; i++) {
      if (K[i] <= 0) throw Fail{std::string("eng_observe: slot of ") + layers[i] + " has K " + std::to_string(K[i])};
      ObsSlot o;
      o.layer = layers[i];
      o.K = K[i];
      const std::string p = "obs." + std::to_string(i);
      o.absmax = static_cast<unsigned*>(e->alloc(p + ".absmax", size_t(K[i]) * 4, false));
      o.res = static_cast<float*>(e->alloc(p + ".reservoir", size_t(capacity) * K[i] * 4, false));
      o.plan = plan + plan_ints * i;
      ckc(cudaMemsetAsync(o.absmax, 0, size_t(K[i]) * 4, e->stream), "cudaMemsetAsync(observer absmax)");
      ckc(cudaMemsetAsync(o.res, 0, size_t(capacity) * K[i] * 4, e->stream), "cudaMemsetAsync(observer reservoir)");
      e->obs.push_back(o);
      e->obs_by_layer.emplace(o.layer, i);
    }
    ckc(cudaStreamSynchronize(e->stream), "cudaStreamSynchronize(eng_observe)");
  });
}

const char* eng_time_steps(eng_engine* e, int iters, int graph, double* ms) {
  return guarded([&] {
    cudaEvent_t a, b;
    ckc(cudaEventCreate(&a), "cudaEventCreate");
    ckc(cudaEventCreate(&b), "cudaEventCreate");
    ckc(cudaEventRecord(a, e->stream), "cudaEventRecord");
    for (int i = 0; i < iters; i++) {
      const char* m = graph ? eng_flux_step_graph(e) : eng_flux_step(e, 0);
      if (m) {
        const std::string msg = m;
        cudaEventDestroy(a);
        cudaEventDestroy(b);
        throw Fail{msg};
      }
    }
    ckc(cudaEventRecord(b, e->stream), "cudaEventRecord");
    ckc(cudaEventSynchronize(b), "cudaEventSynchronize");
    float t = 0;
    ckc(cudaEventElapsedTime(&t, a, b), "cudaEventElapsedTime");
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    *ms = t / iters;
  });
}

}  // extern "C"
