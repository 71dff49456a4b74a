import { ModelError } from "./errors.js";

/** FluxTransformer2DModel config (diffusers `config.json`), every field resolved. */
export interface FluxConfig {
  readonly kind: "flux";
  readonly patchSize: number;
  readonly inChannels: number;
  /** Resolved: `out_channels ?? in_channels`. */
  readonly outChannels: number;
  readonly numLayers: number;
  readonly numSingleLayers: number;
  readonly attentionHeadDim: number;
  readonly numAttentionHeads: number;
  readonly jointAttentionDim: number;
  readonly pooledProjectionDim: number;
  readonly guidanceEmbeds: boolean;
  readonly axesDimsRope: readonly number[];
}

/** PixArtTransformer2DModel config (PixArt-Σ / -α with ada_norm_single), every field resolved. */
export interface PixArtConfig {
  readonly kind: "pixart";
  readonly numAttentionHeads: number;
  readonly attentionHeadDim: number;
  readonly inChannels: number;
  /** Resolved: `out_channels ?? in_channels` (8 = learned sigma for 4 latent channels). */
  readonly outChannels: number;
  readonly numLayers: number;
  readonly crossAttentionDim: number;
  readonly attentionBias: boolean;
  readonly sampleSize: number;
  readonly patchSize: number;
  readonly normEps: number;
  /** Resolved: `interpolation_scale ?? max(sample_size // 64, 1)`. */
  readonly interpolationScale: number;
  /** Resolved; only `false` has a forward here. */
  readonly useAdditionalConditions: boolean;
  /** Caption embedding width, or undefined when the model has no caption projection. */
  readonly captionChannels: number | undefined;
}

export type ModelConfig = FluxConfig | PixArtConfig;

// Defaults of the reference classes' constructors (diffusers transformer_flux.py / pixart_transformer_2d.py).
const FLUX_DEFAULTS: Record<string, unknown> = {
  patch_size: 1,
  in_channels: 64,
  out_channels: null,
  num_layers: 19,
  num_single_layers: 38,
  attention_head_dim: 128,
  num_attention_heads: 24,
  joint_attention_dim: 4096,
  pooled_projection_dim: 768,
  guidance_embeds: false,
  axes_dims_rope: [16, 56, 56],
};

const PIXART_DEFAULTS: Record<string, unknown> = {
  num_attention_heads: 16,
  attention_head_dim: 72,
  in_channels: 4,
  out_channels: 8,
  num_layers: 28,
  dropout: 0.0,
  norm_num_groups: 32,
  cross_attention_dim: 1152,
  attention_bias: true,
  sample_size: 128,
  patch_size: 2,
  activation_fn: "gelu-approximate",
  num_embeds_ada_norm: 1000,
  upcast_attention: false,
  norm_type: "ada_norm_single",
  norm_elementwise_affine: false,
  norm_eps: 1e-6,
  interpolation_scale: null,
  use_additional_conditions: null,
  caption_channels: null,
  attention_type: "default",
};

/** Keys diffusers writes into every config.json; informational. */
const META_KEYS = new Set(["_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"]);

export const FLUX_CLASS = "FluxTransformer2DModel";
export const PIXART_CLASS = "PixArtTransformer2DModel";

function merged(
  raw: Record<string, unknown>,
  defaults: Record<string, unknown>,
  className: string,
  where: string,
): Record<string, unknown> {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw))
    throw new ModelError("E_CONFIG", "config must be a JSON object", where);
  const cls = raw._class_name;
  if (cls !== undefined && cls !== className)
    throw new ModelError("E_CONFIG", `_class_name is "${String(cls)}", expected "${className}"`, where);
  const out: Record<string, unknown> = { ...defaults };
  for (const [k, v] of Object.entries(raw)) {
    if (META_KEYS.has(k)) continue;
    // own keys only: "constructor", "toString" or "__proto__" are not config keys (`in` would see the prototype)
    if (!Object.hasOwn(defaults, k))
      throw new ModelError(
        "E_CONFIG",
        `unknown key "${k}" for ${className} (known: ${Object.keys(defaults).join(", ")})`,
        where,
      );
    out[k] = v;
  }
  return out;
}

function posInt(c: Record<string, unknown>, key: string, where: string): number {
  const v = c[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0)
    throw new ModelError("E_CONFIG", `"${key}" must be a positive integer, got ${JSON.stringify(v)}`, where);
  return v;
}
function nonNegInt(c: Record<string, unknown>, key: string, where: string): number {
  const v = c[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
    throw new ModelError("E_CONFIG", `"${key}" must be a non-negative integer, got ${JSON.stringify(v)}`, where);
  return v;
}
function bool(c: Record<string, unknown>, key: string, where: string): boolean {
  const v = c[key];
  if (typeof v !== "boolean")
    throw new ModelError("E_CONFIG", `"${key}" must be a boolean, got ${JSON.stringify(v)}`, where);
  return v;
}
function exactly(c: Record<string, unknown>, key: string, expected: unknown, where: string): void {
  if (c[key] !== expected)
    throw new ModelError(
      "E_UNSUPPORTED",
      `"${key}" = ${JSON.stringify(c[key])} is not supported (only ${JSON.stringify(expected)})`,
      where,
    );
}

/** Parse a FluxTransformer2DModel config.json object; unknown or inconsistent keys throw E_CONFIG. */
export function parseFluxConfig(raw: Record<string, unknown>, where = "config.json"): FluxConfig {
  const c = merged(raw, FLUX_DEFAULTS, FLUX_CLASS, where);
  const inChannels = posInt(c, "in_channels", where);
  const outChannels = c.out_channels === null || c.out_channels === 0 ? inChannels : posInt(c, "out_channels", where);
  const attentionHeadDim = posInt(c, "attention_head_dim", where);
  const axes = c.axes_dims_rope;
  if (!Array.isArray(axes) || axes.length !== 3 || axes.some((a) => !Number.isSafeInteger(a) || a <= 0 || a % 2 !== 0))
    throw new ModelError(
      "E_CONFIG",
      `"axes_dims_rope" must be three positive even integers, got ${JSON.stringify(axes)}`,
      where,
    );
  const sum = (axes as number[]).reduce((a, b) => a + b, 0);
  if (sum !== attentionHeadDim)
    throw new ModelError(
      "E_CONFIG",
      `"axes_dims_rope" ${JSON.stringify(axes)} sums to ${sum}, but RoPE must cover attention_head_dim = ${attentionHeadDim}`,
      where,
    );
  const patchSize = posInt(c, "patch_size", where);
  return {
    kind: "flux",
    patchSize,
    inChannels,
    outChannels,
    numLayers: nonNegInt(c, "num_layers", where),
    numSingleLayers: nonNegInt(c, "num_single_layers", where),
    attentionHeadDim,
    numAttentionHeads: posInt(c, "num_attention_heads", where),
    jointAttentionDim: posInt(c, "joint_attention_dim", where),
    pooledProjectionDim: posInt(c, "pooled_projection_dim", where),
    guidanceEmbeds: bool(c, "guidance_embeds", where),
    axesDimsRope: Object.freeze([...(axes as number[])]),
  };
}

/** Parse a PixArtTransformer2DModel config.json object; unknown, unsupported or inconsistent keys throw. */
export function parsePixArtConfig(raw: Record<string, unknown>, where = "config.json"): PixArtConfig {
  const c = merged(raw, PIXART_DEFAULTS, PIXART_CLASS, where);
  exactly(c, "norm_type", "ada_norm_single", where);
  exactly(c, "activation_fn", "gelu-approximate", where);
  exactly(c, "norm_elementwise_affine", false, where);
  exactly(c, "upcast_attention", false, where);
  exactly(c, "attention_type", "default", where);
  if (typeof c.dropout !== "number" || c.dropout < 0 || c.dropout >= 1)
    throw new ModelError("E_CONFIG", `"dropout" must be a number in [0, 1), got ${JSON.stringify(c.dropout)}`, where);
  posInt(c, "norm_num_groups", where);
  posInt(c, "num_embeds_ada_norm", where); // required (non-null) by the ada_norm_single path
  const sampleSize = posInt(c, "sample_size", where);
  const patchSize = posInt(c, "patch_size", where);
  if (sampleSize % patchSize !== 0)
    throw new ModelError("E_CONFIG", `sample_size ${sampleSize} is not a multiple of patch_size ${patchSize}`, where);
  const heads = posInt(c, "num_attention_heads", where);
  const headDim = posInt(c, "attention_head_dim", where);
  const inner = heads * headDim;
  if (inner % 4 !== 0)
    throw new ModelError("E_CONFIG", `inner dim ${inner} must be a multiple of 4 for the 2-D sin-cos embedding`, where);
  const inChannels = posInt(c, "in_channels", where);
  const outChannels = c.out_channels === null ? inChannels : posInt(c, "out_channels", where);
  const normEps = c.norm_eps;
  if (typeof normEps !== "number" || !(normEps > 0))
    throw new ModelError("E_CONFIG", `"norm_eps" must be a positive number, got ${JSON.stringify(normEps)}`, where);
  let interpolationScale: number;
  if (c.interpolation_scale === null) interpolationScale = Math.max(Math.floor(sampleSize / 64), 1);
  else if (typeof c.interpolation_scale === "number" && c.interpolation_scale > 0)
    interpolationScale = c.interpolation_scale;
  else
    throw new ModelError(
      "E_CONFIG",
      `"interpolation_scale" must be a positive number or null, got ${JSON.stringify(c.interpolation_scale)}`,
      where,
    );
  // Reference rule: null means "true exactly when sample_size == 128".
  const useAdditionalConditions =
    c.use_additional_conditions === null ? sampleSize === 128 : bool(c, "use_additional_conditions", where);
  if (useAdditionalConditions)
    throw new ModelError(
      "E_UNSUPPORTED",
      "use_additional_conditions (PixArt-α resolution/aspect-ratio embedders) is not supported; PixArt-Σ sets it false",
      where,
    );
  const crossAttentionDim = c.cross_attention_dim === null ? inner : posInt(c, "cross_attention_dim", where);
  const captionChannels = c.caption_channels === null ? undefined : posInt(c, "caption_channels", where);
  // The reference reshapes the projected caption to the inner dim, and attn2 reads it at cross_attention_dim.
  const textWidth = captionChannels !== undefined ? inner : crossAttentionDim;
  if (captionChannels !== undefined && crossAttentionDim !== inner)
    throw new ModelError(
      "E_CONFIG",
      `cross_attention_dim ${crossAttentionDim} must equal the inner dim ${inner} when caption_channels is set (the caption projection outputs ${textWidth})`,
      where,
    );
  return {
    kind: "pixart",
    numAttentionHeads: heads,
    attentionHeadDim: headDim,
    inChannels,
    outChannels,
    numLayers: nonNegInt(c, "num_layers", where),
    crossAttentionDim,
    attentionBias: bool(c, "attention_bias", where),
    sampleSize,
    patchSize,
    normEps,
    interpolationScale,
    useAdditionalConditions,
    captionChannels,
  };
}

/** Parse a diffusers transformer config.json by its `_class_name`. */
export function parseModelConfig(raw: Record<string, unknown>, where = "config.json"): ModelConfig {
  const cls = raw?._class_name;
  if (cls === FLUX_CLASS) return parseFluxConfig(raw, where);
  if (cls === PIXART_CLASS) return parsePixArtConfig(raw, where);
  throw new ModelError(
    "E_CONFIG",
    `_class_name ${JSON.stringify(cls)} is not one of ${FLUX_CLASS}, ${PIXART_CLASS}`,
    where,
  );
}

/**
 * Published configs (overrides of the class defaults), as in the manifests made from the reference classes:
 * black-forest-labs/FLUX.1-dev, FLUX.1-schnell and PixArt-alpha/PixArt-Sigma-XL-2-1024-MS transformer/config.json.
 */
export const PRESET_CONFIGS = {
  "flux.1-dev": { _class_name: FLUX_CLASS, guidance_embeds: true },
  "flux.1-schnell": { _class_name: FLUX_CLASS, guidance_embeds: false },
  "pixart-sigma-xl-2-1024-ms": {
    _class_name: PIXART_CLASS,
    sample_size: 128,
    interpolation_scale: 2,
    caption_channels: 4096,
    use_additional_conditions: false,
  },
} as const satisfies Record<string, Record<string, unknown>>;

export type PresetName = keyof typeof PRESET_CONFIGS;

export function presetConfig(name: PresetName): ModelConfig {
  const raw = PRESET_CONFIGS[name];
  if (raw === undefined)
    throw new ModelError("E_CONFIG", `unknown preset (known: ${Object.keys(PRESET_CONFIGS).join(", ")})`, String(name));
  return parseModelConfig({ ...raw }, `preset ${name}`);
}
