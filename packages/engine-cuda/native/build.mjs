// Builds build/svdq_engine.node: the engine's kernels (kernels/cuda/engine), the FLUX step, and the W4A4 kernels,
// the int4p2 FP8 path and the cuBLAS(Lt) loaders of @svdquant/kernels-cuda (kernels/cuda/w4a4.cu, p2_fp8.cu,
// cublas_peer.cpp, compiled into this addon too, so the engine calls them directly on its own stream; p2_fp8.cu's
// kernels are stubs below sm_89 and its launchers refuse there). Without nvcc it says so and exits 0 (the TypeScript
// part works and reports the addon as unavailable).
// Env: CUDA_HOME (default /usr/local/cuda, then /usr/local/cuda-13.0), SVDQ_CUDA_ARCHS (default "80,86,89,90a"),
// SVDQ_ENGINE_REBUILD=1 forces a rebuild.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, "..");
const cudaDir = join(pkg, "..", "..", "kernels", "cuda");
const engDir = join(cudaDir, "engine");
const out = join(pkg, "build");
const target = join(out, "svdq_engine.node");

function findNvcc() {
  const homes = [process.env.CUDA_HOME, "/usr/local/cuda", "/usr/local/cuda-13.0"].filter(Boolean);
  for (const h of homes) if (existsSync(join(h, "bin", "nvcc"))) return { home: h, nvcc: join(h, "bin", "nvcc") };
  return undefined;
}
const cuda = findNvcc();
if (!cuda) {
  console.log("@svdquant/engine-cuda: nvcc not found (set CUDA_HOME); skipping the engine addon build");
  process.exit(0);
}
const require = createRequire(import.meta.url);
const napiInclude = require("node-api-headers").include_dir;
const addonInclude = dirname(require.resolve("node-addon-api/package.json"));
const archs = (process.env.SVDQ_CUDA_ARCHS ?? "80,86,89,90a").split(",").map((s) => s.trim());
const cuSources = [
  join(cudaDir, "w4a4.cu"),
  join(cudaDir, "p2_fp8.cu"),
  ...readdirSync(engDir)
    .filter((f) => f.endsWith(".cu"))
    .map((f) => join(engDir, f)),
];
const cppSources = [
  join(cudaDir, "cublas_peer.cpp"),
  join(engDir, "flux.cpp"),
  join(engDir, "pixart.cpp"),
  join(here, "addon.cpp"),
];
const headers = [cudaDir, engDir].flatMap((d) =>
  readdirSync(d)
    .filter((f) => f.endsWith(".h") || f.endsWith(".cuh"))
    .map((f) => join(d, f)),
);
const newest = Math.max(
  ...[...cuSources, ...cppSources, ...headers, join(here, "build.mjs")].map((f) => statSync(f).mtimeMs),
);
if (existsSync(target) && statSync(target).mtimeMs > newest && !process.env.SVDQ_ENGINE_REBUILD) {
  console.log(`@svdquant/engine-cuda: ${target} is up to date`);
  process.exit(0);
}
mkdirSync(out, { recursive: true });
const run = (cmd, args) => {
  console.log(`${cmd} ${args.join(" ")}`);
  execFileSync(cmd, args, { stdio: "inherit" });
};
const t0 = Date.now();
const gencode = archs.map((a) => `-gencode=arch=compute_${a},code=sm_${a}`);
const inc = [`-I${join(cuda.home, "include")}`, `-I${cudaDir}`, `-I${engDir}`, `-I${napiInclude}`, `-I${addonInclude}`];
const objs = [];
for (const f of cuSources) {
  const o = join(out, `${f.split("/").pop()}.o`);
  run(cuda.nvcc, [
    "-std=c++17",
    "-O3",
    "-Xcompiler",
    "-fPIC",
    `--threads=${Math.min(archs.length, 2)}`,
    ...gencode,
    `-I${cudaDir}`,
    `-I${engDir}`,
    "-c",
    f,
    "-o",
    o,
  ]);
  objs.push(o);
}
for (const f of cppSources) {
  const o = join(out, `${f.split("/").pop()}.o`);
  const extra = f.endsWith("addon.cpp") ? ["-fexceptions", "-DNAPI_CPP_EXCEPTIONS", "-DNAPI_VERSION=8"] : [];
  run("g++", ["-std=c++17", "-O2", "-fPIC", ...extra, ...inc, "-c", f, "-o", o]);
  objs.push(o);
}
const tmp = `${target}.tmp-${process.pid}`;
run("g++", [
  "-shared",
  "-s", // no symbol tables: the addon ships xz'd to the GPU machine
  "-o",
  tmp,
  ...objs,
  `-L${join(cuda.home, "lib64")}`,
  "-lcudart_static",
  "-ldl",
  "-lpthread",
  "-lrt",
  "-static-libstdc++",
]);
renameSync(tmp, target);
console.log(
  `@svdquant/engine-cuda: built ${target} for sm_${archs.join(", sm_")} in ${((Date.now() - t0) / 1000).toFixed(0)} s`,
);
