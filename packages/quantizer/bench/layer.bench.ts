/**
 * One FLUX-sized MLP layer through `quantizeSharedLayers`: the float64 reference path against the kernel path
 * (`kernels: @svdquant/kernels`), same seeds, same search. Each case runs in its own child process so that its
 * peak RSS is its own. Not part of the test suite: `pnpm --filter @svdquant/quantizer bench [-- flags]`.
 *
 * Flags: --n 12288 --k 3072 --m 256 --rank 32 (layer and calibration size)
 *        --cases fixed,kernels-full      which cases (default); all cases: fixed-ref, fixed, full-ref, full
 *          fixed-ref / fixed: λ fixed (α = 0.5, β = 0.5), no refinement, reference / kernel path
 *          full-ref / full:   the default search (39 candidates) + refinement, reference / kernel path
 *        --refine N       refinement iterations of the full cases (default 100, the quantizer's default)
 *        --seed S         seed of the generated layer and of the SVD (default 2025)
 *        --warm           kernel path: warm-started refinement SVDs (`refinement.warmStart`)
 * Each case prints wall seconds and CPU seconds (user + system of its process, all threads): on a shared machine
 * the CPU seconds are the steadier number.
 */
import { spawnSync } from "node:child_process";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import * as kernels from "@svdquant/kernels";
import { SeededRng } from "@svdquant/lowrank";
import { smoothingFactors, weightAbsMax } from "@svdquant/smoothing";
import { calibrationFromTokens, type LinearLayer, quantizeSharedLayers } from "../src/index.ts";

const argv = process.argv.slice(2);
function flag(name: string, def: string): string {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : def;
}
const N = Number(flag("n", "12288"));
const K = Number(flag("k", "3072"));
const M = Number(flag("m", "256"));
const R = Number(flag("rank", "32"));
const REFINE = Number(flag("refine", "100"));
const SEED = Number(flag("seed", "2025"));
const WARM = argv.includes("--warm");

/** W [N, K] with outlier input channels, bias, and M post-attention-like tokens with outlier channels (seeded). */
function makeLayer(): { layer: LinearLayer; x: Float32Array } {
  const rng = new SeededRng(SEED);
  const w = new Float32Array(N * K);
  for (let i = 0; i < w.length; i++) w[i] = rng.normal() / Math.sqrt(K);
  for (let c = 0; c < 8; c++) {
    const j = rng.int(K); // a few input channels where W is large too
    for (let i = 0; i < N; i++) w[i * K + j] *= 6;
  }
  const bias = new Float32Array(N);
  for (let i = 0; i < N; i++) bias[i] = 0.02 * rng.normal();
  const scale = new Float64Array(K);
  for (let j = 0; j < K; j++) scale[j] = Math.exp(0.5 * rng.normal());
  for (let c = 0; c < 16; c++) scale[rng.int(K)] *= 20 + 40 * rng.uniform(); // activation outlier channels
  const x = new Float32Array(M * K);
  for (let i = 0; i < x.length; i++) x[i] = scale[i % K] * rng.studentT(4);
  return { layer: { name: "mlp.fc1", n: N, k: K, weight: w, bias }, x };
}

function runCase(name: string): void {
  const { layer, x } = makeLayer();
  const cal = calibrationFromTokens(x, M, K);
  const fixed = name.startsWith("fixed");
  const useKernels = !name.endsWith("-ref");
  const candidate = { alpha: 0.5, beta: 0.5 };
  const lambda = fixed
    ? { lambda: smoothingFactors(cal.xAbsMax, weightAbsMax(layer.weight, N, K), 0.5, 0.5), candidate }
    : undefined;
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  const r = quantizeSharedLayers([layer], cal, {
    rank: R,
    lambda,
    seed: SEED,
    refinement: { maxIterations: fixed ? 0 : REFINE, warmStart: WARM },
    kernels: useKernels ? kernels : undefined,
  });
  const seconds = (performance.now() - t0) / 1000;
  const u = process.cpuUsage(u0);
  const cpuSeconds = (u.user + u.system) / 1e6;
  const info = r.layers[0].info;
  console.log(
    JSON.stringify({
      case: name,
      seconds,
      cpuSeconds,
      relError: r.metrics[0].relError,
      sqnrDb: r.metrics[0].sqnrDb,
      alpha: r.candidate.alpha,
      beta: r.candidate.beta,
      refinementIterations: info.refinementIterations,
      refinementRun: info.refinementRun ?? 0,
      peakRssMiB: process.resourceUsage().maxRSS / 1024,
    }),
  );
}

const only = flag("case", "");
if (only) runCase(only);
else {
  const cases = flag("cases", "fixed-ref,fixed,full").split(",");
  const info = kernels.backendInfo();
  const load0 = loadavg()[0];
  console.log(
    `layer [${N}, ${K}], rank ${R}, ${M} tokens, seed ${SEED}${WARM ? ", warm-started refinement" : ""}; CPU ${info.cpu} x${cpus().length}; kernels ${info.native ? info.isa : `TypeScript (${info.reason})`}, ${info.threads} threads; ${new Date().toISOString()}`,
  );
  const rows: Record<string, Record<string, number | string>> = {};
  for (const c of cases) {
    const r = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...argv, "--case", c], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    });
    if (r.status !== 0) throw new Error(`case ${c} failed (exit ${r.status})`);
    rows[c] = JSON.parse(r.stdout.trim().split("\n").pop()!);
    const o = rows[c];
    console.log(
      `${c.padEnd(9)} ${Number(o.seconds).toFixed(1).padStart(8)} s (CPU ${Number(o.cpuSeconds).toFixed(1).padStart(7)} s)  rel.err ${Number(o.relError).toFixed(6)}  ` +
        `α ${o.alpha} β ${o.beta}  refinement best ${o.refinementIterations} of ${o.refinementRun}  peak RSS ${Number(o.peakRssMiB).toFixed(0)} MiB`,
    );
  }
  for (const [a, b] of [
    ["fixed-ref", "fixed"],
    ["full-ref", "full"],
  ])
    if (rows[a] && rows[b])
      console.log(
        `${b}: ${(Number(rows[a].seconds) / Number(rows[b].seconds)).toFixed(1)}x faster than ${a} (CPU time ${(Number(rows[a].cpuSeconds) / Number(rows[b].cpuSeconds)).toFixed(1)}x); rel.err ${Number(rows[b].relError).toFixed(6)} vs ${Number(rows[a].relError).toFixed(6)}`,
      );
  console.log(`load average (1 min): ${load0.toFixed(1)} before, ${loadavg()[0].toFixed(1)} after`);
}
