import { MetricsError } from "./errors.js";
import { checkSameSize, type Rgb8Image, type RgbImage } from "./image.js";
import { type ModelSpec, OnnxModel } from "./onnx-model.js";
import { resizePlaneF, resizeShortSideCenterCrop } from "./resize.js";

/** clean-fid resizes to Inception's 299x299 input (Parmar et al. 2022, "clean" mode). */
export const FID_SIZE = 299;
/** CLIP ViT-L/14 and ImageReward (BLIP ViT-L) take 224x224 crops. */
export const CLIP_SIZE = 224;
/** OpenAI CLIP's normalization constants (clip/clip.py `_transform`; ImageReward uses the same). */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** Inception-v3 pool features (clean-fid): images in [0, 255] → features [N, 2048]. */
export const FID_SPEC: ModelSpec = {
  metric: "FID",
  inputs: [{ name: "images", type: "float32", dims: [null, 3, FID_SIZE, FID_SIZE] }],
  outputs: [{ name: "features", type: "float32", dims: [null, null] }],
};
/** LPIPS (AlexNet, v0.1 linear heads): two images in [−1, 1] → distance [N, 1, 1, 1]. */
export const LPIPS_SPEC: ModelSpec = {
  metric: "LPIPS",
  inputs: [
    { name: "in0", type: "float32", dims: [null, 3, null, null] },
    { name: "in1", type: "float32", dims: [null, 3, null, null] },
  ],
  outputs: [{ name: "distance", type: "float32", dims: [null, 1, 1, 1] }],
};
/** CLIP ViT-L/14 image tower with projection: normalized 224x224 pixels → image_embeds [N, E] (E = 768). */
export const CLIP_IMAGE_SPEC: ModelSpec = {
  metric: "CLIP",
  inputs: [{ name: "pixel_values", type: "float32", dims: [null, 3, CLIP_SIZE, CLIP_SIZE] }],
  outputs: [{ name: "image_embeds", type: "float32", dims: [null, null] }],
};
/** ImageReward (BLIP ViT-L + MLP head): pixels + BERT tokens of the prompt → reward [N]. */
export const IMAGE_REWARD_SPEC: ModelSpec = {
  metric: "ImageReward",
  inputs: [
    { name: "pixel_values", type: "float32", dims: [null, 3, CLIP_SIZE, CLIP_SIZE] },
    { name: "input_ids", type: "int64", dims: [null, null] },
    { name: "attention_mask", type: "int64", dims: [null, null] },
  ],
  outputs: [{ name: "reward", type: "float32", dims: [null] }],
};

/** clean-fid preprocessing: each uint8 channel as a float plane, Pillow "F" bicubic to 299x299, clip to [0, 255]. */
export function fidInput(img: Rgb8Image): Float32Array {
  const { width: w, height: h, data } = img;
  const out = new Float32Array(3 * FID_SIZE * FID_SIZE);
  const plane = new Float32Array(w * h);
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < w * h; p++) plane[p] = data[p * 3 + c];
    const r = resizePlaneF(plane, w, h, FID_SIZE, FID_SIZE);
    for (let p = 0; p < r.length; p++) out[c * r.length + p] = Math.min(255, Math.max(0, r[p]));
  }
  return out;
}

/** CLIP / ImageReward preprocessing: short side → 224 (Pillow bicubic on uint8), center crop, /255, normalize. */
export function clipInput(img: Rgb8Image): Float32Array {
  const r = resizeShortSideCenterCrop(img, CLIP_SIZE);
  const hw = CLIP_SIZE * CLIP_SIZE;
  const out = new Float32Array(3 * hw);
  for (let p = 0; p < hw; p++)
    for (let c = 0; c < 3; c++) out[c * hw + p] = (r.data[p * 3 + c] / 255 - CLIP_MEAN[c]) / CLIP_STD[c];
  return out;
}

/** LPIPS preprocessing: [0, 1] → [−1, 1] (the lpips package's `normalize=True`). */
export function lpipsInput(img: RgbImage): Float32Array {
  return img.data.map((v) => 2 * v - 1);
}

function stack(items: Float32Array[]): Float32Array {
  const n = items[0].length;
  const out = new Float32Array(items.length * n);
  items.forEach((x, i) => {
    out.set(x, i * n);
  });
  return out;
}

function rows(data: Float32Array, n: number): Float32Array[] {
  const d = data.length / n;
  return Array.from({ length: n }, (_, i) => data.slice(i * d, (i + 1) * d));
}

function nonEmpty(n: number, what: string): void {
  if (n === 0) throw new MetricsError("E_EMPTY", `no images given to ${what}`);
}

/** FID feature extractor (Inception-v3 pool, via ONNX). */
export class FidFeatureExtractor {
  private constructor(readonly model: OnnxModel) {}
  static async load(path: string): Promise<FidFeatureExtractor> {
    return new FidFeatureExtractor(await OnnxModel.load(path, FID_SPEC));
  }
  /** Features of a batch of images, one Float32Array [D] per image. */
  async features(images: Rgb8Image[]): Promise<Float32Array[]> {
    nonEmpty(images.length, "FID");
    const n = images.length;
    const out = await this.model.run(n, {
      images: { data: stack(images.map(fidInput)), dims: [n, 3, FID_SIZE, FID_SIZE] },
    });
    return rows(out.features.data, n);
  }
  release(): Promise<void> {
    return this.model.release();
  }
}

/** LPIPS distance (via ONNX). */
export class Lpips {
  private constructor(readonly model: OnnxModel) {}
  static async load(path: string): Promise<Lpips> {
    return new Lpips(await OnnxModel.load(path, LPIPS_SPEC));
  }
  /** One distance per pair; all images of a call must have the same size. */
  async distances(refs: RgbImage[], tests: RgbImage[]): Promise<number[]> {
    nonEmpty(refs.length, "LPIPS");
    if (refs.length !== tests.length) {
      throw new MetricsError(
        "E_ARGUMENT",
        `LPIPS needs pairs: ${refs.length} reference vs ${tests.length} test images`,
      );
    }
    for (let i = 0; i < refs.length; i++) {
      checkSameSize(refs[0], refs[i]);
      checkSameSize(refs[i], tests[i]);
    }
    const n = refs.length;
    const dims = [n, 3, refs[0].height, refs[0].width];
    const out = await this.model.run(n, {
      in0: { data: stack(refs.map(lpipsInput)), dims },
      in1: { data: stack(tests.map(lpipsInput)), dims },
    });
    return Array.from(out.distance.data);
  }
  release(): Promise<void> {
    return this.model.release();
  }
}

/** CLIP image tower (via ONNX); pair its embeddings with text embeddings in clipScore. */
export class ClipImageEncoder {
  private constructor(readonly model: OnnxModel) {}
  static async load(path: string): Promise<ClipImageEncoder> {
    return new ClipImageEncoder(await OnnxModel.load(path, CLIP_IMAGE_SPEC));
  }
  async embed(images: Rgb8Image[]): Promise<Float32Array[]> {
    nonEmpty(images.length, "CLIP");
    const n = images.length;
    const out = await this.model.run(n, {
      pixel_values: { data: stack(images.map(clipInput)), dims: [n, 3, CLIP_SIZE, CLIP_SIZE] },
    });
    return rows(out.image_embeds.data, n);
  }
  release(): Promise<void> {
    return this.model.release();
  }
}

/** CLIP score of one image/text pair: max(100·cos(image, text), 0) (torchmetrics `CLIPScore`). */
export function clipScore(image: ArrayLike<number>, text: ArrayLike<number>): number {
  if (image.length !== text.length) {
    throw new MetricsError("E_SHAPE", `CLIP image embedding has ${image.length} values, text embedding ${text.length}`);
  }
  let dot = 0;
  let ni = 0;
  let nt = 0;
  for (let i = 0; i < image.length; i++) {
    dot += image[i] * text[i];
    ni += image[i] * image[i];
    nt += text[i] * text[i];
  }
  if (ni === 0 || nt === 0) throw new MetricsError("E_NUMERIC", "CLIP embedding of norm 0");
  return Math.max(100 * (dot / Math.sqrt(ni * nt)), 0);
}

/** Tokenized prompt for ImageReward (BERT tokenizer of BLIP, padded to a common length). */
export interface PromptTokens {
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
}

/** ImageReward (via ONNX). */
export class ImageReward {
  private constructor(readonly model: OnnxModel) {}
  static async load(path: string): Promise<ImageReward> {
    return new ImageReward(await OnnxModel.load(path, IMAGE_REWARD_SPEC));
  }
  async rewards(images: Rgb8Image[], tokens: PromptTokens[]): Promise<number[]> {
    nonEmpty(images.length, "ImageReward");
    if (tokens.length !== images.length) {
      throw new MetricsError("E_ARGUMENT", `ImageReward got ${images.length} images but ${tokens.length} prompts`);
    }
    const L = tokens[0].inputIds.length;
    for (const t of tokens) {
      if (t.inputIds.length !== L || t.attentionMask.length !== L) {
        throw new MetricsError("E_SHAPE", `ImageReward prompts must share one token length (${L}); pad them`);
      }
    }
    const n = images.length;
    const ids = new BigInt64Array(n * L);
    const mask = new BigInt64Array(n * L);
    tokens.forEach((t, i) => {
      ids.set(t.inputIds, i * L);
      mask.set(t.attentionMask, i * L);
    });
    const out = await this.model.run(n, {
      pixel_values: { data: stack(images.map(clipInput)), dims: [n, 3, CLIP_SIZE, CLIP_SIZE] },
      input_ids: { data: ids, dims: [n, L] },
      attention_mask: { data: mask, dims: [n, L] },
    });
    return Array.from(out.reward.data);
  }
  release(): Promise<void> {
    return this.model.release();
  }
}
