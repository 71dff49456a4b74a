# torch peer of attn_bench.cu (issue 15): times torch.nn.functional.scaled_dot_product_attention in bf16 on the
# harness's shapes, default dispatch and each SDPA backend that accepts the inputs (CUDA events, 3 warm-up calls,
# median of 15 single calls), and appends "shape<TAB>torch <backend><TAB>ms<TAB>TFLOP/s" lines to argv[1].
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

# name, B, H, Sq, Skv, Dh, kv_len per item (None: no mask) -- the same as run_times() in attn_bench.cu
SHAPES = [
    ("flux", 1, 24, 4608, 4608, 128, None),
    ("pixart_self", 2, 16, 4096, 4096, 72, None),
    ("pixart_cross", 2, 16, 4096, 300, 72, [120, 300]),
]
BACKENDS = [
    ("default", None),
    ("flash", SDPBackend.FLASH_ATTENTION),
    ("cudnn", SDPBackend.CUDNN_ATTENTION),
    ("efficient", SDPBackend.EFFICIENT_ATTENTION),
]


def median_ms(fn):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(15):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def main():
    out = open(sys.argv[1], "a") if len(sys.argv) > 1 else None
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    for name, B, H, Sq, Skv, D, kvl in SHAPES:
        q = (torch.rand(B, H, Sq, D, device=dev, generator=g) * 4 - 2).bfloat16()
        k = (torch.rand(B, H, Skv, D, device=dev, generator=g) * 4 - 2).bfloat16()
        v = (torch.rand(B, H, Skv, D, device=dev, generator=g) * 2 - 1).bfloat16()
        mask = None
        keys = [Skv] * B
        if kvl is not None:
            keys = kvl
            mask = torch.arange(Skv, device=dev)[None, None, None, :] < torch.tensor(kvl, device=dev)[:, None, None, None]
        flops = sum(4.0 * H * Sq * n * D for n in keys)
        for bname, be in BACKENDS:
            def call():
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            try:
                if be is None:
                    ms = median_ms(call)
                else:
                    with sdpa_kernel([be]):
                        ms = median_ms(call)
            except Exception as e:  # a backend that rejects the shape or the mask
                print(f"{name:13s} torch {bname:10s} n/a ({str(e).splitlines()[0][:90]})")
                continue
            tf = flops / (ms * 1e-3) / 1e12
            print(f"{name:13s} torch {bname:10s} {ms:8.3f} ms {tf:7.1f} TFLOP/s")
            if out:
                out.write(f"{name}\ttorch {bname}\t{ms:.4f}\t{tf:.1f}\n")
        del q, k, v
    if out:
        out.close()


main()
