// Builds build/svdq_cuda.node from ../../kernels/cuda (csrc/ in a published package) when nvcc is present, and
// copies it to prebuilds/<platform>-<arch>/ (the prebuildify layout node-gyp-build loads; `pnpm pack` ships it).
// When a tool is missing it says which, records it in build/native-build.json and exits 0 (the TypeScript part of
// the package works without the addon and reports it as unavailable, with that reason).
// Env: CUDA_HOME (default /usr/local/cuda, then /usr/local/cuda-13.0), SVDQ_CUDA_ARCHS (default "80,86,89,90a").
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, "..");
const src = existsSync(join(pkg, "csrc")) ? join(pkg, "csrc") : join(pkg, "..", "..", "kernels", "cuda");
const out = join(pkg, "build");
const target = join(out, "svdq_cuda.node");
const tuple = `${process.platform}-${process.arch}`;

function record(ok, detail) {
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "native-build.json"), `${JSON.stringify({ ok, detail, date: new Date().toISOString() })}\n`);
}

/** prebuildify's naming, <name>.napi.<libc>.node: N-API, so one binary serves every Node ≥ 20.19 of the platform. */
function copyPrebuild() {
  const libc = process.platform === "linux" ? (existsSync("/etc/alpine-release") ? ".musl" : ".glibc") : "";
  const dir = join(pkg, "prebuilds", tuple);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  copyFileSync(target, join(dir, `svdq_cuda.napi${libc}.node`));
}

function onPath(name) {
  return (process.env.PATH ?? "").split(":").some((d) => d && existsSync(join(d, name)));
}

function findNvcc() {
  const homes = [process.env.CUDA_HOME, "/usr/local/cuda", "/usr/local/cuda-13.0"].filter(Boolean);
  for (const h of homes) if (existsSync(join(h, "bin", "nvcc"))) return { home: h, nvcc: join(h, "bin", "nvcc") };
  return undefined;
}

const cuda = findNvcc();
const require = createRequire(import.meta.url);
const resolves = (id) => {
  try {
    return require.resolve(id);
  } catch {
    return undefined;
  }
};
const missing = [
  cuda ? "" : "nvcc (the CUDA toolkit: set CUDA_HOME, or install it in /usr/local/cuda)",
  onPath("g++") ? "" : "g++ (C++17)",
  resolves("node-api-headers") ? "" : "node-api-headers",
  resolves("node-addon-api/package.json") ? "" : "node-addon-api",
].filter(Boolean);
if (missing.length) {
  const detail = `cannot compile the CUDA addon for ${tuple}: missing ${missing.join("; ")}`;
  record(false, detail);
  console.log(`@svdquant/kernels-cuda: ${detail}; skipping the CUDA addon build`);
  process.exit(0);
}
const napiInclude = require("node-api-headers").include_dir;
const addonInclude = dirname(require.resolve("node-addon-api/package.json"));
const archs = (process.env.SVDQ_CUDA_ARCHS ?? "80,86,89,90a").split(",").map((s) => s.trim());
const sources = [
  join(src, "w4a4.cu"),
  join(src, "p2_fp8.cu"),
  join(src, "p2_fp8.h"),
  join(src, "cublaslt_api.h"),
  join(src, "cublas_peer.cpp"),
  join(src, "svdq_cuda.h"),
  join(src, "next_quant.cuh"),
  join(here, "addon.cpp"),
  join(here, "build.mjs"),
];
const newest = Math.max(...sources.map((f) => statSync(f).mtimeMs));
if (existsSync(target) && statSync(target).mtimeMs > newest && !process.env.SVDQ_CUDA_REBUILD) {
  console.log(`@svdquant/kernels-cuda: ${target} is up to date`);
  copyPrebuild();
  process.exit(0);
}
mkdirSync(out, { recursive: true });
const run = (cmd, args) => {
  console.log(`${cmd} ${args.join(" ")}`);
  execFileSync(cmd, args, { stdio: "inherit" });
};
const t0 = Date.now();
const gencode = archs.flatMap((a) => [`-gencode=arch=compute_${a},code=sm_${a}`]);
run(cuda.nvcc, [
  "-std=c++17",
  "-O3",
  "-Xcompiler",
  "-fPIC",
  `--threads=${Math.min(archs.length, 2)}`,
  ...gencode,
  "-c",
  join(src, "w4a4.cu"),
  "-o",
  join(out, "w4a4.o"),
]);
// the int4p2 FP8 path (issue 16): kernel bodies for sm_89+ only (a stub elsewhere), so this adds little build time
run(cuda.nvcc, [
  "-std=c++17",
  "-O3",
  "-Xcompiler",
  "-fPIC",
  `--threads=${Math.min(archs.length, 2)}`,
  ...gencode,
  "-c",
  join(src, "p2_fp8.cu"),
  "-o",
  join(out, "p2_fp8.o"),
]);
const inc = [`-I${join(cuda.home, "include")}`, `-I${src}`, `-I${napiInclude}`, `-I${addonInclude}`];
run("g++", [
  "-std=c++17",
  "-O2",
  "-fPIC",
  ...inc,
  "-c",
  join(src, "cublas_peer.cpp"),
  "-o",
  join(out, "cublas_peer.o"),
]);
run("g++", [
  "-std=c++17",
  "-O2",
  "-fPIC",
  "-fexceptions",
  "-DNAPI_CPP_EXCEPTIONS",
  "-DNAPI_VERSION=8",
  ...inc,
  "-c",
  join(here, "addon.cpp"),
  "-o",
  join(out, "addon.o"),
]);
const tmp = `${target}.tmp-${process.pid}`;
run("g++", [
  "-shared",
  "-o",
  tmp,
  join(out, "addon.o"),
  join(out, "w4a4.o"),
  join(out, "p2_fp8.o"),
  join(out, "cublas_peer.o"),
  `-L${join(cuda.home, "lib64")}`,
  "-lcudart_static",
  "-ldl",
  "-lpthread",
  "-lrt",
  "-static-libstdc++",
]);
renameSync(tmp, target);
copyPrebuild();
record(true, `nvcc for sm_${archs.join(", sm_")}`);
console.log(
  `@svdquant/kernels-cuda: built ${target} for sm_${archs.join(", sm_")} in ${((Date.now() - t0) / 1000).toFixed(0)} s`,
);
