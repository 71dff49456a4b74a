import { generationSchema, readConfig } from "@svdquant/experiment-common";
import { z } from "zod";

export const rankConfigSchema = z
  .object({
    runner: z.literal("rank"),
    generation: generationSchema,
    /** The method swept (a @svdquant/quantizer name or a packed one, see @svdquant/experiment-common). */
    method: z.string().min(1).default("svdquant-int4"),
    /** Ranks of the low-rank branch (SVDQuant Fig. 13 sweeps 0…128; §5.1 uses 32). */
    ranks: z.array(z.number().int().min(0).max(4096)).min(1).max(64).default([0, 4, 8, 16, 32, 64, 128]),
    /** Prompts shown as columns of grid.png. */
    gridColumns: z.number().int().min(1).max(64).default(8),
    out: z.string().min(1).default("results"),
  })
  .strict();
export type RankConfig = z.infer<typeof rankConfigSchema>;

export function loadRankConfig(dir: string): Promise<RankConfig> {
  return readConfig(dir, rankConfigSchema);
}
