# Shell functions the GPU-machine scripts share (sourced, not run): tools/engine-bench.sh, tools/calib/prepare.sh and
# tools/calib/device.sh.
#
# Dev machine, repo root:
#   svdq_engine_addon_xz OUT      build the engine addon with nvcc for sm_90a only (SVDQ_CUDA_ARCHS overrides; always
#                                 rebuilt, so a cached all-architecture build is never shipped) and write it xz'd to
#                                 OUT (about 0.8 MiB: the 64 MiB that travel to the GPU machine hold no 16 MiB addon)
#   svdq_bundle ENTRY OUT         bundle a TypeScript entry with esbuild (minified ESM, the @svdquant/source condition,
#                                 a createRequire banner for the addon loaders; onnxruntime-node, imported lazily by
#                                 @svdquant/metrics, stays out) and write it xz'd to OUT
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
    --external:onnxruntime-node --outfile="$tmp" \
    --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" &&
    xz -9 -c "$tmp" > "$2"
  rc=$?
  rm -f "$tmp"
  return $rc
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
