#!/usr/bin/env bash
# Builds, checks and times the CUDA W4A4 kernels (@svdquant/kernels-cuda) on a GPU machine.
#
#   tools/cuda-bench.sh --prepare DIR   (dev machine, from the repo root) build the addon with nvcc, bundle the
#                                       device runner with esbuild and add a Node binary (../shared/tools/device-node.sh)
#                                       into DIR, small enough to carry to a GPU machine that has no Node
#   tools/cuda-bench.sh [DIR]           (GPU machine) unpack Node from DIR, then: device info, every correctness
#                                       case, the CUDA-vs-CPU cross-check (@svdquant/kernels addon), the
#                                       wgmma negative control, compute-sanitizer memcheck on a small case, the
#                                       timing table.
#                                       Logs go to $OUT when set. Env: SKIP_CHECK=1, SKIP_SANITIZER=1, SKIP_BENCH=1,
#                                       NCU=1 (profile quantize + GEMM of the M=4608 K=N=3072 case), VARIANTS=1
#                                       (bare GEMM per block-M), SASS=<mangled kernel name> (dump its SASS).
set -uo pipefail
if [[ ${1:-} == --prepare ]]; then
  dir=${2:?--prepare needs a directory}
  set -e
  mkdir -p "$dir"
  (cd packages/kernels-cuda && SVDQ_CUDA_REBUILD=1 node native/build.mjs > /dev/null)
  cp packages/kernels-cuda/build/svdq_cuda.node "$dir/"
  esb=$(ls node_modules/.pnpm/esbuild@*/node_modules/esbuild/bin/esbuild | head -1)
  "$esb" packages/kernels-cuda/bench/device-run.ts --bundle --platform=node --format=esm \
    --conditions=@svdquant/source --log-level=warning --outfile="$dir/device-run.mjs"
  cp tools/cuda-bench.sh "$dir/"
  # the CPU kernels' addon (@svdquant/kernels) for the CUDA-vs-CPU cross-check (runtime ISA dispatch: AVX2 or scalar)
  [[ -s packages/kernels/build/Release/svdquant_kernels.node ]] || pnpm --filter @svdquant/kernels build:native > /dev/null
  cp packages/kernels/build/Release/svdquant_kernels.node "$dir/"
  if [[ ! -s $dir/node.xz ]]; then
    dn=../shared/tools/device-node.sh; [[ -x $dn ]] || dn=/work/shared/tools/device-node.sh
    "$dn" .device > /dev/null && cp .device/node.xz "$dir/"
  fi
  du -sh "$dir"
  exit 0
fi
dir=${1:-.cuda-carry}
out=${OUT:-/tmp/cuda-bench-out}
mkdir -p "$out"
xz -dc "$dir/node.xz" > /tmp/node && chmod +x /tmp/node
export PATH=/tmp:$PATH SVDQ_CUDA_ADDON=$PWD/$dir/svdq_cuda.node SVDQ_KERNELS_ADDON=$PWD/$dir/svdquant_kernels.node
for c in /usr/local/cuda/lib64/libcublas.so.13 /usr/local/cuda/targets/x86_64-linux/lib/libcublas.so.13; do
  [[ -e $c ]] && export SVDQ_CUBLAS_PATH=$c && break
done
if [[ -z ${SVDQ_CUBLAS_PATH:-} ]]; then
  c=$(python3 -c 'import nvidia.cu13, os; print(os.path.join(list(nvidia.cu13.__path__)[0], "lib", "libcublas.so.13"))' 2>/dev/null ||
    find / -name 'libcublas.so.13' -not -path '*/proc/*' 2>/dev/null | head -1)
  [[ -n $c && -e $c ]] && export SVDQ_CUBLAS_PATH=$c
fi
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader) cublas=${SVDQ_CUBLAS_PATH:-none}"
rc=0
if [[ -z ${SKIP_CHECK:-} ]]; then
  timeout ${STEP_TIMEOUT:-300} node "$dir/device-run.mjs" check 2>&1 | tee "$out/check.log" || rc=1
fi
if [[ -z ${SKIP_CHECK:-} ]]; then
  grep -o -m1 -w -E "avx2|fma" /proc/cpuinfo | sort -u | tr '\n' ' '; echo "(device CPU flags)"
  timeout ${STEP_TIMEOUT:-300} node "$dir/device-run.mjs" cross 2>&1 | tee "$out/cross.log" || rc=1
  SVDQ_WG_SWAP=1 timeout ${STEP_TIMEOUT:-300} node "$dir/device-run.mjs" wgswap 2>&1 | tee "$out/wgswap.log" || rc=1
fi
if [[ -z ${SKIP_SANITIZER:-} ]]; then
  timeout ${STEP_TIMEOUT:-300} compute-sanitizer --tool memcheck node "$dir/device-run.mjs" small 2>&1 | tail -8 | tee "$out/memcheck.log"
  grep -q "ERROR SUMMARY: 0 errors" "$out/memcheck.log" || rc=1
fi
if command -v cuobjdump > /dev/null; then
  # per-kernel instruction mix of the sm_90a code (the matrix instructions must be IMMA.16832 on the s8 path)
  cuobjdump -sass -arch sm_90a "$dir/svdq_cuda.node" 2>/dev/null | awk '
    /Function :/ { if (f) printf "%-80.80s total=%d IMMA=%d GMMA=%d HMMA=%d I2F=%d LOP3=%d LDS=%d BAR=%d\n", f, n, i, q, h, c, l, s, b; f=$3; n=i=q=h=c=l=s=b=0; next }
    /\/\*[0-9a-f]+\*\// { n++; if (/IMMA/) i++; if (/GMMA/) q++; if (/HMMA/) h++; if (/I2F/) c++; if (/LOP3/) l++; if (/LDS/) s++; if (/BAR/) b++ }
    END { if (f) printf "%-80.80s total=%d IMMA=%d GMMA=%d HMMA=%d I2F=%d LOP3=%d LDS=%d BAR=%d\n", f, n, i, q, h, c, l, s, b }' \
    | tee "$out/sass-summary.txt" | grep -E "gemm_kernelILb1ELb0ELb0ELi2|gemm_f8_kernelILb1ELi2|quantize_kernelILb1ELb0ELi32ELi2" || true
  cuobjdump -sass -arch sm_90a "$dir/svdq_cuda.node" 2>/dev/null | grep -E "IMMA|GMMA|I2F" | sort | uniq -c | sort -rn | head -5
fi
if [[ -n ${VARIANTS:-} ]]; then
  timeout ${STEP_TIMEOUT:-300} node "$dir/device-run.mjs" variants 2>&1 | tee "$out/variants.log"
fi
if [[ -n ${SASS:-} ]]; then
  cuobjdump -sass -arch sm_90a "$dir/svdq_cuda.node" 2>/dev/null | awk -v f="$SASS" '/Function :/ { p = index($0, f) > 0 } p' > "$out/sass.txt"; wc -l "$out/sass.txt"
fi
if [[ -z ${SKIP_BENCH:-} ]]; then
  timeout ${STEP_TIMEOUT:-300} node "$dir/device-run.mjs" bench 2>&1 | tee "$out/bench.log" || rc=1
fi
if [[ -n ${NCU:-} ]]; then
  ncu --clock-control none -k "regex:gemm_f8_kernel|quantize_kernel" -c 4 --section SpeedOfLight --section ComputeWorkloadAnalysis \
    --section MemoryWorkloadAnalysis --section WarpStateStats \
    --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" \
    node "$dir/device-run.mjs" ncu 2>&1 | tee "$out/ncu.log" | tail -120
fi
exit $rc
