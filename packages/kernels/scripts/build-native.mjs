#!/usr/bin/env node
// Builds the native addon (build/Release/svdquant_kernels.node) with node-gyp, offline, and copies it to
// prebuilds/<platform>-<arch>/ (the prebuildify layout node-gyp-build loads; `pnpm pack` ships it).
// node-gyp needs Node's headers: it uses npm_config_nodedir when set (e.g. `nodedir=/usr` in ~/.npmrc);
// otherwise we pass --nodedir=<prefix> when <prefix>/include/node/node_api.h exists for this node binary,
// so no header download is attempted. When a tool is missing or the build fails, the package still works through
// its TypeScript reference path; build/native-build.json records why, and the one warning printed when the
// package loads repeats it (see src/native.ts).
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { findNodeDir, findNodeGyp, missingTools } from "./tools.mjs";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const status = join(pkg, "build", "native-build.json");
const tuple = `${process.platform}-${process.arch}`;

function record(ok, detail) {
  mkdirSync(dirname(status), { recursive: true });
  const tmp = `${status}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify({ ok, detail, node: process.version, date: new Date().toISOString() })}\n`);
  renameSync(tmp, status);
}

if (process.env.SVDQ_KERNELS_SKIP_NATIVE === "1") {
  record(false, "skipped: SVDQ_KERNELS_SKIP_NATIVE=1");
  console.warn("@svdquant/kernels: native build skipped (SVDQ_KERNELS_SKIP_NATIVE=1)");
  process.exit(0);
}

const missing = missingTools(pkg);
if (missing.length) {
  const detail = `cannot compile the addon for ${tuple}: missing ${missing.join("; ")}`;
  record(false, detail);
  console.warn(`@svdquant/kernels: ${detail}. The TypeScript reference kernels will be used.`);
  process.exit(0);
}

const gyp = findNodeGyp(pkg);
const args = ["rebuild", "--release", "-j", "max"];
const nodedir = findNodeDir();
if (nodedir && !process.env.npm_config_nodedir) args.push(`--nodedir=${nodedir}`);
const r = spawnSync(gyp.cmd, [...gyp.pre, ...args], { cwd: pkg, stdio: ["ignore", "inherit", "inherit"] });
const built = join(pkg, "build", "Release", "svdquant_kernels.node");
if (r.status === 0 && existsSync(built)) {
  // prebuildify's naming: <name>.napi.<libc>.node (N-API, so one binary serves every Node ≥ 20.19 of that platform).
  const libc = process.platform === "linux" ? (existsSync("/etc/alpine-release") ? ".musl" : ".glibc") : "";
  const dir = join(pkg, "prebuilds", tuple);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  copyFileSync(built, join(dir, `svdquant_kernels.napi${libc}.node`));
  record(true, `node-gyp ${args.join(" ")}`);
} else {
  const headers = nodedir
    ? ""
    : " (no local Node headers were found, so node-gyp had to download them: set npm_config_nodedir)";
  record(false, `node-gyp ${args.join(" ")} exited with ${r.status}${headers}`);
  console.warn(
    `@svdquant/kernels: the native build failed (see the compiler output above)${headers}; the package will fall back to its TypeScript reference kernels`,
  );
}
