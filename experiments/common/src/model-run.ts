/**
 * Methods × prompts at the model level: generate every prompt (one seed per prompt, shared by every method) with the
 * 16-bit transformer and with each quantized one, and score each image against the 16-bit image of its prompt
 * (PSNR per image on [0, 1] then averaged, SVDQuant §5.1; SSIM) and, on the toy model, against its caption
 * (@svdquant/metrics checkShapeCaption: does the picture still show what the prompt says).
 *
 * A method is a name of @svdquant/quantizer's harness (naive W4A4, SmoothQuant, NF4, W8A8, SVD-only, LoRC, SVDQuant
 * …): every layer the pipeline's recipe quantizes is quantized on its own calibration inputs and runs as a float64
 * fake-quant layer (@svdquant/pipeline loadWithMethod), so every arm of an ablation shares the same arithmetic; or
 * "svdquant-int4-packed" / "svdquant-nvfp4-packed": quantizeModel writes the packed checkpoint and
 * loadQuantizedModel runs it (INT4 on the native W4A4 kernels, NVFP4 on the float64 reference layers).
 */
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkShapeCaption, psnr, type ShapeAttribute, type ShapesSpec, ssim, toPlanar } from "@svdquant/metrics";
import { type FluxTransformer, modelParams, type PixArtTransformer, parseModelConfig } from "@svdquant/models";
import {
  FluxPipeline,
  type InputStats,
  loadQuantizedModel,
  loadWithMethod,
  PixArtPipeline,
  parseQuantizeConfig,
  pipelineKind,
  type QuantizeConfig,
  quantizedLayers,
  quantizeModel,
  recordCalibration,
  type SampledImage,
  sampleFlux,
  samplePixArt,
} from "@svdquant/pipeline";
import { getMethod, METHOD_NAMES } from "@svdquant/quantizer";
import { openModelFolder } from "@svdquant/tensor";
import { ExperimentError } from "./errors.js";

/** PSNR of identical images is +∞; a per-image value is capped here before averaging (as the demo does). */
export const PSNR_CAP_DB = 100;

export const PACKED_METHODS = ["svdquant-int4-packed", "svdquant-nvfp4-packed"] as const;

export interface RunSettings {
  /** A diffusers FLUX or PixArt-Σ pipeline folder (model_index.json decides; the toy model: models/toy-flux). */
  readonly pipelineDir: string;
  readonly prompts: readonly string[];
  readonly calibrationPrompts: readonly string[];
  /** Prompt i is sampled with seed + i by every method. */
  readonly seed: number;
  readonly steps: number;
  readonly guidance: number;
  readonly size: number;
  readonly maxSequenceLength: number;
  /** Quantizer settings shared by every method (grid, refinement, rank; see @svdquant/pipeline's config). */
  readonly quantize?: Record<string, unknown>;
  /** Worker threads of quantizeModel (packed methods). */
  readonly threads?: number;
  /** The toy model's caption detector; null: no caption column (real models). */
  readonly shapes: ShapesSpec | null;
  readonly log?: (line: string) => void;
}

/** One row of a run: a method (optionally at its own rank). */
export interface MethodSpec {
  /** Row name, unique in a run (e.g. "svdquant-int4" or "rank-16"). */
  readonly id: string;
  /** A @svdquant/quantizer method name, or one of PACKED_METHODS. */
  readonly method: string;
  /** Rank of the low-rank branch (default: the quantize settings' rank). */
  readonly rank?: number;
}

export interface ImageScore {
  readonly prompt: string;
  readonly seed: number;
  /** vs the 16-bit image of the same prompt and seed (null for the 16-bit row itself) */
  readonly psnr: number | null;
  readonly ssim: number | null;
  /** every attribute the caption names is detected (null without a caption detector) */
  readonly captionOk: boolean | null;
  readonly detected: Partial<Record<ShapeAttribute, string | null>> | null;
}

export interface MethodResult {
  readonly id: string;
  readonly method: string;
  readonly label: string;
  readonly rank: number | null;
  /** Storage of the transformer under this method (packed: the checkpoint file's bytes). */
  readonly bytes: number;
  readonly quantizeSeconds: number;
  /** Wall time of sampling (transformer steps + VAE decode) per step. */
  readonly msPerStep: number;
  /** Means over the prompts (null for the 16-bit row). */
  readonly psnr: number | null;
  readonly ssim: number | null;
  /** Fraction of images matching every attribute their caption names (null without a detector). */
  readonly captionAccuracy: number | null;
  /** Per attribute: fraction of the images naming it that show it. */
  readonly attributeAccuracy: Partial<Record<ShapeAttribute, number>>;
  readonly perImage: ImageScore[];
  /** RGB8 images (not serialized). */
  readonly images: SampledImage[];
}

const mean = (v: readonly number[]): number => v.reduce((a, b) => a + b, 0) / v.length;

type Transformer = FluxTransformer | PixArtTransformer;

/** One text→image pipeline family behind the runner: FLUX (guidance embedding) or PixArt-Σ (classifier-free guidance). */
interface Generator {
  readonly transformerDir: string;
  readonly vaeFactor: number;
  dense(): Promise<Transformer>;
  sample(t: Transformer, row: number, seed: number): Promise<SampledImage>;
}

async function openGenerator(s: RunSettings): Promise<Generator> {
  if ((await pipelineKind(s.pipelineDir)) === "pixart") {
    const pipe = await PixArtPipeline.load(s.pipelineDir);
    // PixArtSigmaPipeline: the empty negative prompt when guidance > 1, diffusers' resolution binning
    const cond = pipe.encode(s.prompts, s.guidance > 1 ? "" : undefined, s.maxSequenceLength);
    const settings = {
      steps: s.steps,
      guidance: s.guidance,
      height: s.size,
      width: s.size,
      maxSequenceLength: s.maxSequenceLength,
      resolutionBinning: true,
    };
    return {
      transformerDir: pipe.transformerDir,
      vaeFactor: pipe.vae.scaleFactor,
      dense: () => pipe.transformer(),
      sample: (t, row, seed) => samplePixArt(pipe, t as PixArtTransformer, cond, settings, { row, seed }),
    };
  }
  const pipe = await FluxPipeline.load(s.pipelineDir);
  const cond = pipe.encode(s.prompts, s.maxSequenceLength);
  const settings = {
    steps: s.steps,
    guidance: s.guidance,
    height: s.size,
    width: s.size,
    maxSequenceLength: s.maxSequenceLength,
  };
  return {
    transformerDir: pipe.transformerDir,
    vaeFactor: pipe.vae.scaleFactor,
    dense: () => pipe.transformer(),
    sample: (t, row, seed) => sampleFlux(pipe, t as FluxTransformer, cond, settings, { row, seed }),
  };
}

/** The 16-bit pipeline, its prompts' conditioning and calibration, shared by every method of a run. */
export class ModelRunner {
  private stats: Map<string, InputStats> | undefined;
  private ref: MethodResult | undefined;

  private constructor(
    readonly settings: RunSettings,
    private readonly gen: Generator,
    readonly qcfg: QuantizeConfig,
    readonly denseBytes: number,
  ) {}

  static async open(s: RunSettings): Promise<ModelRunner> {
    if (s.prompts.length === 0) throw new ExperimentError("E_CONFIG", "no evaluation prompts");
    const gen = await openGenerator(s);
    const side = s.size / (2 * gen.vaeFactor); // image tokens per side (2×2 latent patches)
    if (!Number.isInteger(side))
      throw new ExperimentError(
        "E_CONFIG",
        `size ${s.size} is not a multiple of ${2 * gen.vaeFactor} (VAE factor × 2×2 patches)`,
      );
    const qcfg = parseQuantizeConfig({
      ...s.quantize,
      calibration: {
        source: { prompts: [...s.calibrationPrompts], pipeline: s.pipelineDir, guidance: s.guidance },
        samples: s.calibrationPrompts.length,
        steps: s.steps,
        imageSide: side,
        textTokens: s.maxSequenceLength,
        reservoir: 256,
        seed: s.seed + 1000,
      },
    });
    const folder = await openModelFolder(gen.transformerDir);
    await folder.weights.close();
    const config = parseModelConfig(folder.config ?? {}, gen.transformerDir);
    const denseBytes = 2 * modelParams(config).reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
    return new ModelRunner(s, gen, qcfg, denseBytes);
  }

  private log(line: string): void {
    this.settings.log?.(line);
  }

  private async sampleAll(t: Transformer): Promise<{ images: SampledImage[]; msPerStep: number }> {
    const s = this.settings;
    const images: SampledImage[] = [];
    const t0 = performance.now();
    for (let row = 0; row < s.prompts.length; row++) images.push(await this.gen.sample(t, row, s.seed + row));
    return { images, msPerStep: (performance.now() - t0) / (s.prompts.length * s.steps) };
  }

  private score(
    spec: { id: string; method: string; label: string; rank: number | null },
    images: SampledImage[],
    extra: { bytes: number; quantizeSeconds: number; msPerStep: number },
  ): MethodResult {
    const s = this.settings;
    const refs = this.ref?.images.map((r) => toPlanar({ width: r.width, height: r.height, data: r.rgb }));
    const shapes = s.shapes;
    const caps = images.map((img, i) =>
      shapes
        ? checkShapeCaption(shapes, { width: img.width, height: img.height, data: img.rgb }, s.prompts[i]!)
        : undefined,
    );
    const perImage: ImageScore[] = images.map((img, i) => {
      const planar = toPlanar({ width: img.width, height: img.height, data: img.rgb });
      const cap = caps[i];
      return {
        prompt: s.prompts[i]!,
        seed: s.seed + i,
        psnr: refs ? Math.min(psnr(refs[i]!, planar, 1), PSNR_CAP_DB) : null,
        ssim: refs ? ssim(refs[i]!, planar) : null,
        captionOk: cap ? cap.ok : null,
        detected: cap
          ? {
              color: cap.detected.color,
              shape: cap.detected.shape,
              size: cap.detected.size,
              position: cap.detected.position,
            }
          : null,
      };
    });
    const attributeAccuracy: Partial<Record<ShapeAttribute, number>> = {};
    if (shapes) {
      for (const a of ["color", "shape", "size", "position"] as const) {
        const hits = caps.map((c) => c?.matches[a]).filter((v): v is boolean => v !== undefined);
        if (hits.length > 0) attributeAccuracy[a] = hits.filter(Boolean).length / hits.length;
      }
    }
    return {
      ...spec,
      ...extra,
      psnr: refs ? mean(perImage.map((p) => p.psnr!)) : null,
      ssim: refs ? mean(perImage.map((p) => p.ssim!)) : null,
      captionAccuracy: s.shapes ? perImage.filter((p) => p.captionOk).length / perImage.length : null,
      attributeAccuracy,
      perImage,
      images,
    };
  }

  /** The 16-bit transformer's images (the reference of every other row); computed once. */
  async reference(): Promise<MethodResult> {
    if (this.ref) return this.ref;
    const dense = await this.gen.dense();
    const got = await this.sampleAll(dense);
    this.log(`16-bit: ${this.settings.prompts.length} images, ${got.msPerStep.toFixed(1)} ms/step`);
    this.ref = this.score({ id: "16-bit", method: "16-bit", label: "16-bit (BF16 weights)", rank: null }, got.images, {
      bytes: this.denseBytes,
      quantizeSeconds: 0,
      msPerStep: got.msPerStep,
    });
    return this.ref;
  }

  private async calibration(): Promise<Map<string, InputStats>> {
    if (this.stats) return this.stats;
    const t0 = performance.now();
    const folder = await openModelFolder(this.gen.transformerDir);
    try {
      const config = parseModelConfig(folder.config ?? {}, this.gen.transformerDir);
      this.stats = await recordCalibration(
        config,
        folder.weights,
        this.qcfg.calibration,
        new Set(quantizedLayers(config, this.qcfg).keys()),
      );
    } finally {
      await folder.weights.close();
    }
    this.log(
      `calibration: ${this.settings.calibrationPrompts.length} prompts × ${this.settings.steps} steps, ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    return this.stats;
  }

  /** Quantize with one method, generate every prompt, score against the 16-bit images. */
  async run(spec: MethodSpec): Promise<MethodResult> {
    const packed = (PACKED_METHODS as readonly string[]).includes(spec.method);
    if (!packed && !METHOD_NAMES.includes(spec.method))
      throw new ExperimentError(
        "E_CONFIG",
        `unknown method "${spec.method}" (row "${spec.id}"); known: ${[...PACKED_METHODS, ...METHOD_NAMES].join(", ")}`,
      );
    await this.reference();
    const rank = spec.rank ?? this.qcfg.rank;
    const qcfg: QuantizeConfig = { ...this.qcfg, rank };
    const t0 = performance.now();
    let model: Transformer;
    let bytes: number;
    let label: string;
    if (packed) {
      const format = spec.method === "svdquant-int4-packed" ? "int4" : "nvfp4";
      label = `SVDQuant ${format.toUpperCase()} (packed checkpoint, ${format === "int4" ? "native W4A4 kernels" : "reference layers"})`;
      const dir = await mkdtemp(join(tmpdir(), "svdquant-exp-"));
      try {
        const out = join(dir, `${spec.id}.safetensors`);
        await quantizeModel({
          modelDir: this.gen.transformerDir,
          out,
          config: { ...qcfg, format },
          ...(this.settings.threads ? { threads: this.settings.threads } : {}),
        });
        bytes = (await stat(out)).size;
        model = await loadQuantizedModel(out, { backend: format === "int4" ? "kernels" : "reference" });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    } else {
      label = getMethod(spec.method).label;
      const r = await loadWithMethod(this.gen.transformerDir, spec.method, await this.calibration(), qcfg);
      model = r.model as Transformer;
      bytes = r.bytes;
    }
    const quantizeSeconds = (performance.now() - t0) / 1000;
    const got = await this.sampleAll(model);
    const r = this.score({ id: spec.id, method: spec.method, label, rank }, got.images, {
      bytes,
      quantizeSeconds,
      msPerStep: got.msPerStep,
    });
    this.log(
      `${spec.id}: PSNR ${r.psnr?.toFixed(2)} dB, SSIM ${r.ssim?.toFixed(4)}` +
        (r.captionAccuracy === null ? "" : `, captions ${r.captionAccuracy.toFixed(3)}`) +
        ` (quantize ${quantizeSeconds.toFixed(1)} s, ${got.msPerStep.toFixed(1)} ms/step)`,
    );
    return r;
  }
}
