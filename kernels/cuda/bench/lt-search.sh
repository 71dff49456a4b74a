#!/bin/bash
# Builds and runs the cuBLASLt algorithm search for the int4p2 FP8 GEMM (lt_search.cu, issue 16) on a GPU machine
# with nvcc 13 and cuBLAS(Lt) 13, from the repository root. Usage: bash kernels/cuda/bench/lt-search.sh [quick]
# (about 20 s of build; the full search about 1–2 minutes on an H100)
set -u
cd "$(dirname "$0")/../../.." || exit 1
CUDA=${CUDA_HOME:-/usr/local/cuda}
B=${BUILD:-/tmp/lt-search-build}
GC="-gencode=arch=compute_90a,code=sm_90a"
mkdir -p "$B"
"$CUDA/bin/nvcc" -std=c++17 -O2 $GC -c kernels/cuda/bench/lt_search.cu -o "$B/lt_search.o" &
g++ -std=c++17 -O2 -I"$CUDA/include" -c kernels/cuda/cublas_peer.cpp -o "$B/cublas_peer.o" &
wait
"$CUDA/bin/nvcc" $GC "$B/lt_search.o" "$B/cublas_peer.o" -ldl -o "$B/lt_search" || exit 1
[[ -n ${BUILD_ONLY:-} ]] && exit 0
LD_LIBRARY_PATH=$CUDA/lib64:${LD_LIBRARY_PATH:-} "$B/lt_search" "$@"
