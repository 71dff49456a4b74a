#!/usr/bin/env node
// Release dry run: packs every publishable workspace package exactly as `changeset publish` (pnpm publish) would,
// checks each tarball, and lists what would go out: name@version, whether that version is already on the registry
// (then `changeset publish` skips it), size, and with --files every file.
//   node tools/release/pack.mjs [--out DIR] [--files] [--no-registry]     (pnpm release:dry-run)
// Exits 1 naming the package and the problem when a tarball is not publishable. Needs a prior `pnpm build`.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { publishablePackages } from "./workspace.mjs";

export const ROOT = resolve(fileURLToPath(import.meta.url), "../../..");

/** What every tarball must satisfy; returns the problems found (empty when publishable). */
export function checkTarball(pkg, files, manifest, rootManifest) {
  const bad = [];
  const has = (f) => files.includes(f);
  for (const f of files) {
    if (f.endsWith(".tsbuildinfo")) bad.push(`ships build state ${f}`);
    if (f.endsWith(".map")) bad.push(`ships source map ${f} (its sources are not in the package)`);
  }
  if (!has("LICENSE")) bad.push("no LICENSE file");
  if (!has("README.md")) bad.push("no README.md");
  const text = JSON.stringify(manifest);
  if (text.includes('"workspace:')) bad.push("manifest still holds a workspace: range");
  const repo = manifest.repository ?? {};
  if (repo.url !== rootManifest.repository?.url) bad.push(`repository.url is not ${rootManifest.repository?.url}`);
  if (repo.directory !== pkg.dir.slice(ROOT.length + 1))
    bad.push(`repository.directory is not ${pkg.dir.slice(ROOT.length + 1)}`);
  if (!manifest.homepage) bad.push("no homepage");
  if (!manifest.engines?.node) bad.push("no engines.node");
  if (manifest.types !== undefined || manifest.exports) {
    const entries = JSON.stringify(manifest.exports ?? {}).match(/"\.\/[^"]+"/g) ?? [];
    for (const e of entries) {
      const f = e.slice(3, -1);
      // src/ entries belong to the workspace-only "@svdquant/source" condition, which consumers never ask for
      if (!f.startsWith("src/") && !has(f)) bad.push(`exports names ${f}, which is not in the tarball`);
    }
  }
  for (const bin of Object.values(manifest.bin ?? {}))
    if (!has(bin.replace(/^\.\//, ""))) bad.push(`bin ${bin} missing`);
  if (manifest.scripts?.install && !files.some((f) => /^prebuilds\/linux-x64\/[^/]+\.node$/.test(f)))
    bad.push("has an install script but no prebuilt linux-x64 binary in prebuilds/");
  return bad;
}

function registryState(name, version) {
  const r = spawnSync("npm", ["view", `${name}@${version}`, "version", "--json"], {
    encoding: "utf8",
    timeout: 20_000,
  });
  if (r.status === 0 && r.stdout.trim()) return "already published: changeset publish skips it";
  if (/E404|404/.test(r.stderr ?? "")) return "new: would be published";
  return "registry not reachable: assuming new";
}

/** Pack every publishable package into `outDir`; returns [{ name, version, dir, tarball, files, manifest }]. */
export function packAll(outDir, { log = console.log } = {}) {
  mkdirSync(outDir, { recursive: true });
  const rootManifest = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  const packed = [];
  const problems = [];
  for (const pkg of publishablePackages(ROOT)) {
    const r = spawnSync("pnpm", ["pack", "--json", "--pack-destination", outDir], { cwd: pkg.dir, encoding: "utf8" });
    if (r.status !== 0) {
      problems.push(
        `${pkg.name}: pnpm pack failed: ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ")}`,
      );
      continue;
    }
    const info = JSON.parse(r.stdout.slice(r.stdout.indexOf("{")));
    const tarball = resolve(outDir, info.filename);
    const files = info.files.map((f) => f.path).sort();
    const manifest = JSON.parse(execFileSync("tar", ["-xzOf", tarball, "package/package.json"], { encoding: "utf8" }));
    for (const p of checkTarball(pkg, files, manifest, rootManifest)) problems.push(`${pkg.name}: ${p}`);
    packed.push({ ...pkg, tarball, files, manifest });
    log(`packed ${pkg.name}@${pkg.version}: ${files.length} files, ${(statSync(tarball).size / 1024).toFixed(0)} KiB`);
  }
  if (problems.length)
    throw new Error(
      `not publishable:\n  ${problems.join("\n  ")}\n(LICENSE and manifest fields: node tools/release/sync-package-metadata.mjs)`,
    );
  return packed;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const outIdx = args.indexOf("--out");
  const outDir = outIdx >= 0 ? resolve(args[outIdx + 1]) : mkdtempSync(join(tmpdir(), "svdq-release-"));
  let packed;
  try {
    packed = packAll(outDir, { log: () => {} });
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
  console.log(`Release dry run: ${packed.length} packages (tarballs in ${outDir})\n`);
  for (const p of packed) {
    const state = args.includes("--no-registry") ? "" : `  [${registryState(p.name, p.version)}]`;
    console.log(
      `${p.name}@${p.version}  ${p.files.length} files, ${(statSync(p.tarball).size / 1024).toFixed(0)} KiB${state}`,
    );
    if (args.includes("--files")) for (const f of p.files) console.log(`    ${f}`);
  }
}
