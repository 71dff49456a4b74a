#!/usr/bin/env bash
# GPU calibration on the device (docs/benchmarks.md "Calibration on the GPU"). Runs from the repo root of a copy of
# the main checkout with .dev-calib/ beside it (made by tools/calib/prepare.sh): the sm_90a engine addon, the
# esbuild bundles of packages/pipeline/bench/calibrate-device.ts and of the CLI, all xz'd; Node from .dev-node. Writes
# only $OUT/calib.log and $OUT/calib.tar.xz (the result JSON files). Budget: 180 s (timeouts inside). With
# DIR/readme.mjs.xz (prepare.sh --quick: the engine README's calibration example, bundled) it runs that first; in
# --quick mode (DIR/QUICK) only the README example and the flux-tiny checks run (about 15 s).
set -uo pipefail
D=${CALIB_DIR:-.dev-calib}
OUTD=${OUT:-/tmp/calib-out}
mkdir -p "$OUTD"
W=/tmp/calib-work
main() {
  rm -rf "$W" && mkdir -p "$W/bin" "$W/res"
  echo "== $(date -u +%FT%TZ) calib device run"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  xz -dc .dev-node/node.xz > "$W/bin/node" && chmod +x "$W/bin/node" || { echo "no node"; return 1; }
  xz -dc "$D/svdq_engine.node.xz" > "$W/svdq_engine.node" || { echo "no addon"; return 1; }
  xz -dc "$D/calibrate-device.mjs.xz" > "$W/calibrate-device.mjs" || { echo "no bundle"; return 1; }
  if [[ ! -e $D/QUICK ]]; then
    mkdir -p "$W/cli" && xz -dc "$D/svdquant.mjs.xz" > "$W/cli/svdquant.mjs" || { echo "no cli bundle"; return 1; }
    cp packages/cli/package.json "$W/package.json"  # the CLI reads its version from ../package.json
  fi
  export PATH="$W/bin:$PATH" SVDQ_ENGINE_ADDON="$W/svdq_engine.node" OUT="$W/res"
  # shellcheck source=tools/device-common.sh
  source "$D/device-common.sh" && svdq_find_cublas
  echo "node $(node --version) cublas=${SVDQ_CUBLAS_PATH:-none}"
  local rc=0
  if [[ -e $D/readme.mjs.xz ]]; then
    xz -dc "$D/readme.mjs.xz" > "$W/readme.mjs"
    echo "== packages/engine-cuda/README.md calibration example, as written $(date -u +%T)"
    timeout 20 node "$W/readme.mjs" || rc=1
  fi
  echo "== check (flux-tiny) $(date -u +%T)"
  timeout 30 node "$W/calibrate-device.mjs" check fixtures/models || rc=1
  if [[ -e $D/QUICK ]]; then
    echo "== done (quick) rc=$rc $(date -u +%T) (${SECONDS} s)"
    return $rc
  fi
  echo "== measure: step with / without the observer (FLUX.1-dev 1024²) $(date -u +%T)"
  timeout 60 node "$W/calibrate-device.mjs" measure || rc=1
  local samples=${CAL_SAMPLES:-2} steps=${CAL_STEPS:-50} left=$((150 - SECONDS))
  local cmd=(node "$W/cli/svdquant.mjs" calibrate --random flux-dev --device cuda
    --config packages/pipeline/configs/reference-flux-dev.json --synthetic --samples "$samples" --steps "$steps"
    --out /tmp/flux-dev-calibration.safetensors --json)
  echo "== the user's command, ${left} s left $(date -u +%T): svdquant ${cmd[*]:2}"
  timeout "$left" "${cmd[@]}" > "$W/res/cli.json" || rc=1
  cat "$W/res/cli.json"
  echo "== verify $(date -u +%T)"
  timeout $((176 - SECONDS)) node "$W/calibrate-device.mjs" verify /tmp/flux-dev-calibration.safetensors "$samples" "$steps" || rc=1
  echo "== done rc=$rc $(date -u +%T) (${SECONDS} s)"
  return $rc
}
main > "$OUTD/calib.log" 2>&1
rc=$?
tar -cJf "$OUTD/calib.tar.xz" -C "$W/res" . 2>/dev/null || true
rm -f /tmp/calib-tiny.safetensors /tmp/flux-dev-calibration.safetensors
exit $rc
