import { ExperimentError, type GenerationConfig, generationSchema, readConfig } from "@svdquant/experiment-common";
import { z } from "zod";

/** A preset's generation: the user's paths may be null in the committed config (set them before running it). */
const presetGenerationSchema = generationSchema
  .omit({ pipeline: true, prompts: true, quantize: true, threads: true })
  .extend({
    pipeline: z.string().min(1).nullable(),
    prompts: z.union([
      z.object({ toyCaptions: z.literal(true) }).strict(),
      z.object({ file: z.string().min(1).nullable() }).strict(),
    ]),
  })
  .strict();

export const presetSchema = z
  .object({
    description: z.string(),
    /** Which text→image pipeline generates the images. */
    family: z.enum(["flux", "pixart"]),
    generation: presetGenerationSchema,
    /** Prompts of the seeded quick subset ("quick": true). */
    quickCount: z.number().int().min(1).max(100_000),
    /** The data set's real images (MJHQ-30K / sDCI) that FID compares with; null: FID vs the 16-bit images. */
    referenceImages: z.string().min(1).nullable(),
  })
  .strict();
export type Preset = z.infer<typeof presetSchema>;

export const table1ConfigSchema = z
  .object({
    runner: z.literal("table1"),
    /** The preset run (a key of `presets`). */
    preset: z.string().min(1),
    /** Run the preset's seeded quick subset (quickCount prompts) instead of its full count. */
    quick: z.boolean().default(false),
    presets: z.record(z.string(), presetSchema),
    /** Rows after the 16-bit one: @svdquant/quantizer method names or svdquant-{int4,nvfp4}-packed. */
    methods: z.array(z.string().min(1)).min(1).max(64),
    /** Quantizer settings every method shares (@svdquant/pipeline's config: grid, refinement, rank). */
    quantize: z.record(z.string(), z.unknown()).default({}),
    threads: z.number().int().min(1).max(1024).default(2),
    /** ONNX models of the neural metrics (see @svdquant/metrics); null: the metric is reported as missing. */
    metrics: z
      .object({
        /** LPIPS AlexNet (lpips v0.1) exported to ONNX: in0, in1 in [−1, 1] → distance. */
        lpips: z.string().min(1).nullable().default(null),
        /** Inception-v3 pool features (clean-fid) exported to ONNX: images in [0, 255] at 299² → features. */
        fid: z.string().min(1).nullable().default(null),
      })
      .strict()
      .default({ lpips: null, fid: null }),
    gridColumns: z.number().int().min(1).max(64).default(8),
    out: z.string().min(1).default("results"),
  })
  .strict();
export type Table1Config = z.infer<typeof table1ConfigSchema>;

export function loadTable1Config(dir: string): Promise<Table1Config> {
  return readConfig(dir, table1ConfigSchema);
}

/** The preset to run, as a complete generation config: one E_CONFIG line when a user path is still unset. */
export function selectPreset(c: Table1Config, where: string): { preset: Preset; generation: GenerationConfig } {
  const preset = c.presets[c.preset];
  if (!preset)
    throw new ExperimentError(
      "E_CONFIG",
      `${where}: preset "${c.preset}" is not in "presets" (${Object.keys(c.presets).join(", ")})`,
    );
  const g = preset.generation;
  const at = `${where}: presets["${c.preset}"].generation`;
  if (g.pipeline === null)
    throw new ExperimentError("E_CONFIG", `${at}.pipeline is null: set it to your diffusers pipeline folder`);
  if ("file" in g.prompts && g.prompts.file === null)
    throw new ExperimentError("E_CONFIG", `${at}.prompts.file is null: set it to your prompt file (one prompt a line)`);
  return {
    preset,
    generation: {
      ...g,
      pipeline: g.pipeline,
      prompts: "file" in g.prompts ? { file: g.prompts.file! } : g.prompts,
      count: c.quick ? preset.quickCount : g.count,
      quantize: c.quantize,
      threads: c.threads,
    },
  };
}
