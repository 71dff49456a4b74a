#!/bin/bash
# Device run for p2-tune.patch (issue 16): after `git apply kernels/cuda/bench/unverified/p2-tune.patch`, from the
# repository root on the GPU machine. Runs the Hopper harness (checks incl. the package GEMM's tuned choice bit for bit
# vs the heuristic's, then the hot / cold table with the tuned package columns), compute-sanitizer memcheck on the
# small case, and the cuBLASLt search (lt-search.sh) for comparison. Logs to $OUT (hopper.log, memcheck.log,
# lt-search.log); summary on stdout. About 4 minutes on an H100.
set -u
cd "$(dirname "$0")/../../../.." || exit 1
OUT=${OUT:-/tmp/p2-tune-out}
mkdir -p "$OUT"
T0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
grep -q heuristic_only kernels/cuda/p2_fp8.h || { echo "p2-tune.patch is not applied"; exit 2; }
timeout 200 bash kernels/cuda/bench/hopper-bench.sh > "$OUT/hopper.log" 2>&1
echo "hopper rc $? after $(($(date +%s) - T0)) s"
grep -E "^check|package svdq|FAIL|^checks|NOTE" "$OUT/hopper.log" | head -30
grep -E "^\| (hot|cold|L2)" "$OUT/hopper.log" | head -16
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
timeout 60 "$CS" --tool memcheck --error-exitcode 9 /tmp/hopper-build/hopper_bench small > "$OUT/memcheck.log" 2>&1
echo "memcheck rc $?"
grep -E "ERROR SUMMARY|^check" "$OUT/memcheck.log" | tail -3
timeout 120 bash kernels/cuda/bench/lt-search.sh > "$OUT/lt-search.log" 2>&1
echo "lt-search rc $?"
grep -E "^\|" "$OUT/lt-search.log"
echo "done after $(($(date +%s) - T0)) s"
