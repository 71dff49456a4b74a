#!/usr/bin/env node
// Builds the native addon (build/Release/svdquant_kernels.node) with node-gyp, offline.
// node-gyp needs Node's headers: it uses npm_config_nodedir when set (e.g. `nodedir=/usr` in ~/.npmrc);
// otherwise we pass --nodedir=<prefix> when <prefix>/include/node/node_api.h exists for this node binary,
// so no header download is attempted. If the build fails, the package still works through its TypeScript
// reference path and says so once, with one warning, when it is loaded (see src/native.ts).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(pkg, "package.json"));
const status = join(pkg, "build", "native-build.json");

function record(ok, detail) {
  mkdirSync(dirname(status), { recursive: true });
  const tmp = `${status}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify({ ok, detail, node: process.version, date: new Date().toISOString() })}\n`);
  renameSync(tmp, status);
}

// `install` runs with --if-packed: inside this repository `pnpm build` compiles the addon (once, through nx);
// from a published tarball (which carries the C++ sources in csrc/) the install step compiles it.
if (process.argv.includes("--if-packed") && !existsSync(join(pkg, "csrc"))) process.exit(0);

if (process.env.SVDQ_KERNELS_SKIP_NATIVE === "1") {
  record(false, "skipped: SVDQ_KERNELS_SKIP_NATIVE=1");
  console.warn("@svdquant/kernels: native build skipped (SVDQ_KERNELS_SKIP_NATIVE=1)");
  process.exit(0);
}

const args = ["rebuild", "--release", "-j", "max"];
const envDir = process.env.npm_config_nodedir;
if (!envDir) {
  // node is <prefix>/bin/node; distro and official tarball installs keep headers in <prefix>/include/node.
  const prefix = resolve(dirname(process.execPath), "..");
  for (const dir of [prefix, "/usr", "/usr/local"]) {
    if (existsSync(join(dir, "include", "node", "node_api.h"))) {
      args.push(`--nodedir=${dir}`);
      break;
    }
  }
}

let gyp;
try {
  gyp = require.resolve("node-gyp/bin/node-gyp.js");
} catch {
  gyp = undefined;
}
if (!gyp) {
  record(false, "node-gyp is not installed");
  console.warn("@svdquant/kernels: node-gyp not found; the native kernels were not built");
  process.exit(0);
}
const r = spawnSync(process.execPath, [gyp, ...args], { cwd: pkg, stdio: ["ignore", "inherit", "inherit"] });
if (r.status === 0 && existsSync(join(pkg, "build", "Release", "svdquant_kernels.node"))) {
  record(true, `node-gyp ${args.join(" ")}`);
} else {
  record(false, `node-gyp ${args.join(" ")} exited with ${r.status}`);
  console.warn(
    "@svdquant/kernels: the native build failed (see the compiler output above); the package will fall back to its TypeScript reference kernels",
  );
}
