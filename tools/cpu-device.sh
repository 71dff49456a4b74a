#!/usr/bin/env bash
# @svdquant/kernels' CPU paths tested and timed on the GPU machine's host CPU (issue 19: every ISA path passes the
# kernel suite on real hardware, and the benchmark against ONNX Runtime runs on every CPU kind we can reach). The
# dev machines are mostly AVX2-only AMD; the GPU machine's 16-core host may have AVX-512 / AMX.
#
#   tools/cpu-device.sh --prepare DIR   (dev machine, repo root, after `pnpm install`) builds the kernels addon, and
#                                       into DIR: the addon (xz), one esbuild bundle per kernel test file with
#                                       `vitest` aliased to tools/cpu-device/vitest-shim.ts (vitest's own expect,
#                                       a small runner), a control bundle whose counts are known (tools/cpu-device/
#                                       control.test.ts), packages/kernels/bench/gemm.bench.ts bundled with
#                                       onnxruntime-node and its linux-x64 binaries beside it (the ORT library xz'd: 12 MiB).
#                                       Then runs the control and the bundles here with the same runner, so a bundle
#                                       that differs from vitest shows up before a device call. Node travels as
#                                       .dev-node/node.xz (made here once: tools/device-common.sh svdq_device_node).
#   tools/cpu-device.sh [DIR]           (GPU machine) CPU facts, the control (must report exactly its known counts),
#                                       every test bundle (each suite runs on every path the CPU has, forcing them
#                                       one by one; FORCED=1: instead, one run of all bundles per SVDQ_KERNELS_ISA,
#                                       FORCED="avx512 avx2": those paths), then the
#                                       benchmark pinned to 2 cores with 2 threads (the issue's setting) with
#                                       BENCH_ARGS (default: --full; several runs separated by ';'). Logs and a
#                                       summary under $OUT (few files: the device tool returns only some). Env:
#                                       SKIP_TESTS=1, FORCED=1, SKIP_BENCH=1, BENCH_ARGS, BENCH_TIMEOUT (s per run,
#                                       420), SVDQ_BENCH_ROUNDS (the bench's rounds per shape).
# Not bundled: hardening.test.ts and validation.test.ts (they spawn `node --import tsx` children; input checks
# that do not depend on the path). The tracked tree (39 MiB) + Node (21 MiB) + DIR (≈ 14 MiB) exceed the 64 MiB
# that travel: carry [".dev-node", DIR] with the 20 MiB toy-flux transformer weights left out for the call
# (`tools/cpu-device.sh --slim` / `--unslim`: untrack + ignore / restore; the file stays on disk).
set -uo pipefail
TOY=models/toy-flux/transformer/diffusion_pytorch_model.safetensors
SKIP_FILES=(hardening.test.ts validation.test.ts)

if [[ ${1:-} == --slim ]]; then
  git rm -q --cached "$TOY" && echo "/$TOY" >> .git/info/exclude && echo "slim: $TOY untracked for the call"
  exit $?
fi
if [[ ${1:-} == --unslim ]]; then
  git reset -q -- "$TOY"; sed -i "\|^/$TOY\$|d" .git/info/exclude
  git diff --quiet HEAD -- "$TOY" && git ls-files --error-unmatch "$TOY" > /dev/null && echo "unslim: $TOY tracked again"
  exit $?
fi

if [[ ${1:-} == --prepare ]]; then
  dir=${2:?--prepare needs a directory}
  set -e
  rm -rf "$dir" && mkdir -p "$dir/tests" "$dir/js"
  # ignored, so it travels only when carried (and never gets committed)
  if [[ $dir != /* ]]; then grep -qx "/${dir%/}/" .git/info/exclude || echo "/${dir%/}/" >> .git/info/exclude; fi
  (cd packages/kernels && node scripts/build-native.mjs > /dev/null)
  xz -9 -c packages/kernels/build/Release/svdquant_kernels.node > "$dir/svdquant_kernels.node.xz"
  # shellcheck source=tools/device-common.sh
  source tools/device-common.sh
  # chai and @vitest/expect are vitest's dependencies, not the root's: resolve them from @vitest/expect's store folder
  expect_nm=$(ls -d node_modules/.pnpm/@vitest+expect@*/node_modules | head -1)
  tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
  bundle_test() { # test file, output name
    printf 'import %s;\nimport { runRegistered } from "vitest";\nconst c = await runRegistered(%s);\nprocess.exitCode = c.failed > 0 || c.passed === 0 ? 1 : 0;\n' \
      "\"$PWD/$1\"" "\"$(basename "$1")\"" > "$tmp/$2.ts"
    NODE_PATH=$PWD/$expect_nm svdq_bundle "$tmp/$2.ts" "$dir/tests/$2.mjs.xz" --alias:vitest="$PWD/tools/cpu-device/vitest-shim.ts"
  }
  bundle_test tools/cpu-device/control.test.ts control
  for t in packages/kernels/test/*.test.ts; do
    b=$(basename "$t")
    [[ " ${SKIP_FILES[*]} " == *" $b "* ]] && continue
    bundle_test "$t" "${b%.test.ts}"
  done
  # the benchmark; onnxruntime-node stays a package beside it (its binding loads ../bin/napi-v6/<platform>/<arch>/
  # from its dist folder): dist + package.json of it and onnxruntime-common, the linux-x64 binaries, the library xz'd
  svdq_bundle packages/kernels/bench/gemm.bench.ts "$dir/js/gemm-bench.mjs.xz"
  for pkg in onnxruntime-node onnxruntime-common; do
    src=$(ls -d node_modules/.pnpm/$pkg@*/node_modules/$pkg | head -1)
    mkdir -p "$dir/js/node_modules/$pkg" && cp -r "$src/package.json" "$src/dist" "$dir/js/node_modules/$pkg/"
  done
  find "$dir/js/node_modules" -name '*.map' -delete
  ortbin=$(ls -d node_modules/.pnpm/onnxruntime-node@*/node_modules/onnxruntime-node/bin/napi-v6/linux/x64 | head -1)
  bin=$dir/js/node_modules/onnxruntime-node/bin/napi-v6/linux/x64
  mkdir -p "$bin" && cp "$ortbin/onnxruntime_binding.node" "$bin/"
  strip -o "$tmp/libonnxruntime.so.1" "$ortbin/libonnxruntime.so.1"
  xz -9e -T2 -c "$tmp/libonnxruntime.so.1" > "$bin/libonnxruntime.so.1.xz"
  cp tools/cpu-device.sh "$dir/"
  svdq_device_node
  # the same bundles here, with this machine's addon: the control's counts, and every bundle passing
  bash "$dir/cpu-device.sh" --local "$dir"
  du -sh "$dir" .dev-node 2> /dev/null
  exit 0
fi

local_run=
if [[ ${1:-} == --local ]]; then local_run=1; shift; fi
dir=${1:-.dev-cpu}
out=${OUT:-/tmp/cpu-device-out}
mkdir -p "$out"
if [[ -n $local_run ]]; then
  NODE=node
  export SVDQ_KERNELS_ADDON=$PWD/packages/kernels/build/Release/svdquant_kernels.node
else
  xz -dc "${NODE_XZ:-.dev-node/node.xz}" > /tmp/node && chmod +x /tmp/node && NODE=/tmp/node
  xz -dc "$dir/svdquant_kernels.node.xz" > /tmp/svdquant_kernels.node
  export SVDQ_KERNELS_ADDON=/tmp/svdquant_kernels.node
fi
work=$(mktemp -d)
for f in "$dir"/tests/*.mjs.xz; do xz -dc "$f" > "$work/$(basename "$f" .xz)"; done
summary=$out/summary.txt
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }

fm() { grep -m1 "^$1[[:space:]]*:" /proc/cpuinfo | cut -d: -f2 | xargs; }
say "== $(date -u +%FT%TZ) $(fm 'model name') (family $(fm 'cpu family') model $(fm model) stepping $(fm stepping)), $(nproc) CPUs"
say "   x86 features: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' |
  grep -E '^(avx2|fma|avx512f|avx512bw|avx512vl|avx512_vnni|avx512_bf16|avx512_fp16|avx_vnni|amx_tile|amx_int8|amx_bf16)$' | xargs)"
lscpu > "$out/lscpu.txt" 2>&1
isas=$($NODE -e 'const a = require(process.env.SVDQ_KERNELS_ADDON); console.log(a.supportedIsas().join(" "))')
say "   addon paths: $isas"

# the control: a runner that miscounts or cannot fail would show here
$NODE "$work/control.mjs" > "$out/control.log" 2>&1
ctl=$(tail -1 "$out/control.log")
if [[ $ctl == "control.test.ts: 3 passed, 4 failed, 3 skipped" ]]; then say "control: as expected ($ctl)"
else say "control: WRONG ($ctl; expected 3 passed, 4 failed, 3 skipped)"; exit 1; fi

run_suite() { # label, then env assignments
  local label=$1; shift
  local bad=0 tp=0 tf=0 ts=0 t0=$SECONDS
  rm -f "$out/tests-$label.log"
  for b in "$work"/*.mjs; do
    n=$(basename "$b" .mjs); [[ $n == control ]] && continue
    env "$@" timeout 900 $NODE "$b" > "$work/log" 2>&1 || bad=1
    cat "$work/log" >> "$out/tests-$label.log" # one file per label: the device tool returns few files
    read -r p f s < <(tail -1 "$work/log" | sed -nE 's/.*: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/p')
    [[ -z ${p:-} ]] && { say "   $label $n: no summary line (crashed?)"; bad=1; continue; }
    tp=$((tp + p)); tf=$((tf + f)); ts=$((ts + s))
    [[ $f != 0 ]] && say "   $label $n: $f failed"
  done
  say "tests ($label): $tp passed, $tf failed, $ts skipped, $((SECONDS - t0)) s $([[ $bad == 0 ]] && echo PASS || echo FAIL)"
}
if [[ -z ${SKIP_TESTS:-} ]]; then
  if [[ -z ${FORCED:-} ]]; then run_suite auto SVDQ_KERNELS_ISA=auto
  else
    [[ $FORCED == 1 ]] && FORCED=$isas
    for isa in $FORCED; do run_suite "$isa" SVDQ_KERNELS_ISA="$isa"; done
  fi
fi
[[ -n $local_run ]] && { rm -rf "$work"; exit 0; }

if [[ -z ${SKIP_BENCH:-} ]]; then
  cp -r "$dir/js" "$work/js"
  xz -dc "$dir/js/gemm-bench.mjs.xz" > "$work/js/gemm-bench.mjs"
  lib=$work/js/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1
  xz -dc "$lib.xz" > "$lib"
  # two CPUs on two different physical cores (the dev machines' 2 vCPUs; the issue's 2 intra-op threads)
  cpus=$(lscpu -p=CPU,CORE | grep -v '^#' | sort -t, -k2,2n -u | head -2 | cut -d, -f1 | paste -sd,)
  # BENCH_ARGS: one run's arguments, or several runs separated by ';' (bench-1.log, bench-2.log, ...)
  IFS=';' read -ra runs <<< "${BENCH_ARGS:---full}"
  i=0
  for args in "${runs[@]}"; do
    i=$((i + 1))
    say "bench $i: CPUs $cpus, 2 threads, args $args"
    # shellcheck disable=SC2086
    SVDQ_KERNELS_THREADS=2 timeout "${BENCH_TIMEOUT:-420}" taskset -c "$cpus" $NODE "$work/js/gemm-bench.mjs" \
      $args > "$out/bench-$i.log" 2>&1
    say "bench $i: exit $? ($(grep -c '^|' "$out/bench-$i.log") table lines), $(date -u +%T)"
  done
fi
rm -rf "$work"
