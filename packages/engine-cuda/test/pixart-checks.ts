// PixArt checks of the engine on a GPU (gpu.test.ts and bench/device-run.ts): the engine's PixArt step vs the CPU
// forward of @svdquant/models (PixArtTransformer, matched to diffusers) on the same parameters; W4A4 / W4A16 layers
// through the reference layers of reference-layers.ts that follow the kernels' documented arithmetic.
import {
  LinearFactory,
  linearNamesOf,
  type PixArtConfig,
  type PixArtInputs,
  PixArtTransformer,
  parsePixArtConfig,
  pixartParams,
} from "@svdquant/models";
import type { Tensor } from "@svdquant/tensor";
import { PixArtEngine } from "../src/index.js";
import { bf16Tensor, type CheckResult, memorySource, relErr, result, rng, uniformBf16 } from "./helpers.js";
import { checkEngineLinears, ReferenceModelParts, refLayers } from "./reference-layers.js";

/**
 * The config.json keys every PixArt-Σ model here shares with PixArt-alpha/PixArt-Sigma-XL-2-1024-MS (latent 4 in,
 * 8 out with the learned σ, patch 2, ada_norm_single blocks with GELU-tanh FFNs); sizes are set per model.
 */
export const PIXART_SIGMA_BLOCK = {
  _class_name: "PixArtTransformer2DModel",
  in_channels: 4,
  out_channels: 8,
  patch_size: 2,
  attention_bias: true,
  activation_fn: "gelu-approximate",
  num_embeds_ada_norm: 1000,
  norm_type: "ada_norm_single",
  norm_elementwise_affine: false,
  norm_eps: 1e-6,
  use_additional_conditions: false,
} as const;

/**
 * Tiny PixArt configs: "bf16" has head dim 72 (PixArt-Σ's) and a caption projection; "w4a4" has D = 128 (W4A4 needs
 * N % 128 == 0, K % 64 == 0).
 */
export function tinyPixArtConfig(kind: "bf16" | "w4a4"): PixArtConfig {
  const [heads, dh, cap] = kind === "bf16" ? [2, 72, 48] : [2, 64, 64];
  return parsePixArtConfig({
    ...PIXART_SIGMA_BLOCK,
    num_attention_heads: heads,
    attention_head_dim: dh,
    num_layers: 2,
    cross_attention_dim: heads * dh,
    caption_channels: cap,
    sample_size: 16,
  });
}

/** Inputs of a tiny PixArt call: latents and text ±1, timesteps in [0, 1000), prefix masks keeping `kept[b]` tokens. */
export function pixartInputs(
  c: PixArtConfig,
  B: number,
  L: number,
  H: number,
  W: number,
  kept: number[],
  seed: number,
): PixArtInputs {
  const r = rng(seed);
  const u = (n: number) => Float32Array.from({ length: n }, () => 2 * r() - 1);
  const mask = new Float32Array(B * L);
  for (let b = 0; b < B; b++) for (let j = 0; j < kept[b]!; j++) mask[b * L + j] = 1;
  return {
    batch: B,
    height: H,
    width: W,
    textTokens: L,
    hiddenStates: u(B * c.inChannels * H * W),
    encoderHiddenStates: u(B * L * (c.captionChannels ?? c.crossAttentionDim)),
    encoderAttentionMask: mask,
    timestep: Array.from({ length: B }, (_, i) => 137 + 500 * i),
  };
}

const QUANT =
  /^transformer_blocks\.\d+\.(attn1\.to_[qkv]|attn1\.to_out\.0|attn2\.to_q|attn2\.to_out\.0|ff\.net\.0\.proj|ff\.net\.2)$/;

/**
 * A random PixArt model: dense bf16 parameters, and with `quantized` the SVDQuant recipe's layers replaced by
 * random packed W4A4 layers (rank 32, attn1 q/k/v sharing one smooth) and adaln_single.linear by W4A16 from
 * quantizeW4A16. Returns the CPU model (reference layers for the packed ones; `roundInput` false feeds them f32
 * activations) and the engine's tensor source.
 */
export async function buildPixArt(c: PixArtConfig, seed: number, quantized: boolean, roundInput = true) {
  const r = rng(seed);
  const dense = new Map<string, Tensor>();
  for (const p of pixartParams(c)) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const fanIn = p.shape.slice(1).reduce((a, b) => a * b, 1);
    const vals = p.name.endsWith("scale_shift_table")
      ? uniformBf16(r, n, -0.3, 0.3)
      : p.name.endsWith(".bias")
        ? uniformBf16(r, n, -0.05, 0.05)
        : uniformBf16(r, n, -1 / Math.sqrt(fanIn), 1 / Math.sqrt(fanIn));
    dense.set(p.name, bf16Tensor([...p.shape], vals));
  }
  const parts = new ReferenceModelParts(r, roundInput);
  if (quantized)
    for (const name of linearNamesOf(pixartParams(c))) {
      const isAda = name === "adaln_single.linear";
      if (!isAda && !QUANT.test(name)) continue;
      const weight = dense.get(`${name}.weight`)!;
      const [N, K] = weight.shape as [number, number];
      const bias = dense.get(`${name}.bias`)!.toFloat32();
      if (isAda) parts.w4a16(name, weight, bias);
      else parts.w4a4(name, N, K, bias, name.replace(/attn1\.to_[qkv]$/, "attn1.qkv"), /\.ff\.net\.2$/.test(name));
    }
  const factory = new LinearFactory(parts.recipe());
  const cpu = await PixArtTransformer.fromSource(c, memorySource(dense), { factory });
  return { cpu, engSrc: parts.engineSource(dense), refs: refLayers };
}

/** The engine's 16-bit PixArt step vs the CPU float32 forward on the same bf16 weights (text mask, CFG batch). */
export async function checkPixArtTinyBf16(
  B: number,
  L: number,
  H: number,
  W: number,
  kept: number[],
  seed = 21,
): Promise<CheckResult> {
  const c = tinyPixArtConfig("bf16");
  const { cpu, engSrc } = await buildPixArt(c, seed, false);
  const e = await PixArtEngine.load(c, memorySource(engSrc));
  try {
    const inp = pixartInputs(c, B, L, H, W, kept, seed + 1);
    const ref = await cpu.forward(inp);
    const got = e.step(inp);
    const S = (H / c.patchSize) * (W / c.patchSize);
    const n = ref.length / B;
    const per = Array.from({ length: B }, (_, b) =>
      relErr(got.subarray(b * n, (b + 1) * n), ref.subarray(b * n, (b + 1) * n)).relL2.toExponential(1),
    );
    return result(
      `pixart-tiny bf16 mode vs CPU B=${B} text=${L} kept=[${kept}] image tokens=${S} (Dh 72; per item ${per.join(", ")})`,
      relErr(got, ref),
      2e-2,
    );
  } finally {
    e.free();
  }
}

/**
 * The engine's W4A4 PixArt step (recipe layers packed) vs the CPU forward with reference layers; tolerance from the
 * quantization noise floor (the reference on bf16-rounded vs float32 activations), as checkW4A4Small.
 */
export async function checkPixArtW4A4Small(B: number, L: number, H: number, W: number, kept: number[], seed = 31) {
  const c = tinyPixArtConfig("w4a4");
  const inp = pixartInputs(c, B, L, H, W, kept, seed + 1);
  const { cpu: cpuF32 } = await buildPixArt(c, seed, true, false);
  const f32 = await cpuF32.forward(inp);
  const { cpu, engSrc } = await buildPixArt(c, seed, true);
  const ref = await cpu.forward(inp);
  const floor = relErr(f32, ref).relL2;
  const e = await PixArtEngine.load(c, memorySource(engSrc));
  try {
    const got = e.step(inp);
    return result(
      `pixart-small W4A4 mode vs CPU reference layers B=${B} text=${L} kept=[${kept}] ${H}x${W} (noise floor ${floor.toExponential(2)})`,
      relErr(got, ref),
      Math.max(3e-2, 1.5 * floor),
    );
  } finally {
    e.free();
  }
}

/**
 * Single engine linears of the small W4A4 PixArt on one bf16 input each vs the reference layers (same input bits):
 * the fused attn1 q/k/v, the unsigned ff.net.2, attn2.to_q, the W4A16 adaln_single.linear.
 */
export async function checkPixArtW4A4Layers(seed = 31): Promise<CheckResult[]> {
  const c = tinyPixArtConfig("w4a4");
  const d = c.numAttentionHeads * c.attentionHeadDim;
  const { engSrc } = await buildPixArt(c, seed, true);
  const e = await PixArtEngine.load(c, memorySource(engSrc));
  try {
    e.prepare(2, 7, 14, 10);
    const p = "transformer_blocks.1.";
    return checkEngineLinears(
      e.raw,
      [
        {
          name: `${p}attn1.qkv`,
          sources: ["to_q", "to_k", "to_v"].map((n) => `${p}attn1.${n}`),
          N: 3 * d,
          K: d,
          M: 69,
          lo: -2,
        },
        { name: `${p}ff.net.2`, sources: [`${p}ff.net.2`], N: d, K: 4 * d, M: 69, lo: -0.17 },
        { name: `${p}attn2.to_q`, sources: [`${p}attn2.to_q`], N: d, K: d, M: 69, lo: -2 },
        { name: "adaln_single.linear", sources: ["adaln_single.linear"], N: 6 * d, K: d, M: 2, lo: -2 },
      ],
      rng(seed + 7),
    );
  } finally {
    e.free();
  }
}
