// What compiling the addon from source needs, and which of it is missing here: used by install.mjs (a consumer's
// `npm install` when no prebuilt binary matches) and build-native.mjs, so a failed build names the missing tool.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { delimiter, dirname, join, resolve } from "node:path";

/** The first `name` on PATH (with Windows' extensions), or undefined. */
export function which(name) {
  const exts = process.platform === "win32" ? (process.env.PATHEXT ?? ".EXE;.CMD").split(";") : [""];
  for (const dir of (process.env.PATH ?? "").split(delimiter))
    for (const ext of exts) if (dir && existsSync(join(dir, name + ext))) return join(dir, name + ext);
  return undefined;
}

/** node-gyp's JS entry: this package's own (a devDependency in the workspace), npm's bundled one, or one on PATH. */
export function findNodeGyp(pkgDir) {
  try {
    return {
      cmd: process.execPath,
      pre: [createRequire(join(pkgDir, "package.json")).resolve("node-gyp/bin/node-gyp.js")],
    };
  } catch {}
  const env = process.env.npm_config_node_gyp; // npm (and pnpm) set it to their bundled node-gyp for install scripts
  if (env && existsSync(env)) return { cmd: process.execPath, pre: [env] };
  const onPath = which("node-gyp");
  return onPath ? { cmd: onPath, pre: [] } : undefined;
}

/** A directory holding include/node/node_api.h for this node binary, so node-gyp needs no header download. */
export function findNodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = resolve(dirname(process.execPath), "..");
  for (const dir of [prefix, "/usr", "/usr/local"])
    if (existsSync(join(dir, "include", "node", "node_api.h"))) return dir;
  return undefined;
}

/**
 * The tools node-gyp needs that are missing, each as a short phrase naming it ([] when all are there). On Windows
 * node-gyp finds Visual Studio itself, so only python and node-gyp are checked there.
 */
export function missingTools(pkgDir) {
  const missing = [];
  if (!findNodeGyp(pkgDir)) missing.push("node-gyp (npm install -g node-gyp)");
  if (!which("python3") && !which("python") && !process.env.PYTHON)
    missing.push("python3 (node-gyp runs gyp with it; or set PYTHON)");
  if (process.platform !== "win32") {
    if (!which("make")) missing.push("make");
    const cxx = process.env.CXX;
    if (cxx ? !which(cxx) && !existsSync(cxx) : !which("c++") && !which("g++") && !which("clang++"))
      missing.push(`a C++17 compiler (${cxx ? `CXX=${cxx} not found` : "g++ or clang++, or set CXX"})`);
  }
  try {
    createRequire(join(pkgDir, "package.json")).resolve("node-addon-api");
  } catch {
    missing.push("node-addon-api (a dependency of @svdquant/kernels: reinstall it)");
  }
  return missing;
}
