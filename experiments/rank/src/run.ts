import {
  type ExperimentRunOptions,
  experimentFolders,
  fmt,
  lineChart,
  type MethodResult,
  machineLine,
  methodGrid,
  runMethodRows,
  serializable,
  writeOutputs,
} from "@svdquant/experiment-common";
import { loadRankConfig, type RankConfig } from "./config.js";

export interface RankResult {
  readonly config: RankConfig;
  readonly machine: string;
  readonly date: string;
  readonly prompts: string[];
  /** The 16-bit row, then one row per rank in config order. */
  readonly rows: Omit<MethodResult, "images">[];
  readonly seconds: number;
}

/** Sweep the rank of one method at the model level; writes results.json, table.md, rank.png and grid.png. */
export async function runRank(
  dir: string,
  opts: ExperimentRunOptions = {},
): Promise<{ result: RankResult; markdown: string; outDir: string }> {
  const t0 = performance.now();
  const config = await loadRankConfig(dir);
  const { root, outDir } = await experimentFolders(dir, config.out, opts);
  const specs = config.ranks.map((rank) => ({ id: `rank ${rank}`, method: config.method, rank }));
  const { settings, rows } = await runMethodRows(config.generation, root, specs, opts.log);
  const result: RankResult = {
    config,
    machine: machineLine(),
    date: new Date().toISOString(),
    prompts: [...settings.prompts],
    rows: rows.map(serializable),
    seconds: (performance.now() - t0) / 1000,
  };
  const markdown = formatRank(result);
  const files: { name: string; data: string | Uint8Array }[] = [
    { name: "results.json", data: `${JSON.stringify(result, null, 1)}\n` },
    { name: "table.md", data: markdown },
  ];
  if (opts.figures !== false) {
    const q = rows.slice(1);
    const y = (f: (r: MethodResult) => number | null) => q.map((r) => f(r) ?? Number.NaN);
    files.push({
      name: "rank.png",
      data: lineChart(
        `${config.method}: rank of the low-rank branch (model level, ${settings.prompts.length} prompts)`,
        "rank",
        config.ranks,
        [
          { label: "PSNR vs 16-bit (dB) ↑", curves: [{ label: "PSNR", y: y((r) => r.psnr) }] },
          { label: "SSIM vs 16-bit ↑", curves: [{ label: "SSIM", y: y((r) => r.ssim) }] },
          ...(settings.shapes
            ? [{ label: "caption accuracy ↑", curves: [{ label: "captions", y: y((r) => r.captionAccuracy) }] }]
            : []),
          { label: "transformer bytes (MB)", curves: [{ label: "bytes", y: y((r) => r.bytes / 1e6) }] },
        ],
      ),
    });
    files.push({ name: "grid.png", data: methodGrid(rows, config.gridColumns) });
  }
  await writeOutputs(outDir, files);
  return { result, markdown, outDir };
}

export function formatRank(r: RankResult): string {
  const g = r.config.generation;
  const caps = r.rows[0]?.captionAccuracy !== null;
  return [
    `# Rank sweep at the model level: ${r.config.method}`,
    "",
    `${r.prompts.length} prompts × ${g.steps} steps at ${g.size}×${g.size} (${g.pipeline}), seed ${g.seed} + prompt index shared by every row.`,
    "PSNR per image on [0, 1] (capped at 100 dB) then averaged; SSIM; caption accuracy = the toy detector finds every attribute the caption names.",
    `Machine: ${r.machine}. Date: ${r.date}. Total ${r.seconds.toFixed(0)} s.`,
    "",
    `| row | PSNR (dB) ↑ | SSIM ↑ |${caps ? " caption accuracy ↑ |" : ""} model bytes | quantize s | ms / step |`,
    `|---|--:|--:|${caps ? "--:|" : ""}--:|--:|--:|`,
    ...r.rows.map(
      (x) =>
        `| ${x.id} | ${fmt(x.psnr, 2)} | ${fmt(x.ssim, 4)} |${caps ? ` ${fmt(x.captionAccuracy, 3)} |` : ""} ${x.bytes.toLocaleString("en-US")} | ${x.quantizeSeconds.toFixed(1)} | ${x.msPerStep.toFixed(1)} |`,
    ),
    "",
  ].join("\n");
}
