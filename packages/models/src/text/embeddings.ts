import { SafetensorsFile, type Tensor } from "@svdquant/tensor";
import { ModelError } from "../errors.js";

/** A float32 tensor with its shape. */
export interface ShapedF32 {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/**
 * Precomputed prompt embeddings, named as the diffusers pipelines' arguments.
 *
 * | tensor                          | shape      | who                                      |
 * | ------------------------------- | ---------- | ---------------------------------------- |
 * | prompt_embeds                   | [B, L, D]  | both (FLUX: T5 states, PixArt: T5 states)  |
 * | pooled_prompt_embeds            | [B, P]     | FLUX (CLIP pooled)                        |
 * | prompt_attention_mask           | [B, L]     | PixArt (1 = token, 0 = padding)           |
 * | negative_prompt_embeds          | [B, L, D]  | CFG (PixArt)                              |
 * | negative_pooled_prompt_embeds   | [B, P]     | FLUX true CFG                             |
 * | negative_prompt_attention_mask  | [B, L]     | PixArt CFG                                |
 */
export interface PromptEmbeddings {
  readonly promptEmbeds: ShapedF32;
  readonly pooledPromptEmbeds?: ShapedF32;
  readonly promptAttentionMask?: ShapedF32;
  readonly negativePromptEmbeds?: ShapedF32;
  readonly negativePooledPromptEmbeds?: ShapedF32;
  readonly negativePromptAttentionMask?: ShapedF32;
}

const NAMES = {
  promptEmbeds: "prompt_embeds",
  pooledPromptEmbeds: "pooled_prompt_embeds",
  promptAttentionMask: "prompt_attention_mask",
  negativePromptEmbeds: "negative_prompt_embeds",
  negativePooledPromptEmbeds: "negative_pooled_prompt_embeds",
  negativePromptAttentionMask: "negative_prompt_attention_mask",
} as const;

function toF32(t: Tensor, where: string): ShapedF32 {
  const data = t.dtype === "F32" ? (t.data as Float32Array) : t.toFloat32();
  for (let i = 0; i < data.length; i++)
    if (!Number.isFinite(data[i]!)) throw new ModelError("E_INPUT", `element ${i} is ${data[i]} (not finite)`, where);
  return { shape: t.shape, data };
}

/** Read prompt embeddings from a safetensors file (any float or integer dtype; masks as 0/1); shapes are cross-checked. */
export async function loadPromptEmbeddings(path: string): Promise<PromptEmbeddings> {
  const f = await SafetensorsFile.open(path);
  try {
    const known = new Set<string>(Object.values(NAMES));
    const extra = f.names().filter((n) => !known.has(n));
    if (extra.length > 0)
      throw new ModelError(
        "E_INPUT",
        `unknown tensors ${extra.slice(0, 3).join(", ")} (expected ${[...known].join(", ")})`,
        path,
      );
    const out: Record<string, ShapedF32> = {};
    for (const [key, name] of Object.entries(NAMES))
      if (f.has(name)) out[key] = toF32(await f.read(name), `${path}: ${name}`);
    if (out.promptEmbeds === undefined) throw new ModelError("E_INPUT", "missing tensor prompt_embeds", path);
    const e = out.promptEmbeds.shape;
    if (e.length !== 3) throw new ModelError("E_SHAPE", `prompt_embeds must be [B, L, D], got [${e.join(", ")}]`, path);
    const expect = (key: keyof typeof NAMES, shape: readonly number[]) => {
      const t = out[key];
      if (
        t !== undefined &&
        (t.shape.length !== shape.length || t.shape.some((d, i) => shape[i] !== -1 && d !== shape[i]))
      )
        throw new ModelError(
          "E_SHAPE",
          `${NAMES[key]} is [${t.shape.join(", ")}], expected [${shape.map((d) => (d === -1 ? "P" : d)).join(", ")}]`,
          path,
        );
    };
    expect("pooledPromptEmbeds", [e[0]!, -1]);
    expect("promptAttentionMask", [e[0]!, e[1]!]);
    expect("negativePromptEmbeds", e);
    expect("negativePooledPromptEmbeds", out.pooledPromptEmbeds?.shape ?? [e[0]!, -1]);
    expect("negativePromptAttentionMask", [e[0]!, e[1]!]);
    for (const key of ["promptAttentionMask", "negativePromptAttentionMask"] as const) {
      const m = out[key];
      if (m !== undefined)
        for (let i = 0; i < m.data.length; i++)
          if (m.data[i] !== 0 && m.data[i] !== 1)
            throw new ModelError("E_INPUT", `${NAMES[key]} value ${m.data[i]} at ${i} is not 0 or 1`, path);
    }
    return out as unknown as PromptEmbeddings;
  } finally {
    await f.close();
  }
}
