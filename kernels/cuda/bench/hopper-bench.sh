#!/bin/bash
# Builds and runs the Hopper harness (hopper_bench.cu, issue 16) on a GPU machine with nvcc 13 and cuBLAS(Lt) 13,
# from the repository root: checks (operand bytes vs the host twin, GEMMs vs float64, the W4A16 GEMV), timings hot
# and cold L2 against cuBLAS BF16, cuBLASLt FP8 and the W4A4 kernels, then compute-sanitizer memcheck on a small case.
# Usage: bash kernels/cuda/bench/hopper-bench.sh [quick|small|nop2]   (about 45 s of build, 15 s of run on an H100)
set -u
cd "$(dirname "$0")/../../.." || exit 1
CUDA=${CUDA_HOME:-/usr/local/cuda}
NVCC=$CUDA/bin/nvcc
B=${BUILD:-/tmp/hopper-build}
GC="-gencode=arch=compute_90a,code=sm_90a"
mkdir -p "$B"
$NVCC -std=c++17 -O3 $GC -c kernels/cuda/w4a4.cu -o "$B/w4a4.o" &
$NVCC -std=c++17 -O3 $GC -c kernels/cuda/engine/ops.cu -o "$B/ops.o" &
$NVCC -std=c++17 -O3 $GC -c kernels/cuda/p2_fp8.cu -o "$B/p2_fp8.o" &
$NVCC -std=c++17 -O3 $GC -c kernels/cuda/bench/hopper_bench.cu -o "$B/hb.o" &
g++ -std=c++17 -O2 -I"$CUDA/include" -c kernels/cuda/cublas_peer.cpp -o "$B/cublas_peer.o" &
wait
$NVCC $GC "$B/hb.o" "$B/p2_fp8.o" "$B/w4a4.o" "$B/ops.o" "$B/cublas_peer.o" -ldl -o "$B/hopper_bench" || exit 1
LD_LIBRARY_PATH=$CUDA/lib64:${LD_LIBRARY_PATH:-} "$B/hopper_bench" "$@"
