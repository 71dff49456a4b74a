#!/bin/bash
# Builds and runs the W4A16 GEMV harness (gemv_bench.cu) on a GPU machine with nvcc 13 and cuBLAS 13, from the
# repository root: checks vs float64, then the table (cold and hot L2): the streaming kernel against the previous
# engine kernels and cuBLAS BF16. Usage: bash kernels/cuda/bench/gemv-bench.sh [quick|small]   (about 30 s of build
# with 2 cores, less on the GPU machine; the full run about 20 s on an H100);
# BUILD_ONLY=1 / RUN_ONLY=1 split the two steps.
set -u
cd "$(dirname "$0")/../../.." || exit 1
CUDA=${CUDA_HOME:-/usr/local/cuda}
NVCC=$CUDA/bin/nvcc
B=${BUILD:-/tmp/gemv-build}
GC="-gencode=arch=compute_90a,code=sm_90a"
mkdir -p "$B"
if [[ -z ${RUN_ONLY:-} ]]; then
  $NVCC -std=c++17 -O3 $GC -c kernels/cuda/engine/ops.cu -o "$B/ops.o" &
  $NVCC -std=c++17 -O3 $GC -c kernels/cuda/bench/gemv_bench.cu -o "$B/gb.o" &
  g++ -std=c++17 -O2 -I"$CUDA/include" -c kernels/cuda/cublas_peer.cpp -o "$B/cublas_peer.o" &
  wait
  $NVCC $GC "$B/gb.o" "$B/ops.o" "$B/cublas_peer.o" -ldl -o "$B/gemv_bench" || exit 1
  [[ -n ${BUILD_ONLY:-} ]] && exit 0
fi
LD_LIBRARY_PATH=$CUDA/lib64:${LD_LIBRARY_PATH:-} "$B/gemv_bench" "$@"
