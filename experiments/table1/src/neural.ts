/**
 * The neural metrics of Table 1 that run when their ONNX model is given, and the reason each is missing otherwise
 * (reported as missing, never as a number).
 */
import {
  FeatureAccumulator,
  FidFeatureExtractor,
  frechetDistance,
  Lpips,
  listImages,
  type Rgb8Image,
  readImage,
  toPlanar,
} from "@svdquant/metrics";

/** An RGB8 image [H, W, 3] as the pipeline samples it. */
export interface SampledImage {
  readonly width: number;
  readonly height: number;
  readonly rgb: Uint8Array;
}

/** Why a metric has no number in this run. */
export const MISSING = {
  lpips: "no LPIPS AlexNet ONNX model (set metrics.lpips)",
  fid: "no Inception-v3 ONNX feature extractor (set metrics.fid)",
  imageReward:
    "not wired: ImageReward needs its BLIP ONNX model and BLIP's BERT tokenizer for the prompts, neither is available here",
  clipScore:
    "not wired: CLIP score needs the CLIP ViT-L/14 image and text towers (with projections) as ONNX models, not available here",
} as const;

const rgb8 = (s: SampledImage): Rgb8Image => ({ width: s.width, height: s.height, data: s.rgb });

/** FID's batch: the Inception pass holds this many 299² images at once. */
const FID_BATCH = 16;

/** Mean LPIPS distance over matching pairs (16-bit image, quantized image of the same prompt and seed). */
export async function meanLpips(model: Lpips, refs: SampledImage[], tests: SampledImage[]): Promise<number> {
  const d = await model.distances(
    refs.map((r) => toPlanar(rgb8(r))),
    tests.map((t) => toPlanar(rgb8(t))),
  );
  return d.reduce((a, b) => a + b, 0) / d.length;
}

/** Inception feature statistics of a set of images (batched). */
export async function featureStatsOf(fid: FidFeatureExtractor, images: Rgb8Image[]) {
  let acc: FeatureAccumulator | undefined;
  for (let i = 0; i < images.length; i += FID_BATCH) {
    const f = await fid.features(images.slice(i, i + FID_BATCH));
    acc ??= new FeatureAccumulator(f[0]!.length);
    for (const row of f) acc.add(row);
  }
  return acc!.stats();
}

/** The dataset's reference images (every PNG/JPEG of the folder). */
export async function readReferenceImages(dir: string): Promise<Rgb8Image[]> {
  const files = await listImages(dir);
  const out: Rgb8Image[] = [];
  for (const f of files.values()) out.push(await readImage(f));
  return out;
}

export { FidFeatureExtractor, frechetDistance, Lpips, rgb8 };
