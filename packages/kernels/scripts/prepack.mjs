#!/usr/bin/env node
// prepack: copies the C++ sources (kernels/cpu at the repository root) into csrc/ so a consumer without a matching
// prebuilt binary can compile the addon at install time, and checks that prebuilds/ holds a loadable linux-x64
// binary (`pnpm build` puts it there; a multi-platform release copies the other platforms' builds in beside it):
// packing fails loudly without one. postpack (--clean) removes csrc/. binding.gyp prefers csrc/ when present.
import { cpSync, existsSync, readdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ADDON_ABI } from "./abi.mjs";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const csrc = join(pkg, "csrc");
rmSync(csrc, { recursive: true, force: true });
if (process.argv.includes("--clean")) process.exit(0);

// The platforms every release must carry a binary for (docs: README "Install").
const REQUIRED = ["linux-x64"];
for (const tuple of REQUIRED) {
  const dir = join(pkg, "prebuilds", tuple);
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".node")) : [];
  if (files.length === 0) {
    console.error(
      `@svdquant/kernels: refusing to pack: no prebuilt binary in prebuilds/${tuple}/ (run \`pnpm build\` on ${tuple}, or copy that platform's build there)`,
    );
    process.exit(1);
  }
  if (`${process.platform}-${process.arch}` === tuple) {
    for (const f of files) {
      const b = createRequire(import.meta.url)(join(dir, f));
      if (b.abiVersion !== ADDON_ABI) {
        console.error(
          `@svdquant/kernels: refusing to pack: prebuilds/${tuple}/${f} has addon ABI ${b.abiVersion}, expected ${ADDON_ABI}`,
        );
        process.exit(1);
      }
    }
  }
}
const cpuSrc = join(pkg, "..", "..", "kernels", "cpu");
// kernels/cpu/bench holds hand-built microbenchmarks, not addon sources: they stay out of the package.
cpSync(cpuSrc, csrc, { recursive: true, filter: (src) => src !== join(cpuSrc, "bench") });
