import { readdir } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { extname, join } from "node:path";
import { SafetensorsFile } from "@svdquant/tensor";
import { MetricsError } from "./errors.js";
import { FeatureAccumulator, type FrechetLinalg, frechetDistance, type TraceSqrtMethod } from "./frechet.js";
import { type Rgb8Image, type RgbImage, toPlanar } from "./image.js";
import { IMAGE_EXTENSIONS } from "./image-io.js";
import { kernelsFrechetLinalg } from "./native-frechet.js";
import { ClipImageEncoder, clipScore, FidFeatureExtractor, ImageReward, Lpips, type PromptTokens } from "./neural.js";
import { PixelPool, pixelPair } from "./pixel-pool.js";

export interface EvalOptions {
  /** folder of the 16-bit (reference) images */
  refDir: string;
  /** folder of the quantized (test) images; paired with refDir by file name without extension */
  testDir: string;
  fidModel?: string;
  lpipsModel?: string;
  clipModel?: string;
  imageRewardModel?: string;
  /** safetensors with per-image prompt data: `clip/<name>` F32 [E], `imagereward_ids/<name>`, `imagereward_mask/<name>` I64 [L] */
  prompts?: string;
  /** images per ONNX batch and per streaming step (default 8) */
  batchSize?: number;
  /** worker threads decoding images and computing PSNR/SSIM (default 1: in this thread) */
  threads?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface PerImage {
  name: string;
  psnr: number;
  ssim: number;
  lpips?: number;
  clip?: number;
  imageReward?: number;
}

/** Means over all pairs; null where the metric was not requested. */
export interface EvalResult {
  count: number;
  refDir: string;
  testDir: string;
  /** FID between the reference and test sets (lower is better) */
  fid: number | null;
  fidMethod: TraceSqrtMethod | null;
  /** which linear algebra computed the FID: @svdquant/kernels' native one when it loads, else TypeScript */
  fidLinalg: FrechetLinalg["name"] | null;
  /** ImageReward of the test images (higher is better) */
  imageReward: number | null;
  lpips: number | null;
  /** mean PSNR over pairs that differ; identical pairs (PSNR = +∞) are counted in `identicalPairs` */
  psnr: number | null;
  identicalPairs: number;
  ssim: number;
  /** CLIP score of the test images against their prompts */
  clip: number | null;
  perImage: PerImage[];
}

/** Most image pairs per step: each step holds its pairs decoded (and batches them through the ONNX models). */
export const MAX_BATCH = 1024;

/** Image files of a folder keyed by name without extension. */
export async function listImages(dir: string): Promise<Map<string, string>> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (cause) {
    throw new MetricsError("E_IO", `cannot list folder: ${(cause as Error).message}`, { file: dir, cause });
  }
  const out = new Map<string, string>();
  for (const f of names.sort()) {
    const ext = extname(f).toLowerCase();
    if (!(IMAGE_EXTENSIONS as readonly string[]).includes(ext)) continue;
    const stem = f.slice(0, f.length - ext.length);
    if (out.has(stem))
      throw new MetricsError("E_PAIRING", `two images named "${stem}" (${out.get(stem)}, ${f})`, { file: dir });
    out.set(stem, join(dir, f));
  }
  return out;
}

function listSome(names: string[]): string {
  return names.length <= 5 ? names.join(", ") : `${names.slice(0, 5).join(", ")}, … (${names.length} in all)`;
}

/** Pair the two folders by image name; every image must have its counterpart. */
export async function pairImages(
  refDir: string,
  testDir: string,
): Promise<{ name: string; ref: string; test: string }[]> {
  const ref = await listImages(refDir);
  const test = await listImages(testDir);
  if (ref.size === 0) throw new MetricsError("E_EMPTY", "no PNG/JPEG images in the reference folder", { file: refDir });
  if (test.size === 0) throw new MetricsError("E_EMPTY", "no PNG/JPEG images in the test folder", { file: testDir });
  const missingInTest = [...ref.keys()].filter((k) => !test.has(k));
  const missingInRef = [...test.keys()].filter((k) => !ref.has(k));
  if (missingInTest.length > 0) {
    throw new MetricsError(
      "E_PAIRING",
      `lacks ${missingInTest.length} reference image(s): ${listSome(missingInTest)}`,
      {
        file: testDir,
      },
    );
  }
  if (missingInRef.length > 0) {
    throw new MetricsError("E_PAIRING", `lacks ${missingInRef.length} test image(s): ${listSome(missingInRef)}`, {
      file: refDir,
    });
  }
  return [...ref.keys()].map((name) => ({ name, ref: ref.get(name) as string, test: test.get(name) as string }));
}

interface Prompts {
  clip(name: string): Promise<Float32Array>;
  tokens(name: string): Promise<PromptTokens>;
  close(): Promise<void>;
}

async function openPrompts(path: string): Promise<Prompts> {
  const f = await SafetensorsFile.open(path);
  const get = async (key: string) => {
    if (!f.has(key)) throw new MetricsError("E_PAIRING", `no tensor "${key}" for this image`, { file: path });
    return f.read(key);
  };
  return {
    async clip(name) {
      const t = await get(`clip/${name}`);
      return Float32Array.from(t.data as ArrayLike<number>);
    },
    async tokens(name) {
      const ids = await get(`imagereward_ids/${name}`);
      const mask = await get(`imagereward_mask/${name}`);
      if (ids.dtype !== "I64" || mask.dtype !== "I64") {
        throw new MetricsError("E_SHAPE", `imagereward_ids/${name} and imagereward_mask/${name} must be I64`, {
          file: path,
        });
      }
      return { inputIds: ids.data as BigInt64Array, attentionMask: mask.data as BigInt64Array };
    },
    close: () => f.close(),
  };
}

function mean(xs: number[]): number | null {
  return xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** Group consecutive indices whose images share a size (LPIPS batches must be rectangular). */
function sameSizeRuns(imgs: RgbImage[]): number[][] {
  const runs: number[][] = [];
  imgs.forEach((im, i) => {
    const last = runs[runs.length - 1];
    const head = last ? imgs[last[0]] : undefined;
    if (head && head.width === im.width && head.height === im.height) last.push(i);
    else runs.push([i]);
  });
  return runs;
}

/**
 * The paper's evaluation protocol over two folders (SVDQuant §5.1): image quality of the test set (FID against
 * the reference set, ImageReward, CLIP score) and its similarity to the 16-bit reference (LPIPS, PSNR, SSIM).
 * Streams `batchSize` pairs at a time, so memory stays bounded by one batch plus the FID statistics (2·D² floats).
 */
export async function evaluateFolders(opts: EvalOptions): Promise<EvalResult> {
  const batch = opts.batchSize ?? 8;
  if (!Number.isInteger(batch) || batch < 1)
    throw new MetricsError("E_ARGUMENT", `batch size must be ≥ 1, got ${batch}`);
  if (batch > MAX_BATCH)
    throw new MetricsError("E_ARGUMENT", `batch size must be ≤ ${MAX_BATCH} (images held per step), got ${batch}`);
  const threads = opts.threads ?? 1;
  const cores = availableParallelism();
  if (!Number.isInteger(threads) || threads < 1 || threads > cores)
    throw new MetricsError(
      "E_ARGUMENT",
      `threads must be an integer in [1, ${cores}] (available parallelism), got ${threads}`,
    );
  if ((opts.clipModel || opts.imageRewardModel) && !opts.prompts) {
    throw new MetricsError(
      "E_ARGUMENT",
      "CLIP score and ImageReward need --prompts (per-image text embeddings/tokens)",
    );
  }
  const pairs = await pairImages(opts.refDir, opts.testDir);
  const fid = opts.fidModel ? await FidFeatureExtractor.load(opts.fidModel) : undefined;
  const lpips = opts.lpipsModel ? await Lpips.load(opts.lpipsModel) : undefined;
  const clip = opts.clipModel ? await ClipImageEncoder.load(opts.clipModel) : undefined;
  const ir = opts.imageRewardModel ? await ImageReward.load(opts.imageRewardModel) : undefined;
  const prompts = opts.prompts ? await openPrompts(opts.prompts) : undefined;
  const pool = threads > 1 ? new PixelPool(threads) : undefined;
  let accRef: FeatureAccumulator | undefined;
  let accTest: FeatureAccumulator | undefined;
  const perImage: PerImage[] = [];
  try {
    for (let s = 0; s < pairs.length; s += batch) {
      const chunk = pairs.slice(s, s + batch);
      const px = await Promise.all(chunk.map((p) => (pool ? pool.run(p.ref, p.test) : pixelPair(p.ref, p.test))));
      const refs: Rgb8Image[] = px.map((r) => r.ref);
      const tests: Rgb8Image[] = px.map((r) => r.test);
      const rows: PerImage[] = chunk.map((p, i) => ({ name: p.name, psnr: px[i].psnr, ssim: px[i].ssim }));
      if (lpips) {
        const refF = refs.map(toPlanar);
        const testF = tests.map(toPlanar);
        for (const run of sameSizeRuns(refF)) {
          const d = await lpips.distances(
            run.map((i) => refF[i]),
            run.map((i) => testF[i]),
          );
          run.forEach((i, k) => {
            rows[i].lpips = d[k];
          });
        }
      }
      if (fid) {
        const fr = await fid.features(refs);
        const ft = await fid.features(tests);
        accRef ??= new FeatureAccumulator(fr[0].length);
        accTest ??= new FeatureAccumulator(ft[0].length);
        fr.forEach((f, i) => {
          accRef?.add(f, `FID features of ${refs[i].name}`);
        });
        ft.forEach((f, i) => {
          accTest?.add(f, `FID features of ${tests[i].name}`);
        });
      }
      if (clip && prompts) {
        const emb = await clip.embed(tests);
        for (const [i, e] of emb.entries()) rows[i].clip = clipScore(e, await prompts.clip(chunk[i].name));
      }
      if (ir && prompts) {
        const toks = await Promise.all(chunk.map((p) => prompts.tokens(p.name)));
        const r = await ir.rewards(tests, toks);
        r.forEach((v, i) => {
          rows[i].imageReward = v;
        });
      }
      perImage.push(...rows);
      opts.onProgress?.(perImage.length, pairs.length);
    }
  } finally {
    await Promise.all([
      fid?.release(),
      lpips?.release(),
      clip?.release(),
      ir?.release(),
      prompts?.close(),
      pool?.close(),
    ]);
  }
  let fidValue: number | null = null;
  let fidMethod: TraceSqrtMethod | null = null;
  let fidLinalg: FrechetLinalg["name"] | null = null;
  if (accRef && accTest) {
    if (pairs.length < 2) throw new MetricsError("E_EMPTY", "FID needs at least 2 image pairs");
    const native = (await kernelsFrechetLinalg()).linalg; // 2048-d: ≈ 1–2 s native vs ≈ 20 s in TypeScript
    const r = frechetDistance(accRef.stats(), accTest.stats(), native ? { linalg: native } : {});
    fidValue = r.value;
    fidMethod = r.method;
    fidLinalg = r.linalg;
  }
  const finitePsnr = perImage.map((r) => r.psnr).filter((v) => Number.isFinite(v));
  const pick = (k: "lpips" | "clip" | "imageReward") =>
    mean(perImage.map((r) => r[k]).filter((v): v is number => v !== undefined));
  return {
    count: pairs.length,
    refDir: opts.refDir,
    testDir: opts.testDir,
    fid: fidValue,
    fidMethod,
    fidLinalg,
    imageReward: pick("imageReward"),
    lpips: pick("lpips"),
    psnr: mean(finitePsnr),
    identicalPairs: perImage.length - finitePsnr.length,
    ssim: mean(perImage.map((r) => r.ssim)) as number,
    clip: pick("clip"),
    perImage,
  };
}

/** The paper's table columns (FID↓, IR↑, LPIPS↓, PSNR↑) plus SSIM and CLIP, as a Markdown table. */
export function formatMarkdown(r: EvalResult, label = "test"): string {
  const f = (v: number | null, digits: number) => (v === null ? "—" : v.toFixed(digits));
  const lines = [
    "| images | FID↓ | IR↑ | LPIPS↓ | PSNR↑ | SSIM↑ | CLIP↑ |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    `| ${label} (${r.count}) | ${f(r.fid, 2)} | ${f(r.imageReward, 3)} | ${f(r.lpips, 3)} | ${f(r.psnr, 2)} | ${f(r.ssim, 3)} | ${f(r.clip, 2)} |`,
  ];
  if (r.identicalPairs > 0)
    lines.push("", `${r.identicalPairs} pair(s) are identical (PSNR = ∞) and left out of the PSNR mean.`);
  return lines.join("\n");
}
