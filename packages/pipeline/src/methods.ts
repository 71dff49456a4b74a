/**
 * Any method of the quantizer's harness (naive W4A4, SmoothQuant, NF4 W4A16, W8A8, SVD-only, LoRC, …) applied to a
 * whole model: every layer the recipe quantizes is quantized on its own calibration and runs as a float64
 * fake-quant layer (`forwardQuantized`). For comparisons (demo, model-level ablations); SVDQuant itself goes
 * through `quantizeModel`, the packed checkpoint and the kernels.
 */
import { INT4_GROUP_SIZE } from "@svdquant/int4";
import * as kernels from "@svdquant/kernels";
import {
  checkInput,
  DENSE_RECIPE,
  FluxTransformer,
  LinearFactory,
  type LinearLayer,
  type ModelConfig,
  modelParams,
  PixArtTransformer,
  parseModelConfig,
} from "@svdquant/models";
import {
  type Calibration,
  forwardQuantized,
  getMethod,
  type QuantizedLinear as QuantizerLinear,
} from "@svdquant/quantizer";
import { openModelFolder } from "@svdquant/tensor";
import type { InputStats } from "./calibrate.js";
import { type QuantizeConfig, recipeOf, treatmentOfLayer } from "./config.js";
import { PipelineError } from "./errors.js";
import { layoutOf } from "./layout.js";
import { padCols, roundUp } from "./quantize-units.js";

/** A layer of a quantizer method in float64 fake-quant arithmetic (input zero-padded to the record's K). */
export class MethodLinear implements LinearLayer {
  readonly kind: string;
  constructor(
    readonly name: string,
    private readonly q: QuantizerLinear,
    readonly inFeatures: number,
  ) {
    this.kind = `fake-${q.method}`;
  }
  get outFeatures(): number {
    return this.q.n;
  }
  forward(x: Float32Array, m: number): Float32Array {
    checkInput(this, x, m);
    return Float32Array.from(forwardQuantized(this.q, padCols(x, m, this.inFeatures, this.q.k), m));
  }
}

/** The model layers a recipe quantizes (W4A4 or W4A16 classes), with whether their input is post-GELU. */
export function quantizedLayers(config: ModelConfig, q: QuantizeConfig): Map<string, { postGelu: boolean }> {
  const recipe = recipeOf(q);
  const layout = layoutOf(config);
  const out = new Map<string, { postGelu: boolean }>();
  const add = (prefix: string, units: typeof layout.head) => {
    for (const u of units)
      for (const m of u.members)
        if (treatmentOfLayer(recipe, prefix + m).kind !== "dense")
          out.set(prefix + m, { postGelu: (out.get(prefix + m)?.postGelu ?? true) && u.unsigned === true });
  };
  for (const b of layout.blocks) for (let i = 0; i < b.count; i++) add(b.prefix(i), b.units);
  add("", layout.head);
  return out;
}

export interface MethodModel {
  readonly model: FluxTransformer | PixArtTransformer;
  /** Storage of the model: quantized layers at the method's bits per parameter, the rest 16-bit. */
  readonly bytes: number;
}

/** Load `modelDir` with every recipe-quantized layer replaced by `method`'s quantization of it. */
export async function loadWithMethod(
  modelDir: string,
  method: string,
  stats: ReadonlyMap<string, InputStats>,
  q: QuantizeConfig,
): Promise<MethodModel> {
  const m = getMethod(method);
  const folder = await openModelFolder(modelDir);
  try {
    if (folder.config === undefined) throw new PipelineError("E_MODEL", "no config.json", modelDir);
    const config = parseModelConfig(folder.config, modelDir);
    const targets = quantizedLayers(config, q);
    const layers = new Map<string, LinearLayer>();
    const params = new Map(modelParams(config).map((p) => [p.name, p.shape]));
    let bytes = 0;
    const quantizedParams = new Set<string>();
    for (const [name, { postGelu }] of targets) {
      const wt = await folder.weights.read(`${name}.weight`);
      const n = wt.shape[0]!;
      const k = wt.numel / n;
      const kp = roundUp(k, INT4_GROUP_SIZE);
      const s = stats.get(name);
      if (s === undefined) throw new PipelineError("E_CALIBRATION", "no calibration statistics", name);
      const absmax = new Float64Array(kp);
      absmax.set(s.absmax);
      const cal: Calibration = { xAbsMax: absmax, tokens: padCols(s.tokens, s.rows, k, kp), count: s.rows };
      const bias = folder.weights.has(`${name}.bias`)
        ? (await folder.weights.read(`${name}.bias`)).toFloat32()
        : undefined;
      const rank = Math.min(q.rank, n, kp);
      const ql = m.quantize(
        { name, n, k: kp, weight: padCols(wt.toFloat32(), n, k, kp), ...(bias ? { bias } : {}) },
        cal,
        {
          rank,
          seed: q.seed,
          postGelu,
          // the refined SVDQuant variants' iterations, and the SVDQuant search on the native kernels (config.kernels;
          // the kernel path needs a branch, rank 0 searches in float64)
          refinement: q.refinement.maxIterations,
          ...(q.kernels && rank > 0 ? { kernels } : {}),
        },
      );
      layers.set(name, new MethodLinear(name, ql, k));
      bytes += (ql.bitsPerParam * n * k) / 8 + (bias ? 2 * n : 0);
      quantizedParams.add(`${name}.weight`).add(`${name}.bias`);
    }
    for (const [p, shape] of params) if (!quantizedParams.has(p)) bytes += 2 * shape.reduce((a, b) => a * b, 1);
    const factory = new LinearFactory(DENSE_RECIPE, {
      provider: {
        has: (n) => layers.has(n),
        build: (n) => {
          const l = layers.get(n);
          if (l === undefined) throw new PipelineError("E_MODEL", "no quantized layer of this name", n);
          return l;
        },
      },
    });
    const model =
      config.kind === "flux"
        ? await FluxTransformer.fromSource(config, folder.weights, { factory })
        : await PixArtTransformer.fromSource(config, folder.weights, { factory });
    return { model, bytes: Math.round(bytes) };
  } finally {
    await folder.weights.close();
  }
}
