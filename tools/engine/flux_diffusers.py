"""diffusers' FluxTransformer2DModel (FLUX.1-dev config, BF16, torch SDPA) with the engine's deterministic random
weights and inputs (peer_common.py: the draw of packages/engine-cuda/src/random.ts), timed for one step at
1024x1024 (4096 image + 512 text tokens), batch 1. Writes the output (raw bf16) and a JSON line with step ms
(median of CUDA-event timings), weight bytes and torch.cuda.max_memory_allocated; --fp32-ref also runs the same
model in float32 (no TF32) and writes its output (peer_common.run_peer).

Usage (GPU machine, diffusers sources on sys.path): python3 flux_diffusers.py OUT_DIR [--layers 19 --single 38]
[--fp32-ref]
"""
import math
import sys

import torch

from peer_common import int_arg, random_input, random_model, run_peer


def main() -> None:
    out_dir = sys.argv[1]
    layers = int_arg("--layers", 19)
    single = int_arg("--single", 38)
    from diffusers import FluxTransformer2DModel

    model, weight_bytes, dev, t0 = random_model(
        FluxTransformer2DModel, patch_size=1, in_channels=64, num_layers=layers, num_single_layers=single,
        attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
        guidance_embeds=True, axes_dims_rope=(16, 56, 56),
    )
    St, Si = 512, 4096
    side = int(math.isqrt(Si))
    img_ids = torch.zeros(Si, 3, device=dev)
    img_ids[:, 1] = torch.arange(Si, device=dev) // side
    img_ids[:, 2] = torch.arange(Si, device=dev) % side
    inputs = {
        "hidden_states": random_input("in.hidden", (1, Si, 64), dev),
        "encoder_hidden_states": random_input("in.encoder", (1, St, 4096), dev),
        "pooled_projections": random_input("in.pooled", (1, 768), dev),
        "timestep": torch.tensor([0.5], device=dev),
        "img_ids": img_ids,
        "txt_ids": torch.zeros(St, 3, device=dev),
        "guidance": torch.tensor([3.5], device=dev),
    }
    run_peer(model, inputs, weight_bytes, t0, out_dir, "diffusers", "diffusers BF16 (torch SDPA)")


if __name__ == "__main__":
    main()
