/**
 * The demo (`svdquant demo`, `pnpm start`): quantize a FLUX pipeline's transformer with SVDQuant INT4 / NVFP4 and
 * the baselines, generate the same prompts and seeds with each, and compare every image with the 16-bit model's
 * (PSNR, SSIM), with the model size and the time per step; a PNG grid (rows = methods, columns = prompts) and a
 * Markdown + HTML report.
 */
import { access, mkdir, stat } from "node:fs/promises";
import { cpus } from "node:os";
import { join } from "node:path";
import { backendInfo } from "@svdquant/kernels";
import { checkShapeCaption, Lpips, psnr, readShapesDataset, type ShapesSpec, ssim, toPlanar } from "@svdquant/metrics";
import { type FluxTransformer, modelParams, parseModelConfig } from "@svdquant/models";
import { openModelFolder, writeFileAtomic } from "@svdquant/tensor";
import { type InputStats, recordCalibration } from "./calibrate.js";
import { loadQuantizedModel } from "./checkpoint.js";
import { parseQuantizeConfig, type QuantizeConfig } from "./config.js";
import { PipelineError } from "./errors.js";
import { FluxPipeline, type SampledImage, sampleFlux, type TextConditioning } from "./generate.js";
import { loadWithMethod, quantizedLayers } from "./methods.js";
import { nativeGemm } from "./native-gemm.js";
import { encodePng } from "./png.js";
import { quantizeModel } from "./quantize-model.js";

export interface DemoOptions {
  /** A diffusers FLUX pipeline folder (the built-in toy model by default in the CLI). */
  readonly pipelineDir: string;
  readonly outDir: string;
  /** Evaluation prompts (columns of the grid); one seed per prompt, shared by every method. */
  readonly prompts: readonly string[];
  readonly seed: number;
  /** Calibration prompts (kept apart from the evaluation prompts). */
  readonly calibrationPrompts: readonly string[];
  readonly steps: number;
  readonly size: number;
  readonly maxSequenceLength: number;
  readonly guidance: number;
  /** Methods (rows): "svdquant-int4", "svdquant-nvfp4" and any name of @svdquant/quantizer's METHODS. */
  readonly methods: readonly string[];
  /** Quantizer settings shared by every method (grid, rank, refinement). */
  readonly quantize?: Record<string, unknown>;
  readonly threads?: number;
  /** LPIPS (AlexNet, lpips v0.1) exported to ONNX (inputs in0, in1 in [−1, 1], output distance): adds an LPIPS column. */
  readonly lpipsModel?: string;
  readonly log?: (line: string) => void;
}

export interface DemoRow {
  readonly method: string;
  readonly label: string;
  readonly psnr: number | null;
  readonly ssim: number | null;
  /** Mean LPIPS distance to the 16-bit images (pairs of the same prompt and seed); null without an LPIPS model. */
  readonly lpips: number | null;
  /** Images whose detected colour/shape/size/position match every attribute their prompt names (toy-shapes models
   * only: the pipeline folder has a `dataset.json` with the detector's spec); null elsewhere. */
  readonly captionsShown: number | null;
  readonly bytes: number;
  readonly msPerStep: number;
  readonly images: string[];
}

export interface DemoResult {
  readonly rows: DemoRow[];
  readonly grid: string;
  readonly markdown: string;
  readonly machine: string;
}

const LABELS: Record<string, string> = {
  "16-bit": "16-bit (BF16 weights)",
  "svdquant-int4": "SVDQuant W4A4 INT4 (packed CPU kernels)",
  "svdquant-nvfp4": "SVDQuant W4A4 NVFP4 (fake-quant)",
  "w4a4-naive": "naive W4A4 INT4",
  "w4a4-smoothquant": "SmoothQuant W4A4",
  "w4a16-nf4": "NF4 W4A16",
  "w8a8-smoothquant": "SmoothQuant W8A8",
};

/** RGB8 images [H, W, 3] on a grid (rows × cols) with `gap` white pixels between cells. */
export function imageGrid(
  cells: readonly (readonly Uint8Array[])[],
  w: number,
  h: number,
  gap = 4,
): Uint8Array & { width: number; height: number } {
  const rows = cells.length;
  const cols = cells[0]?.length ?? 0;
  const W = cols * w + (cols + 1) * gap;
  const H = rows * h + (rows + 1) * gap;
  const out = new Uint8Array(W * H * 3).fill(255);
  for (const [r, row] of cells.entries())
    for (const [c, img] of row.entries()) {
      const x0 = gap + c * (w + gap);
      const y0 = gap + r * (h + gap);
      for (let y = 0; y < h; y++) out.set(img.subarray(y * w * 3, (y + 1) * w * 3), ((y0 + y) * W + x0) * 3);
    }
  return Object.assign(out, { width: W, height: H });
}

const toImage = (s: SampledImage) => toPlanar({ width: s.width, height: s.height, data: s.rgb });

/** The shapes detector's spec when the pipeline folder is a toy-shapes model (its `dataset.json`), else null. */
async function shapesSpecOf(pipelineDir: string): Promise<ShapesSpec | null> {
  try {
    await access(join(pipelineDir, "dataset.json"));
  } catch {
    return null;
  }
  return (await readShapesDataset(pipelineDir)).spec;
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const log = o.log ?? (() => {});
  await mkdir(o.outDir, { recursive: true });
  const gemm = await nativeGemm();
  const pipe = await FluxPipeline.load(o.pipelineDir);
  const settings = {
    steps: o.steps,
    guidance: o.guidance,
    height: o.size,
    width: o.size,
    maxSequenceLength: o.maxSequenceLength,
  };
  const cond: TextConditioning = pipe.encode(o.prompts, o.maxSequenceLength);
  const shapes = await shapesSpecOf(o.pipelineDir);
  const lpipsNet = o.lpipsModel === undefined ? undefined : await Lpips.load(o.lpipsModel);
  const captionsShown = (images: SampledImage[]) =>
    shapes === null
      ? null
      : images.filter(
          (im, i) => checkShapeCaption(shapes, { width: im.width, height: im.height, data: im.rgb }, o.prompts[i]!).ok,
        ).length;
  const side = o.size / (2 * pipe.vae.scaleFactor); // image tokens per side
  const qcfg: QuantizeConfig = parseQuantizeConfig({
    ...o.quantize,
    calibration: {
      source: { prompts: [...o.calibrationPrompts], pipeline: o.pipelineDir, guidance: o.guidance },
      samples: o.calibrationPrompts.length,
      steps: o.steps,
      imageSide: side,
      textTokens: o.maxSequenceLength,
      reservoir: 256,
      seed: o.seed + 1000,
    },
  });
  const sampleAll = async (
    t: FluxTransformer,
    name: string,
  ): Promise<{ images: SampledImage[]; msPerStep: number }> => {
    const images: SampledImage[] = [];
    const t0 = performance.now();
    for (let row = 0; row < o.prompts.length; row++)
      images.push(await sampleFlux(pipe, t, cond, settings, { row, seed: o.seed + row }));
    const msPerStep = (performance.now() - t0) / (o.prompts.length * o.steps);
    log(`${name}: ${o.prompts.length} images, ${msPerStep.toFixed(1)} ms/step`);
    return { images, msPerStep };
  };
  const save = async (method: string, images: SampledImage[]) => {
    const dir = join(o.outDir, method);
    await mkdir(dir, { recursive: true });
    const files: string[] = [];
    for (const [i, img] of images.entries()) {
      const f = join(dir, `${String(i).padStart(2, "0")}.png`);
      await writeFileAtomic(
        f,
        encodePng(img.rgb, img.width, img.height, { prompt: o.prompts[i]!, seed: String(o.seed + i), method }),
      );
      files.push(f);
    }
    return files;
  };

  // 16-bit reference
  const transformerDir = pipe.transformerDir;
  const folder = await openModelFolder(transformerDir);
  const modelConfig = parseModelConfig(folder.config ?? {}, transformerDir);
  await folder.weights.close();
  const dense = await pipe.transformer();
  const ref = await sampleAll(dense, "16-bit");
  const denseBytes = 2 * modelParams(modelConfig).reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
  const rows: DemoRow[] = [
    {
      method: "16-bit",
      label: LABELS["16-bit"]!,
      psnr: null,
      ssim: null,
      lpips: null,
      captionsShown: captionsShown(ref.images),
      bytes: denseBytes,
      msPerStep: ref.msPerStep,
      images: await save("16-bit", ref.images),
    },
  ];
  const refImages = ref.images.map(toImage);
  const grid: Uint8Array[][] = [ref.images.map((i) => i.rgb)];

  // calibration of every quantized layer (baselines quantize layers one by one)
  let stats: Map<string, InputStats> | undefined;
  const calibrate = async () => {
    if (stats) return stats;
    const src = await openModelFolder(transformerDir);
    try {
      stats = await recordCalibration(
        modelConfig,
        src.weights,
        qcfg.calibration,
        new Set(quantizedLayers(modelConfig, qcfg).keys()),
      );
    } finally {
      await src.weights.close();
    }
    return stats;
  };

  for (const method of o.methods) {
    let model: FluxTransformer;
    let bytes: number;
    if (method === "svdquant-int4" || method === "svdquant-nvfp4") {
      const format = method === "svdquant-int4" ? "int4" : "nvfp4";
      const out = join(o.outDir, `${method}.safetensors`);
      log(`${method}: quantizing`);
      await quantizeModel({
        modelDir: transformerDir,
        out,
        config: { ...qcfg, format },
        ...(o.threads ? { threads: o.threads } : {}),
      });
      bytes = (await stat(out)).size;
      model = (await loadQuantizedModel(out, {
        backend: format === "int4" ? "kernels" : "reference",
      })) as FluxTransformer;
    } else {
      log(`${method}: quantizing`);
      const r = await loadWithMethod(transformerDir, method, await calibrate(), qcfg);
      model = r.model as FluxTransformer;
      bytes = r.bytes;
    }
    const got = await sampleAll(model, method);
    const imgs = got.images.map(toImage);
    const p = imgs.reduce((a, im, i) => a + Math.min(psnr(refImages[i]!, im, 1), 100), 0) / imgs.length;
    const s = imgs.reduce((a, im, i) => a + ssim(refImages[i]!, im), 0) / imgs.length;
    const lp = lpipsNet ? (await lpipsNet.distances(refImages, imgs)).reduce((a, d) => a + d, 0) / imgs.length : null;
    rows.push({
      method,
      label: LABELS[method] ?? method,
      psnr: p,
      ssim: s,
      lpips: lp,
      captionsShown: captionsShown(got.images),
      bytes,
      msPerStep: got.msPerStep,
      images: await save(method, got.images),
    });
    grid.push(got.images.map((i) => i.rgb));
  }

  await lpipsNet?.release();
  const g = imageGrid(grid, o.size, o.size);
  const gridPath = join(o.outDir, "grid.png");
  await writeFileAtomic(gridPath, encodePng(g, g.width, g.height, { rows: rows.map((r) => r.method).join(", ") }));
  const info = backendInfo();
  const machine = `${info.cpu} (${cpus().length} cores), kernels ${info.native ? info.isa : "TypeScript"} path, ${info.threads} threads, dense layers on ${gemm.backend.name}`;
  const fmt = (v: number | null, d: number) => (v === null ? "–" : v.toFixed(d));
  const shown = (r: DemoRow) => (r.captionsShown === null ? "" : ` ${r.captionsShown} / ${r.images.length} |`);
  const md = [
    `# SVDQuant demo: ${o.pipelineDir}`,
    "",
    `${o.prompts.length} prompts × ${o.steps} steps at ${o.size}×${o.size}, seed ${o.seed}; metrics vs the 16-bit images (PSNR on [0, 1], SSIM); ${machine}.`,
    lpipsNet
      ? `LPIPS: ${o.lpipsModel} (mean over the image pairs). FID / ImageReward need their ONNX models (see @svdquant/metrics) and are not reported here.`
      : "LPIPS (`--lpips FILE`), FID and ImageReward need their ONNX models (see @svdquant/metrics) and are not reported here.",
    "",
    `| method | PSNR (dB) ↑ | SSIM ↑ |${lpipsNet ? " LPIPS ↓ |" : ""} model bytes | ms / step |${shapes ? " captions shown ↑ |" : ""}`,
    `|---|---|---|${lpipsNet ? "---|" : ""}---|---|${shapes ? "---|" : ""}`,
    ...rows.map(
      (r) =>
        `| ${r.label} | ${fmt(r.psnr, 2)} | ${fmt(r.ssim, 4)} |${lpipsNet ? ` ${fmt(r.lpips, 4)} |` : ""} ${r.bytes.toLocaleString("en-US")} | ${r.msPerStep.toFixed(1)} |${shown(r)}`,
    ),
    ...(shapes
      ? [
          "",
          "captions shown: images whose detected colour, shape, size and position match every attribute the prompt names (@svdquant/metrics checkShapeCaption).",
        ]
      : []),
    "",
    `Grid (${gridPath}): rows = ${rows.map((r) => r.method).join(", ")}; columns = the prompts:`,
    "",
    ...o.prompts.map((p, i) => `${i + 1}. ${p}`),
    "",
  ].join("\n");
  await writeFileAtomic(join(o.outDir, "report.md"), md);
  const html = `<!doctype html><meta charset="utf-8"><title>SVDQuant demo</title>
<style>body{font-family:sans-serif}td,th{padding:4px;text-align:center}img{image-rendering:pixelated;width:128px}</style>
<h1>SVDQuant demo</h1><p>${escapeHtml(`${o.prompts.length} prompts × ${o.steps} steps, ${machine}`)}</p>
<table><tr><th>method</th><th>PSNR</th><th>SSIM</th>${o.prompts.map((p) => `<th>${escapeHtml(p)}</th>`).join("")}</tr>
${rows
  .map(
    (r) =>
      `<tr><th>${escapeHtml(r.label)}</th><td>${fmt(r.psnr, 2)}</td><td>${fmt(r.ssim, 4)}</td>${r.images
        .map((f) => `<td><img src="${escapeHtml(f.slice(o.outDir.length + 1))}"></td>`)
        .join("")}</tr>`,
  )
  .join("\n")}</table>`;
  await writeFileAtomic(join(o.outDir, "report.html"), html);
  await writeFileAtomic(
    join(o.outDir, "results.json"),
    `${JSON.stringify({ machine, settings: { ...settings, seed: o.seed, prompts: o.prompts }, rows }, null, 1)}\n`,
  );
  if (rows.length < 2) throw new PipelineError("E_CONFIG", "no methods to compare");
  return { rows, grid: gridPath, markdown: md, machine };
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
}
