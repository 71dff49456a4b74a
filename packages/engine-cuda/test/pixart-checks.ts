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
import { PixArtEngine, type PixArtStepOptions } from "../src/index.js";
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

function stepLabel(o: PixArtStepOptions): string {
  const parts = [
    o.fused === false ? "unfused" : "",
    o.nextQuant ? "next-quant" : "",
    o.ltGelu === false ? "GELU pass" : "",
    o.fusedParts
      ? `parts ${
          Object.entries(o.fusedParts)
            .filter(([, v]) => v !== false)
            .map(([k]) => k)
            .join("+") || "none"
        }`
      : "",
  ].filter(Boolean);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

/**
 * The fused step (pixart_ops.cu) vs the separate passes it replaces, same engine, same inputs: the same arithmetic
 * except LayerNorm's f32 sum order and, with cuBLASLt's GELU epilogue (default), one bf16 rounding fewer before
 * the GELU; so the outputs agree to a few bf16 roundings (16-bit mode) or a few flipped 4-bit codes (W4A4: a
 * flipped bf16 bit of an input can move a code by one). `step` adds options to the fused run.
 */
export async function checkPixArtFusedVsUnfused(
  kind: "bf16" | "w4a4",
  B: number,
  L: number,
  H: number,
  W: number,
  kept: number[],
  seed = 41,
  step: PixArtStepOptions = {},
): Promise<CheckResult> {
  const c = tinyPixArtConfig(kind);
  const { engSrc } = await buildPixArt(c, seed, kind === "w4a4");
  const e = await PixArtEngine.load(c, memorySource(engSrc));
  try {
    const inp = pixartInputs(c, B, L, H, W, kept, seed + 1);
    e.setStepOptions({ fused: false, nextQuant: false, ltGelu: false });
    const ref = e.step(inp);
    e.setStepOptions({
      fused: true,
      nextQuant: false,
      ltGelu: true,
      fusedParts: { rows: true, split: true, modulation: true },
      ...step,
    });
    const got = e.step(inp);
    return result(
      `pixart-${kind === "bf16" ? "tiny bf16" : "small W4A4"} fused${stepLabel(step)} vs unfused step B=${B} text=${L} kept=[${kept}] ${H}x${W}`,
      relErr(got, ref),
      kind === "bf16" ? 5e-3 : 1.5e-2,
    );
  } finally {
    e.free();
  }
}

/**
 * Batch 2 made of one item twice (same latents, text, mask and timestep) vs that item alone on the same engine: both
 * halves of the batch-2 output must equal the batch-1 output (every op is per item; only f32 sum orders may differ).
 */
export async function checkPixArtBatchOfTwins(
  kind: "bf16" | "w4a4",
  kept: number,
  seed = 51,
  step: PixArtStepOptions = {},
): Promise<CheckResult> {
  const c = tinyPixArtConfig(kind);
  const { engSrc } = await buildPixArt(c, seed, kind === "w4a4");
  const e = await PixArtEngine.load(c, memorySource(engSrc));
  try {
    e.setStepOptions(step);
    const one = pixartInputs(c, 1, 13, 14, 10, [kept], seed + 1);
    const twice = (a: ArrayLike<number>) => {
      const r = new Float32Array(2 * a.length);
      for (let i = 0; i < a.length; i++) r[i] = r[a.length + i] = a[i]!;
      return r;
    };
    const two: PixArtInputs = {
      ...one,
      batch: 2,
      hiddenStates: twice(one.hiddenStates),
      encoderHiddenStates: twice(one.encoderHiddenStates),
      encoderAttentionMask: twice(one.encoderAttentionMask!),
      timestep: Array.from(twice(one.timestep)),
    };
    const ref = e.step(one);
    const got = e.step(two);
    const n = ref.length;
    const e0 = relErr(got.subarray(0, n), ref).relL2;
    const e1 = relErr(got.subarray(n), ref).relL2;
    return result(
      `pixart-${kind} twins: batch 2 of one item vs the item alone, kept ${kept} of 13${stepLabel(step)} (item 0 ${e0.toExponential(1)}, item 1 ${e1.toExponential(1)})`,
      { relL2: Math.max(e0, e1), relMax: Math.max(e0, e1), finite: got.every(Number.isFinite) },
      1e-3,
    );
  } finally {
    e.free();
  }
}

/** The engine's 16-bit PixArt step vs the CPU float32 forward on the same bf16 weights (text mask, CFG batch). */
export async function checkPixArtTinyBf16(
  B: number,
  L: number,
  H: number,
  W: number,
  kept: number[],
  seed = 21,
  step: PixArtStepOptions = {},
): Promise<CheckResult> {
  const c = tinyPixArtConfig("bf16");
  const { cpu, engSrc } = await buildPixArt(c, seed, false);
  const e = await PixArtEngine.load(c, memorySource(engSrc));
  try {
    e.setStepOptions(step);
    const inp = pixartInputs(c, B, L, H, W, kept, seed + 1);
    const ref = await cpu.forward(inp);
    const got = e.step(inp);
    const S = (H / c.patchSize) * (W / c.patchSize);
    const n = ref.length / B;
    const per = Array.from({ length: B }, (_, b) =>
      relErr(got.subarray(b * n, (b + 1) * n), ref.subarray(b * n, (b + 1) * n)).relL2.toExponential(1),
    );
    return result(
      `pixart-tiny bf16 mode${stepLabel(step)} vs CPU B=${B} text=${L} kept=[${kept}] image tokens=${S} (Dh 72; per item ${per.join(", ")})`,
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
export async function checkPixArtW4A4Small(
  B: number,
  L: number,
  H: number,
  W: number,
  kept: number[],
  seed = 31,
  step: PixArtStepOptions = {},
) {
  const c = tinyPixArtConfig("w4a4");
  const inp = pixartInputs(c, B, L, H, W, kept, seed + 1);
  const { cpu: cpuF32 } = await buildPixArt(c, seed, true, false);
  const f32 = await cpuF32.forward(inp);
  const { cpu, engSrc } = await buildPixArt(c, seed, true);
  const ref = await cpu.forward(inp);
  const floor = relErr(f32, ref).relL2;
  const e = await PixArtEngine.load(c, memorySource(engSrc));
  try {
    e.setStepOptions(step);
    const got = e.step(inp);
    return result(
      `pixart-small W4A4 mode${stepLabel(step)} vs CPU reference layers B=${B} text=${L} kept=[${kept}] ${H}x${W} (noise floor ${floor.toExponential(2)})`,
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
