#!/usr/bin/env node
// Gives every publishable workspace package what pack.mjs requires of its manifest and files, from the root
// package.json: LICENSE (copied), repository (with the package's directory), homepage, bugs, engines (node and the
// TypeScript minimum) and `files` entries that keep build state and source maps out. Idempotent; run it after adding
// a package:  node tools/release/sync-package-metadata.mjs
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { ROOT } from "./pack.mjs";
import { publishablePackages } from "./workspace.mjs";

const rootManifest = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
const repo = rootManifest.repository.url.replace(/^git\+/, "").replace(/\.git$/, "");
const TYPESCRIPT_MIN = ">=5.7"; // docs/install.md: generic typed arrays in the declarations need TypeScript 5.7

for (const pkg of publishablePackages(ROOT)) {
  const dir = relative(ROOT, pkg.dir);
  copyFileSync(join(ROOT, "LICENSE"), join(pkg.dir, "LICENSE"));
  const m = pkg.manifest;
  const out = {};
  for (const [k, v] of Object.entries(m)) {
    if (["repository", "homepage", "bugs"].includes(k)) continue;
    out[k] = v;
    if (k === "license") {
      out.repository = { type: "git", url: rootManifest.repository.url, directory: dir };
      out.homepage = `${repo}/tree/main/${dir}#readme`;
      out.bugs = rootManifest.bugs;
    }
  }
  if (!out.repository) throw new Error(`${dir}/package.json: no "license" field`);
  out.engines = { ...out.engines, node: out.engines?.node ?? rootManifest.engines.node, typescript: TYPESCRIPT_MIN };
  const files = out.files ?? [];
  if (files.includes("dist"))
    for (const neg of ["!dist/**/*.map", "!dist/.tsbuildinfo"])
      if (!files.includes(neg)) files.splice(files.indexOf("dist") + 1, 0, neg);
  writeFileSync(join(pkg.dir, "package.json"), `${JSON.stringify(out, null, 2)}\n`);
  console.log(`${pkg.name}: ${dir}/package.json and LICENSE in sync`);
}
