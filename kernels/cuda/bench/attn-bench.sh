#!/bin/bash
# Builds and runs the attention harness (attn_bench.cu, issue 15) on a GPU machine with nvcc 13, from the repository
# root: the engine's kernel (kernels/cuda/engine/attention.cu), every tile shape of attn_variants.inc (one
# translation unit each, built in parallel), the experimental wgmma kernel (attn_wgmma.cu) and the kernel before the
# rewrite (attn_old.cu), all for sm_90a.
# Usage: bash kernels/cuda/bench/attn-bench.sh [suite|build|check|small|time|all] [results file]   (suite: the
# whole comparison of docs/benchmarks.md, about 40 s on an H100; build: only build, about 10 s on 16 cores; the others
# are attn_bench's modes)
set -u
cd "$(dirname "$0")/../../.." || exit 1
CUDA=${CUDA_HOME:-/usr/local/cuda}
NVCC=$CUDA/bin/nvcc
B=${BUILD:-/tmp/attn-build}
GC=${ATTN_GENCODE:--gencode=arch=compute_90a,code=sm_90a}
D=kernels/cuda/bench
mkdir -p "$B"
NV=$(grep -c '^{' $D/attn_variants.inc)
pids=()
$NVCC -std=c++17 -O3 $GC -c kernels/cuda/engine/attention.cu -o "$B/attention.o" & pids+=($!)
$NVCC -std=c++17 -O3 $GC -c $D/attn_old.cu -o "$B/attn_old.o" & pids+=($!)
$NVCC -std=c++17 -O3 $GC -c $D/attn_bench.cu -o "$B/attn_bench.o" & pids+=($!)
$NVCC -std=c++17 -O3 $GC -Xptxas -v -c $D/attn_wgmma.cu -o "$B/attn_wgmma.o" 2> "$B/wgmma.ptxas" & pids+=($!)
$NVCC -std=c++17 -O3 $GC -Xptxas -v -c $D/attn_tma.cu -o "$B/attn_tma.o" 2> "$B/tma.ptxas" & pids+=($!)
objs=("$B/attn_wgmma.o" "$B/attn_tma.o")
for ((i = 0; i < NV; i++)); do
  $NVCC -std=c++17 -O3 $GC -DVID=$i -Xptxas -v -c $D/attn_variant.cu -o "$B/v$i.o" 2> "$B/v$i.ptxas" & pids+=($!)
  objs+=("$B/v$i.o")
done
ok=1
for p in "${pids[@]}"; do wait "$p" || ok=0; done
for ((i = 0; i < NV; i++)); do  # registers / spills per variant (Dh 128 first, then 72)
  echo "v$i: $(grep -E 'registers|spill' "$B/v$i.ptxas" | sed -E 's/ +/ /g' | tr '\n' ' ')"
done
echo "tma: $(grep -E 'registers|spill|warn|error' "$B/tma.ptxas" | sed -E 's/ +/ /g' | tr '\n' ' ')"
echo "wgmma: $(grep -E 'registers|spill|warn' "$B/wgmma.ptxas" | sed -E 's/ +/ /g' | tr '\n' ' ')"
[ $ok = 1 ] || { echo "build failed"; cat "$B"/v*.ptxas | grep -i error; exit 1; }
$NVCC $GC "$B/attn_bench.o" "$B/attention.o" "$B/attn_old.o" "${objs[@]}" -o "$B/attn_bench" || exit 1
[ "${1:-}" = build ] && exit 0
if [ "${1:-}" = suite ]; then  # what docs/benchmarks.md reports: every kernel checked in its own process (a fault
  # kills only that one), timings of ours, torch SDPA, ours again, then the joined table (best median per row)
  R=${2:-/tmp/attn-results.txt}
  rm -f "$R"
  X="$B/attn_bench"
  IMPLS=$("$X" list)
  for k in $IMPLS; do timeout 30 "$X" check "" "$k" | grep -vE '^ok  '; done
  pass() {
    for k in $IMPLS; do timeout 20 "$X" time "$R" "$k" | grep -vE '^(device|==)'; done
  }
  pass
  timeout 60 python3 $D/attn_torch.py "$R" 2>&1 | grep -vE 'UserWarning|return F\.'
  pass
  python3 $D/attn_table.py "$R"
  exit 0
fi
"$B/attn_bench" "$@"
