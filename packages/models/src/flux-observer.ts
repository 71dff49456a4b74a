import type { FluxConfig } from "./config.js";

/** One linear input a forward reports to its observer: layer name, tokens m, channels k. */
export interface LinearInputCall {
  readonly name: string;
  readonly m: number;
  readonly k: number;
}

/**
 * The linear inputs `FluxTransformer.forward` reports to a `LinearObserver`, in call order, for a batch of B items
 * with St text and Si image tokens (a device engine that records statistics replays the recorder's reservoir
 * decisions in this order; a test checks it against the CPU forward). q/k/v (and proj_mlp in single blocks) read one
 * input and are reported one after another.
 */
export function fluxLinearInputs(c: FluxConfig, B: number, St: number, Si: number): LinearInputCall[] {
  const d = c.numAttentionHeads * c.attentionHeadDim;
  const out: LinearInputCall[] = [];
  const add = (name: string, m: number, k: number) => out.push({ name, m, k });
  add("x_embedder", B * Si, c.inChannels);
  const embed = (n: string, k: number) => {
    add(`time_text_embed.${n}.linear_1`, B, k);
    add(`time_text_embed.${n}.linear_2`, B, d);
  };
  embed("timestep_embedder", 256); // sinusoidal timestep projection width (diffusers Timesteps(256))
  if (c.guidanceEmbeds) embed("guidance_embedder", 256);
  embed("text_embedder", c.pooledProjectionDim);
  add("context_embedder", B * St, c.jointAttentionDim);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `transformer_blocks.${i}.`;
    add(`${p}norm1.linear`, B, d);
    add(`${p}norm1_context.linear`, B, d);
    for (const n of ["to_q", "to_k", "to_v"]) add(`${p}attn.${n}`, B * Si, d);
    for (const n of ["add_q_proj", "add_k_proj", "add_v_proj"]) add(`${p}attn.${n}`, B * St, d);
    add(`${p}attn.to_out.0`, B * Si, d);
    add(`${p}attn.to_add_out`, B * St, d);
    add(`${p}ff.net.0.proj`, B * Si, d);
    add(`${p}ff.net.2`, B * Si, 4 * d);
    add(`${p}ff_context.net.0.proj`, B * St, d);
    add(`${p}ff_context.net.2`, B * St, 4 * d);
  }
  const S = St + Si;
  for (let i = 0; i < c.numSingleLayers; i++) {
    const p = `single_transformer_blocks.${i}.`;
    add(`${p}norm.linear`, B, d);
    for (const n of ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"]) add(`${p}${n}`, B * S, d);
    add(`${p}proj_out`, B * S, 5 * d);
  }
  add("norm_out.linear", B, d);
  add("proj_out", B * Si, d);
  return out;
}
