"""diffusers' PixArtTransformer2DModel (PixArt-Σ-XL-2-1024-MS config, BF16, torch SDPA) with the engine's
deterministic random weights and inputs (peer_common.py: the draw of packages/engine-cuda/src/random.ts; the
patch-embedding conv's rule sees its fan-in C·p·p), timed for one step at 1024x1024 (4096 image + 300 text tokens),
batch 2 (CFG), text mask keeping 300 and 37 tokens, timestep 500. Writes the output (raw bf16 [2, 8, 128, 128]) and
a JSON line with step ms (median of CUDA-event timings), weight bytes and torch.cuda.max_memory_allocated;
--fp32-ref also runs the same model in float32 (no TF32) and writes its output (peer_common.run_peer).

Usage (GPU machine, diffusers sources on sys.path): python3 pixart_diffusers.py OUT_DIR [--layers 28] [--fp32-ref]
"""
import sys

import torch

from peer_common import int_arg, random_input, random_model, run_peer


def main() -> None:
    out_dir = sys.argv[1]
    layers = int_arg("--layers", 28)
    from diffusers import PixArtTransformer2DModel

    model, weight_bytes, dev, t0 = random_model(
        PixArtTransformer2DModel, num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8,
        num_layers=layers, cross_attention_dim=1152, attention_bias=True, sample_size=128, patch_size=2,
        activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=4096, interpolation_scale=2,
        use_additional_conditions=False,
    )
    B, L, size = 2, 300, 128
    mask = torch.zeros(B, L, device=dev, dtype=torch.bfloat16)
    for b, kept in enumerate([300, 37]):
        mask[b, :kept] = 1
    inputs = {
        "hidden_states": random_input("in.hidden", (B, 4, size, size), dev),
        "encoder_hidden_states": random_input("in.encoder", (B, L, 4096), dev),
        "encoder_attention_mask": mask,
        "timestep": torch.tensor([500.0] * B, device=dev),
        "added_cond_kwargs": {"resolution": None, "aspect_ratio": None},
    }
    run_peer(model, inputs, weight_bytes, t0, out_dir, "pixart_diffusers", "diffusers BF16 (torch SDPA) PixArt-Σ")


if __name__ == "__main__":
    main()
