/**
 * Branch precision of the int4p2 CPU layer (@svdquant/kernels prepareP2Layer `branch`, P2BranchPrecision): the
 * layer error ‖Y − Ŷ‖/‖Y‖ against the float64 layer Y = x·Wᵀ + b (x the float32 tokens the layer sees) with the
 * low-rank branch in "f32" and in "bf16", on
 *  - toy-flux transformer layers (models/toy-flux, trained weights), tokens whose channel scales follow the layer's
 *    recorded input statistics (activation-stats.json "sampling": the median for every channel, the recorded
 *    top channels at their values; Student-t ν = 4 draws; GELU applied for the MLP down-projections), and
 *  - generated FLUX-shaped layers (generate.ts: outlier channels 20–100x, a steep singular-value head),
 * each quantized by SVDQuant int4p2 (svdquant-int4p2, rank 32, no refinement). Printed beside: the float64
 * fake-quant error of the same record (@svdquant/quantizer evaluateLayer) and ‖Ŷ_bf16 − Ŷ_f32‖/‖Y‖, the part the
 * branch precision adds. Run from the repository root (no flags; ≈ 1 minute):
 *
 *   node --conditions=@svdquant/source --import tsx experiments/ablation-layer/bench/branch-precision.ts
 */

import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { type P2BranchPrecision, prepareP2Layer } from "@svdquant/kernels";
import { SeededRng } from "@svdquant/lowrank";
import { calibrationFromTokens, evaluateLayer, getMethod, type LinearLayer } from "@svdquant/quantizer";
import { openCheckpoint } from "@svdquant/tensor";
import { DEFAULT_GENERATED, gelu, generateLayer } from "../src/generate.js";

const ROOT = resolve(import.meta.dirname, "../../..");
const RANK = 32; // SVDQuant §5: rank 32
const TOKENS = 256;
const TOY_LAYERS: { name: string; postGelu: boolean }[] = [
  { name: "transformer_blocks.0.attn.to_q", postGelu: false },
  { name: "transformer_blocks.0.ff.net.0.proj", postGelu: false },
  { name: "transformer_blocks.0.ff.net.2", postGelu: true },
  { name: "transformer_blocks.1.attn.to_out.0", postGelu: false },
  { name: "transformer_blocks.1.ff_context.net.2", postGelu: true },
  { name: "single_transformer_blocks.0.proj_mlp", postGelu: false },
  { name: "single_transformer_blocks.0.proj_out", postGelu: false },
];
const GENERATED: { n: number; k: number }[] = [
  { n: 1024, k: 1024 },
  { n: 3072, k: 3072 },
];

interface Case {
  layer: LinearLayer;
  calib: Float64Array;
  evalX: Float64Array;
  postGelu: boolean;
}

interface LayerStats {
  K: number;
  median: number;
  top_channels: number[];
  top_values: number[];
}

/** Tokens [m, K] with the recorded channel scales (median everywhere, top channels at their values; absmax ≈ 4σ). */
function toyTokens(rng: SeededRng, m: number, st: LayerStats, postGelu: boolean): Float64Array {
  const scale = new Float64Array(st.K).fill(st.median / 4);
  st.top_channels.forEach((c, i) => {
    scale[c] = st.top_values[i]! / 4;
  });
  const x = new Float64Array(m * st.K);
  for (let t = 0; t < m; t++)
    for (let j = 0; j < st.K; j++) {
      const v = scale[j]! * rng.studentT(4);
      x[t * st.K + j] = postGelu ? gelu(v) : v;
    }
  return x;
}

async function toyCases(): Promise<Case[]> {
  const stats = JSON.parse(await readFile(resolve(ROOT, "models/toy-flux/activation-stats.json"), "utf8")).sampling;
  const src = await openCheckpoint(resolve(ROOT, "models/toy-flux/transformer"));
  const rng = new SeededRng(7);
  const out: Case[] = [];
  try {
    for (const { name, postGelu } of TOY_LAYERS) {
      const [n, k] = src.info(`${name}.weight`).shape as [number, number];
      const weight = (await src.read(`${name}.weight`)).toFloat64();
      const bias = src.has(`${name}.bias`) ? (await src.read(`${name}.bias`)).toFloat64() : undefined;
      const st = stats[name] as LayerStats;
      if (st.K !== k) throw new Error(`${name}: stats K ${st.K}, weight K ${k}`);
      const x = toyTokens(rng, 2 * TOKENS, st, postGelu);
      out.push({
        layer: { name: `toy-flux ${name}`, n, k, weight, bias },
        calib: x.subarray(0, TOKENS * k),
        evalX: x.slice(TOKENS * k),
        postGelu,
      });
    }
  } finally {
    await src.close();
  }
  return out;
}

function generatedCases(): Case[] {
  return GENERATED.map(({ n, k }, i) => {
    const g = generateLayer({ ...DEFAULT_GENERATED, name: `generated ${n}x${k}`, n, k, tokens: TOKENS, seed: 11 + i });
    return { layer: g.layer, calib: g.calib, evalX: g.evalX, postGelu: false };
  });
}

const relDiff = (a: ArrayLike<number>, b: ArrayLike<number>, ref: ArrayLike<number>) => {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += ref[i]! ** 2;
  }
  return Math.sqrt(num / den);
};

const method = getMethod("svdquant-int4p2");
const rows: string[] = [];
for (const c of [...(await toyCases()), ...generatedCases()]) {
  const { layer } = c;
  const t0 = performance.now();
  const q = method.quantize(layer, calibrationFromTokens(c.calib, TOKENS, layer.k), {
    rank: RANK,
    seed: 0,
    postGelu: c.postGelu,
  });
  const fake = evaluateLayer(layer, q, c.evalX, TOKENS).relError;
  const x = Float32Array.from(c.evalX);
  // Y: the float64 layer on the float32 tokens
  const y = new Float64Array(TOKENS * layer.n);
  for (let t = 0; t < TOKENS; t++)
    for (let o = 0; o < layer.n; o++) {
      let s = layer.bias?.[o] ?? 0;
      for (let j = 0; j < layer.k; j++) s += x[t * layer.k + j]! * layer.weight[o * layer.k + j]!;
      y[t * layer.n + o] = s;
    }
  const res = q.residual!;
  const yq: Partial<Record<P2BranchPrecision, Float32Array>> = {};
  for (const branch of ["f32", "bf16"] as const)
    yq[branch] = prepareP2Layer({
      N: layer.n,
      K: layer.k,
      codes: res.codes,
      exponents: res.exponents!,
      rowScales: res.rowScales!,
      smooth: Float32Array.from(q.smooth),
      lowRankDown: Float32Array.from(q.lowRankDown),
      lowRankUp: Float32Array.from(q.lowRankUp),
      ...(q.bias ? { bias: Float32Array.from(q.bias) } : {}),
      branch,
      name: layer.name,
    }).forward(x, TOKENS);
  const e32 = relDiff(yq.f32!, y, y);
  const e16 = relDiff(yq.bf16!, y, y);
  rows.push(
    `| ${layer.name} | ${layer.n} | ${layer.k} | ${fake.toFixed(5)} | ${e32.toFixed(5)} | ${e16.toFixed(5)} | ${(((e16 - e32) / e32) * 100).toFixed(3)} % | ${relDiff(yq.bf16!, yq.f32!, y).toExponential(2)} |`,
  );
  console.log(`${layer.name}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
console.log(
  `\nint4p2 layer error ‖Y − Ŷ‖/‖Y‖ vs the float64 layer, SVDQuant int4p2 rank ${RANK}, ${TOKENS} held-out tokens\n`,
);
console.log(
  "| layer | N | K | float64 fake-quant | kernel, branch f32 | kernel, branch bf16 | bf16 vs f32 (relative change of the error) | ‖Ŷ_bf16 − Ŷ_f32‖/‖Y‖ |\n| - | -: | -: | -: | -: | -: | -: | -: |",
);
console.log(rows.join("\n"));
