#!/bin/bash
# gemv17 device run (issue 16, W4A16 GEMV at M <= 8; the persistent streaming kernel, gemv_stream.cuh): from the
# repository root on the GPU machine,
#   bash .dev-gemv17/device.sh
# Builds the GEMV harness (nvcc 13, sm_90a; kernels/cuda/bench/gemv-bench.sh: ops.cu with gemv_stream.cuh,
# gemv_bench.cu, cublas_peer.cpp), then, each step under `timeout` and skipped when the script's 175 s would not
# cover its limit:
#   1. the harness: checks vs float64 on every shape at M = 1..8, then the timing table (cold and hot L2) of the
#      persistent kernel (variant 3) vs stream v1 (gemv16's kernel) vs the previous engine kernels vs cuBLAS BF16
#   2. compute-sanitizer memcheck on the small checks (gemv_bench small)
#   3-4. compute-sanitizer racecheck and synccheck on three small shapes (gemv_bench tiny)
#   5. Nsight Compute: duration and DRAM throughput of the previous, stream v1 and the persistent kernel (gemv_bench
#      ncu; 3 kernels × 2 shapes × M = 1, 8)
# Logs: $OUT/gemv17-build.log, gemv17-sanitize.log, gemv17-bench.log, gemv17-ncu.log (at most 4 files); a summary
# and the table go to stdout. Exit status: 0 when every step that ran passed, else the first failing step's number.
set -u
T0=$(date +%s)
BUDGET=${GEMV17_BUDGET:-240}  # gemv16: 175 s; one more kernel in the table, more in the checks
OUT=${OUT:-/tmp/gemv17-out}
mkdir -p "$OUT"
cd "$(dirname "$0")/../../../.." || exit 1
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PATH=$CUDA_HOME/bin:$PATH
export LD_LIBRARY_PATH=$CUDA_HOME/lib64:${LD_LIBRARY_PATH:-}
B=/tmp/gemv17-build
BIN=$B/gemv_bench
first_fail=0
left() { echo $((BUDGET - ($(date +%s) - T0))); }
# step NUMBER NAME LIMIT LOG CMD...: runs CMD under timeout LIMIT if the budget covers it
step() {
  local n=$1 name=$2 lim=$3 log=$4
  shift 4
  if (($(left) < lim)); then
    echo "[$n] $name: SKIPPED ($(left) s of the budget left, limit $lim s)" | tee -a "$log"
    return 0
  fi
  local t=$(date +%s)
  echo "== [$n] $name (timeout $lim s): $*" >>"$log"
  timeout --kill-after=5 "$lim" "$@" >>"$log" 2>&1
  local rc=$?
  local st=PASS
  ((rc == 124 || rc == 137)) && st="TIMEOUT"
  ((rc != 0 && rc != 124 && rc != 137)) && st="FAIL (rc $rc)"
  echo "[$n] $name: $st in $(($(date +%s) - t)) s"
  echo "== [$n] $name: $st, rc $rc" >>"$log"
  ((rc != 0 && first_fail == 0)) && first_fail=$n
  return $rc
}

echo "gemv17 device run: $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo no-git) $(git status --porcelain 2>/dev/null | wc -l) changed files"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
nvcc --version | tail -2 | head -1

# 0. build (the three compiles run in parallel inside the script; a fresh folder, so no stale object links)
rm -rf "$B"
if ! step 0 build 90 "$OUT/gemv17-build.log" env BUILD=$B BUILD_ONLY=1 bash kernels/cuda/bench/gemv-bench.sh || [[ ! -x $BIN ]]; then
  tail -30 "$OUT/gemv17-build.log"
  echo "gemv17: build failed"
  exit 10
fi

L="$OUT/gemv17-bench.log"
step 1 "harness: checks + table (gemv_bench)" 80 "$L" "$BIN"
grep -E "^device:|^HBM|^checks|FAIL|^persistent config" "$L" | head -60
grep -E "^\|" "$L"
grep -E "^\(previous" "$L"


S="$OUT/gemv17-sanitize.log"
CSAN=$(command -v compute-sanitizer || echo "$CUDA_HOME/bin/compute-sanitizer")
step 2 "memcheck (gemv_bench small)" 50 "$S" "$CSAN" --tool memcheck --error-exitcode 9 "$BIN" small
grep -E "ERROR SUMMARY|^checks:" "$S" | tail -2 | sed 's/^/    /'
step 3 "racecheck (gemv_bench tiny)" 40 "$S" "$CSAN" --tool racecheck --racecheck-report all --error-exitcode 9 "$BIN" tiny
grep -E "RACECHECK SUMMARY|ERROR SUMMARY" "$S" | tail -1 | sed 's/^/    /'
step 4 "synccheck (gemv_bench tiny)" 25 "$S" "$CSAN" --tool synccheck --error-exitcode 9 "$BIN" tiny
grep -E "ERROR SUMMARY" "$S" | tail -1 | sed 's/^/    /'

N="$OUT/gemv17-ncu.log"
NCU=$(command -v ncu || echo "$CUDA_HOME/bin/ncu")
if [[ -x $NCU ]]; then
  step 5 "ncu (gemv_bench ncu)" 40 "$N" "$NCU" --kernel-name regex:gemv --metrics \
    gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__registers_per_thread \
    "$BIN" ncu
  grep -E "gemv|duration|dram__|warps_active|grid_size|registers" "$N" | sed 's/^ *//' | head -60
else
  echo "[5] ncu: not found, skipped"
fi
echo "gemv17: done in $(($(date +%s) - T0)) s; first failing step: $first_fail"
exit $first_fail
