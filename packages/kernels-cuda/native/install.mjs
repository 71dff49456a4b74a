#!/usr/bin/env node
// `install` script of the published package. A prebuilt binary for this platform that loads ends it at once
// (pnpm ≥ 10, which skips dependencies' install scripts by default, loads the same binary at run time). Without one
// it compiles the addon from the bundled sources (csrc/, native/) when nvcc is here, else names what is missing.
// It never fails the install: without the addon the package reports CUDA as unavailable, with that reason.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);

// Inside the svdquant-ts repository (no csrc/) `pnpm build` compiles the addon through nx.
if (!existsSync(join(pkg, "csrc"))) process.exit(0);

let why = "";
try {
  require(require("node-gyp-build").path(pkg)); // loads without a GPU or driver: the CUDA runtime is linked statically
  process.exit(0);
} catch (e) {
  why = String(e.message).split("\n")[0];
}
console.warn(`@svdquant/kernels-cuda: no usable prebuilt binary (${why}); compiling from source`);
await import("./build.mjs");
