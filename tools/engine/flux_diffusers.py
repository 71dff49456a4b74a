"""diffusers' FluxTransformer2DModel (FLUX.1-dev config, BF16, torch SDPA) with the engine's deterministic random
weights and inputs (packages/engine-cuda/src/random.ts: value i of tensor `name` is
center + scale * (u - 0.5), u = (hash32(i, fnv1a32(name)) >> 8) * 2^-24, rounded to bf16), timed for one step at
1024x1024 (4096 image + 512 text tokens), batch 1. Writes the output (raw bf16) and a JSON line with step ms
(median of CUDA-event timings), weight bytes and torch.cuda.max_memory_allocated.

Usage (GPU machine, diffusers sources on sys.path): python3 flux_diffusers.py OUT_DIR [--layers 19 --single 38]
"""
import json
import math
import statistics
import sys
import time

import torch

M32 = 0xFFFFFFFF


def fnv1a32(s: str) -> int:
    h = 0x811C9DC5
    for b in s.encode():
        h ^= b
        h = (h * 0x01000193) & M32
    return h


def hash_fill(t: torch.Tensor, seed: int, center: float, scale: float) -> None:
    """Fills t (any shape) with the engine's hash draw, in chunks (int64 arithmetic wraps like uint32 after & M32)."""
    flat = t.view(-1)
    n = flat.numel()
    step = 1 << 24
    for s0 in range(0, n, step):
        i = torch.arange(s0, min(n, s0 + step), device=t.device, dtype=torch.int64)
        x = (i * 0x9E3779B1 + seed) & M32
        x = x ^ (x >> 16)
        x = (x * 0x7FEB352D) & M32
        x = x ^ (x >> 15)
        x = (x * 0x846CA68B) & M32
        x = x ^ (x >> 16)
        u = (x >> 8).to(torch.float32) * (2.0 ** -24)
        v = (u - 0.5) * scale + center  # float32: scale·(u − 0.5) rounded, then + center rounded
        flat[s0 : s0 + i.numel()] = v.to(t.dtype)


def rule(name: str, shape) -> tuple:
    if name.startswith("in."):
        return 0.0, 2.0
    if name.endswith(".bias"):
        return 0.0, 0.04
    if len(shape) == 1:
        return 1.0, 0.2
    return 0.0, 2.0 / math.sqrt(shape[-1])


def main() -> None:
    out_dir = sys.argv[1]
    layers = int(sys.argv[sys.argv.index("--layers") + 1]) if "--layers" in sys.argv else 19
    single = int(sys.argv[sys.argv.index("--single") + 1]) if "--single" in sys.argv else 38
    from diffusers import FluxTransformer2DModel

    dev = torch.device("cuda")
    torch.manual_seed(0)
    t0 = time.time()
    with torch.device(dev):
        model = FluxTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=layers, num_single_layers=single, attention_head_dim=128,
            num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
            axes_dims_rope=(16, 56, 56),
        ).to(torch.bfloat16)
    model.eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            c, s = rule(name, tuple(p.shape))
            hash_fill(p.data, fnv1a32(name), c, s)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    St, Si = 512, 4096

    def inp(name, shape):
        x = torch.empty(shape, device=dev, dtype=torch.bfloat16)
        c, s = rule(name, shape)
        hash_fill(x, fnv1a32(name), c, s)
        return x

    hidden = inp("in.hidden", (1, Si, 64))
    enc = inp("in.encoder", (1, St, 4096))
    pooled = inp("in.pooled", (1, 768))
    side = int(math.isqrt(Si))
    img_ids = torch.zeros(Si, 3, device=dev)
    img_ids[:, 1] = torch.arange(Si, device=dev) // side
    img_ids[:, 2] = torch.arange(Si, device=dev) % side
    txt_ids = torch.zeros(St, 3, device=dev)
    t = torch.tensor([0.5], device=dev)
    g = torch.tensor([3.5], device=dev)
    init_s = time.time() - t0

    def step():
        return model(hidden_states=hidden, encoder_hidden_states=enc, pooled_projections=pooled, timestep=t,
                     img_ids=img_ids, txt_ids=txt_ids, guidance=g, return_dict=False)[0]

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
    out.contiguous().view(torch.int16).cpu().numpy().tofile(f"{out_dir}/diffusers_out.bin")
    free, total = torch.cuda.mem_get_info()
    ref_rel = None
    if "--fp32-ref" in sys.argv:
        # the same weights and inputs in float32 (bf16 values upcast exactly, no TF32): the reference both BF16
        # implementations are measured against
        try:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            model.to(torch.float32)
            hidden, enc, pooled = hidden.float(), enc.float(), pooled.float()
            with torch.no_grad():
                ref = step().float()
            ref.contiguous().cpu().numpy().tofile(f"{out_dir}/diffusers_out_f32.bin")
            ref_rel = float((out.float() - ref).norm() / ref.norm())
        except Exception as e:  # noqa: BLE001 (reported, the BF16 numbers stand)
            ref_rel = f"float32 reference failed: {e}"
    row = {
        "engine": "diffusers BF16 (torch SDPA)",
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
    with open(f"{out_dir}/diffusers.json", "w") as f:
        json.dump(row, f)


if __name__ == "__main__":
    main()
