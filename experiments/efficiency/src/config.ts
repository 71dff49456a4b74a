import { readConfig } from "@svdquant/experiment-common";
import { z } from "zod";

export const efficiencyConfigSchema = z
  .object({
    runner: z.literal("efficiency"),
    /** Models whose exact sizes are computed from a parameter manifest (class, config, every tensor's shape). */
    sizes: z.array(z.object({ name: z.string().min(1), manifest: z.string().min(1) }).strict()).max(64),
    /** Rank of the SVDQuant branch for the sizes (SVDQuant §5.1: 32). */
    rank: z.number().int().min(0).max(4096).default(32),
    /** Per-step latency on this CPU: the pipeline's 16-bit transformer vs its packed W4A4 checkpoint. */
    latency: z
      .object({
        pipeline: z.string().min(1),
        /** Image sides in pixels (image tokens = (side / (2 · VAE factor))²: FLUX 8x, the toy 4x). */
        sizes: z.array(z.number().int().min(16).max(4096)).min(1).max(16),
        maxSequenceLength: z.number().int().min(1).max(4096),
        /** Rounds, each timing one step of 16-bit then one of W4A4 (alternating, same process). */
        rounds: z.number().int().min(1).max(1000),
        warmup: z.number().int().min(0).max(100).default(1),
      })
      .strict()
      .nullable(),
    /** GPU numbers cited verbatim from docs/benchmarks.md (test/ checks they occur there): never measured here. */
    gpu: z
      .object({
        source: z.string(),
        date: z.string(),
        machine: z.string(),
        setting: z.string(),
        rows: z.array(
          z.object({ engine: z.string(), weightsGiB: z.string(), peakMemory: z.string(), stepMs: z.string() }).strict(),
        ),
      })
      .strict()
      .nullable(),
    out: z.string().min(1).default("results"),
  })
  .strict();
export type EfficiencyConfig = z.infer<typeof efficiencyConfigSchema>;

export function loadEfficiencyConfig(dir: string): Promise<EfficiencyConfig> {
  return readConfig(dir, efficiencyConfigSchema);
}
