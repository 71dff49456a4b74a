// PixArt-Σ transformer step on the GPU (pixart.h), on the shared engine state of engine_core.h: the linears go
// through the same dispatch as FLUX (cuBLAS BF16, W4A4 kernels, W4A16 GEMV), the rest through engine_ops.h.
// Follows diffusers' PixArtTransformer2DModel / BasicTransformerBlock (norm_type "ada_norm_single").
#include "pixart.h"

#include <algorithm>
#include <string>
#include <vector>

#include "engine_core.h"

struct PixArtState {
  eng_pixart_config c{};
  Lin pe, te1, te2, adaln, cap1, cap2, proj_out;
  struct Block {
    Lin qkv, to_out, q2, kv2, out2, ff0, ff2;
    void* table = nullptr;  // [6, D] bf16
  };
  std::vector<Block> blk;
  void* table = nullptr;  // [2, D] bf16
  // workspace
  void *enc, *kvb, *tproj, *e1, *emb, *semb, *t6, *modB, *modF;
};

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
  codes_format = svdq_default_codes_format();
  const size_t Mp = size_t(svdq_pad_m(int(size_t(B) * S)));
  codes = W("codes", Mp * kmax);
  ascales = W("ascales", Mp * (kmax / 64) * bf);
  lora_max = rmax;
  lora_act = rmax ? static_cast<float*>(W("lora_act", Mp * rmax * 4)) : nullptr;
  if (lora_act) ckc(cudaMemset(lora_act, 0, Mp * rmax * 4), "cudaMemset(lora_act)");
  need("in.hidden", Mi * cfg.patch_channels * bf);
  need("in.pos", Mi * d * bf);
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
  ck(eng_gated_residual(X, Si, 0, Si, B, d, t["in.pos"].p, d, nullptr, nullptr, 0, -1, s));
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
}

extern "C" const char* eng_pixart_prepare(eng_engine* e, const eng_pixart_config* c, int B, int St, int Si) {
  return guarded([&] {
    e->ready = false;
    e->pixart_prepare(*c, B, St, Si);
  });
}
