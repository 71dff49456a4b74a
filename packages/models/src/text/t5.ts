import { openModelFolder, type TensorSource } from "@svdquant/tensor";
import { ModelError } from "../errors.js";
import { ConfigReader } from "../json-config.js";
import type { LinearLayer } from "../linear.js";
import type { ParamSpec } from "../params.js";
import { LinearFactory } from "../recipe.js";
import { checkSpecs, loadWeightSet, type WeightSet } from "../weights.js";
import {
  activateInPlace,
  attentionWithBias,
  embedRows,
  MASK_MIN,
  rmsNormRows,
  type TextActivation,
} from "./text-ops.js";

/** T5EncoderModel config (transformers `config.json`), the fields the encoder uses. */
export interface T5Config {
  readonly vocabSize: number;
  readonly dModel: number;
  readonly dKv: number;
  readonly dFf: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly relativeAttentionNumBuckets: number;
  readonly relativeAttentionMaxDistance: number;
  readonly layerNormEpsilon: number;
  /** "gated-gelu" (T5 v1.1, FLUX's and PixArt's text encoders) → gated with gelu_new; "relu" → original T5. */
  readonly gated: boolean;
  readonly act: TextActivation;
}

/** Parse a T5 config.json (transformers' T5Config defaults; a gated-gelu FF uses gelu_new as T5Config does). */
export function parseT5Config(raw: Record<string, unknown>, where = "config.json"): T5Config {
  const r = new ConfigReader(raw, where);
  const ff = raw.feed_forward_proj ?? "relu";
  if (typeof ff !== "string") throw new ModelError("E_CONFIG", `"feed_forward_proj" must be a string`, where);
  const parts = ff.split("-");
  const gated = parts.length === 2 && parts[0] === "gated";
  const base = parts[parts.length - 1]!;
  if (parts.length > 2 || (parts.length === 2 && !gated) || !["relu", "gelu", "gelu_new"].includes(base))
    throw new ModelError("E_UNSUPPORTED", `"feed_forward_proj" = "${ff}" is not supported`, where);
  // T5Config: feed_forward_proj "gated-gelu" means dense_act_fn "gelu_new"
  const act = (ff === "gated-gelu" ? "gelu_new" : base) as TextActivation;
  const dModel = r.posInt("d_model", 512);
  return {
    vocabSize: r.posInt("vocab_size", 32128),
    dModel,
    dKv: r.posInt("d_kv", 64),
    dFf: r.posInt("d_ff", 2048),
    numLayers: r.posInt("num_layers", 6),
    numHeads: r.posInt("num_heads", 8),
    relativeAttentionNumBuckets: r.posInt("relative_attention_num_buckets", 32),
    relativeAttentionMaxDistance: r.posInt("relative_attention_max_distance", 128),
    layerNormEpsilon: r.num("layer_norm_epsilon", 1e-6),
    gated,
    act,
  };
}

function t5LayerParams(c: T5Config, i: number): ParamSpec[] {
  const inner = c.numHeads * c.dKv;
  const p = `encoder.block.${i}.layer.`;
  const specs: ParamSpec[] = [
    { name: `${p}0.layer_norm.weight`, shape: [c.dModel] },
    { name: `${p}0.SelfAttention.q.weight`, shape: [inner, c.dModel] },
    { name: `${p}0.SelfAttention.k.weight`, shape: [inner, c.dModel] },
    { name: `${p}0.SelfAttention.v.weight`, shape: [inner, c.dModel] },
    { name: `${p}0.SelfAttention.o.weight`, shape: [c.dModel, inner] },
    { name: `${p}1.layer_norm.weight`, shape: [c.dModel] },
    { name: `${p}1.DenseReluDense.wo.weight`, shape: [c.dModel, c.dFf] },
  ];
  if (c.gated)
    specs.push(
      { name: `${p}1.DenseReluDense.wi_0.weight`, shape: [c.dFf, c.dModel] },
      { name: `${p}1.DenseReluDense.wi_1.weight`, shape: [c.dFf, c.dModel] },
    );
  else specs.push({ name: `${p}1.DenseReluDense.wi.weight`, shape: [c.dFf, c.dModel] });
  if (i === 0)
    specs.push({
      name: `${p}0.SelfAttention.relative_attention_bias.weight`,
      shape: [c.relativeAttentionNumBuckets, c.numHeads],
    });
  return specs;
}

/** Parameters of T5EncoderModel (the token table as `shared.weight`; `encoder.embed_tokens.weight` is its tie). */
export function t5Params(c: T5Config): ParamSpec[] {
  const p: ParamSpec[] = [];
  for (let i = 0; i < c.numLayers; i++) p.push(...t5LayerParams(c, i));
  p.push({ name: "encoder.final_layer_norm.weight", shape: [c.dModel] });
  return p;
}

const f32 = Math.fround;

/**
 * T5's bidirectional relative-position bucket of (key − query) distance `rel` (T5Attention._relative_position_bucket):
 * half the buckets per direction, exact below max_exact = buckets/4, log-spaced up to max_distance. The log
 * branch is float32 in transformers (`relative_position.float()`, float32 log and division, then truncation),
 * reproduced here with Math.fround — at the distances where the exact value is an integer the rounding decides.
 */
export function t5RelativeBucket(rel: number, numBuckets: number, maxDistance: number): number {
  const half = Math.floor(numBuckets / 2);
  let bucket = rel > 0 ? half : 0;
  const n = Math.abs(rel);
  const maxExact = Math.floor(half / 2);
  if (n < maxExact) return bucket + n;
  const ratio = f32(Math.log(f32(n / maxExact)));
  const scaled = f32(f32(ratio / f32(Math.log(maxDistance / maxExact))) * (half - maxExact));
  bucket += Math.min(maxExact + Math.trunc(scaled), half - 1);
  return bucket;
}

/** Token ids and an optional attention mask (1 = attend, 0 = padding), both [B, L]. */
export interface TextEncoderInput {
  readonly batch: number;
  readonly length: number;
  readonly ids: ArrayLike<number>;
  readonly mask?: ArrayLike<number>;
}

export function checkTextInput(inp: TextEncoderInput, maxLength: number | undefined, where: string): void {
  const { batch: b, length: l } = inp;
  if (!Number.isSafeInteger(b) || !Number.isSafeInteger(l) || b < 1 || l < 1)
    throw new ModelError("E_INPUT", `batch ${b} and length ${l} must be positive integers`, where);
  if (maxLength !== undefined && l > maxLength)
    throw new ModelError("E_INPUT", `length ${l} exceeds the model's ${maxLength} positions`, where);
  if (inp.ids.length !== b * l)
    throw new ModelError("E_SHAPE", `ids has ${inp.ids.length} values, expected [${b}, ${l}]`, where);
  if (inp.mask !== undefined) {
    if (inp.mask.length !== b * l)
      throw new ModelError("E_SHAPE", `mask has ${inp.mask.length} values, expected [${b}, ${l}]`, where);
    for (let i = 0; i < inp.mask.length; i++)
      if (inp.mask[i] !== 0 && inp.mask[i] !== 1)
        throw new ModelError("E_INPUT", `mask value ${inp.mask[i]} at ${i} is not 0 or 1`, where);
  }
}

export interface TextEncoderLoadOptions {
  /** Builds every linear layer (recipe + fake quantizer + GEMM backend); default: dense. */
  readonly factory?: LinearFactory;
  /** Prefix of the linear layer names given to the factory (e.g. `text_encoder_2.`); default none. */
  readonly namePrefix?: string;
}

/**
 * T5EncoderModel (T5 v1.1 as FLUX's text_encoder_2 and PixArt-Σ's text_encoder) on the CPU, float32 compute:
 * embeddings (no scaling) → blocks of [RMS norm → self-attention with the shared relative position bias (no
 * 1/√d scaling) → residual; RMS norm → gated-GELU FF → residual] → final RMS norm. Linear layers go through
 * the LinearFactory seam. Output: last_hidden_state [B, L, d_model].
 */
export class T5Encoder {
  readonly config: T5Config;
  private readonly ws: WeightSet;
  private readonly table: Float32Array;
  private readonly lin: Record<string, LinearLayer>;

  private constructor(config: T5Config, ws: WeightSet, table: Float32Array, lin: Record<string, LinearLayer>) {
    this.config = config;
    this.ws = ws;
    this.table = table;
    this.lin = lin;
  }

  /** Load a transformers folder (config.json + model.safetensors or a shard index). */
  static async fromFolder(dir: string, opts: TextEncoderLoadOptions = {}): Promise<T5Encoder> {
    const folder = await openModelFolder(dir);
    try {
      if (folder.config === undefined) throw new ModelError("E_CONFIG", "no config.json in the folder", dir);
      return await T5Encoder.fromSource(parseT5Config(folder.config, `${dir}/config.json`), folder.weights, opts);
    } finally {
      await folder.weights.close();
    }
  }

  static async fromSource(
    config: T5Config,
    source: TensorSource,
    opts: TextEncoderLoadOptions = {},
  ): Promise<T5Encoder> {
    const specs = t5Params(config);
    const tableName = ["shared.weight", "encoder.embed_tokens.weight"].find((n) => source.has(n));
    if (tableName === undefined)
      throw new ModelError(
        "E_WEIGHTS",
        "missing the token table (shared.weight or encoder.embed_tokens.weight)",
        source.path,
      );
    const tableSpec = { name: tableName, shape: [config.vocabSize, config.dModel] };
    checkSpecs(source, [tableSpec, ...specs]);
    const ws = await loadWeightSet(source, [tableSpec, ...specs]);
    const factory = opts.factory ?? new LinearFactory();
    const names = specs.filter((s) => s.shape.length === 2 && !s.name.includes("relative_attention_bias"));
    const lin: Record<string, LinearLayer> = {};
    for (const s of names) {
      const n = s.name.slice(0, -".weight".length);
      lin[n] = factory.build(`${opts.namePrefix ?? ""}${n}`, ws.get(s.name), undefined);
    }
    return new T5Encoder(config, ws, ws.f32(tableName), lin);
  }

  /** Every linear layer, in forward order (for calibration and quantization). */
  layers(): LinearLayer[] {
    return Object.values(this.lin);
  }

  /** Position bias [H, L, L] (+ nothing for the mask): bias[h][q][k] = table[bucket(k − q)][h]. */
  private positionBias(l: number): Float32Array[] {
    const c = this.config;
    const w = this.ws.f32("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
    const bucket = new Int32Array(2 * l - 1);
    for (let r = -(l - 1); r < l; r++)
      bucket[r + l - 1] = t5RelativeBucket(r, c.relativeAttentionNumBuckets, c.relativeAttentionMaxDistance);
    const out: Float32Array[] = [];
    for (let h = 0; h < c.numHeads; h++) {
      const m = new Float32Array(l * l);
      for (let q = 0; q < l; q++)
        for (let k = 0; k < l; k++) m[q * l + k] = w[bucket[k - q + l - 1]! * c.numHeads + h]!;
      out.push(m);
    }
    return out;
  }

  /** last_hidden_state [B, L, d_model]; with a mask, padded keys get finfo(float32).min added (PixArt). */
  forward(inp: TextEncoderInput): Float32Array {
    checkTextInput(inp, undefined, "T5Encoder.forward");
    const c = this.config;
    const { batch: b, length: l } = inp;
    const d = c.dModel;
    const m = b * l;
    let x = embedRows(this.table, c.vocabSize, d, inp.ids, "T5Encoder.forward ids");
    const pos = this.positionBias(l);
    const biased: Float32Array[][] = [];
    for (let bi = 0; bi < b; bi++) {
      if (inp.mask === undefined) {
        biased.push(pos);
        continue;
      }
      biased.push(
        pos.map((p) => {
          const q = new Float32Array(p);
          for (let k = 0; k < l; k++)
            if (inp.mask![bi * l + k] === 0) for (let r = 0; r < l; r++) q[r * l + k] = q[r * l + k]! + MASK_MIN;
          return q;
        }),
      );
    }
    const L = this.lin;
    for (let i = 0; i < c.numLayers; i++) {
      const p = `encoder.block.${i}.layer.`;
      const h = rmsNormRows(x, m, d, this.ws.f32(`${p}0.layer_norm.weight`), c.layerNormEpsilon);
      const q = L[`${p}0.SelfAttention.q`]!.forward(h, m);
      const k = L[`${p}0.SelfAttention.k`]!.forward(h, m);
      const v = L[`${p}0.SelfAttention.v`]!.forward(h, m);
      const att = attentionWithBias(q, k, v, b, l, c.numHeads, c.dKv, 1, (bi, hh) => biased[bi]![hh]);
      const o = L[`${p}0.SelfAttention.o`]!.forward(att, m);
      for (let j = 0; j < x.length; j++) x[j] = x[j]! + o[j]!;
      const h2 = rmsNormRows(x, m, d, this.ws.f32(`${p}1.layer_norm.weight`), c.layerNormEpsilon);
      let ff: Float32Array;
      if (c.gated) {
        const g = activateInPlace(L[`${p}1.DenseReluDense.wi_0`]!.forward(h2, m), c.act);
        const lin = L[`${p}1.DenseReluDense.wi_1`]!.forward(h2, m);
        for (let j = 0; j < g.length; j++) g[j] = g[j]! * lin[j]!;
        ff = g;
      } else ff = activateInPlace(L[`${p}1.DenseReluDense.wi`]!.forward(h2, m), c.act);
      const y = L[`${p}1.DenseReluDense.wo`]!.forward(ff, m);
      for (let j = 0; j < x.length; j++) x[j] = x[j]! + y[j]!;
    }
    x = rmsNormRows(x, m, d, this.ws.f32("encoder.final_layer_norm.weight"), c.layerNormEpsilon);
    return x;
  }
}
