import { join } from "node:path";
import { SafetensorsFile } from "@svdquant/tensor";

export const FIXTURES = join(import.meta.dirname, "../../../fixtures");

export async function readIo(model: string): Promise<Record<string, { shape: readonly number[]; data: Float32Array }>> {
  const f = await SafetensorsFile.open(join(FIXTURES, "models", model, "io.safetensors"));
  const out: Record<string, { shape: readonly number[]; data: Float32Array }> = {};
  try {
    for (const n of f.names()) {
      const t = await f.read(n);
      out[n] = { shape: t.shape, data: t.toFloat32() };
    }
  } finally {
    await f.close();
  }
  return out;
}

/** max |a - b| / max |b| */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

/** Seeded PRNG (mulberry32) with a normal sampler. */
export function rng(seed: number): { uniform(): number; normal(): number } {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    uniform,
    normal: () => {
      const u = Math.max(uniform(), 1e-12);
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform());
    },
  };
}

export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = r.normal() * scale;
  return out;
}

import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { Tensor, writeSafetensors } from "@svdquant/tensor";
import { type FluxInputs, type ModelConfig, modelParams, type PixArtInputs, parseModelConfig } from "../src/index.js";

/**
 * Write a diffusers-style folder (config.json + diffusion_pytorch_model.safetensors) with seeded random
 * weights for `rawConfig`; returns the folder and the weights as float64 (values of the stored f32).
 */
export async function makeRandomModel(
  rawConfig: Record<string, unknown>,
  seed: number,
  dtype: "F32" | "BF16" = "F32",
): Promise<{ dir: string; config: ModelConfig; weights: Map<string, Float64Array> }> {
  const config = parseModelConfig(rawConfig);
  const dir = await mkdtemp(join(tmpdir(), "svdq-models-"));
  const r = rng(seed);
  const tensors = new Map<string, Tensor>();
  const weights = new Map<string, Float64Array>();
  for (const p of modelParams(config)) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const vals = new Float32Array(n);
    const isNorm = /norm_(added_)?[qk]\.weight$/.test(p.name);
    const fanIn = p.shape.length >= 2 ? p.shape.slice(1).reduce((a, b) => a * b, 1) : p.shape[p.shape.length - 1]!;
    for (let i = 0; i < n; i++) vals[i] = isNorm ? 1 + 0.1 * r.normal() : r.normal() / Math.sqrt(fanIn);
    const t = Tensor.fromFloats(dtype, p.shape, vals);
    tensors.set(p.name, t);
    weights.set(p.name, t.toFloat64());
  }
  await writeSafetensors(join(dir, "diffusion_pytorch_model.safetensors"), tensors);
  await writeFile(join(dir, "config.json"), JSON.stringify(rawConfig));
  return { dir, config, weights };
}

/** Split a flat [rows * cols] array into rows of Float64Array. */
export function rows64(x: ArrayLike<number>, rows: number, cols: number, offset = 0): Float64Array[] {
  const out: Float64Array[] = [];
  for (let i = 0; i < rows; i++) out.push(Float64Array.from({ length: cols }, (_, j) => x[offset + i * cols + j]!));
  return out;
}

type FixtureIo = Awaited<ReturnType<typeof readIo>>;

/** Forward inputs of the flux-tiny-a fixture (16 image tokens, 8 text tokens) from its io.safetensors. */
export function fluxTinyInputs(io: FixtureIo): FluxInputs {
  return {
    batch: 1,
    imgTokens: 16,
    txtTokens: 8,
    hiddenStates: io.hidden_states!.data,
    encoderHiddenStates: io.encoder_hidden_states!.data,
    pooledProjections: io.pooled_projections!.data,
    timestep: io.timestep!.data,
    imgIds: io.img_ids!.data,
    txtIds: io.txt_ids!.data,
  };
}

/** Forward inputs of the pixart-tiny-a fixture (8 x 8 latent, 6 text tokens, padded mask). */
export function pixartTinyInputs(io: FixtureIo): PixArtInputs {
  return {
    batch: 1,
    height: 8,
    width: 8,
    textTokens: 6,
    hiddenStates: io.hidden_states!.data,
    encoderHiddenStates: io.encoder_hidden_states!.data,
    encoderAttentionMask: io.encoder_attention_mask!.data,
    timestep: io.timestep!.data,
  };
}
