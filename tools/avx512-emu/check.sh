#!/usr/bin/env bash
# The `avx512` and `amx` paths of @svdquant/kernels' addon tested on a machine without AVX-512 or AMX (issue 19:
# every ISA path passes the kernel suite; most development machines here are AVX2-only). Not part of CI (it needs a
# Debian package):
#   apt-get install libsimde-dev
# 1. copies kernels/cpu, drops the per-function target attributes, and builds the addon with -mavx2 -mfma and
#    tools/avx512-emu/emu.h force-included: AVX-512 intrinsics become SIMDe's portable code (plus the ones SIMDe
#    0.7.4 lacks, written in emu.h), AMX tiles a per-thread software model, and the CPU reports AVX-512
#    F/BW/DQ/VL/VNNI/BF16 and AMX-INT8/BF16;
# 2. runs the kernel test suite with that addon (the backend must offer scalar, avx2, avx512 and amx).
# What it proves: the AVX-512 and AMX kernels' logic (lanes, masks, tails, shuffles, tile shapes, operand layouts,
# rounding of the integer paths) against the float64 reference and the other paths. What it does not: behaviour
# only the hardware has (the real TDPBF16PS summation order and flushing, denormal flags, the OS's AMX grant), and
# any speed. On 2026-12-07 (AMD EPYC, AVX2 only) a 1.001 scale error planted in the AVX-512 W4A4 GEMM failed 3
# tests, one int32 off by one in TDPBSSD 23 and a 1.01 product error in TDPBF16PS 31.
# Run from the repository root after `pnpm install`: bash tools/avx512-emu/check.sh [vitest args...]
# (EMU_BUILD=dir keeps the build there; the addon is dir/svdquant_kernels.node, usable as SVDQ_KERNELS_ADDON)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ ! -f /usr/include/simde/x86/avx512.h ]]; then echo "SKIP: no SIMDe (apt-get install libsimde-dev)"; exit 0; fi
if [[ -n ${EMU_BUILD:-} ]]; then OBJ=$EMU_BUILD; else OBJ=$(mktemp -d); trap 'rm -rf "$OBJ"' EXIT; fi
mkdir -p "$OBJ/src"
cp kernels/cpu/*.cc kernels/cpu/*.h "$OBJ/src/"
sed -i -E 's/__attribute__\(\(target\("[^"]*"\)\)\)//g' "$OBJ"/src/*.cc "$OBJ"/src/*.h
if grep -n 'target("' "$OBJ"/src/*.cc "$OBJ"/src/*.h; then echo "FAIL: a target attribute is left"; exit 1; fi
NAPI=$(node -p "require('./packages/kernels/node_modules/node-addon-api').include_dir")
HDR=$(node -p "require('path').dirname(require.resolve('node-api-headers/include/node_api.h',
  { paths: [require.resolve('./packages/kernels/node_modules/node-addon-api')] }))")
FLAGS=(-std=c++17 -O2 -fPIC -fexceptions -pthread -fno-math-errno -mavx2 -mfma -Wno-psabi
  -include "$PWD/tools/avx512-emu/emu.h" -I"$NAPI" -I"$HDR" -DNAPI_VERSION=8
  -DNODE_ADDON_API_DISABLE_DEPRECATED)
pids=()
for f in $(sed -n 's/.*<(csrc)\/\([a-z0-9_]*\.cc\)".*/\1/p' packages/kernels/binding.gyp); do
  g++ "${FLAGS[@]}" -c "$OBJ/src/$f" -o "$OBJ/${f%.cc}.o" 2> "$OBJ/${f%.cc}.log" &
  pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
if [[ $fail != 0 ]]; then
  for l in "$OBJ"/*.log; do [[ -s $l ]] && { echo "== $l"; grep -m 12 "error" "$l"; }; done
  echo "FAIL: the emulated AVX-512 / AMX build does not compile"; exit 1
fi
g++ -shared -pthread -o "$OBJ/svdquant_kernels.node" "$OBJ"/*.o
echo "built $OBJ/svdquant_kernels.node (AVX-512 through SIMDe, AMX tiles in software)"
isas=$(SVDQ_KERNELS_ADDON="$OBJ/svdquant_kernels.node" node --conditions=@svdquant/source --import tsx -e \
  'import("./packages/kernels/src/index.ts").then((k) => console.log(k.backendInfo().supportedIsas.join(" ")))')
if [[ $isas != "scalar avx2 avx512 amx" ]]; then echo "FAIL: the emulated addon offers '$isas'"; exit 1; fi
echo "paths: $isas (avx512 and amx emulated)"
# The suites run every path the addon offers (test/helpers.ts describePaths): scalar and avx2 natively, avx512 and
# amx emulated. peak.test.ts is left out: it measures instruction rates, which emulation does not have.
SVDQ_KERNELS_ADDON="$OBJ/svdquant_kernels.node" pnpm vitest run packages/kernels/test --exclude '**/peak.test.ts' "$@"
