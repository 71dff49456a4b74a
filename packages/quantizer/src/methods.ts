import { GELU_SHIFT, type QuantSpec, specFor } from "@svdquant/int4";
import { searchSmoothing, smoothingFactors, svdquantGrid, weightAbsMax } from "@svdquant/smoothing";
import { type BuildOptions, buildLinear } from "./build.js";
import { QuantizerError } from "./errors.js";
import type { QuantizerKernels } from "./kernel-path.js";
import { checkLayer, forwardQuantized, forwardReference, type LinearLayer, type QuantizedLinear } from "./linear.js";
import { buildOptions, type Calibration, quantizeSharedLayers, type SvdQuantResult } from "./svdquant.js";

/** Options every method accepts (each uses what applies to it). */
export interface MethodOptions {
  /** Rank of the low-rank branch (default 32). */
  rank?: number;
  /** Seed of the randomized SVD (default 0). */
  seed?: number;
  /** Maximum refinement iterations of the refined SVDQuant variants (default 100, early stop). */
  refinement?: number;
  /** The layer's input is post-GELU: SVDQuant INT4 then quantizes (x + 0.171875) as uint4 (published convention). */
  postGelu?: boolean;
  /** Native kernels for the SVDQuant methods' search and refinement (see `SvdQuantConfig.kernels`). */
  kernels?: QuantizerKernels;
}

/** One quantization method of the harness: experiments compare methods by name. */
export interface Method {
  name: string;
  label: string;
  /** Whether activations are quantized to 4 bits (the W4A4 setting the paper's claims concern). */
  w4a4: boolean;
  quantize(layer: LinearLayer, calibration: Calibration, opts?: MethodOptions): QuantizedLinear;
}

const INT4 = (): QuantSpec => specFor("int4"); // INT4 g64, BF16 scales (SVDQuant §5.1)
const NVFP4 = (): QuantSpec => specFor("nvfp4"); // E2M1 g16 with E4M3 scales (SVDQuant §5.1)
const INT8_ROW = (): QuantSpec => specFor("int8"); // per-channel weights / per-token activations (SmoothQuant)
const NF4 = (): QuantSpec => specFor("nf4"); // NF4 g64 (QLoRA)
// int4p2 (issue 16, @svdquant/int4 p2.ts): weights with S = max group scale / 2^5 and the better of two exponents per
// group; activations with power-of-two group scales, as the one-pass GPU activation kernel makes them.
const INT4P2_W = (): QuantSpec => specFor("int4p2");
const INT4P2_A = (): QuantSpec => specFor("int4p2", { p2RowScale: "pow2" });
const SMOOTHQUANT_ALPHA = 0.5; // SmoothQuant's default migration strength (Xiao et al. 2023 §4)

function base(name: string, o: MethodOptions, over: Partial<BuildOptions>): BuildOptions {
  return {
    ...buildOptions({ seed: o.seed, rank: o.rank }),
    method: name,
    refine: 0,
    ...over,
  };
}

const ones = (k: number): Float64Array => new Float64Array(k).fill(1);

function smoothQuantLambda(layer: LinearLayer, cal: Calibration): Float64Array {
  return smoothingFactors(
    cal.xAbsMax,
    weightAbsMax(layer.weight, layer.n, layer.k, layer.name),
    SMOOTHQUANT_ALPHA,
    1 - SMOOTHQUANT_ALPHA,
  );
}

/** Grid search of λ (the 39 SVDQuant candidates) with a given builder as the objective. */
function searched(layer: LinearLayer, cal: Calibration, opts: BuildOptions): QuantizedLinear {
  const x = cal.tokens;
  const m = cal.count;
  const y = forwardReference(layer, x, m);
  const s = searchSmoothing({
    xAbsMax: cal.xAbsMax,
    wAbsMax: weightAbsMax(layer.weight, layer.n, layer.k, layer.name),
    grid: svdquantGrid(),
    objective: (lambda) => {
      const yq = forwardQuantized(buildLinear(layer, lambda, opts), x, m);
      let e = 0;
      for (let i = 0; i < y.length; i++) e += (yq[i] - y[i]) ** 2;
      return e;
    },
  });
  return buildLinear(layer, s.lambda, { ...opts, info: { alpha: s.best.alpha, beta: s.best.beta } });
}

/** λ found by the SVDQuant search, per (layer, calibration) and setting: the refined variants reuse it. */
const searchCache = new WeakMap<
  LinearLayer,
  WeakMap<Calibration, Map<string, SvdQuantResult["candidate"] & { lambda: Float64Array }>>
>();

function cached(layer: LinearLayer, cal: Calibration, key: string) {
  return searchCache.get(layer)?.get(cal)?.get(key);
}

function remember(
  layer: LinearLayer,
  cal: Calibration,
  key: string,
  lambda: Float64Array,
  c: SvdQuantResult["candidate"],
): void {
  let byCal = searchCache.get(layer);
  if (!byCal) searchCache.set(layer, (byCal = new WeakMap()));
  let byKey = byCal.get(cal);
  if (!byKey) byCal.set(cal, (byKey = new Map()));
  byKey.set(key, { ...c, lambda });
}

function svdquant(
  name: string,
  label: string,
  weight: () => QuantSpec,
  refine: boolean,
  activation?: () => QuantSpec,
): Method {
  return {
    name,
    label,
    w4a4: true,
    quantize(layer, cal, o = {}) {
      const w = weight();
      const unsigned = o.postGelu === true && w.format === "int4";
      const key = `${w.format}|${o.rank ?? 32}|${o.seed ?? 0}|${unsigned}`;
      const hit = cached(layer, cal, key);
      const r = quantizeSharedLayers([layer], cal, {
        lambda: hit ? { lambda: hit.lambda, candidate: { alpha: hit.alpha, beta: hit.beta } } : undefined,
        method: name,
        rank: o.rank,
        seed: o.seed,
        weight: w,
        activation: unsigned ? { ...w, format: "uint4" } : activation ? activation() : { ...w },
        shift: unsigned ? GELU_SHIFT : 0,
        refinement: { maxIterations: refine ? (o.refinement ?? 100) : 0 },
        kernels: o.kernels,
      });
      if (!hit) remember(layer, cal, key, r.lambda, r.candidate);
      return r.layers[0];
    },
  };
}

/** Every method of the harness, in table order. */
export const METHODS: readonly Method[] = [
  {
    name: "fp",
    label: "FP reference (BF16 W and X)",
    w4a4: false,
    quantize: (l, _c, o = {}) =>
      buildLinear(l, ones(l.k), base("fp", o, { weight: "bf16", activation: "bf16", lowRank: "none" })),
  },
  {
    name: "w8a8-smoothquant",
    label: "W8A8 SmoothQuant (α = 0.5)",
    w4a4: false,
    quantize: (l, c, o = {}) =>
      buildLinear(
        l,
        smoothQuantLambda(l, c),
        base("w8a8-smoothquant", o, { weight: INT8_ROW(), activation: INT8_ROW(), lowRank: "none" }),
      ),
  },
  {
    name: "w4a16-nf4",
    label: "W4A16 NF4 (weights only)",
    w4a4: false,
    quantize: (l, _c, o = {}) =>
      buildLinear(l, ones(l.k), base("w4a16-nf4", o, { weight: NF4(), activation: "bf16", lowRank: "none" })),
  },
  {
    name: "w4a4-naive",
    label: "W4A4 naive (round to nearest)",
    w4a4: true,
    quantize: (l, _c, o = {}) =>
      buildLinear(l, ones(l.k), base("w4a4-naive", o, { weight: INT4(), activation: INT4(), lowRank: "none" })),
  },
  {
    name: "w4a4-smoothquant",
    label: "W4A4 SmoothQuant (α = 0.5)",
    w4a4: true,
    quantize: (l, c, o = {}) =>
      buildLinear(
        l,
        smoothQuantLambda(l, c),
        base("w4a4-smoothquant", o, { weight: INT4(), activation: INT4(), lowRank: "none" }),
      ),
  },
  {
    name: "svd-only",
    label: "SVD only (rank-R branch, no smoothing)",
    w4a4: true,
    quantize: (l, _c, o = {}) =>
      buildLinear(l, ones(l.k), base("svd-only", o, { weight: INT4(), activation: INT4(), lowRank: "svd" })),
  },
  {
    name: "smoothing-only",
    label: "Smoothing only (searched λ, no branch)",
    w4a4: true,
    quantize: (l, c, o = {}) =>
      searched(l, c, base("smoothing-only", o, { weight: INT4(), activation: INT4(), lowRank: "none" })),
  },
  {
    name: "lorc",
    label: "LoRC (SVD of W − Q(W))",
    w4a4: true,
    quantize: (l, _c, o = {}) =>
      buildLinear(l, ones(l.k), base("lorc", o, { weight: INT4(), activation: INT4(), lowRank: "lorc" })),
  },
  {
    name: "smoothing-lorc",
    label: "Smoothing + LoRC",
    w4a4: true,
    quantize: (l, c, o = {}) =>
      searched(l, c, base("smoothing-lorc", o, { weight: INT4(), activation: INT4(), lowRank: "lorc" })),
  },
  svdquant("svdquant-int4", "SVDQuant INT4 (no refinement)", INT4, false),
  svdquant("svdquant-int4-refined", "SVDQuant INT4 (refined)", INT4, true),
  svdquant("svdquant-nvfp4", "SVDQuant NVFP4 (no refinement)", NVFP4, false),
  svdquant("svdquant-nvfp4-refined", "SVDQuant NVFP4 (refined)", NVFP4, true),
  {
    name: "w4a4-int4p2-naive",
    label: "W4A4 int4p2 naive (power-of-two group scales, round to nearest)",
    w4a4: true,
    quantize: (l, _c, o = {}) =>
      buildLinear(
        l,
        ones(l.k),
        base("w4a4-int4p2-naive", o, { weight: INT4P2_W(), activation: INT4P2_A(), lowRank: "none" }),
      ),
  },
  {
    name: "smoothing-only-int4p2",
    label: "Smoothing only, int4p2 (searched λ, no branch)",
    w4a4: true,
    quantize: (l, c, o = {}) =>
      searched(l, c, base("smoothing-only-int4p2", o, { weight: INT4P2_W(), activation: INT4P2_A(), lowRank: "none" })),
  },
  svdquant("svdquant-int4p2", "SVDQuant int4p2 (no refinement)", INT4P2_W, false, INT4P2_A),
  svdquant("svdquant-int4p2-refined", "SVDQuant int4p2 (refined)", INT4P2_W, true, INT4P2_A),
];

export const METHOD_NAMES: readonly string[] = METHODS.map((m) => m.name);

/** The method registered under `name` (throws QuantizerError E_UNKNOWN_METHOD listing the known names). */
export function getMethod(name: string): Method {
  const m = METHODS.find((x) => x.name === name);
  if (!m) throw new QuantizerError("E_UNKNOWN_METHOD", `unknown method "${name}"; known: ${METHOD_NAMES.join(", ")}`);
  return m;
}

/** Quantize `layer` with the named method. */
export function quantizeWith(
  name: string,
  layer: LinearLayer,
  calibration: Calibration,
  opts?: MethodOptions,
): QuantizedLinear {
  checkLayer(layer);
  return getMethod(name).quantize(layer, calibration, opts);
}
