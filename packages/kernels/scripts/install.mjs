#!/usr/bin/env node
// `install` script of the published package. A prebuilt binary that matches this platform and loads ends it at
// once (pnpm ≥ 10, which skips dependencies' install scripts by default, loads the same prebuilt binary at run time).
// Without one it compiles from the bundled C++ sources (csrc/), naming any missing tool. It never fails the install:
// without the addon the package runs its TypeScript reference kernels and says why when it loads.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ADDON_ABI } from "./abi.mjs";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);

// Inside the svdquant-ts repository (no csrc/) `pnpm build` compiles the addon through nx.
if (!existsSync(join(pkg, "csrc"))) process.exit(0);

let why = "";
try {
  const path = require("node-gyp-build").path(pkg);
  const binding = require(path);
  if (binding.abiVersion === ADDON_ABI) process.exit(0);
  why = `${path} has addon ABI ${binding.abiVersion}, expected ${ADDON_ABI}`;
} catch (e) {
  why = String(e.message).split("\n")[0];
}
console.warn(`@svdquant/kernels: no usable prebuilt binary (${why}); compiling from source`);
await import("./build-native.mjs");
