#!/usr/bin/env bash
# Dev machine, repo root: builds the sm_90a engine addon and the esbuild bundle of the GPU calibration device script
# into DIR (default /work/main/.dev-calib), xz'd, with tools/calib/device.sh as DIR/device.sh (< 1.2 MiB in all).
set -euo pipefail
dir=${1:-/work/main/.dev-calib}
mkdir -p "$dir"
(cd packages/engine-cuda && SVDQ_CUDA_ARCHS=90a node native/build.mjs > /dev/null)
xz -9 -c packages/engine-cuda/build/svdq_engine.node > "$dir/svdq_engine.node.xz"
esb=$(ls node_modules/.pnpm/esbuild@*/node_modules/esbuild/bin/esbuild | head -1)
"$esb" packages/pipeline/bench/calibrate-device.ts --bundle --platform=node --format=esm \
  --conditions=@svdquant/source --log-level=warning --outfile=/tmp/calibrate-device.mjs \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
xz -9 -c /tmp/calibrate-device.mjs > "$dir/calibrate-device.mjs.xz"
cp tools/calib/device.sh "$dir/device.sh" && chmod +x "$dir/device.sh"
du -sh "$dir"
