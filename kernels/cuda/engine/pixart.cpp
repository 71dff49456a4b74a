// PixArt-Σ transformer step on the GPU (pixart.h), on the shared engine state of engine_core.h: the linears go
// through the same dispatch as FLUX (cuBLAS BF16, W4A4 kernels, W4A16 GEMV), the element-wise work through the
// fused row passes of pixart_ops.h (or, with the engine int "pixart.unfused" = 1, the separate engine_ops.h passes
// they replace: the before/after of docs/benchmarks.md and the reference of the fused path's GPU check).
// Follows diffusers' PixArtTransformer2DModel / BasicTransformerBlock (norm_type "ada_norm_single").
#include "pixart.h"

#include <algorithm>
#include <string>
#include <vector>

#include "engine_core.h"
#include "pixart_ops.h"

struct PixArtState {
  eng_pixart_config c{};
  Lin pe, te1, te2, adaln, cap1, cap2, proj_out;
  struct Block {
    Lin qkv, to_out, q2, kv2, out2, ff0, ff2;
    void* table = nullptr;  // [6, D] bf16
  };
  std::vector<Block> blk;
  void* table = nullptr;  // [2, D] bf16
  // step options (engine ints, read at prepare): fused element-wise passes; W4A4 ff.net.0.proj GEMM writing
  // ff.net.2's quantized input in its epilogue (svdq_gemm_args.next_*)
  bool fused = true, next_quant = false, lt_gelu = true;
  int parts = 7;  // fused pieces (pixart.fused_parts): 1 row passes, 2 head split, 4 modulation; others as engine_ops
  bool lt_refused = false;  // cuBLASLt had no GELU-epilogue kernel (or is missing): the vectorized pass instead
  // workspace
  void *enc, *kvb, *tproj, *e1, *emb, *semb, *t6, *modB, *modF;
  void* mod_all = nullptr;       // [L, B, 6D] bf16: every block's modulation vectors (fused path)
  void** tables = nullptr;       // device array of the L blocks' scale_shift_table pointers
  void* lt_ws = nullptr;         // cuBLASLt workspace of the 16-bit GELU linears
  void *codes2 = nullptr, *ascales2 = nullptr;  // ff.net.2's quantized input written by ff.net.0.proj's epilogue
  float* lora2 = nullptr;        // [Mp, R of ff.net.2] f32
};

namespace {
constexpr size_t LT_WS_BYTES = size_t(4) << 20;  // cuBLASLt workspace for the GELU-epilogue GEMMs (no split-K needed)
// Whether every block's feed-forward can run ff.net.0.proj's GEMM with ff.net.2's quantization in its epilogue:
// both W4A4, ff.net.2's rank one the epilogue computes (0, 16, 32, 64) and the same in every block (one workspace).
bool next_quant_ok(const PixArtState& p) {
  if (p.blk.empty()) return false;
  const int R = p.blk[0].ff2.R;
  if (R != 0 && R != 16 && R != 32 && R != 64) return false;
  for (const PixArtState::Block& k : p.blk)
    if (k.ff0.kind != LIN_W4A4 || k.ff2.kind != LIN_W4A4 || k.ff2.R != R || k.ff2.K != p.blk[0].ff2.K) return false;
  return true;
}
}  // namespace

void eng_engine::pixart_prepare(const eng_pixart_config& cfg, int B_, int St_, int Si_) {
  auto P = std::make_shared<PixArtState>();
  PixArtState& p = *P;
  p.c = cfg;
  B = B_;
  St = St_;
  Si = Si_;
  S = St + Si;  // eng_linear's bound on M: B·(St + Si)
  D = cfg.heads * cfg.head_dim;
  const int d = D;
  if (B <= 0 || B > 8 || St <= 0 || Si <= 0) throw Fail{"pixart prepare: batch in 1..8 and positive token counts needed"};
  if (cfg.heads <= 0 || cfg.head_dim <= 0 || cfg.patch_channels <= 0 || cfg.out_channels <= 0 || cfg.cross_dim <= 0 ||
      cfg.num_layers < 0 || cfg.caption_channels < 0)
    throw Fail{"pixart prepare: bad config"};
  if (cfg.caption_channels > 0 && cfg.cross_dim != d)
    throw Fail{"pixart prepare: with a caption projection cross_attention_dim must equal heads·head_dim"};
  auto opt_int = [&](const char* n) {
    const auto it = ints.find(n);
    return it != ints.end() && it->second != 0;
  };
  p.fused = !opt_int("pixart.unfused");
  p.next_quant = opt_int("pixart.next_quant");
  p.lt_gelu = !opt_int("pixart.no_lt_gelu");
  {
    const auto it = ints.find("pixart.fused_parts");
    p.parts = it == ints.end() ? 7 : (it->second & 7);
  }
  if (p.fused && (d % 8 || cfg.head_dim % 8))
    throw Fail{"pixart prepare: the fused step needs heads·head_dim and head_dim multiples of 8 (D=" +
               std::to_string(d) + ", head_dim=" + std::to_string(cfg.head_dim) + "); set pixart.unfused"};
  p.pe = lin("pos_embed.proj", d, cfg.patch_channels, false);
  p.te1 = lin("adaln_single.emb.timestep_embedder.linear_1", d, 256);
  p.te2 = lin("adaln_single.emb.timestep_embedder.linear_2", d, d);
  p.adaln = lin("adaln_single.linear", 6 * d, d);
  if (cfg.caption_channels > 0) {
    p.cap1 = lin("caption_projection.linear_1", d, cfg.caption_channels, false);
    p.cap2 = lin("caption_projection.linear_2", d, d, false);
  }
  p.proj_out = lin("proj_out", cfg.out_channels, d, false);
  p.table = need("scale_shift_table", size_t(2) * d * 2);
  int kmax = d, rmax = 0;
  for (int i = 0; i < cfg.num_layers; i++) {
    const std::string pf = "transformer_blocks." + std::to_string(i) + ".";
    PixArtState::Block b;
    b.table = need(pf + "scale_shift_table", size_t(6) * d * 2);
    b.qkv = lin(pf + "attn1.qkv", 3 * d, d);
    b.to_out = lin(pf + "attn1.to_out.0", d, d);
    b.q2 = lin(pf + "attn2.to_q", d, d);
    b.kv2 = lin(pf + "attn2.kv", 2 * d, cfg.cross_dim);
    b.out2 = lin(pf + "attn2.to_out.0", d, d);
    b.ff0 = lin(pf + "ff.net.0.proj", 4 * d, d);
    b.ff2 = lin(pf + "ff.net.2", d, 4 * d);
    for (const Lin* L : {&b.qkv, &b.to_out, &b.q2, &b.kv2, &b.out2, &b.ff0, &b.ff2})
      if (L->kind == LIN_W4A4) kmax = std::max(kmax, L->K), rmax = std::max(rmax, L->R);
    p.blk.push_back(b);
  }
  drop_workspace();
  pixart.reset();
  const size_t Mi = size_t(B) * Si, Mt = size_t(B) * St, Mx = std::max(Mi, Mt), bf = 2;
  auto W = [&](const char* n, size_t bytes) { return alloc(std::string("ws.") + n, bytes, true); };
  X = static_cast<float*>(W("X", Mi * d * 4));
  nrm = W("nrm", Mi * d * bf);
  qkv = W("qkv", Mx * 3 * d * bf);
  Q = W("Q", Mi * d * bf);
  K = W("K", Mx * d * bf);
  V = W("V", Mx * d * bf);
  y = W("y", Mi * d * bf);
  h = W("h", Mx * 4 * d * bf);
  p.enc = cfg.caption_channels > 0 ? W("enc", Mt * d * bf) : nullptr;
  p.tproj = W("tproj", size_t(B) * 256 * bf);
  p.e1 = W("e1", size_t(B) * d * bf);
  p.emb = W("emb", size_t(B) * d * bf);
  p.semb = W("semb", size_t(B) * d * bf);
  p.t6 = W("t6", size_t(B) * 6 * d * bf);
  p.modB = W("modB", size_t(B) * 6 * d * bf);
  p.modF = W("modF", size_t(B) * 2 * d * bf);
  const int L = cfg.num_layers;
  if (p.fused && p.lt_gelu) p.lt_ws = W("lt_workspace", LT_WS_BYTES);
  if (p.fused && L > 0) {
    p.mod_all = W("mod_all", size_t(L) * B * 6 * d * bf);
    p.tables = static_cast<void**>(W("tables", size_t(L) * sizeof(void*)));
    std::vector<void*> tp;
    for (const PixArtState::Block& k : p.blk) tp.push_back(k.table);
    ckc(cudaMemcpy(p.tables, tp.data(), tp.size() * sizeof(void*), cudaMemcpyHostToDevice), "cudaMemcpy(tables)");
  }
  codes_format = svdq_default_codes_format();
  const size_t Mp = size_t(svdq_pad_m(int(size_t(B) * S)));
  codes = W("codes", Mp * kmax);
  ascales = W("ascales", Mp * (kmax / 64) * bf);
  lora_max = rmax;
  lora_act = rmax ? static_cast<float*>(W("lora_act", Mp * rmax * 4)) : nullptr;
  if (lora_act) ckc(cudaMemset(lora_act, 0, Mp * rmax * 4), "cudaMemset(lora_act)");
  if (p.next_quant && next_quant_ok(p)) {
    const Lin& f2 = p.blk[0].ff2;
    p.codes2 = W("codes2", Mp * f2.K);  // s8 / f8: one byte a code (s4: half of it used)
    p.ascales2 = W("ascales2", Mp * (f2.K / 64) * bf);
    if (f2.R) {
      p.lora2 = static_cast<float*>(W("lora2", Mp * f2.R * 4));
      ckc(cudaMemset(p.lora2, 0, Mp * f2.R * 4), "cudaMemset(lora2)");
    }
  }
  need("in.hidden", Mi * cfg.patch_channels * bf);
  need("in.pos", size_t(Si) * d * bf);  // one copy: the same table for every batch item
  need("in.encoder", Mt * (cfg.caption_channels > 0 ? cfg.caption_channels : cfg.cross_dim) * bf);
  need("in.timestep", size_t(B) * 4);
  need("in.kv_len", size_t(B) * 4);
  need("out", Mi * cfg.out_channels * bf);
  pixart = P;
  model = 2;
  ready = true;
}

void eng_engine::pixart_step() {
  if (!ready || model != 2 || !pixart) throw Fail{"pixart step: call eng_pixart_prepare first"};
  PixArtState& p = *static_cast<PixArtState*>(pixart.get());
  if (!p.fused) {
    // the step as separate engine_ops.h passes (engine int "pixart.unfused" = 1): the reference of the fused step
    const int d = D, H = p.c.heads, Dh = p.c.head_dim, Mi = B * Si, Mt = B * St;
    const float eps = p.c.norm_eps;
    void* s = stream;
    char* tab0 = static_cast<char*>(p.table);
    // AdaLayerNormSingle: emb = TimestepEmbedding(sinusoid(t)); t6 = linear(silu(emb)) (t not rescaled: mult 1)
    mark("embedders");
    ck(eng_timestep_embedding(static_cast<const float*>(t["in.timestep"].p), B, 1.f, 256, p.tproj, s));
    linear_full(p.tproj, B, p.te1, p.e1, ENG_ACT_SILU);
    linear_full(p.e1, B, p.te2, p.emb);
    mark("embedders");
    ck(eng_bias_act(p.emb, d, p.semb, d, nullptr, B, d, ENG_ACT_SILU, s));
    linear_full(p.semb, B, p.adaln, p.t6);
    // caption projection: linear_2(gelu_tanh(linear_1(enc)))
    const void* enc = t["in.encoder"].p;
    if (p.c.caption_channels > 0) {
      linear_full(enc, Mt, p.cap1, h, ENG_ACT_GELU_TANH);
      linear_full(h, Mt, p.cap2, p.enc);
      enc = p.enc;
    }
    // patch embedding + position embedding into the residual stream (f32)
    const void* b = linear(t["in.hidden"].p, Mi, p.pe, y, d);
    mark("residual / gate");
    ck(eng_residual_store(X, Si, 0, Si, B, d, y, b, s));
    for (int i = 0; i < B; i++)  // in.pos is one [Si, D] table for every item
      ck(eng_gated_residual(X + size_t(i) * Si * d, Si, 0, Si, 1, d, t["in.pos"].p, d, nullptr, nullptr, 0, -1, s));
    const int* kv_len = static_cast<const int*>(t["in.kv_len"].p);
    for (const PixArtState::Block& k : p.blk) {
      // mod[b] = scale_shift_table + t6[b]: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
      mark("modulation");
      ck(eng_bias_act(p.t6, 6 * d, p.modB, 6 * d, k.table, B, 6 * d, ENG_ACT_NONE, s));
      mark("layernorm + modulate");
      ck(eng_layernorm_modulate(X, Si, 0, Si, B, d, eps, p.modB, 6 * d, 0, d, nrm, s));
      // self-attention
      b = linear(nrm, Mi, k.qkv, qkv, 3 * d);
      mark("split heads");
      ck(eng_split_heads(qkv, 3 * d, b, B, Si, H, Dh, 3, Q, K, V, s));
      mark("attention");
      ck(eng_attention(Q, K, V, B, H, Si, Dh, 0, nullptr, y, d, s));
      b = linear(y, Mi, k.to_out, nrm, d);
      mark("residual / gate");
      ck(eng_gated_residual(X, Si, 0, Si, B, d, nrm, d, b, p.modB, 6 * d, 2 * d, s));
      // cross-attention on the un-normalized stream (PixArt: no norm2 before attn2), text keys masked past kv_len
      mark("residual / gate");
      ck(eng_residual_load(X, Si, 0, Si, B, d, nrm, s));
      b = linear(nrm, Mi, k.q2, y, d);
      mark("split heads");
      ck(eng_split_heads(y, d, b, B, Si, H, Dh, 1, Q, nullptr, nullptr, s));
      b = linear(enc, Mt, k.kv2, qkv, 2 * d);
      mark("split heads");
      ck(eng_split_heads(qkv, 2 * d, b, B, St, H, Dh, 2, K, V, nullptr, s));
      mark("attention (cross)");
      ck(eng_attention_cross(Q, K, V, B, H, Si, St, Dh, kv_len, y, d, s));
      b = linear(y, Mi, k.out2, nrm, d);
      mark("residual / gate");
      ck(eng_gated_residual(X, Si, 0, Si, B, d, nrm, d, b, nullptr, 0, -1, s));
      // feed-forward
      mark("layernorm + modulate");
      ck(eng_layernorm_modulate(X, Si, 0, Si, B, d, eps, p.modB, 6 * d, 3 * d, 4 * d, nrm, s));
      linear_full(nrm, Mi, k.ff0, h, ENG_ACT_GELU_TANH);
      b = linear(h, Mi, k.ff2, y, d);
      mark("residual / gate");
      ck(eng_gated_residual(X, Si, 0, Si, B, d, y, d, b, p.modB, 6 * d, 5 * d, s));
    }
    // final layer: shift, scale = scale_shift_table[2, D] + emb (not silu'd); LayerNorm eps 1e-6 (diffusers norm_out)
    mark("modulation");
    ck(eng_bias_act(p.emb, d, p.modF, 2 * d, tab0, B, d, ENG_ACT_NONE, s));
    ck(eng_bias_act(p.emb, d, static_cast<char*>(p.modF) + size_t(d) * 2, 2 * d, tab0 + size_t(d) * 2, B, d,
                    ENG_ACT_NONE, s));
    mark("layernorm + modulate");
    ck(eng_layernorm_modulate(X, Si, 0, Si, B, d, 1e-6f, p.modF, 2 * d, 0, d, nrm, s));
    linear_full(nrm, Mi, p.proj_out, t["out"].p);
    mark("end");
    return;
  }
  const int d = D, H = p.c.heads, Dh = p.c.head_dim, Mi = B * Si, Mt = B * St, L = p.c.num_layers;
  const float eps = p.c.norm_eps;
  void* s = stream;
  char* tab0 = static_cast<char*>(p.table);
  // one row pass of the residual stream (pixart_ops.h): X (+)= [gate ⊙] (y + bias) [+ pos], then out = bf16(X)
  // (out_mode 1) or LayerNorm-modulate(X) (out_mode 2, shift / scale vectors of stride mod_stride)
  auto rows = [&](const void* y, const void* bias, const void* gate, const void* add, bool store, int out_mode,
                  const void* shift, const void* scale, int mod_stride, float ln_eps, void* out) {
    pix_rows_args a{};
    a.X = X;
    a.M = Mi;
    a.n = Si;
    a.D = d;
    a.y = y;
    a.ld_y = d;
    a.bias = bias;
    a.gate = gate;
    a.add = add;
    a.store = store ? 1 : 0;
    a.out_mode = out_mode;
    a.shift = shift;
    a.scale = scale;
    a.mod_stride = mod_stride;
    a.eps = ln_eps;
    a.out = out;
    if (p.parts & 1) {
      mark(out_mode == 2 ? "residual + layernorm + modulate (fused)" : "residual + gate (fused)");
      ck(pix_rows(&a, s));
      return;
    }
    // the same through the separate engine_ops.h passes (pixart.fused_parts without 1)
    mark("residual / gate");
    if (y && store) ck(eng_residual_store(X, Si, 0, Si, B, d, y, bias, s));
    else if (y) {
      const char* g = static_cast<const char*>(gate);
      ck(eng_gated_residual(X, Si, 0, Si, B, d, y, d, bias, g, mod_stride, g ? 0 : -1, s));
    }
    if (y && add)
      for (int i = 0; i < B; i++)
        ck(eng_gated_residual(X + size_t(i) * Si * d, Si, 0, Si, 1, d, add, d, nullptr, nullptr, 0, -1, s));
    if (out_mode == 1) ck(eng_residual_load(X, Si, 0, Si, B, d, out, s));
    if (out_mode == 2) {
      mark("layernorm + modulate");
      const int scale_off = int((static_cast<const char*>(scale) - static_cast<const char*>(shift)) / 2);
      ck(eng_layernorm_modulate(X, Si, 0, Si, B, d, ln_eps, shift, mod_stride, 0, scale_off, out, s));
    }
  };
  auto split = [&](const void* src, int ld, const void* bias, int n, int parts, void* d0, void* d1, void* d2) {
    mark("split heads");
    if (p.parts & 2) ck(pix_split_heads(src, ld, bias, B, n, H, Dh, parts, d0, d1, d2, s));
    else ck(eng_split_heads(src, ld, bias, B, n, H, Dh, parts, d0, d1, d2, s));
  };
  // x · Wᵀ + b then GELU-tanh: in the W4A4 GEMM's epilogue; 16-bit: cuBLASLt's bias + GELU epilogue, or (no
  // cuBLASLt kernel, or pixart.no_lt_gelu) the cuBLAS GEMM and one vectorized bias + GELU pass
  auto linear_gelu = [&](const void* x, int M, const Lin& Lw, void* out) {
    if (Lw.kind != LIN_BF16) return linear_full(x, M, Lw, out, ENG_ACT_GELU_TANH);
    if (p.lt_ws && !p.lt_refused && Lw.N % 8 == 0 && Lw.K % 8 == 0) {
      observe(Lw, x, M);
      mark("cuBLASLt bf16 + bias + GELU");
      const char* m = pix_gemm_gelu_lt(x, Lw.w, Lw.bias, out, M, Lw.N, Lw.K, p.lt_ws, LT_WS_BYTES, s);
      if (!m) return;
      if (std::string(m).find("unsupported") == std::string::npos) throw Fail{Lw.name + ": " + m};
      p.lt_refused = true;  // remembered: later steps (and a captured graph) take the other path
    }
    const void* b = linear(x, M, Lw, out, Lw.N);
    mark("bias + GELU (vectorized)");
    ck(pix_bias_gelu(out, Lw.N, b, M, Lw.N, s));
  };
  // ff.net.0.proj (GELU) with ff.net.2's input quantized in its epilogue (codes byte-identical to svdq_quantize_act
  // on its bf16 output, svdq_cuda.h), then ff.net.2 on those codes: h is still written (the GEMM's out), not re-read
  auto ff_next_quant = [&](const Lin& f0, const Lin& f2) {
    observe(f0, nrm, Mi);
    const QAct q = quant(nrm, Mi, f0, true);
    if (f0.R > 0 && q.R != f0.R) {
      mark("w4a4 low-rank down (cuBLAS)");
      ck(svdq_gemm_cublas_ex(SVDQ_BF16, 1, nrm, f0.K, f0.lora_down, f0.K, lora_act, f0.R, Mi, f0.R, f0.K, 0.f, stream));
    }
    svdq_gemm_args g{};
    g.dtype = SVDQ_BF16;
    g.codes = codes;
    g.codes_format = codes_format;
    g.ascales = ascales;
    g.qweight = f0.qweight;
    g.wscales = f0.wscales;
    g.lora_act = f0.R ? lora_act : nullptr;
    g.lora_up = f0.lora_up;
    g.bias = f0.bias;
    g.out = h;
    g.M = Mi;
    g.N = f0.N;
    g.K = f0.K;
    g.R = f0.R;
    g.act_unsigned = f0.unsig;
    g.gelu = 1;
    g.next_codes = p.codes2;
    g.next_ascales = p.ascales2;
    g.next_lora_act = f2.R ? p.lora2 : nullptr;
    g.next_smooth = f2.smooth;
    g.next_lora_down = f2.R ? f2.lora_down : nullptr;
    g.next_R = f2.R;
    g.next_unsigned = f2.unsig;
    g.next_codes_format = codes_format;
    mark("w4a4 gemm + next-layer quantize");
    ck(svdq_gemm_w4a4(&g, stream));
    observe(f2, h, Mi);
    svdq_gemm_args g2{};
    g2.dtype = SVDQ_BF16;
    g2.codes = p.codes2;
    g2.codes_format = codes_format;
    g2.ascales = p.ascales2;
    g2.qweight = f2.qweight;
    g2.wscales = f2.wscales;
    g2.lora_act = f2.R ? p.lora2 : nullptr;
    g2.lora_up = f2.lora_up;
    g2.bias = f2.bias;
    g2.out = y;
    g2.M = Mi;
    g2.N = f2.N;
    g2.K = f2.K;
    g2.R = f2.R;
    g2.act_unsigned = f2.unsig;
    mark("w4a4 gemm");
    ck(svdq_gemm_w4a4(&g2, stream));
  };
  // AdaLayerNormSingle: emb = TimestepEmbedding(sinusoid(t)); t6 = linear(silu(emb)) (t not rescaled: mult 1)
  mark("embedders");
  ck(eng_timestep_embedding(static_cast<const float*>(t["in.timestep"].p), B, 1.f, 256, p.tproj, s));
  linear_full(p.tproj, B, p.te1, p.e1, ENG_ACT_SILU);
  linear_full(p.e1, B, p.te2, p.emb);
  mark("modulation");
  ck(eng_bias_act(p.emb, d, p.semb, d, nullptr, B, d, ENG_ACT_SILU, s));
  linear_full(p.semb, B, p.adaln, p.t6);
  // mod_all[l, b] = scale_shift_table_l + t6[b]: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp;
  // final layer: shift, scale = scale_shift_table[2, D] + emb (not silu'd)
  mark("modulation");
  if (L > 0 && (p.parts & 4)) ck(pix_modulation_all(p.t6, p.tables, L, B, 6 * d, p.mod_all, s));
  for (int l = 0; l < L && !(p.parts & 4); l++)
    ck(eng_bias_act(p.t6, 6 * d, static_cast<char*>(p.mod_all) + size_t(l) * B * 6 * d * 2, 6 * d, p.blk[l].table, B,
                    6 * d, ENG_ACT_NONE, s));
  ck(eng_bias_act(p.emb, d, p.modF, 2 * d, tab0, B, d, ENG_ACT_NONE, s));
  ck(eng_bias_act(p.emb, d, static_cast<char*>(p.modF) + size_t(d) * 2, 2 * d, tab0 + size_t(d) * 2, B, d,
                  ENG_ACT_NONE, s));
  const char* modF = static_cast<const char*>(p.modF);
  const size_t vec = size_t(d) * 2;  // bytes of one modulation vector
  auto mod_of = [&](int l) { return static_cast<const char*>(p.mod_all) + size_t(l) * B * 6 * vec; };
  // caption projection: linear_2(gelu_tanh(linear_1(enc)))
  const void* enc = t["in.encoder"].p;
  if (p.c.caption_channels > 0) {
    linear_gelu(enc, Mt, p.cap1, h);
    linear_full(h, Mt, p.cap2, p.enc);
    enc = p.enc;
  }
  // the LayerNorm-modulate that follows each residual update: block l's norm1 (l < L) or the final norm (eps 1e-6)
  auto norm_into = [&](int l, const void* y, const void* bias, const void* gate, const void* add, bool store) {
    if (l < L) rows(y, bias, gate, add, store, 2, mod_of(l), mod_of(l) + vec, 6 * d, eps, nrm);
    else rows(y, bias, gate, add, store, 2, modF, modF + vec, 2 * d, 1e-6f, nrm);
  };
  // patch embedding + position embedding (one [Si, D] table for every item) into the residual stream, normalized
  const void* b = linear(t["in.hidden"].p, Mi, p.pe, y, d);
  norm_into(0, y, b, nullptr, t["in.pos"].p, true);
  const int* kv_len = static_cast<const int*>(t["in.kv_len"].p);
  for (int l = 0; l < L; l++) {
    const PixArtState::Block& k = p.blk[l];
    const char* mod = mod_of(l);
    // self-attention on nrm = LN(X)·(1 + scale_msa) + shift_msa
    b = linear(nrm, Mi, k.qkv, qkv, 3 * d);
    split(qkv, 3 * d, b, Si, 3, Q, K, V);
    mark("attention");
    ck(eng_attention(Q, K, V, B, H, Si, Dh, 0, nullptr, y, d, s));
    b = linear(y, Mi, k.to_out, nrm, d);
    // X += gate_msa ⊙ attn; the cross-attention query reads the un-normalized stream (PixArt: no norm2) in bf16
    rows(nrm, b, mod + 2 * vec, nullptr, false, 1, nullptr, nullptr, 6 * d, 0.f, nrm);
    b = linear(nrm, Mi, k.q2, y, d);
    split(y, d, b, Si, 1, Q, nullptr, nullptr);
    b = linear(enc, Mt, k.kv2, qkv, 2 * d);
    split(qkv, 2 * d, b, St, 2, K, V, nullptr);
    mark("attention (cross)");
    ck(eng_attention_cross(Q, K, V, B, H, Si, St, Dh, kv_len, y, d, s));
    b = linear(y, Mi, k.out2, nrm, d);
    // X += cross-attention; nrm = LN(X)·(1 + scale_mlp) + shift_mlp
    rows(nrm, b, nullptr, nullptr, false, 2, mod + 3 * vec, mod + 4 * vec, 6 * d, eps, nrm);
    // feed-forward
    if (p.codes2) {
      ff_next_quant(k.ff0, k.ff2);
      b = nullptr;  // bias in the W4A4 epilogue
    } else {
      linear_gelu(nrm, Mi, k.ff0, h);
      b = linear(h, Mi, k.ff2, y, d);
    }
    // X += gate_mlp ⊙ ff; nrm = the next block's norm1 (or the final norm)
    norm_into(l + 1, y, b, mod + 5 * vec, nullptr, false);
  }
  linear_full(nrm, Mi, p.proj_out, t["out"].p);
  mark("end");
}

extern "C" const char* eng_pixart_prepare(eng_engine* e, const eng_pixart_config* c, int B, int St, int Si) {
  return guarded([&] {
    e->ready = false;
    e->pixart_prepare(*c, B, St, Si);
  });
}
