import { fakeQuantize as int4FakeQuantize } from "@svdquant/int4";
import type { Tensor } from "@svdquant/tensor";
import { ModelError } from "./errors.js";
import { type FakeQuantizeFn, FakeQuantLinear, type QuantSpec } from "./fakequant.js";
import type { GemmBackend } from "./gemm.js";
import { DenseLinear, type DenseWeight, type LinearLayer } from "./linear.js";
import type { WeightSet } from "./weights.js";

/**
 * How one class of linear layers is treated.
 * - `dense`: keep the checkpoint's 16/32-bit weights.
 * - `fake`: simulate quantization (weight spec, activation spec; null = keep 16 bit).
 * - `w4a4-packed`, `w4a16-packed` and any other name: built by a builder registered with `registerLinearKind`
 *   (native packed kernels plug in there).
 */
export interface Treatment {
  readonly kind: string;
  readonly weight?: QuantSpec | null;
  readonly act?: QuantSpec | null;
  /** Free-form parameters for registered kinds (rank, smoothing, …). */
  readonly params?: Readonly<Record<string, unknown>>;
}

export interface RecipeRule {
  /** Dotted layer-name pattern: `*` matches one name segment, `**` any number (also zero). */
  readonly match: string;
  readonly treatment: string;
  readonly why?: string;
}

/** A quantization recipe: data, JSON-serializable, overridable with `mergeRecipe`. */
export interface Recipe {
  readonly name: string;
  readonly treatments: Readonly<Record<string, Treatment>>;
  /** First match wins. */
  readonly rules: readonly RecipeRule[];
  /** Treatment of layers no rule matches. */
  readonly default: string;
  /** Layers that read one tensor and share one input quantization (patterns; one list per group). */
  readonly inputGroups: readonly (readonly string[])[];
}

const cache = new Map<string, RegExp>();
function patternRegExp(pattern: string): RegExp {
  let re = cache.get(pattern);
  if (re === undefined) {
    const segs = pattern.split(".");
    let src = "";
    let needDot = false;
    segs.forEach((seg, i) => {
      if (seg === "**") {
        if (i === segs.length - 1) src += i === 0 ? "(?:[^.]+(?:\\.[^.]+)*)?" : "(?:\\.[^.]+)*";
        else src += `${i > 0 ? "\\." : ""}(?:[^.]+\\.)*`;
        needDot = false;
        return;
      }
      const body = seg
        .split("*")
        .map((s) => s.replace(/[|\\{}()[\]^$+?.]/g, "\\$&"))
        .join("[^.]*");
      src += (needDot ? "\\." : "") + body;
      needDot = true;
    });
    re = new RegExp(`^${src}$`);
    cache.set(pattern, re);
  }
  return re;
}

/** Does a dotted layer name match a recipe pattern? */
export function matchesPattern(pattern: string, name: string): boolean {
  return patternRegExp(pattern).test(name);
}

const W4_INT4: QuantSpec = { format: "int4", groupSize: 64 }; // SVDQuant §5.1: INT4, group size 64 (W and X)

/**
 * The SVDQuant paper's treatment (§5.1 / App.): all linear layers of the transformer blocks W4A4; embedders
 * (time/text/guidance, x/context embedders, PixArt patch + caption projections) and the final projection kept
 * 16-bit; AdaNorm modulation linears W4A16; PixArt cross-attention K/V 16-bit (they only see the text);
 * q/k/v (and FLUX single-block MLP-in) read one input and share its quantization.
 */
export const SVDQUANT_RECIPE: Recipe = {
  name: "svdquant-w4a4-int4",
  treatments: {
    "16bit": { kind: "dense" },
    w4a16: { kind: "fake", weight: W4_INT4, act: null },
    w4a4: { kind: "fake", weight: W4_INT4, act: W4_INT4 },
  },
  rules: [
    { match: "time_text_embed.**", treatment: "16bit", why: "timestep/text/guidance embedders" },
    { match: "x_embedder", treatment: "16bit", why: "embedder" },
    { match: "context_embedder", treatment: "16bit", why: "embedder" },
    { match: "pos_embed.proj", treatment: "16bit", why: "PixArt patch embedding" },
    { match: "caption_projection.**", treatment: "16bit", why: "PixArt caption embedder" },
    { match: "adaln_single.emb.**", treatment: "16bit", why: "PixArt timestep embedder" },
    { match: "proj_out", treatment: "16bit", why: "final projection" },
    { match: "norm_out.linear", treatment: "w4a16", why: "AdaNorm modulation" },
    { match: "adaln_single.linear", treatment: "w4a16", why: "AdaNorm modulation" },
    { match: "transformer_blocks.*.norm1.linear", treatment: "w4a16", why: "AdaNorm modulation" },
    { match: "transformer_blocks.*.norm1_context.linear", treatment: "w4a16", why: "AdaNorm modulation" },
    { match: "single_transformer_blocks.*.norm.linear", treatment: "w4a16", why: "AdaNorm modulation" },
    { match: "transformer_blocks.*.attn2.to_k", treatment: "16bit", why: "PixArt cross-attention K" },
    { match: "transformer_blocks.*.attn2.to_v", treatment: "16bit", why: "PixArt cross-attention V" },
  ],
  default: "w4a4",
  inputGroups: [
    ["transformer_blocks.*.attn.to_q", "transformer_blocks.*.attn.to_k", "transformer_blocks.*.attn.to_v"],
    [
      "transformer_blocks.*.attn.add_q_proj",
      "transformer_blocks.*.attn.add_k_proj",
      "transformer_blocks.*.attn.add_v_proj",
    ],
    [
      "single_transformer_blocks.*.attn.to_q",
      "single_transformer_blocks.*.attn.to_k",
      "single_transformer_blocks.*.attn.to_v",
      "single_transformer_blocks.*.proj_mlp",
    ],
    ["transformer_blocks.*.attn1.to_q", "transformer_blocks.*.attn1.to_k", "transformer_blocks.*.attn1.to_v"],
  ],
};

/** Keep every layer as in the checkpoint. */
export const DENSE_RECIPE: Recipe = {
  name: "dense",
  treatments: { dense: { kind: "dense" } },
  rules: [],
  default: "dense",
  inputGroups: [],
};

function isSpec(v: unknown): v is QuantSpec {
  return (
    v !== null &&
    typeof v === "object" &&
    typeof (v as QuantSpec).format === "string" &&
    Number.isSafeInteger((v as QuantSpec).groupSize) &&
    (v as QuantSpec).groupSize >= 0
  );
}

/** Check a recipe (e.g. parsed from JSON); throws E_RECIPE naming the bad entry. */
export function validateRecipe(r: unknown, where = "recipe"): Recipe {
  const rec = r as Recipe;
  if (rec === null || typeof rec !== "object") throw new ModelError("E_RECIPE", "must be an object", where);
  if (typeof rec.name !== "string") throw new ModelError("E_RECIPE", '"name" must be a string', where);
  if (rec.treatments === null || typeof rec.treatments !== "object")
    throw new ModelError("E_RECIPE", '"treatments" must be an object', where);
  for (const [k, t] of Object.entries(rec.treatments)) {
    if (t === null || typeof t !== "object" || typeof t.kind !== "string")
      throw new ModelError("E_RECIPE", `treatment "${k}" needs a string "kind"`, where);
    if (t.kind === "fake") {
      for (const f of ["weight", "act"] as const) {
        const s = t[f];
        if (s !== null && s !== undefined && !isSpec(s))
          throw new ModelError("E_RECIPE", `treatment "${k}".${f} must be null or {format, groupSize >= 0}`, where);
      }
    }
  }
  if (!Array.isArray(rec.rules)) throw new ModelError("E_RECIPE", '"rules" must be an array', where);
  rec.rules.forEach((rule, i) => {
    if (typeof rule?.match !== "string" || typeof rule.treatment !== "string")
      throw new ModelError("E_RECIPE", `rules[${i}] needs string "match" and "treatment"`, where);
    if (!(rule.treatment in rec.treatments))
      throw new ModelError(
        "E_RECIPE",
        `rules[${i}] (${rule.match}) names unknown treatment "${rule.treatment}"`,
        where,
      );
  });
  if (!(rec.default in rec.treatments))
    throw new ModelError("E_RECIPE", `default treatment "${String(rec.default)}" is not in treatments`, where);
  if (
    !Array.isArray(rec.inputGroups) ||
    rec.inputGroups.some((g) => !Array.isArray(g) || g.some((p) => typeof p !== "string"))
  )
    throw new ModelError("E_RECIPE", '"inputGroups" must be an array of arrays of patterns', where);
  return rec;
}

/**
 * Override a recipe: the override's rules take priority (checked first), its treatments are added/replaced
 * by name, and its default and inputGroups replace the base's when given.
 */
export function mergeRecipe(base: Recipe, override: Partial<Recipe>): Recipe {
  return validateRecipe({
    name: override.name ?? `${base.name}+override`,
    treatments: { ...base.treatments, ...(override.treatments ?? {}) },
    rules: [...(override.rules ?? []), ...base.rules],
    default: override.default ?? base.default,
    inputGroups: override.inputGroups ?? base.inputGroups,
  });
}

/** The treatment name a recipe gives a layer. */
export function treatmentOf(recipe: Recipe, layer: string): string {
  for (const r of recipe.rules) if (matchesPattern(r.match, layer)) return r.treatment;
  return recipe.default;
}

/** Index of the input group a layer belongs to, or undefined. */
export function inputGroupOf(recipe: Recipe, layer: string): number | undefined {
  const i = recipe.inputGroups.findIndex((g) => g.some((p) => matchesPattern(p, layer)));
  return i < 0 ? undefined : i;
}

/** Map every layer name to its treatment name. */
export function planRecipe(recipe: Recipe, layers: Iterable<string>): Map<string, string> {
  const out = new Map<string, string>();
  for (const l of layers) out.set(l, treatmentOf(recipe, l));
  return out;
}

// ------------------------------------------------------------------------------------------------ factory

/** What a linear builder receives. */
export interface LinearBuildContext {
  readonly name: string;
  /** nn.Linear weight [N, K] (F32, BF16 or F16 tensor as loaded). */
  readonly weight: Tensor;
  readonly bias: Float32Array | undefined;
  readonly treatment: Treatment;
  readonly treatmentName: string;
  /** Set when the recipe puts the layer in an input group (layers sharing it share input quantization). */
  readonly inputGroup: string | undefined;
  readonly options: LinearFactoryOptions;
}

export type LinearBuilder = (ctx: LinearBuildContext) => LinearLayer;

/**
 * Packed-kernel hooks: `w4a4-packed` (SVDQuant: smoothing + low-rank branch + 4-bit residual, native kernels)
 * and `w4a16-packed` (4-bit weight-only) are not built in; register builders for them (or any new kind).
 */
const builders = new Map<string, LinearBuilder>();

export function registerLinearKind(kind: string, builder: LinearBuilder): void {
  if (kind === "dense" || kind === "fake")
    throw new ModelError("E_RECIPE", `"${kind}" is built in and cannot be replaced`, "registerLinearKind");
  builders.set(kind, builder);
}

/**
 * Layers that exist already built (e.g. packed 4-bit layers read from a quantized checkpoint): the factory
 * returns them instead of building from dense weights, and the model loaders then neither need nor read the
 * `name.weight` / `name.bias` tensors of those layers.
 */
export interface LinearProvider {
  /** Full state-dict module names (without `.weight`) this provider builds. */
  has(name: string): boolean;
  /** The layer for `name`; `inputGroup` is the recipe's input group (layers sharing one input). */
  build(name: string, inputGroup: string | undefined): LinearLayer;
}

export interface LinearFactoryOptions {
  /** Prebuilt layers by name; they take precedence over the recipe. */
  readonly provider?: LinearProvider;
  /** Quantizer of `fake` treatments (default: @svdquant/int4's `fakeQuantize`; any function with its contract). */
  readonly fakeQuantize?: FakeQuantizeFn;
  /** GEMM backend for dense/fake layers (default: the process-wide one, see `setGemmBackend`). */
  readonly gemm?: GemmBackend;
}

/** Build layers from checkpoint tensors according to a recipe. */
export class LinearFactory {
  readonly recipe: Recipe;
  readonly options: LinearFactoryOptions;

  constructor(recipe: Recipe = DENSE_RECIPE, options: LinearFactoryOptions = {}) {
    this.recipe = validateRecipe(recipe);
    this.options = options;
  }

  /** `build` for each module name in `names` (weights `name.weight`, optional `name.bias` of `ws`), by name. */
  buildAll(ws: WeightSet, names: readonly string[], prefix = ""): Record<string, LinearLayer> {
    const out: Record<string, LinearLayer> = {};
    for (const n of names)
      out[n] = this.provides(prefix + n)
        ? this.buildProvided(prefix + n)
        : this.build(prefix + n, ws.get(`${n}.weight`), ws.maybe(`${n}.bias`));
    return out;
  }

  /** Does the provider build the layer `name` (so its dense tensors are not needed)? */
  provides(name: string): boolean {
    return this.options.provider?.has(name) ?? false;
  }

  /** The provider's layer `name`. */
  buildProvided(name: string): LinearLayer {
    const p = this.options.provider;
    if (p === undefined || !p.has(name))
      throw new ModelError("E_BACKEND", "no prebuilt layer of this name", `linear ${name}`);
    const g = inputGroupOf(this.recipe, name);
    return p.build(name, g === undefined ? undefined : `group${g}`);
  }

  /** `specs` (names relative to `prefix`) without the weight/bias tensors of the layers the provider builds. */
  requiredSpecs<T extends { readonly name: string }>(specs: readonly T[], prefix = ""): T[] {
    if (this.options.provider === undefined) return [...specs];
    return specs.filter((s) => {
      const m = /^(.*)\.(weight|bias)$/.exec(s.name);
      return m === null || !this.provides(prefix + m[1]);
    });
  }

  build(name: string, weight: Tensor, bias: Tensor | undefined): LinearLayer {
    if (weight.rank !== 2)
      throw new ModelError(
        "E_WEIGHTS",
        `weight must be 2-D [N, K], got [${weight.shape.join(", ")}]`,
        `${name}.weight`,
      );
    const [n, k] = weight.shape as [number, number];
    if (bias !== undefined && (bias.rank !== 1 || bias.shape[0] !== n))
      throw new ModelError("E_WEIGHTS", `bias must be [${n}], got [${bias.shape.join(", ")}]`, `${name}.bias`);
    const b = bias?.toFloat32();
    const treatmentName = treatmentOf(this.recipe, name);
    const treatment = this.recipe.treatments[treatmentName]!;
    const g = inputGroupOf(this.recipe, name);
    const inputGroup = g === undefined ? undefined : `group${g}`;
    if (treatment.kind === "dense") {
      const w: DenseWeight =
        weight.dtype === "BF16"
          ? { dtype: "bf16", data: weight.data as Uint16Array }
          : { dtype: "f32", data: weight.dtype === "F32" ? (weight.data as Float32Array) : weight.toFloat32() };
      return new DenseLinear(name, w, b, k, n, this.options.gemm);
    }
    if (treatment.kind === "fake") {
      const fq: FakeQuantizeFn = this.options.fakeQuantize ?? int4FakeQuantize;
      const wf = weight.dtype === "F32" ? (weight.data as Float32Array) : weight.toFloat32();
      return new FakeQuantLinear(
        name,
        wf,
        b,
        k,
        n,
        { weight: treatment.weight ?? null, act: treatment.act ?? null, inputGroup },
        fq,
        this.options.gemm,
      );
    }
    const builder = builders.get(treatment.kind);
    if (builder === undefined)
      throw new ModelError(
        "E_BACKEND",
        `no builder registered for linear kind "${treatment.kind}" (treatment "${treatmentName}"); register one with registerLinearKind`,
        `linear ${name}`,
      );
    return builder({ name, weight, bias: b, treatment, treatmentName, inputGroup, options: this.options });
  }
}

/** Kind names of the packed native layers (registered by the kernels packages). */
export const W4A4_PACKED = "w4a4-packed";
export const W4A16_PACKED = "w4a16-packed";

/**
 * Register the packed SVDQuant W4A4 layer: the builder gets the 16-bit weight and the treatment (its
 * `weight`/`act` specs and `params`, e.g. `{ rank: 32 }`), and returns a layer running native kernels
 * (smoothing + low-rank branch + 4-bit residual GEMM).
 */
export function registerPackedW4A4(builder: LinearBuilder): void {
  registerLinearKind(W4A4_PACKED, builder);
}

/** Register the packed 4-bit weight-only layer (AdaNorm modulation linears in the SVDQuant recipe). */
export function registerPackedW4A16(builder: LinearBuilder): void {
  registerLinearKind(W4A16_PACKED, builder);
}

/** `SVDQUANT_RECIPE` with the W4A4 / W4A16 treatments mapped to the packed native kinds. */
export const SVDQUANT_PACKED_RECIPE: Recipe = {
  ...SVDQUANT_RECIPE,
  name: "svdquant-w4a4-int4-packed",
  treatments: {
    ...SVDQUANT_RECIPE.treatments,
    w4a16: { kind: W4A16_PACKED, weight: W4_INT4, act: null },
    w4a4: { kind: W4A4_PACKED, weight: W4_INT4, act: W4_INT4, params: { rank: 32 } }, // SVDQuant §5.1: rank 32
  },
};
