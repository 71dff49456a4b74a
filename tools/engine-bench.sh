#!/usr/bin/env bash
# Builds, checks and times the GPU engine (@svdquant/engine-cuda) on a GPU machine.
#
#   tools/engine-bench.sh --prepare DIR   (dev machine, repo root) build the engine addon with nvcc for sm_90a only
#                                         (SVDQ_CUDA_ARCHS overrides) and xz it, bundle the device scripts
#                                         (packages/engine-cuda/bench/device-run.ts, pixart-run.ts, the GPU
#                                         calibration script and the CLI) with esbuild, xz'd (tools/device-common.sh
#                                         does both), add the diffusers peer scripts (tools/engine/*.py) and, with
#                                         DIFFUSERS_TAR (an xz tar of src/diffusers), the diffusers sources into DIR
#                                         (about 1.3 MiB without them; otherwise .dev-engine/diffusers.tar.xz is used
#                                         on the device). Node comes from .dev-node/node.xz
#                                         (../shared/tools/device-node.sh, stripped and xz -9e: 21 MiB), carried
#                                         beside DIR: the tracked files (37 MiB) + Node + DIR fit the 64 MiB that
#                                         travel to the GPU machine. The flux-tiny fixture is read from the repo.
#                                         KEEP_ADDON=1 keeps DIR/svdq_engine.node.xz (no kernel changed since).
#   tools/engine-bench.sh [DIR]           (GPU machine) device info, correctness checks (check), engine-cuda's README
#                                         examples as written (each must run to its end), diffusers BF16 FLUX.1-dev
#                                         at 1024² (peer: time, memory, output), ours BF16 + W4A4 (+ int4p2 with
#                                         MODES) (bench, compared to the peer's output); then PixArt-Σ the same way
#                                         (pixart-run check / pixart_diffusers.py / pixart-run bench);
#                                         then GPU calibration (calibrate-device check + measure, and the user's
#                                         command `svdquant calibrate --random flux-dev --device cuda` on CAL_SAMPLES x
#                                         CAL_STEPS forwards, verified). Logs under $OUT. Env: SKIP_CHECK=1, SKIP_PEER=1,
#                                         SKIP_BENCH=1, SKIP_F32=1 (no float32 diffusers reference), SKIP_PIXART=1,
#                                         SKIP_CALIB=1, MODES=bf16,w4a4[,w4a4p2[-e4m3][-fast]], ITERS=5, CAL_SAMPLES=1,
#                                         CAL_STEPS=8, STEP_TIMEOUT (s, default 240), NODE_XZ (default .dev-node/node.xz).
set -uo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=tools/device-common.sh
source "$here/device-common.sh"
if [[ ${1:-} == --prepare ]]; then
  dir=${2:?--prepare needs a directory}
  set -e
  mkdir -p "$dir"
  [[ -n ${KEEP_ADDON:-} && -s $dir/svdq_engine.node.xz ]] || svdq_engine_addon_xz "$dir/svdq_engine.node.xz"
  rm -f "$dir/svdq_engine.node" "$dir/device-run.mjs"
  svdq_bundle packages/engine-cuda/bench/device-run.ts "$dir/device-run.mjs.xz"
  svdq_bundle packages/engine-cuda/bench/pixart-run.ts "$dir/pixart-run.mjs.xz"
  svdq_bundle packages/pipeline/bench/calibrate-device.ts "$dir/calibrate-device.mjs.xz"
  svdq_bundle packages/cli/test/run-cli.ts "$dir/svdquant.mjs.xz"
  # engine-cuda's README examples as written (the consumer test runs them only without a GPU): one bundle each,
  # from a folder inside packages/pipeline (which depends on every package the examples import)
  ex=packages/pipeline/.readme-run && rm -rf "$ex" && mkdir -p "$ex" && rm -f "$dir"/readme-*.mjs.xz
  node -e 'const t = require("fs").readFileSync(process.argv[1], "utf8");
    [...t.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].forEach((m, i) =>
      require("fs").writeFileSync(`${process.argv[2]}/readme-${i}.mts`, m[1]));' packages/engine-cuda/README.md "$ex"
  printf 'export * from "../src/index.js";\n' > "$ex/pipeline.ts"
  for f in "$ex"/readme-*.mts; do
    sed -i 's|"@svdquant/pipeline"|"./pipeline.js"|' "$f"
    svdq_bundle "$f" "$dir/$(basename "$f" .mts).mjs.xz"
  done
  rm -rf "$ex"
  cp tools/engine-bench.sh tools/device-common.sh tools/engine/peer_common.py tools/engine/flux_diffusers.py \
    tools/engine/pixart_diffusers.py "$dir/"
  rm -rf "$dir/fixtures" "$dir/node.xz"
  [[ -n ${DIFFUSERS_TAR:-} ]] && cp "$DIFFUSERS_TAR" "$dir/diffusers.tar.xz"
  svdq_device_node
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
svdq_find_cublas
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader) cublas=${SVDQ_CUBLAS_PATH:-none}"
T=${STEP_TIMEOUT:-240}
unpack() { # NAME: DIR/NAME.xz decompressed to /tmp/NAME (DIR/NAME when not xz'd); the path, or nothing
  if [[ -s $dir/$1.xz ]]; then xz -dc "$dir/$1.xz" > "/tmp/$1" && echo "/tmp/$1"; elif [[ -s $dir/$1 ]]; then echo "$dir/$1"; fi
}
peer() { # SCRIPT OUT_DIR LOG: a diffusers peer script of DIR (diffusers sources unpacked to /tmp/dsrc once)
  if [[ ! -d /tmp/dsrc/diffusers ]]; then
    local tar
    for tar in "$dir/diffusers.tar.xz" .dev-engine/diffusers.tar.xz; do
      [[ -s $tar ]] && mkdir -p /tmp/dsrc && tar -xJf "$tar" -C /tmp/dsrc && break
    done
  fi
  [[ -d /tmp/dsrc/diffusers ]] || { echo "no diffusers sources: $1 not run"; return 1; }
  PYTHONPATH=/tmp/dsrc timeout "$T" python3 "$dir/$1" "$2" $([[ -n ${SKIP_F32:-} ]] || echo --fp32-ref) 2>&1 |
    grep -v -i warn | tail -5 | tee "$out/$3"
}
rc=0
run_mjs=$(unpack device-run.mjs)
if [[ -z ${SKIP_CHECK:-} ]]; then
  timeout "$T" node "$run_mjs" check fixtures/models 2>&1 | tee "$out/check.log"
  [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
fi
for f in "$dir"/readme-*.mjs.xz; do # engine-cuda's README examples, as written: each must run to its end on the GPU
  [[ -e $f ]] || continue
  xz -dc "$f" > /tmp/readme.mjs
  msg=$(timeout "$T" node /tmp/readme.mjs 2>&1)
  r=$?
  if [[ $r != 0 ]] || grep -q "no GPU engine here" <<< "$msg"; then
    rc=1
    echo "FAIL README example $(basename "$f" .mjs.xz) (rc $r): $msg" | tee -a "$out/readme.log"
  else
    echo "PASS README example $(basename "$f" .mjs.xz): $(tail -c 300 <<< "$msg" | tr '\n' ' ')" | tee -a "$out/readme.log"
  fi
done
if [[ -z ${SKIP_PEER:-} ]] && peer flux_diffusers.py /tmp diffusers.log; then
  cp /tmp/diffusers.json "$out/" 2>/dev/null || true
  export DIFFUSERS_OUT=/tmp/diffusers_out.bin DIFFUSERS_F32=/tmp/diffusers_out_f32.bin
fi
if [[ -z ${SKIP_BENCH:-} ]]; then
  timeout "$T" node "$run_mjs" bench 2>&1 | tee "$out/bench.log"
  [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
fi
unset DIFFUSERS_OUT DIFFUSERS_F32
pixart_mjs=$(unpack pixart-run.mjs)
if [[ -z ${SKIP_PIXART:-} && -n $pixart_mjs ]]; then
  mkdir -p /tmp/pixart
  echo "== PixArt-Σ check"
  [[ -n ${SKIP_CHECK:-} ]] || { OUT=/tmp/pixart timeout "$T" node "$pixart_mjs" check 2>&1 | tee "$out/pixart-check.log"; [[ ${PIPESTATUS[0]} == 0 ]] || rc=1; }
  pd=()
  if [[ -z ${SKIP_PEER:-} ]]; then
    echo "== PixArt-Σ diffusers peer"
    peer pixart_diffusers.py /tmp/pixart pixart-diffusers.log &&
      pd=(DIFFUSERS_OUT=/tmp/pixart/pixart_diffusers_out.bin DIFFUSERS_F32=/tmp/pixart/pixart_diffusers_out_f32.bin)
  fi
  echo "== PixArt-Σ bench"
  [[ -n ${SKIP_BENCH:-} ]] || { env "${pd[@]}" OUT=/tmp/pixart timeout "$T" node "$pixart_mjs" bench 2>&1 | tee "$out/pixart-bench.log"; [[ ${PIPESTATUS[0]} == 0 ]] || rc=1; }
  cp /tmp/pixart/*.json "$out/" 2>/dev/null || true
fi
calib_mjs=$(unpack calibrate-device.mjs)
if [[ -z ${SKIP_CALIB:-} && -n $calib_mjs ]]; then
  mkdir -p /tmp/calib/cli && xz -dc "$dir/svdquant.mjs.xz" > /tmp/calib/cli/svdquant.mjs
  cp packages/cli/package.json /tmp/calib/package.json # the CLI reads its version from ../package.json
  echo "== GPU calibration: observer vs CalibrationRecorder (flux-tiny)"
  [[ -n ${SKIP_CHECK:-} ]] || { OUT=/tmp/calib timeout "$T" node "$calib_mjs" check fixtures/models 2>&1 | tee "$out/calib-check.log"; [[ ${PIPESTATUS[0]} == 0 ]] || rc=1; }
  echo "== GPU calibration: step with / without the observer (FLUX.1-dev 1024²)"
  OUT=/tmp/calib timeout "$T" node "$calib_mjs" measure 2>&1 | tee "$out/calib-measure.log"
  [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
  cs=${CAL_SAMPLES:-1} ct=${CAL_STEPS:-8}
  echo "== svdquant calibrate --random flux-dev --device cuda --synthetic --samples $cs --steps $ct"
  timeout "$T" node /tmp/calib/cli/svdquant.mjs calibrate --random flux-dev --device cuda \
    --config packages/pipeline/configs/reference-flux-dev.json --synthetic --samples "$cs" --steps "$ct" \
    --out /tmp/flux-dev-calibration.safetensors --json > "$out/calib-cli.json" || rc=1
  cat "$out/calib-cli.json"
  OUT=/tmp/calib timeout "$T" node "$calib_mjs" verify /tmp/flux-dev-calibration.safetensors "$cs" "$ct" 2>&1 | tee "$out/calib-verify.log"
  [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
  cp /tmp/calib/*.json "$out/" 2>/dev/null || true
  rm -f /tmp/flux-dev-calibration.safetensors
fi
exit $rc
