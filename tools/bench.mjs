#!/usr/bin/env node
// Runs every bench/*.bench.ts of the package in the current directory, one process per file, in order.
// Sibling packages resolve to their sources through the "@svdquant/source" export condition; tsx runs TypeScript.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";

const dir = join(process.cwd(), "bench");
const files = existsSync(dir)
  ? readdirSync(dir)
      .filter((f) => f.endsWith(".bench.ts"))
      .sort()
  : [];
if (files.length === 0) console.log(`no bench/*.bench.ts in ${process.cwd()}`);
for (const f of files) {
  console.log(`\n### ${join("bench", f)}`);
  const r = spawnSync(
    process.execPath,
    ["--conditions=@svdquant/source", "--import", "tsx", join(dir, f), ...process.argv.slice(2)],
    { stdio: "inherit" },
  );
  if (r.status !== 0) process.exit(r.status ?? 1);
}
