// Experiments are private workspace packages (experiments/*), not dependencies of the CLI: `svdquant experiment`
// finds them on disk at run time and imports the module their package.json exports. An experiment package declares
// itself with a "svdquant" field: { "runner": "<name used in config.json>", "run": "<exported run function>" }.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { checkJsonNesting, MAX_JSON_FILE_BYTES, readInputFile } from "@svdquant/tensor";
import { exports as resolveExports } from "resolve.exports";
import { CliError } from "./errors.js";

/** Options every experiment runner takes; it returns a Markdown report, the output folder and a JSON-able result. */
export type ExperimentRunner = (
  dir: string,
  opts: { root?: string; out?: string; log?: (line: string) => void; figures?: boolean },
) => Promise<{ markdown: string; outDir: string; result: unknown }>;

/** An experiment package found on disk. */
export interface ExperimentPackage {
  /** package name, e.g. @svdquant/experiment-ablation-layer */
  name: string;
  /** the runner name experiment folders' config.json refer to */
  runner: string;
  /** the package folder */
  dir: string;
  /** the module file its package.json exports for ".", absolute */
  entry: string;
  /** the exported run function's name */
  exportName: string;
}

// Running from src/*.ts (tests, tsx) the experiment is imported from its sources too, like the workspace's siblings.
const CONDITIONS = import.meta.url.endsWith(".ts") ? ["@svdquant/source", "node", "import"] : ["node", "import"];

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** The experiment package in `dir`, or undefined when `dir` holds no package.json with a "svdquant" runner field. */
export function readExperimentPackage(dir: string): ExperimentPackage | undefined {
  const path = join(dir, "package.json");
  if (!existsSync(path)) return undefined;
  let pj: { name?: string; svdquant?: { runner?: unknown; run?: unknown } };
  try {
    pj = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new CliError("E_CONFIG", `${path}: cannot read package.json: ${(e as Error).message}`);
  }
  const meta = pj.svdquant;
  if (!meta || typeof meta.runner !== "string") return undefined;
  if (typeof meta.run !== "string")
    throw new CliError("E_CONFIG", `${path}: "svdquant.run" must name the exported run function`);
  const entries = resolveExports(pj, ".", { conditions: CONDITIONS, unsafe: true });
  if (!entries?.[0])
    throw new CliError("E_CONFIG", `${path}: no "exports" entry for "." to import the experiment from`);
  return {
    name: pj.name ?? basename(dir),
    runner: meta.runner,
    dir,
    entry: resolve(dir, entries[0]),
    exportName: meta.run,
  };
}

/** Experiment packages in the nearest `experiments/` folder at or above each of `from` (first found wins per runner). */
export function findExperimentPackages(from: string[]): ExperimentPackage[] {
  const found = new Map<string, ExperimentPackage>();
  for (const start of from) {
    for (let d = resolve(start); ; d = dirname(d)) {
      const exp = join(d, "experiments");
      if (isDir(exp)) {
        for (const e of readdirSync(exp, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
          if (!e.isDirectory()) continue;
          const p = readExperimentPackage(join(exp, e.name));
          if (p && !found.has(p.runner)) found.set(p.runner, p);
        }
        break;
      }
      if (dirname(d) === d) break;
    }
  }
  return [...found.values()];
}

/** The runner named by an experiment folder's config.json (an untrusted file: bounded, regular, nesting checked). */
async function runnerOf(dir: string): Promise<string> {
  const path = join(dir, "config.json");
  const text = (await readInputFile(path, MAX_JSON_FILE_BYTES)).toString("utf8");
  checkJsonNesting(text, path);
  let cfg: { runner?: unknown };
  try {
    cfg = JSON.parse(text);
  } catch (e) {
    throw new CliError("E_CONFIG", `cannot parse experiment config: ${(e as Error).message}`, path, e);
  }
  if (cfg === null || typeof cfg !== "object" || typeof cfg.runner !== "string")
    throw new CliError("E_CONFIG", `"runner" must name the experiment's runner`, path);
  return cfg.runner;
}

/**
 * What `svdquant experiment run ARG` runs: ARG is an experiment folder (holding config.json), or the name of an
 * experiment package under an experiments/ folder at or above `cwd`. The runner named by the folder's config.json is
 * the folder's own package when it declares that runner, else one found in an experiments/ folder above the folder
 * or above `cwd`.
 */
export async function resolveExperiment(arg: string, cwd: string): Promise<{ folder: string; pkg: ExperimentPackage }> {
  const asPath = resolve(cwd, arg);
  if (isDir(asPath)) {
    const runner = await runnerOf(asPath);
    const own = readExperimentPackage(asPath);
    if (own?.runner === runner) return { folder: asPath, pkg: own };
    const all = findExperimentPackages([asPath, cwd]);
    const pkg = all.find((p) => p.runner === runner);
    if (!pkg)
      throw new CliError(
        "E_CONFIG",
        `unknown runner ${JSON.stringify(runner)}; ` +
          (all.length
            ? `known: ${all.map((p) => p.runner).join(", ")}`
            : `no experiments/ folder with experiment packages above ${asPath} or ${cwd} (experiments are not installed with the CLI: run it from a checkout of svdquant-ts)`),
        join(asPath, "config.json"),
      );
    return { folder: asPath, pkg };
  }
  const all = findExperimentPackages([cwd]);
  const pkg = all.find((p) => p.runner === arg || basename(p.dir) === arg);
  if (!pkg)
    throw new CliError(
      "E_CONFIG",
      `experiment ${JSON.stringify(arg)}: not a folder, and no experiment of that name in an experiments/ folder above ${cwd}` +
        (all.length ? ` (found: ${all.map((p) => basename(p.dir)).join(", ")})` : ""),
    );
  return { folder: pkg.dir, pkg };
}

/** Import an experiment package's module and return its run function. */
export async function loadRunner(pkg: ExperimentPackage): Promise<ExperimentRunner> {
  let mod: Record<string, unknown>;
  try {
    mod = await import(pathToFileURL(pkg.entry).href);
  } catch (e) {
    const hint = existsSync(pkg.entry) ? "" : " (build it first: pnpm build)";
    throw new CliError("E_CONFIG", `${pkg.name}: cannot import ${pkg.entry}${hint}: ${(e as Error).message}`);
  }
  const run = mod[pkg.exportName];
  if (typeof run !== "function")
    throw new CliError("E_CONFIG", `${pkg.name}: ${pkg.entry} exports no function ${pkg.exportName}`);
  return run as ExperimentRunner;
}
