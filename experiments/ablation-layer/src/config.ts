import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_GENERATED, type GeneratedLayerSpec } from "./generate.js";

export class ExperimentError extends Error {
  override readonly name = "ExperimentError";
  readonly code: "E_CONFIG" | "E_IO";
  constructor(code: "E_CONFIG" | "E_IO", message: string) {
    super(message);
    this.code = code;
  }
}

/** A fixture checkpoint and the linear layers to take from it (synthetic outlier calibration inputs). */
export interface FixtureSource {
  /** Model folder, relative to the repository root. */
  model: string;
  layers: string[];
  /** Layers whose input is post-GELU (SVDQuant INT4 quantizes x + 0.171875 as uint4). */
  postGelu?: string[];
  /** Rank of the branch for these small layers (default 16). */
  rank?: number;
}

export interface AblationConfig {
  runner: "ablation-layer";
  seed: number;
  /** Methods of the table, by harness name. */
  methods: string[];
  generated: (Partial<GeneratedLayerSpec> & { name: string; seed: number })[];
  fixtures: FixtureSource[];
  /** Synthetic calibration / evaluation tokens per fixture layer. */
  fixtureTokens: number;
  rank: number;
  rankSweep: { method: string; layer: string; ranks: number[] };
  /**
   * Layers of one checkpoint that read the same input (q/k/v; a FLUX single block's qkv and MLP-in): SVDQuant INT4
   * with one λ chosen on their joint error, against each layer with its own λ.
   */
  sharedInputs?: { name: string; model: string; layers: string[]; rank?: number }[];
  /** Layer whose SVDQuant decomposition is plotted (Fig. 4/5). */
  figureLayer: string;
  /** Output folder, relative to the experiment folder. */
  out: string;
}

export function resolveGenerated(g: AblationConfig["generated"][number]): GeneratedLayerSpec {
  return { ...DEFAULT_GENERATED, ...g };
}

/** Read and validate `<dir>/config.json`. */
export function loadConfig(dir: string): AblationConfig {
  const path = join(dir, "config.json");
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ExperimentError("E_IO", `${path}: cannot read experiment config: ${(e as Error).message}`);
  }
  const c = raw as AblationConfig;
  const need = (ok: boolean, what: string): void => {
    if (!ok) throw new ExperimentError("E_CONFIG", `${path}: ${what}`);
  };
  need(c !== null && typeof c === "object", "must hold a JSON object");
  need(c.runner === "ablation-layer", `"runner" must be "ablation-layer", got ${JSON.stringify(c.runner)}`);
  need(Array.isArray(c.methods) && c.methods.every((m) => typeof m === "string"), `"methods" must list method names`);
  need(Array.isArray(c.generated), `"generated" must be an array`);
  need(Array.isArray(c.fixtures), `"fixtures" must be an array`);
  need(Number.isInteger(c.rank) && c.rank >= 0, `"rank" must be a non-negative integer`);
  need(
    c.rankSweep !== undefined && Array.isArray(c.rankSweep.ranks) && typeof c.rankSweep.layer === "string",
    `"rankSweep" needs "method", "layer" and "ranks"`,
  );
  need(typeof c.out === "string" && c.out.length > 0, `"out" must name an output folder`);
  return c;
}
