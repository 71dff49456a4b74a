import { generationSchema, readConfig } from "@svdquant/experiment-common";
import { z } from "zod";

/** The paper's Fig. 10 order, worst to best: naive W4A4 < SVD only < smoothing only < LoRC < smoothing + LoRC < SVDQuant. */
export const FIG10_ORDER = ["w4a4-naive", "svd-only", "smoothing-only", "lorc", "smoothing-lorc", "svdquant-int4"];

export const ablationConfigSchema = z
  .object({
    runner: z.literal("ablation"),
    generation: generationSchema,
    /** Rows in the claimed quality order, worst first (@svdquant/quantizer method names). */
    methods: z.array(z.string().min(1)).min(2).max(64).default(FIG10_ORDER),
    /** Prompts shown as columns of grid.png. */
    gridColumns: z.number().int().min(1).max(64).default(8),
    /** Output folder, relative to the experiment folder. */
    out: z.string().min(1).default("results"),
  })
  .strict();
export type AblationConfig = z.infer<typeof ablationConfigSchema>;

export function loadAblationConfig(dir: string): Promise<AblationConfig> {
  return readConfig(dir, ablationConfigSchema);
}
