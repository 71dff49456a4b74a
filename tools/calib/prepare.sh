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
# shellcheck source=tools/device-common.sh
source tools/device-common.sh
svdq_engine_addon_xz "$dir/svdq_engine.node.xz"
bundle() { svdq_bundle "$1" "$dir/$2.xz"; } # entry, output name
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
cp tools/device-common.sh "$dir/device-common.sh"
du -sh "$dir"
