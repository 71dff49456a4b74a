"""What the diffusers peer scripts (flux_diffusers.py, pixart_diffusers.py) share: the engine's deterministic random
draw (packages/engine-cuda/src/random.ts: value i of tensor `name` is center + scale * (u - 0.5),
u = (hash32(i, fnv1a32(name)) >> 8) * 2^-24, rounded to the tensor's dtype), the timing of one step (median of
CUDA-event timings after a warm-up, torch.cuda.max_memory_allocated), the optional float32 reference run (--fp32-ref)
and the JSON row both print and write.
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
    """(center, scale) of a tensor (random.ts randomRule): inputs ±1, biases ±0.02, 1-D weights 1 ± 0.1, others
    ±1/√fan-in with fan-in the product of all dims but the first (a linear's K; a conv's C·kh·kw: PixArt's patch
    embedding, as the engine draws it)."""
    if name.startswith("in."):
        return 0.0, 2.0
    if name.endswith(".bias"):
        return 0.0, 0.04
    if len(shape) == 1:
        return 1.0, 0.2
    return 0.0, 2.0 / math.sqrt(math.prod(shape[1:]))


def int_arg(flag: str, default: int) -> int:
    """The integer after `flag` on the command line, or `default`."""
    return int(sys.argv[sys.argv.index(flag) + 1]) if flag in sys.argv else default


def fill_random(model: torch.nn.Module) -> int:
    """Draws every parameter of `model` with its rule; returns the weight bytes."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            c, s = rule(name, tuple(p.shape))
            hash_fill(p.data, fnv1a32(name), c, s)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def random_model(cls, **config):
    """cls(**config) built on the GPU in bf16, eval mode, every parameter drawn with its rule:
    (model, weight bytes, device, t0 = time.time() before the build)."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    t0 = time.time()
    with torch.device(dev):
        model = cls(**config).to(torch.bfloat16)
    model.eval()
    return model, fill_random(model), dev, t0


def random_input(name: str, shape, dev: torch.device) -> torch.Tensor:
    """A bf16 input drawn like the engine's `in.*` tensors."""
    x = torch.empty(shape, device=dev, dtype=torch.bfloat16)
    c, s = rule(name, shape)
    hash_fill(x, fnv1a32(name), c, s)
    return x


def run_peer(model: torch.nn.Module, inputs: dict, weight_bytes: int, t0: float, out_dir: str, prefix: str,
             engine: str) -> dict:
    """Times one step model(**inputs) (a warm-up that is also the output, then 7 CUDA-event timings), writes the
    output (raw bf16) to OUT_DIR/PREFIX_out.bin and, with --fp32-ref, the same model and inputs in float32 (bf16 values
    upcast exactly, no TF32: the reference both BF16 implementations are measured against) to PREFIX_out_f32.bin;
    prints the JSON row and writes it to OUT_DIR/PREFIX.json. t0: time.time() before the model was built."""
    init_s = time.time() - t0

    def step(kw):
        return model(**kw, return_dict=False)[0]

    with torch.no_grad():
        torch.cuda.reset_peak_memory_stats()
        out = step(inputs)
        torch.cuda.synchronize()
        times = []
        for _ in range(7):
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            step(inputs)
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
    peak = torch.cuda.max_memory_allocated()
    out.contiguous().view(torch.int16).cpu().numpy().tofile(f"{out_dir}/{prefix}_out.bin")
    free, total = torch.cuda.mem_get_info()
    ref_rel = None
    if "--fp32-ref" in sys.argv:
        try:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            model.to(torch.float32)
            f32 = {k: v.float() if torch.is_tensor(v) and v.dtype == torch.bfloat16 else v for k, v in inputs.items()}
            with torch.no_grad():
                ref = step(f32).float()
            ref.contiguous().cpu().numpy().tofile(f"{out_dir}/{prefix}_out_f32.bin")
            ref_rel = float((out.float() - ref).norm() / ref.norm())
        except Exception as e:  # noqa: BLE001 (reported, the BF16 numbers stand)
            ref_rel = f"float32 reference failed: {e}"
    row = {
        "engine": engine,
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
    with open(f"{out_dir}/{prefix}.json", "w") as f:
        json.dump(row, f)
    return row
