// Release tooling: changesets must not turn a minor of one package into a major of another (issue 17: metrics and
// models went to 1.0.0 on every kernels minor through their peer dependency), and the tarball checks of
// tools/release/pack.mjs must catch what made packages unpublishable.
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import assembleReleasePlan from "@changesets/assemble-release-plan";
import { read as readConfig } from "@changesets/config";
import { getPackages } from "@manypkg/get-packages";
import { describe, expect, it } from "vitest";
// @ts-expect-error: plain ESM tool script without type declarations
import { checkTarball, ROOT } from "../release/pack.mjs";

const root = join(import.meta.dirname, "../..");

describe("changesets release plan", async () => {
  const packages = await getPackages(root);
  const config = await readConfig(root, packages);
  const published = packages.packages.filter((p) => !p.packageJson.private).map((p) => p.packageJson.name);

  it("experiments are private", () => {
    for (const p of packages.packages)
      if (p.dir.includes("/experiments/")) expect(p.packageJson.private, p.packageJson.name).toBe(true);
  });

  it.each(published)("a minor of %s bumps no package to a new major", (name) => {
    const plan = assembleReleasePlan(
      [{ id: "t", summary: "t", releases: [{ name, type: "minor" }] }],
      packages,
      config,
      undefined,
    );
    const majors = plan.releases
      .filter((r) => r.type === "major")
      .map((r) => `${r.name} ${r.oldVersion}→${r.newVersion}`);
    expect(majors).toEqual([]);
    expect(plan.releases.find((r) => r.name === name)?.type).toBe("minor");
  });

  it("a major of @svdquant/kernels (leaving the peers' range) still bumps its peer dependents", () => {
    const plan = assembleReleasePlan(
      [{ id: "t", summary: "t", releases: [{ name: "@svdquant/kernels", type: "major" }] }],
      packages,
      config,
      undefined,
    );
    const bumped = plan.releases.filter((r) => r.type !== "none").map((r) => r.name);
    expect(bumped).toEqual(expect.arrayContaining(["@svdquant/metrics", "@svdquant/models"]));
  });
});

describe("tarball checks (tools/release/pack.mjs)", () => {
  const pkg = { name: "@svdquant/x", dir: join(ROOT, "packages/x") };
  const rootManifest = { repository: { url: "git+https://example.test/r.git" } };
  const good = {
    name: "@svdquant/x",
    repository: { url: "git+https://example.test/r.git", directory: "packages/x" },
    homepage: "https://example.test",
    engines: { node: ">=20.19" },
    exports: { ".": { "@svdquant/source": "./src/index.ts", types: "./dist/index.d.ts", default: "./dist/index.js" } },
    dependencies: { "@svdquant/tensor": "^0.1.0" },
  };
  const files = ["LICENSE", "README.md", "dist/index.d.ts", "dist/index.js", "package.json"];

  it("passes a complete package", () => expect(checkTarball(pkg, files, good, rootManifest)).toEqual([]));

  it("names each problem", () => {
    const bad = {
      ...good,
      repository: undefined,
      homepage: undefined,
      dependencies: { "@svdquant/tensor": "workspace:^" },
      scripts: { install: "node install.mjs" },
      bin: { x: "./bin/x.js" },
    };
    const problems = checkTarball(pkg, ["dist/.tsbuildinfo", "dist/index.js.map", "dist/index.js"], bad, rootManifest);
    for (const want of [
      /build state dist\/\.tsbuildinfo/,
      /source map dist\/index\.js\.map/,
      /no LICENSE/,
      /no README/,
      /workspace: range/,
      /repository\.url/,
      /repository\.directory/,
      /no homepage/,
      /exports names dist\/index\.d\.ts/,
      /bin \.\/bin\/x\.js missing/,
      /no prebuilt linux-x64 binary/,
    ])
      expect(
        problems.some((p: string) => want.test(p)),
        `${want} in ${problems.join(" | ")}`,
      ).toBe(true);
  });
});

describe("packing a native package without its linux-x64 binary fails loudly", () => {
  it.each([
    [
      "packages/kernels-cuda/native/prepack.mjs",
      "native",
      /@svdquant\/kernels-cuda: refusing to pack: the CUDA addon is missing/,
    ],
    [
      "packages/kernels/scripts/prepack.mjs",
      "scripts",
      /@svdquant\/kernels: refusing to pack: no prebuilt binary in prebuilds\/linux-x64/,
    ],
  ])("%s", (script, sub, message) => {
    // a copy of the package's prepack script in a package folder without prebuilds/
    const pkg = mkdtempSync(join(tmpdir(), "svdq-prepack-"));
    mkdirSync(join(pkg, sub));
    copyFileSync(join(root, script), join(pkg, sub, "prepack.mjs"));
    // with the modules it imports beside it (the addon ABI constant)
    const abi = join(root, dirname(script), "abi.mjs");
    if (existsSync(abi)) copyFileSync(abi, join(pkg, sub, "abi.mjs"));
    const r = spawnSync(process.execPath, [join(pkg, sub, "prepack.mjs")], { encoding: "utf8" });
    rmSync(pkg, { recursive: true, force: true });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
  });
});
