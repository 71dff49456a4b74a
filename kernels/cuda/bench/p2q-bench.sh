#!/bin/bash
# Builds and runs the int4p2 activation-quantize harness (p2q_bench.cu) on a GPU machine with nvcc 13 and cuBLAS 13,
# from the repository root: byte checks of the fast rows kernel against the reference path (and of the reference
# path against a host float32 twin), then the table (cold and hot L2, GB/s and % of the cudaMemcpy rate of the same
# run) with the kernel as it was before the rewrite and the launch variants.
# Usage: bash kernels/cuda/bench/p2q-bench.sh [small|ncu]   (small: checks only, for compute-sanitizer; ncu: one
# launch each of the old and the new kernel at M=4608 K=12288, for Nsight Compute)
set -u
cd "$(dirname "$0")/../../.." || exit 1
CUDA=${CUDA_HOME:-/usr/local/cuda}
NVCC=$CUDA/bin/nvcc
B=${BUILD:-/tmp/p2q-build}
GC="-gencode=arch=compute_90a,code=sm_90a"
mkdir -p "$B"
if [[ -z ${RUN_ONLY:-} ]]; then
  $NVCC -std=c++17 -O3 $GC -lineinfo -c kernels/cuda/p2_fp8.cu -o "$B/p2_fp8.o" &
  $NVCC -std=c++17 -O3 $GC -c kernels/cuda/engine/ops.cu -o "$B/ops.o" &
  $NVCC -std=c++17 -O3 $GC -lineinfo -c kernels/cuda/bench/p2q_bench.cu -o "$B/pq.o" &
  g++ -std=c++17 -O2 -I"$CUDA/include" -c kernels/cuda/cublas_peer.cpp -o "$B/cublas_peer.o" &
  wait
  $NVCC $GC "$B/pq.o" "$B/p2_fp8.o" "$B/ops.o" "$B/cublas_peer.o" -ldl -o "$B/p2q_bench" || exit 1
  [[ -n ${BUILD_ONLY:-} ]] && exit 0
fi
LD_LIBRARY_PATH=$CUDA/lib64:${LD_LIBRARY_PATH:-} "$B/p2q_bench" "$@"
