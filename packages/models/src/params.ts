import type { FluxConfig, ModelConfig, PixArtConfig } from "./config.js";

/** A parameter of the reference module tree: its state-dict name and shape. */
export interface ParamSpec {
  readonly name: string;
  readonly shape: readonly number[];
}

function linear(out: ParamSpec[], name: string, inF: number, outF: number, bias = true): void {
  out.push({ name: `${name}.weight`, shape: [outF, inF] });
  if (bias) out.push({ name: `${name}.bias`, shape: [outF] });
}

/** Parameters of one FLUX double-stream block, names relative to the block (`norm1.linear.weight`, …). */
export function fluxDoubleBlockParams(c: FluxConfig): ParamSpec[] {
  const d = c.numAttentionHeads * c.attentionHeadDim;
  const hd = c.attentionHeadDim;
  const p: ParamSpec[] = [];
  linear(p, "norm1.linear", d, 6 * d);
  linear(p, "norm1_context.linear", d, 6 * d);
  p.push({ name: "attn.norm_q.weight", shape: [hd] }, { name: "attn.norm_k.weight", shape: [hd] });
  linear(p, "attn.to_q", d, d);
  linear(p, "attn.to_k", d, d);
  linear(p, "attn.to_v", d, d);
  linear(p, "attn.to_out.0", d, d);
  p.push({ name: "attn.norm_added_q.weight", shape: [hd] }, { name: "attn.norm_added_k.weight", shape: [hd] });
  linear(p, "attn.add_q_proj", d, d);
  linear(p, "attn.add_k_proj", d, d);
  linear(p, "attn.add_v_proj", d, d);
  linear(p, "attn.to_add_out", d, d);
  linear(p, "ff.net.0.proj", d, 4 * d); // FeedForward mult 4
  linear(p, "ff.net.2", 4 * d, d);
  linear(p, "ff_context.net.0.proj", d, 4 * d);
  linear(p, "ff_context.net.2", 4 * d, d);
  return p;
}

/** Parameters of one FLUX single-stream block, names relative to the block. */
export function fluxSingleBlockParams(c: FluxConfig): ParamSpec[] {
  const d = c.numAttentionHeads * c.attentionHeadDim;
  const hd = c.attentionHeadDim;
  const mlp = 4 * d; // mlp_ratio 4.0
  const p: ParamSpec[] = [];
  linear(p, "norm.linear", d, 3 * d);
  linear(p, "proj_mlp", d, mlp);
  linear(p, "proj_out", d + mlp, d);
  p.push({ name: "attn.norm_q.weight", shape: [hd] }, { name: "attn.norm_k.weight", shape: [hd] });
  linear(p, "attn.to_q", d, d);
  linear(p, "attn.to_k", d, d);
  linear(p, "attn.to_v", d, d);
  return p;
}

/** Parameters of one PixArt BasicTransformerBlock (ada_norm_single), names relative to the block. */
export function pixartBlockParams(c: PixArtConfig): ParamSpec[] {
  const d = c.numAttentionHeads * c.attentionHeadDim;
  const p: ParamSpec[] = [{ name: "scale_shift_table", shape: [6, d] }];
  linear(p, "attn1.to_q", d, d, c.attentionBias);
  linear(p, "attn1.to_k", d, d, c.attentionBias);
  linear(p, "attn1.to_v", d, d, c.attentionBias);
  linear(p, "attn1.to_out.0", d, d);
  linear(p, "attn2.to_q", d, d, c.attentionBias);
  linear(p, "attn2.to_k", c.crossAttentionDim, d, c.attentionBias);
  linear(p, "attn2.to_v", c.crossAttentionDim, d, c.attentionBias);
  linear(p, "attn2.to_out.0", d, d);
  linear(p, "ff.net.0.proj", d, 4 * d);
  linear(p, "ff.net.2", 4 * d, d);
  return p;
}

function prefixed(prefix: string, ps: ParamSpec[]): ParamSpec[] {
  return ps.map((p) => ({ name: `${prefix}${p.name}`, shape: p.shape }));
}

/** FLUX parameters in the reference module-registration order. */
export function fluxParams(c: FluxConfig): ParamSpec[] {
  const d = c.numAttentionHeads * c.attentionHeadDim;
  const p: ParamSpec[] = [];
  linear(p, "time_text_embed.timestep_embedder.linear_1", 256, d); // Timesteps(num_channels=256)
  linear(p, "time_text_embed.timestep_embedder.linear_2", d, d);
  if (c.guidanceEmbeds) {
    linear(p, "time_text_embed.guidance_embedder.linear_1", 256, d);
    linear(p, "time_text_embed.guidance_embedder.linear_2", d, d);
  }
  linear(p, "time_text_embed.text_embedder.linear_1", c.pooledProjectionDim, d);
  linear(p, "time_text_embed.text_embedder.linear_2", d, d);
  linear(p, "context_embedder", c.jointAttentionDim, d);
  linear(p, "x_embedder", c.inChannels, d);
  for (let i = 0; i < c.numLayers; i++) p.push(...prefixed(`transformer_blocks.${i}.`, fluxDoubleBlockParams(c)));
  for (let i = 0; i < c.numSingleLayers; i++)
    p.push(...prefixed(`single_transformer_blocks.${i}.`, fluxSingleBlockParams(c)));
  linear(p, "norm_out.linear", d, 2 * d);
  linear(p, "proj_out", d, c.patchSize * c.patchSize * c.outChannels);
  return p;
}

/** PixArt parameters in the reference module-registration order. */
export function pixartParams(c: PixArtConfig): ParamSpec[] {
  const d = c.numAttentionHeads * c.attentionHeadDim;
  const p: ParamSpec[] = [{ name: "scale_shift_table", shape: [2, d] }];
  p.push({ name: "pos_embed.proj.weight", shape: [d, c.inChannels, c.patchSize, c.patchSize] });
  p.push({ name: "pos_embed.proj.bias", shape: [d] });
  for (let i = 0; i < c.numLayers; i++) p.push(...prefixed(`transformer_blocks.${i}.`, pixartBlockParams(c)));
  linear(p, "proj_out", d, c.patchSize * c.patchSize * c.outChannels);
  linear(p, "adaln_single.emb.timestep_embedder.linear_1", 256, d);
  linear(p, "adaln_single.emb.timestep_embedder.linear_2", d, d);
  linear(p, "adaln_single.linear", d, 6 * d);
  if (c.captionChannels !== undefined) {
    linear(p, "caption_projection.linear_1", c.captionChannels, d);
    linear(p, "caption_projection.linear_2", d, d);
  }
  return p;
}

export function modelParams(c: ModelConfig): ParamSpec[] {
  return c.kind === "flux" ? fluxParams(c) : pixartParams(c);
}
