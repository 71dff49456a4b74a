import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { truncatedSvd } from "@svdquant/lowrank";
import {
  branchSmoothed,
  type Calibration,
  calibrationFromTokens,
  evaluateLayer,
  getMethod,
  type LayerMetrics,
  type LinearLayer,
  METHOD_NAMES,
  type QuantizedLinear,
  quantizeSharedLayers,
  smoothWeight,
} from "@svdquant/quantizer";
import { type AtomicData, checkOutputPath, openCheckpoint, writeFilesAtomic } from "@svdquant/tensor";
import { type AblationConfig, ExperimentError, loadConfig, resolveGenerated } from "./config.js";
import { histogramChart, singularValueChart } from "./figures.js";
import { generateLayer, outlierTokens } from "./generate.js";

export interface CaseInput {
  layer: LinearLayer;
  calibration: Calibration;
  evalX: Float64Array;
  m: number;
  rank: number;
  postGelu: boolean;
  source: string;
}

export interface MethodRow {
  method: string;
  label: string;
  w4a4: boolean;
  metrics: Omit<LayerMetrics, "terms"> & { terms: LayerMetrics["terms"] };
  info: Record<string, number | string>;
  seconds: number;
}

export interface LayerResult {
  layer: string;
  source: string;
  n: number;
  k: number;
  rank: number;
  rows: MethodRow[];
}

export interface SharedInputResult {
  name: string;
  rank: number;
  candidate: { alpha: number; beta: number };
  rows: { layer: string; separate: number; shared: number }[];
  /** Σ‖Y−Ŷ‖² / Σ‖Y‖² over the group, square-rooted: with one λ each, and with the shared λ. */
  jointSeparate: number;
  jointShared: number;
}

export interface AblationResult {
  config: AblationConfig;
  layers: LayerResult[];
  sharedInputs: SharedInputResult[];
  rankSweep: {
    layer: string;
    method: string;
    points: { rank: number; relError: number; sqnrDb: number; bitsPerParam: number }[];
  };
  figures: string[];
  seconds: number;
}

/** The generated layers and the fixture layers of a config, with calibration and held-out tokens. */
export async function loadCases(config: AblationConfig, root: string): Promise<CaseInput[]> {
  const cases: CaseInput[] = [];
  for (const g of config.generated) {
    const gen = generateLayer(resolveGenerated(g));
    cases.push({
      layer: gen.layer,
      calibration: calibrationFromTokens(gen.calib, gen.m, gen.layer.k),
      evalX: gen.evalX,
      m: gen.m,
      rank: config.rank,
      postGelu: false,
      source: `generated (seed ${g.seed})`,
    });
  }
  let fseed = config.seed * 1000 + 17;
  for (const f of config.fixtures) {
    const src = await openCheckpoint(resolve(root, f.model));
    try {
      for (const name of f.layers) {
        const info = src.info(name);
        if (info.shape.length !== 2) throw new ExperimentError("E_CONFIG", `${f.model}: ${name} is not a 2-D weight`);
        const [n, k] = info.shape as [number, number];
        const weight = (await src.read(name)).toFloat64();
        const biasName = name.replace(/\.weight$/, ".bias");
        const bias = src.has(biasName) ? (await src.read(biasName)).toFloat64() : undefined;
        const postGelu = f.postGelu?.includes(name) ?? false;
        const m = config.fixtureTokens;
        const x = outlierTokens(fseed++, 2 * m, k, { postGelu });
        cases.push({
          layer: { name: `${f.model.split("/").pop()}:${name}`, n, k, weight, bias },
          calibration: calibrationFromTokens(x.subarray(0, m * k), m, k),
          evalX: x.slice(m * k),
          m,
          rank: Math.min(f.rank ?? 16, n, k),
          postGelu,
          source: f.model,
        });
      }
    } finally {
      await src.close();
    }
  }
  return cases;
}

/** SVDQuant INT4 on layers sharing one synthetic outlier input: one λ for the group vs one λ per layer. */
async function runSharedInput(
  group: NonNullable<AblationConfig["sharedInputs"]>[number],
  root: string,
  seed: number,
  m: number,
): Promise<SharedInputResult> {
  const src = await openCheckpoint(resolve(root, group.model));
  const layers: LinearLayer[] = [];
  try {
    for (const name of group.layers) {
      const [n, k] = src.info(name).shape as [number, number];
      const biasName = name.replace(/\.weight$/, ".bias");
      layers.push({
        name,
        n,
        k,
        weight: (await src.read(name)).toFloat64(),
        bias: src.has(biasName) ? (await src.read(biasName)).toFloat64() : undefined,
      });
    }
  } finally {
    await src.close();
  }
  const k = layers[0].k;
  const x = outlierTokens(seed * 1000 + 99, 2 * m, k);
  const cal = calibrationFromTokens(x.subarray(0, m * k), m, k);
  const evalX = x.slice(m * k);
  const rank = group.rank ?? 16;
  const cfg = { rank, seed, refinement: { maxIterations: 0 } };
  const shared = quantizeSharedLayers(layers, cal, cfg);
  const rows: SharedInputResult["rows"] = [];
  let sepNum = 0;
  let shNum = 0;
  let den = 0;
  layers.forEach((l, i) => {
    const sep = evaluateLayer(l, quantizeSharedLayers([l], cal, cfg).layers[0], evalX, m);
    const sh = evaluateLayer(l, shared.layers[i], evalX, m);
    const yNorm = sh.absError / sh.relError;
    sepNum += sep.absError ** 2;
    shNum += sh.absError ** 2;
    den += yNorm ** 2;
    rows.push({ layer: l.name ?? "?", separate: sep.relError, shared: sh.relError });
  });
  return {
    name: group.name,
    rank,
    candidate: shared.candidate,
    rows,
    jointSeparate: Math.sqrt(sepNum / den),
    jointShared: Math.sqrt(shNum / den),
  };
}

function runMethod(c: CaseInput, name: string, rank: number, seed: number): { q: QuantizedLinear; row: MethodRow } {
  const method = getMethod(name);
  const t = performance.now();
  const q = method.quantize(c.layer, c.calibration, { rank, seed, postGelu: c.postGelu });
  const metrics = evaluateLayer(c.layer, q, c.evalX, c.m);
  return {
    q,
    row: {
      method: name,
      label: method.label,
      w4a4: method.w4a4,
      metrics,
      info: q.info,
      seconds: (performance.now() - t) / 1000,
    },
  };
}

function spectrum(a: Float64Array, n: number, k: number): Float64Array {
  return truncatedSvd(a, n, k, Math.min(n, k), { method: "exact" }).s;
}

/** Run the ablation: every method on every layer, the rank sweep, figures, JSON and Markdown under `out`. */
export async function runAblation(
  dir: string,
  opts: { root?: string; out?: string; log?: (line: string) => void; figures?: boolean } = {},
): Promise<{ result: AblationResult; markdown: string; outDir: string }> {
  const t0 = performance.now();
  const config = await loadConfig(dir);
  for (const m of [...config.methods, config.rankSweep.method])
    if (!METHOD_NAMES.includes(m))
      throw new ExperimentError(
        "E_CONFIG",
        `unknown method "${m}" in ${dir}/config.json; known: ${METHOD_NAMES.join(", ")}`,
      );
  const root = opts.root ?? resolve(dir, "../..");
  const outDir = opts.out ?? resolve(dir, config.out);
  const log = opts.log ?? (() => {});
  try {
    await mkdir(outDir, { recursive: true });
  } catch (e) {
    throw new ExperimentError("E_IO", `${outDir}: cannot create the output folder: ${(e as Error).message}`);
  }
  await checkOutputPath(join(outDir, "results.json")); // before the run, not after it
  const cases = await loadCases(config, root);
  const layers: LayerResult[] = [];
  const figures: string[] = [];
  const figureFiles: { path: string; data: AtomicData }[] = [];
  for (const c of cases) {
    const rows: MethodRow[] = [];
    for (const name of config.methods) {
      const { q, row } = runMethod(c, name, c.rank, config.seed);
      rows.push(row);
      log(`${c.layer.name} ${name}: rel. error ${row.metrics.relError.toFixed(4)} (${row.seconds.toFixed(1)} s)`);
      if (opts.figures !== false && c.layer.name === config.figureLayer && name === "svdquant-int4")
        for (const f of plotLayer(c, q, outDir)) {
          figures.push(f.path);
          figureFiles.push(f);
        }
    }
    layers.push({ layer: c.layer.name ?? "?", source: c.source, n: c.layer.n, k: c.layer.k, rank: c.rank, rows });
  }
  const sweepCase = cases.find((c) => c.layer.name === config.rankSweep.layer);
  if (!sweepCase)
    throw new ExperimentError("E_CONFIG", `rankSweep.layer "${config.rankSweep.layer}" is not a layer of the config`);
  const sweepLayer = layers.find((l) => l.layer === config.rankSweep.layer);
  const points = config.rankSweep.ranks.map((rank) => {
    // the table's own row is the sweep point at the table's rank
    const same =
      rank === sweepCase.rank ? sweepLayer?.rows.find((r) => r.method === config.rankSweep.method) : undefined;
    const row = same ?? runMethod(sweepCase, config.rankSweep.method, rank, config.seed).row;
    log(`rank sweep ${rank}: rel. error ${row.metrics.relError.toFixed(4)}`);
    return { rank, relError: row.metrics.relError, sqnrDb: row.metrics.sqnrDb, bitsPerParam: row.metrics.bitsPerParam };
  });
  const sharedInputs: SharedInputResult[] = [];
  for (const group of config.sharedInputs ?? []) {
    const r = await runSharedInput(group, root, config.seed, config.fixtureTokens);
    log(
      `shared input ${group.name}: joint rel. error ${r.jointShared.toFixed(4)} (separate λ: ${r.jointSeparate.toFixed(4)})`,
    );
    sharedInputs.push(r);
  }
  const result: AblationResult = {
    config,
    layers,
    sharedInputs,
    rankSweep: { layer: config.rankSweep.layer, method: config.rankSweep.method, points },
    figures,
    seconds: (performance.now() - t0) / 1000,
  };
  const markdown = formatMarkdown(result);
  // All outputs of the run replace the previous ones together, or none does (a full disk leaves the old set).
  await writeFilesAtomic([
    ...figureFiles,
    { path: join(outDir, "results.json"), data: `${JSON.stringify(result, null, 2)}\n` },
    { path: join(outDir, "table.md"), data: markdown },
  ]);
  return { result, markdown, outDir };
}

/** Fig. 5 (singular values of W, Ŵ, R) and Fig. 4 (histograms of X, X̂, W, Ŵ, R) for one layer. */
function plotLayer(c: CaseInput, q: QuantizedLinear, outDir: string): { path: string; data: Buffer }[] {
  const { n, k } = c.layer;
  const w = Float64Array.from(c.layer.weight);
  const wh = smoothWeight(c.layer, q.smooth);
  const l = branchSmoothed(q);
  const r = wh.map((v, i) => v - l[i]);
  const x = Float64Array.from(c.calibration.tokens);
  const xh = x.map((v, i) => v / q.smooth[i % k]);
  const sv = join(outDir, "fig5-singular-values.png");
  const svPng = singularValueChart(`${c.layer.name}: singular values (SVDQuant INT4, rank ${q.rank})`, [
    { label: "W (original)", values: spectrum(w, n, k) },
    { label: "Ŵ (smoothed)", values: spectrum(wh, n, k) },
    { label: `R = Ŵ − L (rank ${q.rank} removed)`, values: spectrum(r, n, k) },
  ]);
  const hist = join(outDir, "fig4-histograms.png");
  const histPng = histogramChart(`${c.layer.name}: value distributions`, [
    { label: "X (input)", values: x },
    { label: "X̂ = X/λ (smoothed)", values: xh },
    { label: "W", values: w },
    { label: "Ŵ = W·λ", values: wh },
    { label: "R = Ŵ − L", values: r },
  ]);
  return [
    { path: sv, data: svPng },
    { path: hist, data: histPng },
  ];
}

const f4 = (v: number): string => v.toFixed(4);

/** The Markdown report: one method table per layer, then the rank sweep. */
export function formatMarkdown(r: AblationResult): string {
  const out: string[] = ["# Layer ablation (SVDQuant §4, Fig. 4/5, Table 3 style)", ""];
  out.push(
    "Relative output error ‖Y − Ŷ‖_F/‖Y‖_F and SQNR on held-out tokens; weight bits per parameter count codes,",
    "scales, the 16-bit low-rank branch and λ. W4A4 rows quantize activations to 4 bits.",
    "",
  );
  for (const l of r.layers) {
    out.push(`## ${l.layer} [N=${l.n}, K=${l.k}], rank ${l.rank} — ${l.source}`, "");
    out.push("| method | W4A4 | rel. output error | SQNR (dB) | weight bits/param | notes |");
    out.push("| --- | :-: | --: | --: | --: | --- |");
    for (const row of l.rows) {
      const notes = Object.entries(row.info)
        .map(([k, v]) => `${k}=${v}`)
        .join(", ");
      out.push(
        `| ${row.label} | ${row.w4a4 ? "✓" : ""} | ${f4(row.metrics.relError)} | ${row.metrics.sqnrDb.toFixed(2)} | ${row.metrics.bitsPerParam.toFixed(3)} | ${notes} |`,
      );
    }
    out.push("");
  }
  const s = r.rankSweep;
  out.push(`## Rank sweep: ${s.method} on ${s.layer}`, "");
  out.push("| rank | rel. output error | SQNR (dB) | weight bits/param |", "| --: | --: | --: | --: |");
  for (const p of s.points)
    out.push(`| ${p.rank} | ${f4(p.relError)} | ${p.sqnrDb.toFixed(2)} | ${p.bitsPerParam.toFixed(3)} |`);
  out.push("");
  for (const g of r.sharedInputs) {
    out.push(`## Shared input: ${g.name} (SVDQuant INT4, rank ${g.rank}, no refinement)`, "");
    out.push(
      `One λ (α=${g.candidate.alpha}, β=${g.candidate.beta}) for every layer, chosen on their joint error, against`,
    );
    out.push("each layer with its own λ (which a fused q/k/v or qkv+MLP-in kernel cannot use).", "");
    out.push("| layer | own λ: rel. error | shared λ: rel. error |", "| --- | --: | --: |");
    for (const row of g.rows) out.push(`| ${row.layer} | ${f4(row.separate)} | ${f4(row.shared)} |`);
    out.push(`| **joint** | ${f4(g.jointSeparate)} | ${f4(g.jointShared)} |`, "");
  }
  if (r.figures.length > 0) out.push(`Figures: ${r.figures.map((f) => f.split("/").pop()).join(", ")}`, "");
  out.push(`Total time: ${r.seconds.toFixed(1)} s`, "");
  return out.join("\n");
}
