#!/usr/bin/env node
// The consumer test: what a user gets from the registry. Packs every publishable workspace package (pack.mjs, the
// release dry run), installs the tarballs into fresh projects outside the workspace with npm and with pnpm, with no
// C/C++ compiler or make on PATH, and in each:
//   - imports every package; @svdquant/kernels must run its native path (a prebuilt binary, nothing compiled) and
//     @svdquant/kernels-cuda must load its addon (no GPU needed: it reports the device as unavailable);
//   - @svdquant/metrics without its optional peer onnxruntime-node: PSNR works, an ONNX metric names the missing peer;
//   - runs `svdquant --version`, `--help` and `svdquant inspect` on a checkpoint;
//   - runs every README example (```ts blocks that import an @svdquant package) as written, after type-checking them
//     and a file importing every package with moduleResolution nodenext on the oldest TypeScript the packages claim
//     (engines.typescript; the workspace's `typescript-oldest` is that version), skipLibCheck off.
// README examples read the repository's tiny checkpoints from ./fixtures/models, as their comments say; this test
// copies them there. Needs a prior `pnpm build` (run by `pnpm test`) and the npm registry for third-party deps.
//   node tools/release/consumer-test.mjs [--keep] [--only npm|pnpm]
import { spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { packAll, ROOT } from "./pack.mjs";

const args = process.argv.slice(2);
const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
const t0 = Date.now();
const failures = [];
const log = (s) => console.log(`[consumer ${((Date.now() - t0) / 1000).toFixed(0).padStart(3)} s] ${s}`);
function check(ok, what, detail = "") {
  if (ok) log(`ok   ${what}`);
  else {
    failures.push(`${what}${detail ? `: ${detail}` : ""}`);
    log(`FAIL ${what}${detail ? `\n${detail}` : ""}`);
  }
}

const work = mkdtempSync(join(tmpdir(), "svdq-consumer-"));
if (work.startsWith(`${ROOT}/`)) throw new Error("the consumer projects must live outside the workspace");

// 1. Tarballs, checked (pack.mjs exits with the problems when one is not publishable).
let packed;
try {
  packed = packAll(join(work, "tarballs"), { log });
} catch (e) {
  rmSync(work, { recursive: true, force: true });
  console.error(`consumer test: ${e.message}`);
  process.exit(1);
}
const byName = new Map(packed.map((p) => [p.name, p]));

// 2. A PATH without compilers: every executable of PATH except C/C++/CUDA compilers, linkers and make.
const COMPILER = /^(?:[\w.-]+-)?(?:cc|gcc|g\+\+|c\+\+|cpp|clang|clang\+\+|ld|ld\.\w+|make|gmake|nvcc)(?:-[\d.]+)?$/;
const shim = join(work, "bin");
mkdirSync(shim);
for (const dir of (process.env.PATH ?? "").split(delimiter)) {
  if (!dir || dir.startsWith(join(ROOT, "node_modules"))) continue;
  let names = [];
  try {
    names = readdirSync(dir);
  } catch {}
  for (const n of names)
    if (!COMPILER.test(n) && !existsSync(join(shim, n)))
      try {
        symlinkSync(join(dir, n), join(shim, n));
      } catch {}
}
const env = { ...process.env, PATH: shim, npm_config_update_notifier: "false" };
for (const k of Object.keys(env))
  if (/^(npm_|pnpm_|INIT_CWD|NODE_OPTIONS|CC|CXX)/i.test(k) && k !== "npm_config_update_notifier") delete env[k];
const present = ["cc", "gcc", "g++", "c++", "clang", "clang++", "make", "nvcc"].filter((t) =>
  existsSync(join(shim, t)),
);
check(present.length === 0, "no compiler or make on the consumer PATH", present.join(", "));

function run(cmd, argv, cwd, { timeout = 300_000 } = {}) {
  const r = spawnSync(cmd, argv, { cwd, env, encoding: "utf8", timeout, maxBuffer: 64 << 20 });
  return { code: r.status, out: r.stdout ?? "", err: `${r.stderr ?? ""}${r.error ? String(r.error) : ""}` };
}
const tail = (s, n = 25) => s.trim().split("\n").slice(-n).join("\n");

// 3. README examples, as written in the packed READMEs.
function readmeExamples(pkgDir, name) {
  const text = readFileSync(join(pkgDir, "README.md"), "utf8");
  const blocks = [...text.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
  return blocks
    .filter((b) => /from "@svdquant\//.test(b))
    .map((code, i) => ({ file: `${name.replace("@svdquant/", "")}-${i + 1}.mts`, code }));
}

const oldestTs = JSON.parse(readFileSync(join(ROOT, "node_modules/typescript-oldest/package.json"), "utf8")).version;
const claimed = new Set(packed.map((p) => p.manifest.engines?.typescript ?? "(none)"));
check(
  claimed.size === 1 && [...claimed][0] === `>=${oldestTs.split(".").slice(0, 2).join(".")}`,
  `every package claims TypeScript >=${oldestTs.split(".").slice(0, 2).join(".")} (the version checked)`,
  [...claimed].join(", "),
);

function consumer(tool) {
  const dir = join(work, `${tool}-consumer`);
  mkdirSync(dir);
  const files = Object.fromEntries(packed.map((p) => [p.name, `file:${p.tarball}`]));
  const manifest = {
    name: `svdquant-${tool}-consumer`,
    private: true,
    type: "module",
    dependencies: { ...files, "@types/node": "^20.19.0" },
    // Each package's dependency on a sibling resolves to that sibling's tarball, not to the registry.
    // npm ≥ 11.19 runs dependencies' install scripts only when allowScripts allows them: npm runs ours, as after a
    // user's `npm install-scripts approve`; pnpm 10 runs none (its default), so it must do with the prebuilt binaries.
    ...(tool === "npm"
      ? {
          overrides: files,
          allowScripts: Object.fromEntries(
            // keyed by the dependency's spec, as `npm install-scripts approve` writes it for file: sources
            packed.filter((p) => p.manifest.scripts?.install).map((p) => [files[p.name], true]),
          ),
        }
      : { pnpm: { overrides: files } }),
  };
  writeFileSync(join(dir, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  cpSync(join(ROOT, "fixtures", "models"), join(dir, "fixtures", "models"), { recursive: true });

  const install =
    tool === "npm"
      ? run("npm", ["install", "--no-audit", "--no-fund", "--foreground-scripts"], dir)
      : run("pnpm", ["install", "--config.confirmModulesPurge=false"], dir);
  check(
    install.code === 0,
    `${tool} install of ${packed.length} tarballs without a compiler`,
    tail(install.err + install.out),
  );
  if (install.code !== 0) return;
  log(`${tool} install output (last lines):\n${tail(install.out + install.err, 6)}`);

  const nm = join(dir, "node_modules");
  const kernelsDir = join(nm, "@svdquant/kernels");
  if (byName.has("@svdquant/kernels"))
    check(
      !existsSync(join(kernelsDir, "build", "Release")),
      `${tool}: @svdquant/kernels compiled nothing (prebuilt binary)`,
    );

  // Imports, native paths, optional peers.
  const probe = `
const names = ${JSON.stringify(packed.map((p) => p.name))};
const out = { imported: [], failed: [] };
for (const n of names) {
  try { const m = await import(n); out.imported.push(n + " (" + Object.keys(m).length + " exports)"); }
  catch (e) { out.failed.push(n + ": " + e.message); }
}
if (names.includes("@svdquant/kernels")) out.kernels = (await import("@svdquant/kernels")).backendInfo();
if (names.includes("@svdquant/kernels-cuda")) {
  const c = await import("@svdquant/kernels-cuda");
  out.cudaAddon = Boolean(c.loadAddon().addon); out.cudaAddonReason = c.loadAddon().reason ?? ""; out.cuda = c.cudaAvailability();
}
if (names.includes("@svdquant/metrics")) {
  const m = await import("@svdquant/metrics");
  const img = { width: 8, height: 8, data: Float32Array.from({ length: 192 }, (_, i) => ((i * 37) % 255) / 255) };
  const noisy = { ...img, data: img.data.map((v, i) => v + ((i % 3) - 1) * 0.002) };
  out.psnr = m.psnr(img, noisy);
  try { await m.OnnxModel.load(process.argv[1], { metric: "LPIPS", inputs: [], outputs: [] }); out.ort = "loaded?"; }
  catch (e) { out.ort = e.code + ": " + e.message; }
}
console.log(JSON.stringify(out));
`;
  writeFileSync(join(dir, "probe.mjs"), probe);
  writeFileSync(join(dir, "model.onnx"), "not read: onnxruntime-node is missing first");
  const p = run("node", ["probe.mjs", join(dir, "model.onnx")], dir);
  let res = {};
  try {
    res = JSON.parse(p.out.trim().split("\n").pop());
  } catch {
    check(false, `${tool}: probe ran`, tail(p.err + p.out));
  }
  check(
    res.failed?.length === 0 && res.imported?.length === packed.length,
    `${tool}: imports every package`,
    JSON.stringify(res.failed),
  );
  if (res.kernels)
    check(
      res.kernels.native === true,
      `${tool}: @svdquant/kernels runs its native path (isa ${res.kernels.isa})`,
      JSON.stringify(res.kernels) + tail(p.err),
    );
  if ("cudaAddon" in res)
    check(
      res.cudaAddon === true,
      `${tool}: @svdquant/kernels-cuda loads its prebuilt addon (device: ${res.cuda?.reason})`,
      res.cudaAddonReason,
    );
  if ("psnr" in res) {
    check(
      Number.isFinite(res.psnr) && res.psnr > 30,
      `${tool}: metrics PSNR without onnxruntime-node (${res.psnr?.toFixed?.(2)} dB)`,
    );
    check(
      /^E_ONNXRUNTIME: .*npm install onnxruntime-node/.test(res.ort ?? ""),
      `${tool}: metrics names its missing optional peer`,
      res.ort,
    );
  }

  // The CLI.
  const cli = byName.get("@svdquant/cli");
  if (cli) {
    const bin = join(nm, ".bin", "svdquant");
    const v = run(bin, ["--version"], dir);
    check(
      v.code === 0 && v.out.trim() === cli.version,
      `${tool}: svdquant --version prints ${cli.version}`,
      v.out + v.err,
    );
    const h = run(bin, ["--help"], dir);
    check(h.code === 0 && /inspect/.test(h.out) && /experiment/.test(h.out), `${tool}: svdquant --help`, h.out + h.err);
    const i = run(bin, ["inspect", "fixtures/models/flux-tiny-a", "--json"], dir);
    let rep = {};
    try {
      rep = JSON.parse(i.out);
    } catch {}
    check(
      i.code === 0 && rep.tensors?.length > 0,
      `${tool}: svdquant inspect fixtures/models/flux-tiny-a (${rep.tensors?.length} tensors)`,
      tail(i.out + i.err),
    );
    const e = run(bin, ["experiment", "list"], dir);
    check(
      e.code === 1 && /no experiments\/ folder/.test(e.err),
      `${tool}: svdquant experiment list outside a checkout says why`,
      e.out + e.err,
    );
    check(!existsSync(join(nm, "@napi-rs")), `${tool}: the CLI pulls no @napi-rs/canvas`);
    check(!existsSync(join(nm, "onnxruntime-node")), `${tool}: nothing pulls onnxruntime-node`);
  }

  // README examples: type-check (with a file using every package) on the oldest claimed TypeScript, then run.
  const ex = join(dir, "examples");
  mkdirSync(ex);
  const examples = packed.flatMap((p) => readmeExamples(join(nm, p.name), p.name));
  for (const e of examples) writeFileSync(join(ex, e.file), e.code);
  writeFileSync(
    join(ex, "all-packages.mts"),
    packed.map((p, i) => `import * as p${i} from "${p.name}";\nexport type T${i} = keyof typeof p${i};\n`).join(""),
  );
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        lib: ["ES2022"],
        module: "NodeNext",
        moduleResolution: "NodeNext",
        types: ["node"],
        strict: true,
        skipLibCheck: false,
        outDir: "out",
      },
      include: ["examples/*.mts"],
    }),
  );
  const tsc = run("node", [join(ROOT, "node_modules/typescript-oldest/bin/tsc"), "-p", "."], dir);
  check(
    tsc.code === 0,
    `${tool}: ${examples.length} README examples + every package type-check on TypeScript ${oldestTs} (nodenext, lib ES2022, skipLibCheck off)`,
    tail(tsc.out + tsc.err, 40),
  );
  for (const e of examples) {
    const js = join(dir, "out", e.file.replace(/\.mts$/, ".mjs"));
    if (!existsSync(js)) continue;
    const r = run("node", [js], dir, { timeout: 120_000 });
    check(r.code === 0, `${tool}: README example ${e.file} runs`, tail(r.err + r.out));
  }

  // No prebuilt binary for this machine and no compiler: the install script names the missing tools, and so does
  // the package when it loads (then runs its TypeScript kernels). Simulated by removing the shipped prebuilds.
  if (tool !== "npm") return;
  for (const [name, probeExpr, want] of [
    [
      "@svdquant/kernels",
      "(await import('@svdquant/kernels')).backendInfo().reason",
      /missing make; a C\+\+17 compiler/,
    ],
    ["@svdquant/kernels-cuda", "(await import('@svdquant/kernels-cuda')).cudaAvailability().reason", /missing g\+\+/],
  ]) {
    if (!byName.has(name)) continue;
    rmSync(join(nm, name, "prebuilds"), { recursive: true, force: true });
    const inst = run("npm", ["rebuild", name, "--foreground-scripts"], dir); // runs its install script, as npm would
    check(
      inst.code === 0 && want.test(inst.out + inst.err),
      `${tool}: ${name} without a prebuilt binary or compiler: the install says what is missing`,
      tail(inst.out + inst.err),
    );
    const why = run("node", ["--input-type=module", "-e", `console.log(${probeExpr})`], dir);
    check(want.test(why.out), `${tool}: ${name} without its addon says why when used`, tail(why.out + why.err));
  }
}

for (const tool of ["npm", "pnpm"]) if (!only || only === tool) consumer(tool);

if (args.includes("--keep")) log(`kept ${work}`);
else rmSync(work, { recursive: true, force: true });
if (failures.length) {
  console.error(
    `\nconsumer test: ${failures.length} failure(s):\n  - ${failures.map((f) => f.split("\n")[0]).join("\n  - ")}`,
  );
  process.exit(1);
}
log(`consumer test passed (${packed.length} packages, npm${only ? "" : " and pnpm"})`);
