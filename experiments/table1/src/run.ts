import { join, resolve } from "node:path";
import {
  barChart,
  type ExperimentRunOptions,
  experimentFolders,
  fmt,
  type MethodResult,
  machineLine,
  methodGrid,
  runMethodRows,
  serializable,
  writeOutputs,
} from "@svdquant/experiment-common";
import type { FeatureStats } from "@svdquant/metrics";
import { loadTable1Config, type Preset, selectPreset, type Table1Config } from "./config.js";
import {
  FidFeatureExtractor,
  featureStatsOf,
  frechetDistance,
  Lpips,
  MISSING,
  meanLpips,
  readReferenceImages,
  rgb8,
} from "./neural.js";

export interface Table1Row extends Omit<MethodResult, "images"> {
  readonly lpips: number | null;
  readonly fid: number | null;
}

export interface Table1Result {
  readonly config: Table1Config;
  readonly preset: string;
  readonly protocol: Preset;
  readonly machine: string;
  readonly date: string;
  readonly prompts: string[];
  readonly rows: Table1Row[];
  /** Metrics without a number in this run, and why. */
  readonly missing: Record<string, string>;
  /** What FID compares with: the dataset's images, or the 16-bit model's images. */
  readonly fidReference: string | null;
  readonly seconds: number;
}

/** Run Table 1 on the selected preset; writes results.json, table.md, table1.png and grid.png. */
export async function runTable1(
  dir: string,
  opts: ExperimentRunOptions = {},
): Promise<{ result: Table1Result; markdown: string; outDir: string }> {
  const t0 = performance.now();
  const config = await loadTable1Config(dir);
  const { preset, generation } = selectPreset(config, join(dir, "config.json"));
  const { root, outDir } = await experimentFolders(dir, config.out, opts);
  // the ONNX models load before the long part, so a bad path fails first
  const lpips = config.metrics.lpips ? await Lpips.load(resolve(root, config.metrics.lpips)) : null;
  const fid = config.metrics.fid ? await FidFeatureExtractor.load(resolve(root, config.metrics.fid)) : null;
  try {
    const specs = config.methods.map((m) => ({ id: m, method: m }));
    const { settings, rows: results } = await runMethodRows(generation, root, specs, opts.log);
    const ref = results[0]!;
    let fidRef: FeatureStats | null = null;
    let fidReference: string | null = null;
    if (fid) {
      const refImages = preset.referenceImages
        ? await readReferenceImages(resolve(root, preset.referenceImages))
        : ref.images.map(rgb8);
      fidReference = preset.referenceImages
        ? `the data set's images (${preset.referenceImages}, ${refImages.length})`
        : "the 16-bit model's images";
      fidRef = await featureStatsOf(fid, refImages);
    }
    const rows: Table1Row[] = [];
    for (const r of results) {
      const isRef = r === ref;
      rows.push({
        ...serializable(r),
        lpips: lpips && !isRef ? await meanLpips(lpips, ref.images, r.images) : null,
        fid:
          fid && fidRef && !(isRef && !preset.referenceImages)
            ? frechetDistance(fidRef, await featureStatsOf(fid, r.images.map(rgb8))).value
            : null,
      });
    }
    const missing: Record<string, string> = {
      ...(lpips ? {} : { LPIPS: MISSING.lpips }),
      ...(fid ? {} : { FID: MISSING.fid }),
      ImageReward: MISSING.imageReward,
      "CLIP score": MISSING.clipScore,
    };
    const result: Table1Result = {
      config,
      preset: config.preset,
      protocol: preset,
      machine: machineLine(),
      date: new Date().toISOString(),
      prompts: [...settings.prompts],
      rows,
      missing,
      fidReference,
      seconds: (performance.now() - t0) / 1000,
    };
    const markdown = formatTable1(result);
    const files: { name: string; data: string | Uint8Array }[] = [
      { name: "results.json", data: `${JSON.stringify(result, null, 1)}\n` },
      { name: "table.md", data: markdown },
    ];
    if (opts.figures !== false) {
      const q = rows.slice(1);
      files.push({
        name: "table1.png",
        data: barChart(
          `Table 1 (${config.preset}${config.quick ? ", quick subset" : ""}): ${settings.prompts.length} prompts, vs the 16-bit model`,
          q.map((r) => r.id),
          [
            { label: "PSNR (dB) ↑", values: q.map((r) => r.psnr) },
            { label: "SSIM ↑", values: q.map((r) => r.ssim) },
            ...(lpips ? [{ label: "LPIPS ↓", values: q.map((r) => r.lpips) }] : []),
            ...(fid ? [{ label: "FID ↓", values: q.map((r) => r.fid) }] : []),
            ...(settings.shapes ? [{ label: "caption accuracy ↑", values: q.map((r) => r.captionAccuracy) }] : []),
          ],
        ),
      });
      files.push({ name: "grid.png", data: methodGrid(results, config.gridColumns) });
    }
    await writeOutputs(outDir, files);
    return { result, markdown, outDir };
  } finally {
    await lpips?.release();
    await fid?.release();
  }
}

export function formatTable1(r: Table1Result): string {
  const g = r.protocol.generation;
  const caps = r.rows[0]?.captionAccuracy !== null;
  const miss = (name: string) => (name in r.missing ? "missing" : null);
  const cell = (v: number | null, d: number, name: string) => miss(name) ?? fmt(v, d);
  return [
    `# Table 1 protocol: ${r.preset}${r.config.quick ? " (quick subset)" : ""}`,
    "",
    `${r.protocol.description}.`,
    `This run: ${r.prompts.length} prompts × ${g.steps} steps at ${g.size}×${g.size}, guidance ${g.guidance}, seed ${g.seed} + prompt index shared by the 16-bit and every quantized row.`,
    "PSNR per image on [0, 1] (capped at 100 dB) then averaged; SSIM per image then averaged; LPIPS (AlexNet) on the matching 16-bit/quantized pairs" +
      (r.fidReference ? `; FID vs ${r.fidReference}` : "") +
      (caps ? "; caption accuracy = the toy detector finds every attribute the caption names." : "."),
    `Machine: ${r.machine}. Date: ${r.date}. Total ${r.seconds.toFixed(0)} s.`,
    "",
    `| method | FID ↓ | ImageReward ↑ | LPIPS ↓ | PSNR (dB) ↑ | SSIM ↑ | CLIP score ↑ |${caps ? " caption accuracy ↑ |" : ""} model bytes | ms / step |`,
    `|---|--:|--:|--:|--:|--:|--:|${caps ? "--:|" : ""}--:|--:|`,
    ...r.rows.map(
      (x) =>
        `| ${x.id} | ${cell(x.fid, 2, "FID")} | missing | ${cell(x.lpips, 4, "LPIPS")} | ${fmt(x.psnr, 2)} | ${fmt(x.ssim, 4)} | missing |${caps ? ` ${fmt(x.captionAccuracy, 3)} |` : ""} ${x.bytes.toLocaleString("en-US")} | ${x.msPerStep.toFixed(1)} |`,
    ),
    "",
    "Missing metrics (no number, by rule):",
    "",
    ...Object.entries(r.missing).map(([k, v]) => `- ${k}: ${v}`),
    "",
  ].join("\n");
}
