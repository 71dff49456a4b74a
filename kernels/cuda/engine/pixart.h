// The PixArt-Σ transformer step on the GPU (kernels/cuda/engine/pixart.cpp): PixArtTransformer2DModel
// (ada_norm_single) on the engine of flux.h — same C API for tensors, stepping (eng_flux_step, eng_flux_step_graph,
// eng_time_steps and eng_linear run whichever model the last prepare set up), profiling and memory.
//
// Device tensors by name (written by the host before eng_pixart_prepare; "blk" = transformer_blocks.i):
// | name                                  | shape                  | dtype | notes                                   |
// |---------------------------------------|------------------------|-------|-----------------------------------------|
// | pos_embed.proj.*                      | [D, Cp], Cp = C·p²     |       | patch embedding as a linear of unfolded patches (conv weight [D, C, p, p] flattened) |
// | adaln_single.emb.timestep_embedder.linear_1/_2.* | [D, 256], [D, D] |  | timestep embedder                         |
// | adaln_single.linear.*                 | [6D, D]                |       | AdaLN-single modulation (W4A16 in the SVDQuant recipe) |
// | caption_projection.linear_1/_2.*      | [D, Cc], [D, D]        |       | caption MLP (GELU-tanh), when caption = 1 |
// | scale_shift_table                     | [2, D]                 | bf16  | final shift, scale                      |
// | blk.scale_shift_table                 | [6, D]                 | bf16  | per-block modulation table              |
// | blk.attn1.qkv.*                       | N = 3D                 |       | attn1.to_q, to_k, to_v stacked along N  |
// | blk.attn1.to_out.0.*, blk.attn2.to_q.*, blk.attn2.to_out.0.* | [D, D] |   |                                         |
// | blk.attn2.kv.*                        | [2D, Dx]               |       | attn2.to_k, to_v stacked (Dx = cross_dim) |
// | blk.ff.net.0.proj.*, blk.ff.net.2.*   | [4D, D], [D, 4D]       |       | FF (GELU-tanh between)                  |
// | proj_out.*                            | [p²·oc, D]             |       | final projection                        |
// | in.hidden                             | [B·Si, Cp]             | bf16  | latents unfolded into patches (row-major grid, (c, pi, pj) columns) |
// | in.pos                                | [B·Si, D]              | bf16  | 2-D sin-cos position embedding (repeated per batch item) |
// | in.encoder                            | [B·St, Cc or Dx]       | bf16  | T5 embeddings                           |
// | in.timestep                           | [B]                    | f32   | in [0, 1000) (not rescaled)             |
// | in.kv_len                             | [B]                    | i32   | kept text tokens per item (prefix mask) |
// | out                                   | [B·Si, p²·oc]          | bf16  | per patch, (pi, pj, channel) columns    |
// A linear "L.*" is L.weight (16-bit), L.qweight… (W4A4) or L.w4a16_codes… (W4A16), as in flux.h.
#ifndef SVDQ_ENGINE_PIXART_H
#define SVDQ_ENGINE_PIXART_H

#include "flux.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int heads, head_dim;
  int patch_channels;  // C·p² (the patch embedding's K)
  int out_channels;    // p²·out_channels of the config
  int caption_channels;  // 0: no caption projection (in.encoder is cross_dim wide)
  int cross_dim, num_layers;
  float norm_eps;
} eng_pixart_config;

// Resolves every tensor of the model (errors name the missing or mis-sized one) and allocates the workspace for
// batch B with St text and Si image tokens.
const char* eng_pixart_prepare(eng_engine* e, const eng_pixart_config* c, int B, int St, int Si);

#ifdef __cplusplus
}
#endif

#endif
