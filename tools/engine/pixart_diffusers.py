"""diffusers' PixArtTransformer2DModel (PixArt-Σ-XL-2-1024-MS config, BF16, torch SDPA) with the engine's
deterministic random weights and inputs (packages/engine-cuda/src/random.ts, the same draw as flux_diffusers.py;
the patch-embedding conv's rule sees its fan-in C·p·p), timed for one step at 1024x1024 (4096 image + 300 text
tokens), batch 2 (CFG), text mask keeping 300 and 37 tokens, timestep 500. Writes the output (raw bf16
[2, 8, 128, 128]) and a JSON line with step ms (median of CUDA-event timings), weight bytes and
torch.cuda.max_memory_allocated; --fp32-ref also runs the same model in float32 (no TF32) and writes its output.

Usage (GPU machine, diffusers sources on sys.path): python3 pixart_diffusers.py OUT_DIR [--layers 28] [--fp32-ref]
"""
import json
import math
import statistics
import sys
import time

import torch

from flux_diffusers import fnv1a32, hash_fill


def rule(name: str, shape) -> tuple:
    if name.startswith("in."):
        return 0.0, 2.0
    if name.endswith(".bias"):
        return 0.0, 0.04
    if len(shape) == 1:
        return 1.0, 0.2
    return 0.0, 2.0 / math.sqrt(math.prod(shape[1:]))


def main() -> None:
    out_dir = sys.argv[1]
    layers = int(sys.argv[sys.argv.index("--layers") + 1]) if "--layers" in sys.argv else 28
    from diffusers import PixArtTransformer2DModel

    dev = torch.device("cuda")
    torch.manual_seed(0)
    t0 = time.time()
    with torch.device(dev):
        model = PixArtTransformer2DModel(
            num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=layers,
            cross_attention_dim=1152, attention_bias=True, sample_size=128, patch_size=2,
            activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
            norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=4096, interpolation_scale=2,
            use_additional_conditions=False,
        ).to(torch.bfloat16)
    model.eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            c, s = rule(name, tuple(p.shape))
            hash_fill(p.data, fnv1a32(name), c, s)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    B, L, size = 2, 300, 128

    def inp(name, shape):
        x = torch.empty(shape, device=dev, dtype=torch.bfloat16)
        c, s = rule(name, shape)
        hash_fill(x, fnv1a32(name), c, s)
        return x

    hidden = inp("in.hidden", (B, 4, size, size))
    enc = inp("in.encoder", (B, L, 4096))
    mask = torch.zeros(B, L, device=dev, dtype=torch.bfloat16)
    for b, kept in enumerate([300, 37]):
        mask[b, :kept] = 1
    t = torch.tensor([500.0] * B, device=dev)
    init_s = time.time() - t0

    def step():
        return model(hidden_states=hidden, encoder_hidden_states=enc, encoder_attention_mask=mask, timestep=t,
                     added_cond_kwargs={"resolution": None, "aspect_ratio": None}, return_dict=False)[0]

    with torch.no_grad():
        torch.cuda.reset_peak_memory_stats()
        out = step()
        torch.cuda.synchronize()
        times = []
        for _ in range(7):
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            step()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
    peak = torch.cuda.max_memory_allocated()
    out.contiguous().view(torch.int16).cpu().numpy().tofile(f"{out_dir}/pixart_diffusers_out.bin")
    free, total = torch.cuda.mem_get_info()
    ref_rel = None
    if "--fp32-ref" in sys.argv:
        try:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            model.to(torch.float32)
            hidden, enc, mask = hidden.float(), enc.float(), mask.float()
            with torch.no_grad():
                ref = step().float()
            ref.contiguous().cpu().numpy().tofile(f"{out_dir}/pixart_diffusers_out_f32.bin")
            ref_rel = float((out.float() - ref).norm() / ref.norm())
        except Exception as e:  # noqa: BLE001 (reported, the BF16 numbers stand)
            ref_rel = f"float32 reference failed: {e}"
    row = {
        "engine": "diffusers BF16 (torch SDPA) PixArt-Σ",
        "weightsGiB": weight_bytes / 2**30,
        "peakAllocatedGiB": peak / 2**30,
        "deviceUsedGiB": (total - free) / 2**30,
        "stepMsMedian": statistics.median(times),
        "stepMsAll": times,
        "initS": init_s,
        "finite": bool(torch.isfinite(out.float()).all()),
        "bf16VsF32RelL2": ref_rel,
        "outAbsMean": float(out.float().abs().mean()),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0),
    }
    print(json.dumps(row))
    with open(f"{out_dir}/pixart_diffusers.json", "w") as f:
        json.dump(row, f)


if __name__ == "__main__":
    main()
