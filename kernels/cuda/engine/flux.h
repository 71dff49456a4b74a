// The FLUX.1 transformer step on the GPU (kernels/cuda/engine/flux.cpp): an engine owns every device allocation
// (named weight tensors, inputs, output, workspace) and runs one FluxTransformer2DModel forward with no host round
// trip inside the step. C API; every function returns NULL or a message naming what failed (valid until the next
// call on the same thread).
//
// Device tensors by name (all written by the host before eng_flux_prepare; L is a layer name, "blk" a block prefix):
// | name                              | shape / bytes          | dtype | notes                                          |
// |-----------------------------------|------------------------|-------|------------------------------------------------|
// | L.weight, L.bias                  | [N, K], [N]            | bf16  | a 16-bit linear (cuBLAS)                        |
// | L.qweight, L.wscales              | N·K/2 B, N·K/64        | u8, bf16 | W4A4 residual, nunchaku checkpoint layouts (svdq_cuda.h) |
// | L.lora_down, L.lora_up            | [R, K], [N, R]         | bf16  | row-major low-rank branch                       |
// | L.smooth                          | [K]                    | bf16  | λ (optional)                                    |
// | L.w4a16_codes/_scales/_zeros      | N·K/2 B, [N, K/64] x2  | u8, bf16 | W4A16 (engine_ops.h layout)                  |
// | L.p2_weight                       | [N, Kx], Kx = K (+ 96) | e4m3  | int4p2 weight operand (p2_fp8.h b8; opt-in, sm_89+) |
// | L.p2_codes, L.p2_exps             | N·K/2 B, [N, K/64]     | u8, i8 | int4p2 kept 4-bit instead of p2_weight: codes and group exponents (engine_ops.h eng_p2_expand) |
// | L.p2_lowrank                      | [N, 96]                | e4m3  | with p2_codes: the low-rank columns of p2_weight (absent: Kx = K) |
// | L.p2_wscale                       | [N]                    | f32   | int4p2 S_w                                      |
// | L.p2_lr_shift                     | [32]                   | int32 | c_r of the low-rank columns (with L.lora_down [32, K]) |
// | blk.attn.qkv.*                    | N = 3D                 |       | to_q, to_k, to_v stacked along N                |
// | transformer_blocks.i.attn.add_qkv.* | N = 3D               |       | add_q/k/v_proj stacked                          |
// | blk.attn.norm_q.weight, …         | [Dh]                   | bf16  | QK RMSNorm weights                              |
// | in.hidden, in.encoder, in.pooled  | [B·Si, Cin], [B·St, Cj], [B, Cp] | bf16 | inputs                              |
// | in.timestep, in.guidance          | [B]                    | f32   | in [0, 1] (x1000 inside, as diffusers)          |
// | in.ids                            | [St + Si, 3]           | f32   | text ids then image ids                         |
// | out                               | [B·Si, patch²·Cout]    | bf16  | written by the step                             |
// Single blocks in W4A4 mode quantize their normalized input once for attn.qkv and proj_mlp, with attn.qkv's
// smooth (the two layers form one input group; proj_mlp.smooth must equal it and is not read). In int4p2 mode the
// pair shares more: one activation operand with attn.qkv's smooth, lora_down [32, K] and p2_lr_shift, i.e. one rank-32
// branch of the stacked [7D, K] weight (proj_mlp.p2_weight has attn.qkv's Kx; its own lora_down is not read).
// A layer is int4p2 when L.p2_weight or L.p2_codes exists: K in {1024, 3072, 12288, 15360}, N % 8 == 0, rank 0 or
// 32. A 4-bit-stored layer (p2_codes) is expanded to its e4m3 operand in one workspace buffer (the largest N·Kx)
// right before its GEMM: 0.52 byte per weight held instead of 1, one extra pass over the layer's weights per call.
#ifndef SVDQ_ENGINE_FLUX_H
#define SVDQ_ENGINE_FLUX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eng_engine eng_engine;

typedef struct {
  int heads, head_dim, in_channels, out_channels;  // out_channels = patch² · out_channels of the config
  int joint_dim, pooled_dim, num_layers, num_single_layers, guidance;
  int axes[3];
} eng_flux_config;

const char* eng_create(eng_engine** e);
void eng_destroy(eng_engine* e);  // frees every allocation
// Allocates (or replaces) a named tensor of `bytes` bytes; *ptr receives the device pointer.
const char* eng_alloc(eng_engine* e, const char* name, size_t bytes, void** ptr);
const char* eng_free_tensor(eng_engine* e, const char* name);
// The named tensor's device pointer and size, or an error naming it.
const char* eng_tensor(eng_engine* e, const char* name, void** ptr, size_t* bytes);
const char* eng_upload(eng_engine* e, const char* name, const void* host, size_t bytes, size_t offset);
const char* eng_download(eng_engine* e, const char* name, void* host, size_t bytes);
void eng_set_int(eng_engine* e, const char* name, int value);  // per-layer flags, e.g. "L.act_unsigned"
// Resolves every layer of the model (errors name the missing or mis-sized tensor) and allocates the workspace
// for batch B with St text and Si image tokens.
const char* eng_flux_prepare(eng_engine* e, const eng_flux_config* c, int B, int St, int Si);
// The step functions below (eng_flux_step, eng_flux_step_graph, eng_time_steps, eng_linear) run whichever model
// the last prepare set up (eng_flux_prepare or eng_pixart_prepare of pixart.h).
// One transformer step: in.* → out. profile != 0: CUDA events around every op; eng_profile reads the totals.
const char* eng_flux_step(eng_engine* e, int profile);
// Captures the step into a CUDA graph once, then replays it (same buffers; inputs may change between calls). The
// first call runs one eager step before capturing (not while an observer records), so that first-call tuning happens.
const char* eng_flux_step_graph(eng_engine* e);
const char* eng_synchronize(eng_engine* e);
// Milliseconds of the last profiled step per op kind: names[i] / ms[i], i < *count (<= 32).
const char* eng_profile(eng_engine* e, const char** names, double* ms, int* counts, int* count);
// Bytes allocated now: weights (every tensor not created by prepare) and workspace; peak of their sum.
void eng_bytes(eng_engine* e, size_t* weights, size_t* workspace, size_t* peak);
// One linear layer of the prepared model on its own (tests): out [M, N] = layer(x [M, K]) with bias (and the
// layer's W4A4 / W4A16 / 16-bit path), x and out named tensors, M <= B·(St + Si) of the prepared shapes.
const char* eng_linear(eng_engine* e, const char* layer, int N, int K, const char* x, const char* out, int M);
// The same with an activation after the bias (engine_ops.h eng_act: 0 none, 1 GELU-tanh, 2 SiLU).
const char* eng_linear_act(eng_engine* e, const char* layer, int N, int K, const char* x, const char* out, int M,
                           int act);
// Calibration observer: n slots, slot i records the input of engine linear layers[i] (K[i] channels; several slots
// may name one layer) during every step: per-channel absmax accumulated over steps and the reservoir rows its plan
// names. Tensors per slot (created here, zeroed; weights in eng_bytes):
// | obs.<i>.absmax    | [K]               | u32 | f32 bit patterns of max |x| per channel (NaN/inf stay visible) |
// | obs.<i>.reservoir | [capacity, K]     | f32 | reservoir rows                                               |
// | obs.plan          | [n, 1 + 2·capacity] | i32 | row i: slot i's count, then (slot, row) pairs with distinct slots, for the next step; written by the host |
// n = 0 removes the observer. Replaces any earlier slots (their statistics are freed).
const char* eng_observe(eng_engine* e, int n, const char* const* layers, const int* K, int capacity);
// Times `iters` steps between CUDA events (graph replays when graph != 0); milliseconds per step.
const char* eng_time_steps(eng_engine* e, int iters, int graph, double* ms);

#ifdef __cplusplus
}
#endif

#endif
