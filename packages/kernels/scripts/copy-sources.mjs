#!/usr/bin/env node
// prepack: copies the C++ sources (kernels/cpu at the repository root) into csrc/ so the published tarball can
// compile the addon at install time; postpack (--clean) removes the copy. binding.gyp prefers csrc/ when present.
import { cpSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const csrc = join(pkg, "csrc");
rmSync(csrc, { recursive: true, force: true });
if (!process.argv.includes("--clean")) cpSync(join(pkg, "..", "..", "kernels", "cpu"), csrc, { recursive: true });
