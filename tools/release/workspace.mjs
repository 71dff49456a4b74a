// The workspace's packages as pnpm sees them (pnpm-workspace.yaml), so new packages are picked up without a list here.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** @returns {{ name: string, version: string, dir: string, manifest: any }[]} non-private packages, by name */
export function publishablePackages(root) {
  const out = execFileSync("pnpm", ["ls", "-r", "--depth", "-1", "--json"], { cwd: root, encoding: "utf8" });
  return JSON.parse(out)
    .filter((p) => p.path !== root && !p.private)
    .map((p) => ({
      name: p.name,
      version: p.version,
      dir: p.path,
      manifest: JSON.parse(readFileSync(join(p.path, "package.json"), "utf8")),
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
}
