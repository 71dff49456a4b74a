import { type FluxConfig, parseFluxConfig } from "@svdquant/models";

/**
 * Full-size FLUX.1 transformer configs (the `transformer/config.json` values of black-forest-labs/FLUX.1-dev and
 * FLUX.1-schnell: 19 double + 38 single blocks, 24 heads × 128, T5 width 4096, CLIP pooled 768; dev has the
 * guidance embedder). For random-weight runs without a checkpoint (FluxEngine.random).
 */
export const FLUX_CONFIGS: Readonly<Record<"flux-dev" | "flux-schnell", FluxConfig>> = {
  "flux-dev": parseFluxConfig({
    attention_head_dim: 128,
    axes_dims_rope: [16, 56, 56],
    guidance_embeds: true,
    in_channels: 64,
    joint_attention_dim: 4096,
    num_attention_heads: 24,
    num_layers: 19,
    num_single_layers: 38,
    patch_size: 1,
    pooled_projection_dim: 768,
  }),
  "flux-schnell": parseFluxConfig({
    attention_head_dim: 128,
    axes_dims_rope: [16, 56, 56],
    guidance_embeds: false,
    in_channels: 64,
    joint_attention_dim: 4096,
    num_attention_heads: 24,
    num_layers: 19,
    num_single_layers: 38,
    patch_size: 1,
    pooled_projection_dim: 768,
  }),
};
