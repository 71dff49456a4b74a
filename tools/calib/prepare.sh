#!/usr/bin/env bash
# Dev machine, repo root: builds the sm_90a engine addon and the esbuild bundle of the GPU calibration device script
# into DIR (default /work/main/.dev-calib), xz'd, with tools/calib/device.sh as DIR/device.sh (< 1.2 MiB in all).
set -euo pipefail
dir=${1:-/work/main/.dev-calib}
mkdir -p "$dir"
(cd packages/engine-cuda && SVDQ_CUDA_ARCHS=90a node native/build.mjs > /dev/null)
xz -9 -c packages/engine-cuda/build/svdq_engine.node > "$dir/svdq_engine.node.xz"
esb=$(ls node_modules/.pnpm/esbuild@*/node_modules/esbuild/bin/esbuild | head -1)
bundle() { # entry, output: minified ESM; onnxruntime-node (imported lazily by @svdquant/metrics) stays out
  "$esb" "$1" --bundle --platform=node --format=esm --minify --conditions=@svdquant/source --log-level=warning \
    --external:onnxruntime-node --outfile="/tmp/calib-prepare.mjs" \
    --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
  xz -9 -c /tmp/calib-prepare.mjs > "$dir/$2.xz"
}
bundle packages/pipeline/bench/calibrate-device.ts calibrate-device.mjs
bundle packages/cli/test/run-cli.ts svdquant.mjs
cp tools/calib/device.sh "$dir/device.sh" && chmod +x "$dir/device.sh"
du -sh "$dir"
