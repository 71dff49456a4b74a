import { openModelFolder, type TensorSource } from "@svdquant/tensor";
import { ModelError } from "../errors.js";
import { ConfigReader } from "../json-config.js";
import type { LinearLayer } from "../linear.js";
import type { ParamSpec } from "../params.js";
import { LinearFactory } from "../recipe.js";
import { checkSpecs, loadWeightSet, type WeightSet } from "../weights.js";
import { checkTextInput, type TextEncoderInput, type TextEncoderLoadOptions } from "./t5.js";
import {
  activateInPlace,
  attentionWithBias,
  embedRows,
  layerNormAffine,
  MASK_MIN,
  TEXT_ACTIVATIONS,
  type TextActivation,
} from "./text-ops.js";

/** CLIPTextModel / CLIPTextModelWithProjection config (transformers `config.json`). */
export interface ClipTextConfig {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly maxPositionEmbeddings: number;
  readonly hiddenAct: TextActivation;
  readonly layerNormEps: number;
  readonly eosTokenId: number;
  /** Width of text_projection (WithProjection only), else undefined. */
  readonly projectionDim: number | undefined;
}

/**
 * Parse a CLIP text config.json: a CLIPTextConfig (`model_type` clip_text_model) or a full CLIPConfig's
 * `text_config`. `architectures` ["CLIPTextModelWithProjection"] adds the projection.
 */
export function parseClipTextConfig(raw: Record<string, unknown>, where = "config.json"): ClipTextConfig {
  const archs = Array.isArray(raw.architectures) ? raw.architectures : [];
  const text =
    raw.text_config !== undefined && raw.text_config !== null && typeof raw.text_config === "object"
      ? (raw.text_config as Record<string, unknown>)
      : raw;
  const r = new ConfigReader(text, where);
  const hiddenAct = r.str("hidden_act", "quick_gelu", TEXT_ACTIVATIONS);
  const withProjection = archs.includes("CLIPTextModelWithProjection");
  const hiddenSize = r.posInt("hidden_size", 512);
  const heads = r.posInt("num_attention_heads", 8);
  if (hiddenSize % heads !== 0)
    throw new ModelError(
      "E_CONFIG",
      `hidden_size ${hiddenSize} is not divisible by num_attention_heads ${heads}`,
      where,
    );
  return {
    vocabSize: r.posInt("vocab_size", 49408),
    hiddenSize,
    intermediateSize: r.posInt("intermediate_size", 2048),
    numHiddenLayers: r.posInt("num_hidden_layers", 12),
    numAttentionHeads: heads,
    maxPositionEmbeddings: r.posInt("max_position_embeddings", 77),
    hiddenAct,
    layerNormEps: r.num("layer_norm_eps", 1e-5),
    eosTokenId: r.nonNegInt("eos_token_id", 2),
    projectionDim: withProjection ? r.posInt("projection_dim", 512) : undefined,
  };
}

function linearSpec(out: ParamSpec[], name: string, inF: number, outF: number, bias = true): void {
  out.push({ name: `${name}.weight`, shape: [outF, inF] });
  if (bias) out.push({ name: `${name}.bias`, shape: [outF] });
}

/**
 * Parameters of CLIPTextModel(WithProjection) in the transformers state-dict names. `prefix` is "text_model."
 * in checkpoints saved by transformers 4 (FLUX.1's text_encoder) and in WithProjection models; transformers 5
 * saves a plain CLIPTextModel without it.
 */
export function clipTextParams(c: ClipTextConfig, prefix = "text_model."): ParamSpec[] {
  const d = c.hiddenSize;
  const p: ParamSpec[] = [
    { name: `${prefix}embeddings.token_embedding.weight`, shape: [c.vocabSize, d] },
    { name: `${prefix}embeddings.position_embedding.weight`, shape: [c.maxPositionEmbeddings, d] },
  ];
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const l = `${prefix}encoder.layers.${i}.`;
    p.push({ name: `${l}layer_norm1.weight`, shape: [d] }, { name: `${l}layer_norm1.bias`, shape: [d] });
    for (const n of ["q_proj", "k_proj", "v_proj", "out_proj"]) linearSpec(p, `${l}self_attn.${n}`, d, d);
    p.push({ name: `${l}layer_norm2.weight`, shape: [d] }, { name: `${l}layer_norm2.bias`, shape: [d] });
    linearSpec(p, `${l}mlp.fc1`, d, c.intermediateSize);
    linearSpec(p, `${l}mlp.fc2`, c.intermediateSize, d);
  }
  p.push(
    { name: `${prefix}final_layer_norm.weight`, shape: [d] },
    { name: `${prefix}final_layer_norm.bias`, shape: [d] },
  );
  if (c.projectionDim !== undefined) linearSpec(p, "text_projection", d, c.projectionDim, false);
  return p;
}

export interface ClipTextOutput {
  /** [B, L, hidden] after the final layer norm. */
  readonly lastHiddenState: Float32Array;
  /** [B, hidden]: the EOS token's row (CLIPTextModel's pooler_output, what FLUX takes). */
  readonly pooled: Float32Array;
  /** [B, projection_dim]: text_projection(pooled), WithProjection models only. */
  readonly textEmbeds: Float32Array | undefined;
}

/**
 * The pooled token of each row (transformers' CLIPTextTransformer): with the legacy eos_token_id 2 the
 * position of the largest id (EOS has the largest id in CLIP's vocabulary); otherwise the first position
 * whose id is eos_token_id (0 when there is none, as argmax of an all-false row).
 */
export function clipPoolIndex(ids: ArrayLike<number>, row: number, length: number, eosTokenId: number): number {
  let best = 0;
  const o = row * length;
  if (eosTokenId === 2) {
    for (let t = 1; t < length; t++) if (ids[o + t]! > ids[o + best]!) best = t;
    return best;
  }
  for (let t = 0; t < length; t++) if (ids[o + t] === eosTokenId) return t;
  return 0;
}

/**
 * CLIP text transformer on the CPU, float32 compute: token + position embeddings → pre-LN blocks with causal
 * self-attention (scale Dh^−½; padded keys masked too when a mask is given) and a quick_gelu/gelu MLP →
 * final LayerNorm → pooled EOS row (→ text_projection for CLIPTextModelWithProjection).
 */
export class ClipTextEncoder {
  readonly config: ClipTextConfig;
  private readonly ws: WeightSet;
  private readonly lin: Record<string, LinearLayer>;
  /** "text_model." or "" (see clipTextParams). */
  private readonly pre: string;

  private constructor(config: ClipTextConfig, ws: WeightSet, lin: Record<string, LinearLayer>, pre: string) {
    this.config = config;
    this.ws = ws;
    this.lin = lin;
    this.pre = pre;
  }

  static async fromFolder(dir: string, opts: TextEncoderLoadOptions = {}): Promise<ClipTextEncoder> {
    const folder = await openModelFolder(dir);
    try {
      if (folder.config === undefined) throw new ModelError("E_CONFIG", "no config.json in the folder", dir);
      const config = parseClipTextConfig(folder.config, `${dir}/config.json`);
      return await ClipTextEncoder.fromSource(config, folder.weights, opts);
    } finally {
      await folder.weights.close();
    }
  }

  static async fromSource(
    config: ClipTextConfig,
    source: TensorSource,
    opts: TextEncoderLoadOptions = {},
  ): Promise<ClipTextEncoder> {
    const pre = source.has("text_model.embeddings.token_embedding.weight") ? "text_model." : "";
    const specs = clipTextParams(config, pre);
    checkSpecs(source, specs);
    const ws = await loadWeightSet(source, specs);
    const factory = opts.factory ?? new LinearFactory();
    const lin: Record<string, LinearLayer> = {};
    for (const s of specs)
      if (s.shape.length === 2 && !s.name.includes("embedding")) {
        const n = s.name.slice(0, -".weight".length);
        lin[n] = factory.build(`${opts.namePrefix ?? ""}${n}`, ws.get(s.name), ws.maybe(`${n}.bias`));
      }
    return new ClipTextEncoder(config, ws, lin, pre);
  }

  layers(): LinearLayer[] {
    return Object.values(this.lin);
  }

  forward(inp: TextEncoderInput): ClipTextOutput {
    const c = this.config;
    checkTextInput(inp, c.maxPositionEmbeddings, "ClipTextEncoder.forward");
    const { batch: b, length: l } = inp;
    const d = c.hiddenSize;
    const m = b * l;
    const x = embedRows(
      this.ws.f32(`${this.pre}embeddings.token_embedding.weight`),
      c.vocabSize,
      d,
      inp.ids,
      "ClipTextEncoder.forward ids",
    );
    const pos = this.ws.f32(`${this.pre}embeddings.position_embedding.weight`);
    for (let r = 0; r < m; r++) {
      const t = r % l;
      for (let i = 0; i < d; i++) x[r * d + i] = x[r * d + i]! + pos[t * d + i]!;
    }
    // causal mask (+ padding mask) as additive finfo(float32).min
    const masks: Float32Array[] = [];
    for (let bi = 0; bi < b; bi++) {
      const mk = new Float32Array(l * l);
      for (let q = 0; q < l; q++)
        for (let k = 0; k < l; k++)
          if (k > q || (inp.mask !== undefined && inp.mask[bi * l + k] === 0)) mk[q * l + k] = MASK_MIN;
      masks.push(mk);
    }
    const heads = c.numAttentionHeads;
    const dh = d / heads;
    const L = this.lin;
    const w = (n: string) => this.ws.f32(n);
    for (let i = 0; i < c.numHiddenLayers; i++) {
      const p = `${this.pre}encoder.layers.${i}.`;
      const h = layerNormAffine(x, m, d, w(`${p}layer_norm1.weight`), w(`${p}layer_norm1.bias`), c.layerNormEps);
      const q = L[`${p}self_attn.q_proj`]!.forward(h, m);
      const k = L[`${p}self_attn.k_proj`]!.forward(h, m);
      const v = L[`${p}self_attn.v_proj`]!.forward(h, m);
      const att = attentionWithBias(q, k, v, b, l, heads, dh, 1 / Math.sqrt(dh), (bi) => masks[bi]);
      const o = L[`${p}self_attn.out_proj`]!.forward(att, m);
      for (let j = 0; j < x.length; j++) x[j] = x[j]! + o[j]!;
      const h2 = layerNormAffine(x, m, d, w(`${p}layer_norm2.weight`), w(`${p}layer_norm2.bias`), c.layerNormEps);
      const f = activateInPlace(L[`${p}mlp.fc1`]!.forward(h2, m), c.hiddenAct);
      const y = L[`${p}mlp.fc2`]!.forward(f, m);
      for (let j = 0; j < x.length; j++) x[j] = x[j]! + y[j]!;
    }
    const last = layerNormAffine(
      x,
      m,
      d,
      w(`${this.pre}final_layer_norm.weight`),
      w(`${this.pre}final_layer_norm.bias`),
      c.layerNormEps,
    );
    const pooled = new Float32Array(b * d);
    for (let bi = 0; bi < b; bi++) {
      const t = clipPoolIndex(inp.ids, bi, l, c.eosTokenId);
      pooled.set(last.subarray((bi * l + t) * d, (bi * l + t + 1) * d), bi * d);
    }
    const textEmbeds = c.projectionDim === undefined ? undefined : L.text_projection!.forward(pooled, b);
    return { lastHiddenState: last, pooled, textEmbeds };
  }
}
