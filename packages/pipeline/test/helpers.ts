import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FluxInputs, PixArtInputs } from "@svdquant/models";
import { SafetensorsFile } from "@svdquant/tensor";

export const FIXTURES = join(import.meta.dirname, "../../../fixtures");
export const modelDir = (name: string): string => join(FIXTURES, "models", name);
export const tempDir = (): Promise<string> => mkdtemp(join(tmpdir(), "svdq-pipeline-"));

async function readIo(model: string): Promise<Record<string, { shape: readonly number[]; data: Float32Array }>> {
  const f = await SafetensorsFile.open(join(modelDir(model), "io.safetensors"));
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

export async function fluxInputs(): Promise<FluxInputs> {
  const io = await readIo("flux-tiny-a");
  const hs = io.hidden_states!;
  const enc = io.encoder_hidden_states!;
  return {
    batch: hs.shape[0]!,
    imgTokens: hs.shape[1]!,
    txtTokens: enc.shape[1]!,
    hiddenStates: hs.data,
    encoderHiddenStates: enc.data,
    pooledProjections: io.pooled_projections!.data,
    timestep: io.timestep!.data,
    imgIds: io.img_ids!.data,
    txtIds: io.txt_ids!.data,
  };
}

export async function pixartInputs(): Promise<PixArtInputs> {
  const io = await readIo("pixart-tiny-a");
  const hs = io.hidden_states!;
  const enc = io.encoder_hidden_states!;
  return {
    batch: hs.shape[0]!,
    height: hs.shape[2]!,
    width: hs.shape[3]!,
    textTokens: enc.shape[1]!,
    hiddenStates: hs.data,
    encoderHiddenStates: enc.data,
    encoderAttentionMask: io.encoder_attention_mask!.data,
    timestep: io.timestep!.data,
  };
}

/** ‖a − b‖ / ‖b‖ */
export function relFrob(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}
