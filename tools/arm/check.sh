#!/usr/bin/env bash
# The ARM build of @svdquant/kernels' addon, checked on an x86-64 Debian dev machine (issue 19: "keep the code
# portable and the scalar path correct"). Not part of CI (it needs Debian packages):
#   apt-get install g++-aarch64-linux-gnu qemu-user      (and, for step 3, `dpkg --add-architecture arm64`)
# 1. compiles every source of packages/kernels/binding.gyp for aarch64 with -Wall -Wextra: no error, no warning;
# 2. links them into an aarch64 .node and checks that it references no x86 kernel (only Node-API and the C/C++
#    runtime are left undefined);
# 3. when qemu-aarch64 is there: runs smoke.mjs under an arm64 Node (Debian's nodejs:arm64 and its libraries,
#    unpacked into ARM_ROOT, default /tmp/arm-root; fetched with apt-get download when missing) with the addon
#    (`scalar` path) and without it (TypeScript reference kernels) and compares the outputs (rel-L2 < 1e-5).
# Run from the repository root after `pnpm build`: bash tools/arm/check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=kernels/cpu
OBJ=$(mktemp -d)
trap 'rm -rf "$OBJ"' EXIT
NAPI=$(node -p "require('./packages/kernels/node_modules/node-addon-api').include_dir")
HDR=$(node -p "require('path').dirname(require.resolve('node-api-headers/include/node_api.h',
  { paths: [require.resolve('./packages/kernels/node_modules/node-addon-api')] }))")
CXX=${CXX_ARM:-aarch64-linux-gnu-g++}
FLAGS=(-std=c++17 -O3 -fPIC -fexceptions -pthread -fno-math-errno -Wall -Wextra -Wno-unused-parameter
  -Wno-maybe-uninitialized -I"$NAPI" -I"$HDR" -DNAPI_VERSION=8 -DNODE_ADDON_API_DISABLE_DEPRECATED)
fail=0
for f in $(sed -n 's/.*<(csrc)\/\([a-z0-9_]*\.cc\)".*/\1/p' packages/kernels/binding.gyp); do
  if ! out=$("$CXX" "${FLAGS[@]}" -c "$SRC/$f" -o "$OBJ/${f%.cc}.o" 2>&1) || [[ -n $out ]]; then
    echo "FAIL aarch64 compile $f"; echo "$out" | head -20; fail=1
  fi
done
[[ $fail == 0 ]] || exit 1
echo "PASS aarch64: every addon source compiles with -Wall -Wextra, no diagnostics"
"$CXX" -shared -pthread -o "$OBJ/svdquant_kernels.node" "$OBJ"/*.o
left=$(aarch64-linux-gnu-nm -u --demangle "$OBJ/svdquant_kernels.node" |
  grep -vE 'napi_|GLIBC|CXXABI|GLIBCXX|__cxa|_Unwind|__gxx|operator |std::|_ITM_|__gmon' || true)
if [[ -n $left ]]; then echo "FAIL aarch64 link: undefined symbols"; echo "$left"; exit 1; fi
echo "PASS aarch64 link: only Node-API and the C/C++ runtime undefined"
if ! command -v qemu-aarch64 > /dev/null; then echo "SKIP run: no qemu-aarch64 (apt-get install qemu-user)"; exit 0; fi
ROOT=${ARM_ROOT:-/tmp/arm-root}
if [[ ! -x $ROOT/usr/bin/node ]]; then
  mkdir -p "$ROOT/debs"
  (cd "$ROOT/debs" && apt-get download nodejs:arm64 libnode108:arm64 libuv1:arm64 libicu72:arm64 libssl3:arm64 \
    libbrotli1:arm64 libc-ares2:arm64 libnghttp2-14:arm64 zlib1g:arm64 libc6:arm64 libstdc++6:arm64 \
    libgcc-s1:arm64 node-cjs-module-lexer node-acorn node-undici > /dev/null 2>&1)
  for d in "$ROOT"/debs/*.deb; do dpkg -x "$d" "$ROOT"; done
fi
run() { SVDQ_KERNELS_ADDON=$1 qemu-aarch64 -L "$ROOT" "$ROOT/usr/bin/node" --no-warnings tools/arm/smoke.mjs; }
run "$OBJ/svdquant_kernels.node" > "$OBJ/native.json"
run "$OBJ/absent.node" > "$OBJ/reference.json"
node -e '
const [a, b] = [1, 2].map((i) => JSON.parse(require("fs").readFileSync(process.argv[i], "utf8")));
if (!a.backend.native || a.backend.isa !== "scalar") { console.log("FAIL run: addon not loaded", a.backend); process.exit(1); }
let bad = 0;
for (const key of ["w4a4", "f32", "attention"]) {
  let num = 0, den = 0;
  a[key].forEach((v, i) => { num += (v - b[key][i]) ** 2; den += b[key][i] ** 2; });
  const rel = Math.sqrt(num / den);
  bad += !(rel < 1e-5);
  console.log(`${rel < 1e-5 ? "PASS" : "FAIL"} run ${key}: aarch64 addon (scalar) vs TypeScript reference, rel-L2 ${rel.toExponential(2)} over ${a[key].length} outputs`);
}
process.exit(bad ? 1 : 0);' "$OBJ/native.json" "$OBJ/reference.json"
