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
import { type AblationConfig, loadAblationConfig } from "./config.js";
import { checkOrder, type OrderCheck } from "./order.js";

export interface AblationResult {
  readonly config: AblationConfig;
  readonly machine: string;
  readonly date: string;
  readonly prompts: string[];
  readonly rows: Omit<MethodResult, "images">[];
  /** The claimed order checked on each metric (rows after the 16-bit one, in config order). */
  readonly order: { psnr: OrderCheck; ssim: OrderCheck; captions: OrderCheck | null };
  readonly seconds: number;
}

/** Run the model-level ablation; writes results.json, table.md, ablation.png and grid.png under the config's `out`. */
export async function runAblation(
  dir: string,
  opts: ExperimentRunOptions = {},
): Promise<{ result: AblationResult; markdown: string; outDir: string }> {
  const t0 = performance.now();
  const config = await loadAblationConfig(dir);
  const { root, outDir } = await experimentFolders(dir, config.out, opts);
  const specs = config.methods.map((m) => ({ id: m, method: m }));
  const { settings, rows } = await runMethodRows(config.generation, root, specs, opts.log);
  const q = rows.slice(1);
  const names = q.map((r) => r.id);
  const order = {
    psnr: checkOrder(
      names,
      q.map((r) => r.psnr!),
    ),
    ssim: checkOrder(
      names,
      q.map((r) => r.ssim!),
    ),
    captions: settings.shapes
      ? checkOrder(
          names,
          q.map((r) => r.captionAccuracy!),
        )
      : null,
  };
  const result: AblationResult = {
    config,
    machine: machineLine(),
    date: new Date().toISOString(),
    prompts: [...settings.prompts],
    rows: rows.map(serializable),
    order,
    seconds: (performance.now() - t0) / 1000,
  };
  const markdown = formatAblation(result);
  const files: { name: string; data: string | Uint8Array }[] = [
    { name: "results.json", data: `${JSON.stringify(result, null, 1)}\n` },
    { name: "table.md", data: markdown },
  ];
  if (opts.figures !== false) {
    files.push({
      name: "ablation.png",
      data: barChart(
        `Model-level ablation (Fig. 10 order, top = worst claimed), ${settings.prompts.length} prompts`,
        q.map((r) => r.id),
        [
          { label: "PSNR vs 16-bit (dB) ↑", values: q.map((r) => r.psnr) },
          { label: "SSIM vs 16-bit ↑", values: q.map((r) => r.ssim) },
          ...(settings.shapes
            ? [{ label: "caption accuracy ↑", values: rows.map((r) => r.captionAccuracy).slice(1) }]
            : []),
        ],
      ),
    });
    files.push({ name: "grid.png", data: methodGrid(rows, config.gridColumns) });
  }
  await writeOutputs(outDir, files);
  return { result, markdown, outDir };
}

function verdict(name: string, c: OrderCheck): string {
  if (c.holds) return `- ${name}: the order holds at every step (Kendall τ = ${c.kendallTau.toFixed(2)}).`;
  const v = c.violations.map((x) => `${x.a} (${x.va.toFixed(4)}) → ${x.b} (${x.vb.toFixed(4)})`).join("; ");
  return `- ${name}: the order does **not** hold (Kendall τ = ${c.kendallTau.toFixed(2)}); steps that fail: ${v}.`;
}

export function formatAblation(r: AblationResult): string {
  const g = r.config.generation;
  const hasCaptions = r.order.captions !== null;
  const out = [
    "# Model-level ablation (SVDQuant Fig. 10 order)",
    "",
    `${r.prompts.length} prompts × ${g.steps} steps at ${g.size}×${g.size} (${g.pipeline}), seed ${g.seed} + prompt index shared by every row;`,
    `every quantized row is a @svdquant/quantizer method applied to every layer the recipe quantizes (float64 fake-quant, rank ${String(g.quantize.rank ?? 32)}).`,
    `PSNR per image on [0, 1] (capped at 100 dB) then averaged; SSIM; caption accuracy = the toy detector finds every attribute the caption names.`,
    `Machine: ${r.machine}. Date: ${r.date}. Total ${r.seconds.toFixed(0)} s.`,
    "",
    `| method | PSNR (dB) ↑ | SSIM ↑ |${hasCaptions ? " caption accuracy ↑ | colour | shape |" : ""} model bytes | quantize s | ms / step |`,
    `|---|--:|--:|${hasCaptions ? "--:|--:|--:|" : ""}--:|--:|--:|`,
    ...r.rows.map(
      (x) =>
        `| ${x.id} | ${fmt(x.psnr, 2)} | ${fmt(x.ssim, 4)} |${hasCaptions ? ` ${fmt(x.captionAccuracy, 3)} | ${fmt(x.attributeAccuracy.color, 3)} | ${fmt(x.attributeAccuracy.shape, 3)} |` : ""} ${x.bytes.toLocaleString("en-US")} | ${x.quantizeSeconds.toFixed(1)} | ${x.msPerStep.toFixed(1)} |`,
    ),
    "",
    "Does the paper's order (worst → best, as listed) hold on this model?",
    "",
    verdict("PSNR", r.order.psnr),
    verdict("SSIM", r.order.ssim),
    ...(r.order.captions ? [verdict("caption accuracy", r.order.captions)] : []),
    "",
  ];
  return out.join("\n");
}
