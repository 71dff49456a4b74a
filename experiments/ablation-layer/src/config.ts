import { join } from "node:path";
import { checkJsonNesting, MAX_JSON_FILE_BYTES, readInputFile } from "@svdquant/tensor";
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

/**
 * Bounds of the sizes a config may ask for, checked before anything is allocated: the largest FLUX.1 linear layer
 * is 3072 x 15360 (single blocks' proj_out), so 16384 per side covers every real layer; one layer's weights and its
 * calibration + evaluation tokens are float64, at most MAX_LAYER_ELEMENTS (2^26, 512 MB) together.
 */
export const MAX_LAYER_SIDE = 16384;
export const MAX_TOKENS = 65536;
export const MAX_RANK = 4096;
export const MAX_LAYER_ELEMENTS = 2 ** 26;

/** Read and validate `<dir>/config.json`. */
export async function loadConfig(dir: string): Promise<AblationConfig> {
  const path = join(dir, "config.json");
  const text = (await readInputFile(path, MAX_JSON_FILE_BYTES)).toString("utf8"); // a regular file, bounded
  checkJsonNesting(text, path);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ExperimentError("E_CONFIG", `${path}: cannot parse experiment config: ${(e as Error).message}`);
  }
  const c = raw as AblationConfig;
  const need = (ok: boolean, what: string): void => {
    if (!ok) throw new ExperimentError("E_CONFIG", `${path}: ${what}`);
  };
  const intIn = (v: unknown, lo: number, hi: number): boolean =>
    Number.isSafeInteger(v) && (v as number) >= lo && (v as number) <= hi;
  need(c !== null && typeof c === "object" && !Array.isArray(c), "must hold a JSON object");
  need(c.runner === "ablation-layer", `"runner" must be "ablation-layer", got ${JSON.stringify(c.runner)}`);
  need(Array.isArray(c.methods) && c.methods.every((m) => typeof m === "string"), `"methods" must list method names`);
  need(Array.isArray(c.generated), `"generated" must be an array`);
  need(Array.isArray(c.fixtures), `"fixtures" must be an array`);
  need(Number.isSafeInteger(c.seed), `"seed" must be an integer`);
  need(intIn(c.rank, 0, MAX_RANK), `"rank" must be an integer in [0, ${MAX_RANK}]`);
  need(intIn(c.fixtureTokens, 1, MAX_TOKENS), `"fixtureTokens" must be an integer in [1, ${MAX_TOKENS}]`);
  c.generated.forEach((g, i) => {
    const at = `"generated"[${i}]`;
    need(g !== null && typeof g === "object" && typeof g.name === "string", `${at} needs a "name"`);
    need(Number.isSafeInteger(g.seed), `${at}.seed must be an integer`);
    const s = resolveGenerated(g);
    need(
      intIn(s.n, 1, MAX_LAYER_SIDE) && intIn(s.k, 1, MAX_LAYER_SIDE),
      `${at}: n and k must be integers in [1, ${MAX_LAYER_SIDE}]`,
    );
    need(intIn(s.tokens, 1, MAX_TOKENS), `${at}.tokens must be an integer in [1, ${MAX_TOKENS}]`);
    need(
      s.n * s.k + 2 * s.tokens * s.k <= MAX_LAYER_ELEMENTS,
      `${at}: n·k + 2·tokens·k = ${s.n * s.k + 2 * s.tokens * s.k} exceeds ${MAX_LAYER_ELEMENTS} values`,
    );
    need(intIn(s.outlierChannels, 0, s.k), `${at}.outlierChannels must be an integer in [0, k = ${s.k}]`);
    need(intIn(s.weightOutlierChannels, 0, s.k), `${at}.weightOutlierChannels must be an integer in [0, k = ${s.k}]`);
    need(intIn(s.headRank, 0, Math.min(s.n, s.k)), `${at}.headRank must be an integer in [0, min(n, k)]`);
    need(
      Array.isArray(s.outlierRange) && s.outlierRange.length === 2 && s.outlierRange.every(Number.isFinite),
      `${at}.outlierRange must be two finite numbers`,
    );
    need(Number.isFinite(s.weightOutlierScale) && Number.isFinite(s.headScale), `${at}: scales must be finite numbers`);
  });
  c.fixtures.forEach((f, i) => {
    need(
      f !== null &&
        typeof f === "object" &&
        typeof f.model === "string" &&
        Array.isArray(f.layers) &&
        f.layers.every((l) => typeof l === "string"),
      `"fixtures"[${i}] needs "model" and a list of "layers"`,
    );
    need(
      f.rank === undefined || intIn(f.rank, 0, MAX_RANK),
      `"fixtures"[${i}].rank must be an integer in [0, ${MAX_RANK}]`,
    );
  });
  need(
    c.rankSweep !== null &&
      typeof c.rankSweep === "object" &&
      typeof c.rankSweep.method === "string" &&
      typeof c.rankSweep.layer === "string" &&
      Array.isArray(c.rankSweep.ranks) &&
      c.rankSweep.ranks.length <= 64 &&
      c.rankSweep.ranks.every((r) => intIn(r, 0, MAX_RANK)),
    `"rankSweep" needs "method", "layer" and at most 64 "ranks" in [0, ${MAX_RANK}]`,
  );
  need(c.sharedInputs === undefined || Array.isArray(c.sharedInputs), `"sharedInputs" must be an array`);
  (c.sharedInputs ?? []).forEach((g, i) => {
    need(
      g !== null &&
        typeof g === "object" &&
        typeof g.name === "string" &&
        typeof g.model === "string" &&
        Array.isArray(g.layers) &&
        g.layers.length > 0 &&
        g.layers.every((l) => typeof l === "string"),
      `"sharedInputs"[${i}] needs "name", "model" and a non-empty list of "layers"`,
    );
    need(
      g.rank === undefined || intIn(g.rank, 0, MAX_RANK),
      `"sharedInputs"[${i}].rank must be an integer in [0, ${MAX_RANK}]`,
    );
  });
  need(typeof c.figureLayer === "string", `"figureLayer" must name a layer`);
  need(typeof c.out === "string" && c.out.length > 0, `"out" must name an output folder`);
  return c;
}
