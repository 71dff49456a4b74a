#!/usr/bin/env bash
# Dev machine, repo root: builds the sm_90a engine addon and the esbuild bundles of the GPU calibration device script
# and the CLI into DIR (default /work/main/.dev-calib), xz'd, with tools/calib/device.sh as DIR/device.sh (< 1.2 MiB
# in all). --quick DIR: instead of the CLI, the calibration example of packages/engine-cuda/README.md as written,
# and only the short checks (DIR/QUICK).
set -euo pipefail
quick=
if [[ ${1:-} == --quick ]]; then quick=1; shift; fi
dir=${1:-/work/main/.dev-calib}
mkdir -p "$dir"
rm -f "$dir/QUICK" "$dir/readme.mjs.xz" "$dir/svdquant.mjs.xz"
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
if [[ -n $quick ]]; then
  ex=packages/pipeline/bench/.readme-example.ts # inside the pipeline package, so @svdquant/* resolve
  python3 - "$ex" <<'PY'
import re, sys
blocks = re.findall(r"```ts\n(.*?)```", open("packages/engine-cuda/README.md").read(), re.S)
calib = [b for b in blocks if "observe(" in b]
assert len(calib) == 1, "the README's calibration example"
open(sys.argv[1], "w").write(calib[0])
PY
  bundle "$ex" readme.mjs
  rm -f "$ex"
  touch "$dir/QUICK"
else
  bundle packages/cli/test/run-cli.ts svdquant.mjs
fi
cp tools/calib/device.sh "$dir/device.sh" && chmod +x "$dir/device.sh"
du -sh "$dir"
