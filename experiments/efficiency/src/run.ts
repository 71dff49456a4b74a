import { resolve } from "node:path";
import {
  barChart,
  type ExperimentRunOptions,
  experimentFolders,
  machineLine,
  writeOutputs,
} from "@svdquant/experiment-common";
import { type EfficiencyConfig, loadEfficiencyConfig } from "./config.js";
import { type LatencyRow, measureLatency } from "./latency.js";
import { type SizeRow, sizeRow } from "./sizes.js";

export interface EfficiencyResult {
  readonly config: EfficiencyConfig;
  readonly machine: string;
  readonly date: string;
  readonly sizes: SizeRow[];
  readonly latency: LatencyRow[];
  readonly seconds: number;
}

/** Model sizes, CPU step latency and the cited GPU numbers; writes results.json, table.md and sizes.png. */
export async function runEfficiency(
  dir: string,
  opts: ExperimentRunOptions = {},
): Promise<{ result: EfficiencyResult; markdown: string; outDir: string }> {
  const t0 = performance.now();
  const config = await loadEfficiencyConfig(dir);
  const { root, outDir } = await experimentFolders(dir, config.out, opts);
  const sizes: SizeRow[] = [];
  for (const s of config.sizes) sizes.push(await sizeRow(s.name, resolve(root, s.manifest), config.rank));
  const latency = config.latency
    ? await measureLatency(resolve(root, config.latency.pipeline), { ...config.latency, rank: config.rank }, opts.log)
    : [];
  const result: EfficiencyResult = {
    config,
    machine: machineLine(),
    date: new Date().toISOString(),
    sizes,
    latency,
    seconds: (performance.now() - t0) / 1000,
  };
  const markdown = formatEfficiency(result);
  const files: { name: string; data: string | Uint8Array }[] = [
    { name: "results.json", data: `${JSON.stringify(result, null, 1)}\n` },
    { name: "table.md", data: markdown },
  ];
  if (opts.figures !== false && sizes.length > 0) {
    const GiB = 2 ** 30;
    files.push({
      name: "sizes.png",
      data: barChart(
        `Transformer weights (GiB), rank ${config.rank}`,
        ["BF16", "NF4 (bitsandbytes)", "SVDQuant INT4", "SVDQuant NVFP4"],
        sizes.map((s) => ({
          label: s.name,
          values: [s.bf16Bytes, s.nf4Bytes, s.svdquantInt4Bytes, s.svdquantNvfp4Bytes].map((b) => b / GiB),
        })),
      ),
    });
  }
  await writeOutputs(outDir, files);
  return { result, markdown, outDir };
}

const gib = (b: number) => (b / 2 ** 30).toFixed(2);

export function formatEfficiency(r: EfficiencyResult): string {
  const out = [
    "# Efficiency: model sizes and step latency",
    "",
    `Date: ${r.date}. Machine: ${r.machine}.`,
    "",
    `## Exact transformer sizes (rank ${r.config.rank}; from the parameter manifests and the packing rules of @svdquant/pipeline)`,
    "",
    "| model | parameters | BF16 | NF4 (bnb, g64) | SVDQuant INT4 | SVDQuant NVFP4 | BF16 / INT4 |",
    "|---|--:|--:|--:|--:|--:|--:|",
    ...r.sizes.map(
      (s) =>
        `| ${s.name} | ${s.parameters.toLocaleString("en-US")} | ${gib(s.bf16Bytes)} GiB | ${gib(s.nf4Bytes)} GiB | ${gib(s.svdquantInt4Bytes)} GiB | ${gib(s.svdquantNvfp4Bytes)} GiB | ${(s.bf16Bytes / s.svdquantInt4Bytes).toFixed(2)}x |`,
    ),
    "",
    "Exact bytes:",
    "",
    "| model | BF16 | NF4 | SVDQuant INT4 | SVDQuant NVFP4 |",
    "|---|--:|--:|--:|--:|",
    ...r.sizes.map(
      (s) =>
        `| ${s.name} | ${s.bf16Bytes.toLocaleString("en-US")} | ${s.nf4Bytes.toLocaleString("en-US")} | ${s.svdquantInt4Bytes.toLocaleString("en-US")} | ${s.svdquantNvfp4Bytes.toLocaleString("en-US")} |`,
    ),
    "",
  ];
  if (r.config.latency) {
    const l = r.config.latency;
    out.push(
      `## Per-step latency on this CPU: ${l.pipeline}, one transformer forward, batch 1`,
      "",
      `16-bit = the float32 weights on the TypeScript GEMM (what FluxPipeline uses unless a native GEMM is set) and on @svdquant/kernels' native f32 GEMM; W4A4 = the packed SVDQuant INT4 checkpoint on the native W4A4 kernels (attention, norms and the 16-bit embedders as in the 16-bit model). Same process, ${l.rounds} rounds after ${l.warmup} warm-up, the three arms alternating within each round; medians. Machine: ${r.machine}. The machine is shared by several agents: timings are noisy.`,
      "",
      "| image side | image + text tokens | 16-bit, TS GEMM ms | 16-bit, native GEMM ms | W4A4 kernels ms | W4A4 / native 16-bit |",
      "|--:|--:|--:|--:|--:|--:|",
      ...r.latency.map(
        (x) =>
          `| ${x.size} | ${x.imageTokens} + ${x.textTokens} | ${x.denseMs.toFixed(1)} | ${x.denseNativeMs.toFixed(1)} | ${x.w4a4Ms.toFixed(1)} | ${x.ratio.toFixed(2)} |`,
      ),
      "",
    );
  }
  if (r.config.gpu) {
    const g = r.config.gpu;
    out.push(
      "## GPU (cited, not measured by this experiment)",
      "",
      `From ${g.source}, measured ${g.date} on ${g.machine}: ${g.setting}.`,
      "",
      "| engine | weights GiB | peak GPU memory | step ms |",
      "|---|--:|---|---|",
      ...g.rows.map((x) => `| ${x.engine} | ${x.weightsGiB} | ${x.peakMemory} | ${x.stepMs} |`),
      "",
    );
  }
  out.push(`Total ${r.seconds.toFixed(0)} s.`, "");
  return out.join("\n");
}
