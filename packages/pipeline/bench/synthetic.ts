/**
 * Seeded synthetic FLUX checkpoints for the benchmarks (no real weights can be downloaded): the diffusers folder
 * layout (config.json + BF16 safetensors) of any FLUX config, weights N(0, 1/K) with a few input channels scaled
 * ×8 (the outlier channels SVDQuant exists for), small biases, RMSNorm weights near 1.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SeededRng } from "@svdquant/lowrank";
import { fluxParams, parseFluxConfig } from "@svdquant/models";
import { Tensor, writeSafetensors } from "@svdquant/tensor";

export async function writeSyntheticFlux(dir: string, raw: Record<string, unknown>, seed = 1): Promise<void> {
  const config = parseFluxConfig({ _class_name: "FluxTransformer2DModel", ...raw });
  const rng = new SeededRng(seed);
  const tensors = new Map<string, Tensor>();
  for (const p of fluxParams(config)) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const v = new Float32Array(n);
    if (p.name.endsWith(".weight") && p.shape.length === 2) {
      const [rows, k] = p.shape as [number, number];
      const s = 1 / Math.sqrt(k);
      for (let i = 0; i < n; i++) v[i] = rng.normal() * s;
      for (let c = 0; c < Math.max(1, k >> 7); c++) {
        const j = rng.int(k);
        for (let r = 0; r < rows; r++) v[r * k + j]! *= 8;
      }
    } else if (p.name.includes("norm")) for (let i = 0; i < n; i++) v[i] = 1 + 0.05 * rng.normal();
    else for (let i = 0; i < n; i++) v[i] = 0.02 * rng.normal();
    tensors.set(p.name, new Tensor("F32", p.shape, v).to("BF16"));
  }
  await writeFile(join(dir, "config.json"), JSON.stringify({ _class_name: "FluxTransformer2DModel", ...raw }));
  await writeSafetensors(join(dir, "diffusion_pytorch_model.safetensors"), tensors);
}
