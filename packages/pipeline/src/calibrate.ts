/**
 * Calibration: run the 16-bit model on calibration inputs and record every quantized layer's input through the
 * models' observer (`CalibrationRecorder`: per-channel absmax over every token + a bounded, seeded reservoir).
 *
 * Inputs, one forward each:
 * - prompts (the reference protocol): the 16-bit model's own sampler trajectories from caption prompts, every
 *   step recorded (FLUX: FlowMatch Euler; PixArt-Σ: DPM-Solver++ with CFG, both branches in one batch-2 forward);
 * - synthetic: seeded latents/embeddings at `steps` points of a linear σ schedule (x_σ = (1−σ)·x₀ + σ·ε, the
 *   rectified-flow interpolation FLUX is trained on; PixArt gets the same latents with t = 1000σ);
 * - a safetensors file of recorded model inputs: `sample.<i>.<input>` with the diffusers argument names
 *   (`hidden_states`, `encoder_hidden_states`, `pooled_projections`, `timestep`, `guidance`, `img_ids`,
 *   `txt_ids` for FLUX; `hidden_states`, `encoder_hidden_states`, `encoder_attention_mask`, `timestep` for PixArt).
 */
import { SeededRng } from "@svdquant/lowrank";
import {
  CalibrationRecorder,
  type FluxConfig,
  type FluxInputs,
  FluxTransformer,
  type ModelConfig,
  type PixArtConfig,
  type PixArtInputs,
  PixArtTransformer,
} from "@svdquant/models";
import { readInputFile, SafetensorsFile, Tensor, type TensorSource, writeSafetensors } from "@svdquant/tensor";

/** Largest prompts file read (one prompt a line; 128 captions are a few KB). */
const MAX_PROMPTS_BYTES = 64 * 1024 * 1024;

import type { CalibrationConfig } from "./config.js";
import { PipelineError } from "./errors.js";
import { FLUX_DEFAULTS, FluxPipeline, sampleFlux } from "./generate.js";
import { PIXART_DEFAULTS, PixArtPipeline, samplePixArt } from "./generate-pixart.js";
import { nativeGemm } from "./native-gemm.js";

/** Recorded statistics of one layer input: absmax [K] and kept tokens [rows, K]. */
export interface InputStats {
  readonly absmax: Float32Array;
  readonly tokens: Float32Array;
  readonly rows: number;
  readonly tokensSeen: number;
}

export type ModelInputs = { kind: "flux"; inputs: FluxInputs } | { kind: "pixart"; inputs: PixArtInputs };

const normals = (rng: SeededRng, n: number, scale = 1): Float32Array => {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * scale;
  return out;
};

/** FLUX image position ids (0, row, col) of a side×side token grid, and zero text ids. */
export function fluxIds(side: number, textTokens: number): { imgIds: Float32Array; txtIds: Float32Array } {
  const imgIds = new Float32Array(side * side * 3);
  for (let r = 0; r < side; r++)
    for (let c = 0; c < side; c++) {
      imgIds[(r * side + c) * 3 + 1] = r;
      imgIds[(r * side + c) * 3 + 2] = c;
    }
  return { imgIds, txtIds: new Float32Array(textTokens * 3) };
}

/** The seeded synthetic calibration inputs: `samples` × `steps` forwards. */
export function* syntheticInputs(config: ModelConfig, cal: CalibrationConfig): Generator<ModelInputs> {
  const { samples, steps, imageSide: side, textTokens: T } = cal;
  for (let s = 0; s < samples; s++) {
    const rng = new SeededRng(cal.seed * 100_003 + s);
    if (config.kind === "flux") {
      const S = side * side;
      const x0 = normals(rng, S * config.inChannels);
      const eps = normals(rng, S * config.inChannels);
      const enc = normals(rng, T * config.jointAttentionDim);
      const pooled = normals(rng, config.pooledProjectionDim);
      const ids = fluxIds(side, T);
      for (let t = 0; t < steps; t++) {
        const sigma = 1 - t / steps;
        yield {
          kind: "flux",
          inputs: {
            batch: 1,
            imgTokens: S,
            txtTokens: T,
            hiddenStates: x0.map((v, i) => (1 - sigma) * v + sigma * eps[i]!),
            encoderHiddenStates: enc,
            pooledProjections: pooled,
            timestep: [sigma],
            ...(config.guidanceEmbeds ? { guidance: [3.5] } : {}), // FLUX.1-dev default guidance
            ...ids,
          },
        };
      }
    } else {
      const hw = side * config.patchSize;
      const n = config.inChannels * hw * hw;
      const x0 = normals(rng, n);
      const eps = normals(rng, n);
      const enc = normals(rng, T * (config.captionChannels ?? config.crossAttentionDim));
      for (let t = 0; t < steps; t++) {
        const sigma = 1 - t / steps;
        yield {
          kind: "pixart",
          inputs: {
            batch: 1,
            height: hw,
            width: hw,
            textTokens: T,
            hiddenStates: x0.map((v, i) => (1 - sigma) * v + sigma * eps[i]!),
            encoderHiddenStates: enc,
            timestep: [Math.min(999, Math.round(1000 * sigma))],
          },
        };
      }
    }
  }
}

/** Recorded inputs from a safetensors file (`sample.<i>.<input>`, diffusers argument names). */
export async function* fileInputs(config: ModelConfig, path: string): AsyncGenerator<ModelInputs> {
  const f = await SafetensorsFile.open(path);
  try {
    const ids = new Set<number>();
    for (const n of f.names()) {
      const m = /^sample\.(\d+)\.[a-z_]+$/.exec(n);
      if (m === null)
        throw new PipelineError("E_CALIBRATION", `unexpected tensor ${n} (want sample.<i>.<input>)`, path);
      ids.add(Number(m[1]));
    }
    if (ids.size === 0) throw new PipelineError("E_CALIBRATION", "no sample.<i>.* tensors", path);
    for (const i of [...ids].sort((a, b) => a - b)) {
      const get = async (name: string, rank: number): Promise<Tensor> => {
        const key = `sample.${i}.${name}`;
        if (!f.has(key)) throw new PipelineError("E_CALIBRATION", `missing tensor ${key}`, path);
        const t = await f.read(key);
        if (t.rank !== rank)
          throw new PipelineError(
            "E_CALIBRATION",
            `${key} has shape [${t.shape.join(", ")}], expected ${rank}-D`,
            path,
          );
        return t;
      };
      const opt = async (name: string, rank: number) => (f.has(`sample.${i}.${name}`) ? get(name, rank) : undefined);
      if (config.kind === "flux") {
        const hs = await get("hidden_states", 3);
        const enc = await get("encoder_hidden_states", 3);
        const [b, s] = hs.shape as [number, number, number];
        const guidance = await opt("guidance", 1);
        yield {
          kind: "flux",
          inputs: {
            batch: b,
            imgTokens: s,
            txtTokens: enc.shape[1]!,
            hiddenStates: hs.toFloat32(),
            encoderHiddenStates: enc.toFloat32(),
            pooledProjections: (await get("pooled_projections", 2)).toFloat32(),
            timestep: (await get("timestep", 1)).toFloat32(),
            ...(guidance ? { guidance: guidance.toFloat32() } : {}),
            imgIds: (await get("img_ids", 2)).toFloat32(),
            txtIds: (await get("txt_ids", 2)).toFloat32(),
          },
        };
      } else {
        const hs = await get("hidden_states", 4);
        const enc = await get("encoder_hidden_states", 3);
        const mask = await opt("encoder_attention_mask", 2);
        yield {
          kind: "pixart",
          inputs: {
            batch: hs.shape[0]!,
            height: hs.shape[2]!,
            width: hs.shape[3]!,
            textTokens: enc.shape[1]!,
            hiddenStates: hs.toFloat32(),
            encoderHiddenStates: enc.toFloat32(),
            ...(mask ? { encoderAttentionMask: mask.toFloat32() } : {}),
            timestep: (await get("timestep", 1)).toFloat32(),
          },
        };
      }
    }
  } finally {
    await f.close();
  }
}

export async function* calibrationInputs(config: ModelConfig, cal: CalibrationConfig): AsyncGenerator<ModelInputs> {
  if (cal.source === "synthetic") yield* syntheticInputs(config, cal);
  else if ("file" in cal.source) yield* fileInputs(config, cal.source.file);
  else
    throw new PipelineError(
      "E_CALIBRATION",
      "prompt calibration runs the sampler (recordCalibration), not a list of inputs",
    );
}

/** The prompts of a prompt calibration source: the list, or a text file with one prompt a line. */
export async function calibrationPrompts(
  source: { prompts: string[] | { file: string } },
  samples: number,
): Promise<string[]> {
  let prompts: string[];
  if (Array.isArray(source.prompts)) prompts = source.prompts;
  else {
    const path = source.prompts.file;
    const text = (await readInputFile(path, MAX_PROMPTS_BYTES)).toString("utf8"); // a bounded regular file
    prompts = text
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l !== "");
    if (prompts.length === 0) throw new PipelineError("E_CALIBRATION", "no prompts in the file", path);
  }
  return prompts.slice(0, samples);
}

/**
 * Run the 16-bit model (streaming from `source`, one block of weights resident) on every calibration input,
 * recording the inputs of the layers named in `record`. Returns the statistics by layer name.
 */
export async function recordCalibration(
  config: ModelConfig,
  source: TensorSource,
  cal: CalibrationConfig,
  record: ReadonlySet<string>,
  onForward?: (done: number) => void,
  /** The pipeline folder for prompt calibration when the source names none. */
  pipelineDir?: string,
): Promise<Map<string, InputStats>> {
  await nativeGemm();
  const recorder = new CalibrationRecorder({
    reservoirSize: cal.reservoir,
    seed: cal.seed,
    filter: (n) => record.has(n),
  });
  const model =
    config.kind === "flux"
      ? await FluxTransformer.fromSource(config as FluxConfig, source, { streaming: true })
      : await PixArtTransformer.fromSource(config as PixArtConfig, source, { streaming: true });
  let done = 0;
  if (cal.source !== "synthetic" && "prompts" in cal.source) {
    // the reference protocol: the 16-bit model's own sampler trajectories, every step recorded
    const dir = cal.source.pipeline ?? pipelineDir ?? ".";
    const prompts = await calibrationPrompts(cal.source, cal.samples);
    const onStep = () => onForward?.(++done);
    if (config.kind === "flux") {
      const pipe = await FluxPipeline.load(dir);
      const cond = pipe.encode(prompts, cal.textTokens);
      const px = cal.imageSide * 2 * pipe.vae.scaleFactor; // image tokens per side → pixels (2×2 patches)
      const guidance = cal.source.guidance ?? FLUX_DEFAULTS.guidance;
      for (let row = 0; row < prompts.length; row++)
        await sampleFlux(
          pipe,
          model as FluxTransformer,
          cond,
          { steps: cal.steps, guidance, height: px, width: px, maxSequenceLength: cal.textTokens },
          { row, seed: cal.seed + row, observer: recorder, onStep },
        );
    } else {
      // PixArt-Σ: with CFG each step is one batch-2 forward, so both branches (uncond, text) are recorded
      const pipe = await PixArtPipeline.load(dir);
      const guidance = cal.source.guidance ?? PIXART_DEFAULTS.guidance;
      const negative = guidance > 1 ? PIXART_DEFAULTS.negativePrompt : undefined;
      const cond = pipe.encode(prompts, negative, cal.textTokens);
      const px = cal.imageSide * config.patchSize * pipe.vae.scaleFactor; // image tokens per side → pixels
      const s = {
        steps: cal.steps,
        guidance,
        height: px,
        width: px,
        maxSequenceLength: cal.textTokens,
        resolutionBinning: false, // the configured size, not a bin of it
      };
      for (let row = 0; row < prompts.length; row++)
        await samplePixArt(pipe, model as PixArtTransformer, cond, s, {
          row,
          seed: cal.seed + row,
          observer: recorder,
          onStep,
        });
    }
  } else
    for await (const inp of calibrationInputs(config, cal)) {
      if (inp.kind === "flux") await (model as FluxTransformer).forward(inp.inputs, { observer: recorder });
      else await (model as PixArtTransformer).forward(inp.inputs, { observer: recorder });
      onForward?.(++done);
    }
  const out = new Map<string, InputStats>();
  for (const name of record) {
    const s = recorder.get(name);
    for (let i = 0; i < s.absmax.length; i++)
      if (!Number.isFinite(s.absmax[i]))
        throw new PipelineError("E_CALIBRATION", `input channel ${i} recorded a non-finite value`, name);
    out.set(name, {
      absmax: s.absmax.slice(),
      tokens: recorder.samples(name).slice(),
      rows: s.rows,
      tokensSeen: s.tokensSeen,
    });
  }
  return out;
}

/** Persist calibration statistics (for resuming): `<layer>.absmax` [K] and `<layer>.tokens` [rows, K], F32. */
export async function writeCalibration(
  path: string,
  stats: ReadonlyMap<string, InputStats>,
  metadata: Record<string, string>,
): Promise<void> {
  const t: Record<string, Tensor> = {};
  const seen: Record<string, number> = {};
  for (const [name, s] of stats) {
    const k = s.absmax.length;
    t[`${name}.absmax`] = new Tensor("F32", [k], s.absmax);
    t[`${name}.tokens`] = new Tensor("F32", [s.rows, k], s.tokens);
    seen[name] = s.tokensSeen;
  }
  await writeSafetensors(path, t, { ...metadata, tokens_seen: JSON.stringify(seen) });
}

export async function readCalibration(path: string): Promise<{
  stats: Map<string, InputStats>;
  metadata: Readonly<Record<string, string>>;
}> {
  const f = await SafetensorsFile.open(path);
  try {
    const seen = JSON.parse(f.metadata.tokens_seen ?? "{}") as Record<string, number>;
    const stats = new Map<string, InputStats>();
    for (const n of f.names()) {
      if (!n.endsWith(".absmax")) continue;
      const name = n.slice(0, -".absmax".length);
      const absmax = (await f.read(n)).toFloat32();
      const tok = await f.read(`${name}.tokens`);
      stats.set(name, {
        absmax,
        tokens: tok.toFloat32(),
        rows: tok.shape[0]!,
        tokensSeen: seen[name] ?? tok.shape[0]!,
      });
    }
    return { stats, metadata: f.metadata };
  } finally {
    await f.close();
  }
}
