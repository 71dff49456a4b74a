# Joins the result lines of attn_bench.cu (ours, the old kernel, the tile variants) and attn_torch.py (torch SDPA)
# from one file (argv[1], possibly several alternating passes: the best median per row counts) into one table per
# shape: ms, TFLOP/s, speedup over the old kernel and speed relative to torch's fastest backend (torch ms / ours ms).
import sys
from collections import OrderedDict

best = OrderedDict()
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError as e:
    print(f"no results: {e}")
    lines = []
for line in lines:
    parts = line.rstrip("\n").split("\t")
    if len(parts) != 4:
        continue
    shape, impl, ms, tf = parts[0], parts[1], float(parts[2]), float(parts[3])
    key = (shape, impl)
    if key not in best or ms < best[key][0]:
        best[key] = (ms, tf)
shapes = list(OrderedDict.fromkeys(s for s, _ in best))
for s in shapes:
    rows = [(impl, v) for (sh, impl), v in best.items() if sh == s]
    torch_rows = [(i, v) for i, v in rows if i.startswith("torch")]
    t_best = min(torch_rows, key=lambda r: r[1][0]) if torch_rows else None
    old = next((v for i, v in rows if i == "old"), None)
    print(f"\n{s}: torch best = {t_best[0] if t_best else 'n/a'}")
    print(f"| impl | ms | TFLOP/s | vs old | vs torch best |")
    print(f"|---|---|---|---|---|")
    for impl, (ms, tf) in rows:
        vo = f"{old[0] / ms:.2f}x" if old else "-"
        vt = f"{t_best[1][0] / ms:.2f}x" if t_best else "-"
        print(f"| {impl} | {ms:.3f} | {tf:.1f} | {vo} | {vt} |")
