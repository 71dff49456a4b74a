#!/usr/bin/env node
// prepack: refuses to pack without the linux-x64 CUDA addon in prebuilds/ (`pnpm build` with nvcc puts it there; a
// package without it could not run a kernel), then copies the CUDA sources (kernels/cuda at the repository root) into
// csrc/ for consumers on other platforms to compile from. postpack (--clean) removes csrc/.
import { cpSync, existsSync, readdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const csrc = join(pkg, "csrc");
rmSync(csrc, { recursive: true, force: true });
if (process.argv.includes("--clean")) process.exit(0);

// The platforms every release must carry a binary for (README "Install").
for (const tuple of ["linux-x64"]) {
  const dir = join(pkg, "prebuilds", tuple);
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".node")) : [];
  if (files.length === 0) {
    console.error(
      `@svdquant/kernels-cuda: refusing to pack: the CUDA addon is missing (no prebuilds/${tuple}/*.node). Build it on ${tuple} with nvcc (\`pnpm build\`; CUDA_HOME names the toolkit), or copy that platform's build there`,
    );
    process.exit(1);
  }
}
cpSync(join(pkg, "..", "..", "kernels", "cuda"), csrc, {
  recursive: true,
  filter: (src) => !src.endsWith(".md"),
});
