import { describe, expect, it } from "vitest";
import {
  ClipTextEncoder,
  calculateShift,
  clipTextParams,
  DpmSolverMultistepScheduler,
  erf,
  FLUX_DEV_SCHEDULER,
  FlowMatchEulerScheduler,
  fluxSigmas,
  parseClipTextConfig,
  parseT5Config,
  parseVaeConfig,
  T5Encoder,
  t5Params,
  VaeDecoder,
  vaeDecoderParams,
} from "../src/index.js";
import { randn, relErr, rng } from "./helpers.js";
import { clipReference64, randomFolder, t5Reference64, vaeReference64 } from "./reference-pipeline64.js";

// Random models against the float64 loop references of test/reference-pipeline64.ts (the fixture tests compare
// with transformers/diffusers themselves).

function ids(n: number, vocab: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r.uniform() * vocab));
}

describe("pipeline parts vs float64 references on random models", () => {
  it("T5Encoder (150 tokens: log-spaced buckets; second row padded with a mask) within 1e-5", async () => {
    const raw = {
      vocab_size: 50,
      d_model: 16,
      d_kv: 4,
      num_heads: 4,
      d_ff: 24,
      num_layers: 2,
      relative_attention_num_buckets: 32,
      relative_attention_max_distance: 128,
      feed_forward_proj: "gated-gelu",
    };
    const cfg = parseT5Config(raw);
    const specs = [{ name: "shared.weight", shape: [50, 16] }, ...t5Params(cfg)];
    const { dir, w } = await randomFolder(specs, raw, "model.safetensors", 11);
    const enc = await T5Encoder.fromFolder(dir);
    const l = 150;
    const tok = ids(2 * l, 50, 12);
    const mask = Array.from({ length: 2 * l }, (_, i) => (i >= l + 90 ? 0 : 1));
    const ref = { vocab: 50, d: 16, dkv: 4, dff: 24, layers: 2, heads: 4, buckets: 32, maxDistance: 128 };
    expect(relErr(enc.forward({ batch: 2, length: l, ids: tok }), t5Reference64(w, ref, tok, 2, l))).toBeLessThan(1e-5);
    expect(
      relErr(enc.forward({ batch: 2, length: l, ids: tok, mask }), t5Reference64(w, ref, tok, 2, l, mask)),
    ).toBeLessThan(1e-5);
  });

  it.each([
    ["quick_gelu", 2, false],
    ["gelu", 61, true],
  ] as const)("ClipTextEncoder (%s, eos_token_id %i, projection %s) within 1e-5", async (act, eos, proj) => {
    const raw = {
      architectures: [proj ? "CLIPTextModelWithProjection" : "CLIPTextModel"],
      vocab_size: 64,
      hidden_size: 16,
      intermediate_size: 40,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      max_position_embeddings: 20,
      hidden_act: act,
      eos_token_id: eos,
      projection_dim: 12,
    };
    const cfg = parseClipTextConfig(raw);
    const { dir, w } = await randomFolder(clipTextParams(cfg), raw, "model.safetensors", 21);
    const enc = await ClipTextEncoder.fromFolder(dir);
    const l = 20;
    const tok = ids(2 * l, 60, 22);
    tok[7] = 61; // an EOS mid-row (first EOS rule), and the largest id (argmax rule)
    tok[l + 12] = 63;
    const out = enc.forward({ batch: 2, length: l, ids: tok });
    const ref = clipReference64(w, { d: 16, ff: 40, layers: 2, heads: 2, act, eos }, tok, 2, l, erf);
    expect(relErr(out.lastHiddenState, ref.hidden)).toBeLessThan(1e-5);
    expect(relErr(out.pooled, ref.pooled)).toBeLessThan(1e-5);
    if (proj) {
      const wp = w.get("text_projection.weight")!;
      const te = new Float64Array(2 * 12);
      for (let b = 0; b < 2; b++)
        for (let j = 0; j < 12; j++)
          for (let k = 0; k < 16; k++) te[b * 12 + j]! += ref.pooled[b * 16 + k]! * wp[j * 16 + k]!;
      expect(relErr(out.textEmbeds!, te)).toBeLessThan(1e-5);
    }
  });

  it("VaeDecoder (two blocks, post_quant_conv, non-square 3x5 latent) within 1e-5", async () => {
    const raw = {
      _class_name: "AutoencoderKL",
      latent_channels: 4,
      block_out_channels: [8, 16],
      up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D"],
      down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D"],
      layers_per_block: 1,
      norm_num_groups: 4,
      scaling_factor: 0.5,
    };
    const cfg = parseVaeConfig(raw);
    const { dir, w } = await randomFolder(vaeDecoderParams(cfg), raw, "diffusion_pytorch_model.safetensors", 31);
    const vae = await VaeDecoder.fromFolder(dir);
    const z = randn(2 * 4 * 3 * 5, 32);
    const img = vae.decode(z, 2, 3, 5);
    expect(img.length).toBe(2 * 3 * 6 * 10);
    for (let b = 0; b < 2; b++) {
      const ref = vaeReference64(
        w,
        { latent: 4, blocks: [8, 16], layersPerBlock: 1, groups: 4, postQuant: true },
        Float64Array.from(z.subarray(b * 60, (b + 1) * 60)),
        3,
        5,
      );
      expect(relErr(img.subarray(b * 180, (b + 1) * 180), ref)).toBeLessThan(1e-5);
    }
  });

  it("FlowMatch: float64 time shift e^μ/(e^μ + 1/s − 1) and Euler steps within 1e-6", () => {
    const mu = calculateShift(1024, FLUX_DEV_SCHEDULER);
    expect(mu).toBeCloseTo(0.5 + (0.65 * (1024 - 256)) / 3840, 14);
    const s = new FlowMatchEulerScheduler(FLUX_DEV_SCHEDULER);
    s.setTimesteps(12, { sigmas: fluxSigmas(12), mu });
    const sig = Array.from({ length: 12 }, (_, i) => {
      const t = 1 - (i * (1 - 1 / 12)) / 11;
      return Math.exp(mu) / (Math.exp(mu) + (1 / t - 1));
    });
    expect(relErr(s.sigmas.subarray(0, 12), sig)).toBeLessThan(1e-6);
    let x = randn(64, 41);
    const x64 = Float64Array.from(x);
    for (let i = 0; i < 12; i++) {
      const v = randn(64, 100 + i);
      x = s.step(v, x);
      const next = i + 1 < 12 ? sig[i + 1]! : 0;
      for (let j = 0; j < 64; j++) x64[j]! += (next - sig[i]!) * v[j]!;
    }
    expect(relErr(x, x64)).toBeLessThan(1e-6);
  });

  it("DPM-Solver++ 2M: float64 ᾱ, σ and the 2M update (λ = −log σ) within 1e-5", () => {
    const n = 1000;
    const ac = new Float64Array(n);
    let p = 1;
    for (let i = 0; i < n; i++) {
      p *= 1 - (1e-4 + ((0.02 - 1e-4) * i) / (n - 1));
      ac[i] = p;
    }
    const s = new DpmSolverMultistepScheduler();
    expect(relErr(s.alphasCumprod, ac)).toBeLessThan(1e-6);
    s.setTimesteps(8);
    const sig = [...Array.from(s.timesteps, (t) => Math.sqrt((1 - ac[t]!) / ac[t]!)), 0];
    expect(relErr(s.sigmas, sig)).toBeLessThan(1e-6);
    const alpha = (g: number) => 1 / Math.sqrt(g * g + 1);
    let x = randn(32, 51);
    const x64 = Float64Array.from(x);
    let prev: Float64Array | undefined;
    for (let i = 0; i < 8; i++) {
      const eps = randn(32, 200 + i);
      x = s.step(eps, x);
      const [g0, g1] = [sig[i]!, sig[i + 1]!];
      const x0 = x64.map((v, j) => (v - g0 * alpha(g0) * eps[j]!) / alpha(g0));
      const at = alpha(g1);
      const ratio = g1 === 0 ? 0 : (g1 * at) / (g0 * alpha(g0));
      if (prev === undefined || i === 7) {
        // first order (first step; last step: final σ = 0 forces Euler)
        // e^{−h} = σ_{t}/σ_{s} for λ = −log σ
        for (let j = 0; j < 32; j++) x64[j] = ratio * x64[j]! - at * (g1 / g0 - 1) * x0[j]!;
      } else {
        const h = g1 === 0 ? Infinity : Math.log(g0 / g1);
        const h0 = Math.log(sig[i - 1]! / g0);
        const em1 = Math.exp(-h) - 1;
        for (let j = 0; j < 32; j++) {
          const d1 = (h / h0) * (x0[j]! - prev[j]!);
          x64[j] = ratio * x64[j]! - at * em1 * x0[j]! - 0.5 * at * em1 * d1;
        }
      }
      prev = x0;
      expect(relErr(x, x64), `step ${i}`).toBeLessThan(1e-5);
    }
  });
});
