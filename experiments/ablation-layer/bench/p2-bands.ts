/**
 * Exponent-band occupancy of int4p2 operands (issue 19, the AMX-INT8 idea for int4p2): q ∈ [−8, 7] times 2^d is
 * exact in int8 for d ∈ [0, 4], so the group exponents of a row can be split into bands of 5 levels below the row's
 * top exponent, each band one int8 operand with a power-of-two factor. One `tdpbssd` covers one 64-group of a 16-row
 * activation tile × a 16-column weight tile, so the tile loop costs one `tdpbssd` per occupied (activation band,
 * weight band) pair of each (row tile, column tile, group). This script measures that occupancy on real data:
 *
 * - the trained toy FLUX model (models/toy-flux) quantized to int4p2 with SVDQuant (smoothing + rank-32 branch), its
 *   residual weights' exponents, and the layer inputs x/λ of the quantized model (the kernel's pow2 quantization)
 *   recorded during real sampling (caption prompts, 20 steps, 64×64 pixels: 64 image + 32 text tokens per forward);
 * - generated layers at FLUX widths with the outlier structure SVDQuant describes (`generateLayer`: K = 3072 input
 *   with 20–100x outlier channels; K = 12288 post-GELU input, `outlierTokens`), quantized with the SVDQuant int4p2
 *   method (paper grid, rank 32), evaluation tokens quantized as x/λ;
 * - the synthetic inputs and weights `packages/kernels/bench/gemm.bench.ts --only=p2` uses at FLUX shapes (uniform
 *   x, λ ∈ [0.5, 1.5), uniform codes, weight exponents uniform in [−4, 5]).
 *
 * Band split: relative exponent d = top_row − e (top_row = the row's largest exponent over groups with a nonzero
 * code); band 0 = d ∈ [0, b − 1], band j ≥ 1 = d ∈ [b + 5(j − 1), b + 5j − 1], for the first boundary b ∈ 1..5.
 * A group whose codes are all zero needs no band. Printed per linear kind: the fraction of activation tiles (16
 * tokens × 1 group) and weight tiles (16 output channels × 1 group) holding each band, the mean band count of each,
 * and the predicted `tdpbssd` count per (row tile, column tile, group) = mean over groups of a_g · w_g (a_g, w_g the
 * mean band counts of group g over row / column tiles); 1 = the int8 path's ideal, 2 = `tdpbf16ps` instructions for
 * the same K.
 *
 * Run (minutes on 2 cores; not in CI):
 *   node --conditions=@svdquant/source --import tsx experiments/ablation-layer/bench/p2-bands.ts [--prompts 8]
 *     [--steps 20] [--only toy|generated|bench]
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Quantized, quantize, specFor } from "@svdquant/int4";
import { SeededRng } from "@svdquant/lowrank";
import type { LinearLayer, LinearObserver } from "@svdquant/models";
import {
  FluxPipeline,
  loadQuantizedModel,
  parseQuantizeConfig,
  quantizeModel,
  readQuantizedCheckpoint,
  sampleFlux,
} from "@svdquant/pipeline";
import { calibrationFromTokens, quantizeWith } from "@svdquant/quantizer";
import { generateLayer, outlierTokens } from "../src/generate.ts";

const args = process.argv.slice(2);
const arg = (name: string, d: number) => {
  const i = args.indexOf(name);
  return i < 0 ? d : Number(args[i + 1]);
};
const PROMPTS = arg("--prompts", 8);
const STEPS = arg("--steps", 20);
const onlyAt = args.indexOf("--only");
const ONLY = onlyAt < 0 ? undefined : args[onlyAt + 1];
const TILE = 16; // AMX tile rows (tokens) / columns (output channels)
const G = 64; // int4p2 group = K of one tdpbssd (16 × 64 int8)
const root = join(import.meta.dirname, "..", "..", "..");
const pipelineDir = join(root, "models", "toy-flux");

/** Window starts t tried for the main band d ∈ [t, t + 4] (d = top − e ∈ [0, 14]). */
const T_MIN = -4;
const T_MAX = 14;
const NT = T_MAX - T_MIN + 1;

/** Bands (windows [t + 5j, t + 5j + 4], any integer j) that the d-set `mask` touches, and whether j = 0 is one. */
function bandsOf(mask: number, t: number): { n: number; main: boolean } {
  let seen = 0;
  for (let d = 0; d < 15; d++) if (mask & (1 << d)) seen |= 1 << (Math.floor((d - t) / 5) + 4);
  let n = 0;
  for (let s = seen; s !== 0; s &= s - 1) n++;
  return { n, main: (seen & (1 << 4)) !== 0 };
}

/**
 * Occupancy of one int4p2 tensor [rows, cols] (exponents [rows, cols/G], codes [rows, cols]) in tiles of TILE rows
 * × one group: per group g and window start t, the band count summed over the row tiles (`bands[g·NT + t − T_MIN]`)
 * and the row tiles holding the main band (`main`), the histogram of d over nonzero (row, group) and of the band
 * count at t = 0 (the fixed split [0, 4], [5, 9], [10, 14]).
 */
interface Occupancy {
  rowTiles: number;
  groups: number;
  bands: Float64Array;
  main: Float64Array;
  dHist: Float64Array;
  /** tiles (row tile, group) holding band j of the fixed split, j = 0..2 */
  fixedBand: Float64Array;
  /** rows, and the extra ("shadow") rows a row-granular split needs: a row whose nonzero groups' d-set is covered by
   * n windows of 5 levels (greedy from its smallest d) needs n − 1 shadow rows */
  rows: number;
  shadows: number;
}

function occupancy(exponents: Int8Array, codes: Int8Array, rows: number, cols: number): Occupancy {
  const groups = cols / G;
  const rowTiles = Math.ceil(rows / TILE);
  const dmask = new Uint16Array(rowTiles * groups);
  const dHist = new Float64Array(15);
  const nz = new Uint8Array(groups);
  let shadows = 0;
  for (let r = 0; r < rows; r++) {
    let rowMask = 0;
    let top = -100;
    for (let g = 0; g < groups; g++) {
      nz[g] = 0;
      for (let i = r * cols + g * G, e = i + G; i < e; i++)
        if (codes[i] !== 0) {
          nz[g] = 1;
          break;
        }
      if (nz[g] && exponents[r * groups + g]! > top) top = exponents[r * groups + g]!;
    }
    for (let g = 0; g < groups; g++) {
      if (!nz[g]) continue;
      const d = top - exponents[r * groups + g]!;
      dHist[d]!++;
      rowMask |= 1 << d;
      dmask[Math.floor(r / TILE) * groups + g]! |= 1 << d;
    }
    for (let d = 0, end = -1; d < 15; d++)
      if (rowMask & (1 << d) && d > end) {
        if (end >= 0) shadows++;
        end = d + 4;
      }
  }
  const bands = new Float64Array(groups * NT);
  const main = new Float64Array(groups * NT);
  const fixedBand = new Float64Array(3);
  for (let t = 0; t < rowTiles; t++)
    for (let g = 0; g < groups; g++) {
      const m = dmask[t * groups + g]!;
      for (let w = T_MIN; w <= T_MAX; w++) {
        const b = bandsOf(m, w);
        bands[g * NT + w - T_MIN]! += b.n;
        main[g * NT + w - T_MIN]! += b.main ? 1 : 0;
      }
      for (let j = 0; j < 3; j++) if (m & (0x1f << (5 * j))) fixedBand[j]!++;
    }
  return { rowTiles, groups, bands, main, dHist, fixedBand, rows, shadows };
}

/** One layer: its weight occupancy and its activation occupancy summed over calls (same groups). */
interface LayerAcc {
  kind: string;
  w: Occupancy;
  actBands: Float64Array;
  actMain: Float64Array;
  actRowTiles: number;
  actD: Float64Array;
  actFixed: Float64Array;
  actRows: number;
  actShadows: number;
}

const layers: LayerAcc[] = [];

function addLayer(kind: string, w: Occupancy): LayerAcc {
  const l = {
    kind,
    w,
    actBands: new Float64Array(w.groups * NT),
    actMain: new Float64Array(w.groups * NT),
    actRowTiles: 0,
    actD: new Float64Array(15),
    actFixed: new Float64Array(3),
    actRows: 0,
    actShadows: 0,
  };
  layers.push(l);
  return l;
}

function addAct(l: LayerAcc, a: Occupancy): void {
  if (a.groups !== l.w.groups) throw new Error(`${l.kind}: ${a.groups} activation groups, weight ${l.w.groups}`);
  for (let i = 0; i < a.bands.length; i++) {
    l.actBands[i]! += a.bands[i]!;
    l.actMain[i]! += a.main[i]!;
  }
  l.actRowTiles += a.rowTiles;
  l.actRows += a.rows;
  l.actShadows += a.shadows;
  for (let d = 0; d < 15; d++) l.actD[d]! += a.dHist[d]!;
  for (let j = 0; j < 3; j++) l.actFixed[j]! += a.fixedBand[j]!;
}

/**
 * Predicted tdpbssd per (row tile, column tile, group) and the share of them outside the main accumulator, for the
 * fixed split (window start 0 on both operands) and for per-group window starts ta(g), tw(g) = T − ta(g) with one T
 * per layer (a power-of-two factor per group moved between the operands: the accumulator of a (main, main) product
 * is then 2^T for every group, so the main int32 sum still runs over the whole K).
 */
function predict(l: LayerAcc): {
  triples: number;
  fixed: number;
  fixedMain: number;
  shifted: number;
  shiftedMain: number;
  T: number;
} {
  const G_ = l.w.groups;
  const at = (v: Float64Array, g: number, t: number) => (t < T_MIN || t > T_MAX ? Number.NaN : v[g * NT + t - T_MIN]!);
  let fixed = 0;
  let fixedMain = 0;
  for (let g = 0; g < G_; g++) {
    fixed += at(l.actBands, g, 0) * at(l.w.bands, g, 0);
    fixedMain += at(l.actMain, g, 0) * at(l.w.main, g, 0);
  }
  let best = { shifted: fixed, shiftedMain: fixedMain, T: 0 };
  for (let T = 2 * T_MIN; T <= 2 * T_MAX; T++) {
    let s = 0;
    let sm = 0;
    for (let g = 0; g < G_; g++) {
      let bv = Number.POSITIVE_INFINITY;
      let bm = 0;
      for (let ta = T_MIN; ta <= T_MAX; ta++) {
        const v = at(l.actBands, g, ta) * at(l.w.bands, g, T - ta);
        // fewest products; among equal, most in the main accumulator
        const m = at(l.actMain, g, ta) * at(l.w.main, g, T - ta);
        if (v < bv - 1e-9 || (Math.abs(v - bv) <= 1e-9 && m > bm)) {
          bv = v;
          bm = m;
        }
      }
      s += bv;
      sm += bm;
    }
    if (s < best.shifted - 1e-9 || (Math.abs(s - best.shifted) <= 1e-9 && sm > best.shiftedMain))
      best = { shifted: s, shiftedMain: sm, T };
  }
  return { triples: l.actRowTiles * l.w.rowTiles * G_, fixed, fixedMain, ...best };
}

function report(title: string): void {
  console.log(`\n## ${title}\n`);
  console.log(
    "| kind | layers | act tiles | w tiles | act d = top − e, % at 0..8, ≥ 9 | w d, % at 0..8, ≥ 9 | act tiles with band 0 / 1 / 2 % | w tiles with band 0 / 1 / 2 % | tdpbssd per tile pair and group, fixed split (off main acc.) | per-group shift, one T per layer (off main acc.) | shadow rows act / w % | row-granular work (1 + s_a)(1 + s_w) |",
  );
  console.log("| - | -: | -: | -: | - | - | - | - | -: | -: | -: | -: |");
  const byKind = new Map<string, LayerAcc[]>();
  for (const l of layers) byKind.set(l.kind, [...(byKind.get(l.kind) ?? []), l]);
  for (const [k, ls] of byKind) {
    const sum = (f: (l: LayerAcc) => Float64Array, n: number) => {
      const v = new Float64Array(n);
      for (const l of ls) for (const [i, x] of f(l).entries()) v[i]! += x;
      return v;
    };
    const actD = sum((l) => l.actD, 15);
    const wD = sum((l) => l.w.dHist, 15);
    const actFixed = sum((l) => l.actFixed, 3);
    const wFixed = sum((l) => l.w.fixedBand, 3);
    const actTiles = ls.reduce((a, l) => a + l.actRowTiles * l.w.groups, 0);
    const wTiles = ls.reduce((a, l) => a + l.w.rowTiles * l.w.groups, 0);
    const sa = ls.reduce((a, l) => a + l.actShadows, 0) / ls.reduce((a, l) => a + l.actRows, 0);
    const sw = ls.reduce((a, l) => a + l.w.shadows, 0) / ls.reduce((a, l) => a + l.w.rows, 0);
    let tr = 0;
    let fx = 0;
    let fxm = 0;
    let sh = 0;
    let shm = 0;
    for (const l of ls) {
      const p = predict(l);
      tr += p.triples;
      fx += p.fixed;
      fxm += p.fixedMain;
      sh += p.shifted;
      shm += p.shiftedMain;
    }
    const hist = (h: Float64Array) => {
      const t = h.reduce((x, y) => x + y, 0);
      const out = [...h.slice(0, 9)].map((v) => ((100 * v) / t).toFixed(1));
      out.push(((100 * h.slice(9).reduce((x, y) => x + y, 0)) / t).toFixed(1));
      return out.join(" ");
    };
    const pct = (v: Float64Array, n: number) => [...v].map((x) => ((100 * x) / n).toFixed(1)).join(" / ");
    console.log(
      `| ${k} | ${ls.length} | ${actTiles} | ${wTiles} | ${hist(actD)} | ${hist(wD)} | ${pct(actFixed, actTiles)} | ${pct(wFixed, wTiles)} | **${(fx / tr).toFixed(3)}** (${((fx - fxm) / tr).toFixed(3)}) | **${(sh / tr).toFixed(3)}** (${((sh - shm) / tr).toFixed(3)}) | ${(100 * sa).toFixed(1)} / ${(100 * sw).toFixed(1)} | ${((1 + sa) * (1 + sw)).toFixed(3)} |`,
    );
  }
}

/** Linear kind of a FLUX unit or model layer name. */
function kindOfName(name: string): string {
  const single = name.startsWith("single_transformer_blocks.");
  if (single) {
    if (/\.proj_out$/.test(name)) return "single proj_out (attn out ‖ fc2 post-GELU)";
    return "single qkv + fc1";
  }
  if (/(qkv_proj|to_[qkv])$/.test(name)) return "qkv (img)";
  if (/(qkv_proj_context|add_[qkv]_proj)$/.test(name)) return "qkv (txt)";
  if (/(out_proj|to_out\.0)$/.test(name)) return "out (img)";
  if (/(out_proj_context|to_add_out)$/.test(name)) return "out (txt)";
  if (/(mlp_fc1|ff\.net\.0\.proj)$/.test(name)) return "fc1 (img)";
  if (/(mlp_context_fc1|ff_context\.net\.0\.proj)$/.test(name)) return "fc1 (txt)";
  if (/(mlp_fc2|ff\.net\.2)$/.test(name)) return "fc2 post-GELU (img)";
  if (/(mlp_context_fc2|ff_context\.net\.2)$/.test(name)) return "fc2 post-GELU (txt)";
  return `other ${name}`;
}

/** x/λ of `m` tokens [m, k] quantized as the kernel's activation pass does (pow2 row scales). */
function quantizeInput(
  x: Float64Array | Float32Array,
  m: number,
  k: number,
  lam: Float64Array | Float32Array,
): Quantized {
  const xs = new Float32Array(m * k);
  for (let r = 0; r < m; r++) for (let j = 0; j < k; j++) xs[r * k + j] = x[r * k + j]! / lam[j]!;
  return quantize(xs, m, k, specFor("int4p2", { p2RowScale: "pow2" }));
}

const occ = (q: Quantized) => occupancy(q.exponents!, q.codes, q.rows, q.cols);

/** Occupancy of a generated layer quantized with SVDQuant int4p2: the residual and the held-out tokens x/λ. */
function addGenerated(
  kind: string,
  layer: Parameters<typeof quantizeWith>[1],
  calib: Float64Array,
  evalX: Float64Array,
  m: number,
): void {
  const t0 = performance.now();
  const q = quantizeWith("svdquant-int4p2", layer, calibrationFromTokens(calib, m, layer.k), { rank: 32 });
  const w = occ(q.residual!);
  const l = addLayer(kind, w);
  for (let t0m = 0; t0m < m; t0m += 256) {
    const rows = Math.min(256, m - t0m);
    const a = occ(quantizeInput(evalX.subarray(t0m * layer.k, (t0m + rows) * layer.k), rows, layer.k, q.smooth));
    addAct(l, a);
  }
  console.log(`${kind}: quantized in ${((performance.now() - t0) / 1000).toFixed(0)} s (${JSON.stringify(q.info)})`);
}

async function generated(): Promise<void> {
  layers.length = 0;
  const N = 512; // output channels (weight rows): enough 16-column tiles; the SVD stays cheap
  const M = 512; // tokens (calibration and held-out each)
  for (const [i, K] of [3072, 12288].entries()) {
    const g = generateLayer({
      name: `generated K=${K}`,
      n: N,
      k: K,
      tokens: M,
      outlierChannels: K / 512, // DEFAULT_GENERATED's 6 per 512 … here 1 per 512 input channels, 20–100x
      outlierRange: [20, 100],
      weightOutlierChannels: K / 512,
      weightOutlierScale: 8,
      headRank: 8,
      headScale: 4,
      seed: 11 + i,
    });
    addGenerated(`generated K=${K} (outlier tokens)`, g.layer, g.calib, g.evalX, M);
    if (K === 12288) {
      // the MLP's second projection: post-GELU heavy-tailed tokens with K/32 outlier channels
      const x = outlierTokens(21, 2 * M, K, { postGelu: true });
      addGenerated(`generated K=${K} post-GELU`, g.layer, x.subarray(0, M * K), x.subarray(M * K), M);
    }
  }
  report("generated layers at FLUX widths (N = 512 weight rows, 512 held-out tokens), SVDQuant int4p2 r32, paper grid");
}

/** The synthetic layer of packages/kernels/bench/gemm.bench.ts --only=p2 (same distributions, another generator). */
function bench(): void {
  layers.length = 0;
  const rng = new SeededRng(5);
  const N = 3072;
  const M = 1024;
  for (const K of [3072, 12288]) {
    const codes = Int8Array.from({ length: N * K }, () => rng.int(16) - 8);
    const exponents = Int8Array.from({ length: (N * K) / G }, () => rng.int(10) - 4);
    const w = occupancy(exponents, codes, N, K);
    const lam = Float32Array.from({ length: K }, () => 0.5 + rng.uniform());
    const x = Float32Array.from({ length: M * K }, () => rng.uniform() * 2 - 1);
    const a = occ(quantizeInput(x, M, K, lam));
    addAct(addLayer(`bench K=${K}`, w), a);
  }
  report("the kernels bench's synthetic int4p2 layer (M = 1024, N = 3072)");
}

async function toy(): Promise<void> {
  layers.length = 0;
  const dataset = JSON.parse(readFileSync(join(pipelineDir, "dataset.json"), "utf8")) as { captions: string[] };
  const captions = dataset.captions.filter((c) => c.length > 0);
  // calibration prompts and evaluation prompts kept apart (every 7th caption / every 11th from an offset)
  const calPrompts = captions.filter((_, i) => i % 7 === 0).slice(0, 16);
  const evalPrompts = captions.filter((_, i) => i % 11 === 5).slice(0, PROMPTS);
  const dir = await mkdtemp(join(tmpdir(), "svdq-p2bands-"));
  try {
    const out = join(dir, "toy.int4p2.safetensors");
    const t0 = performance.now();
    const config = parseQuantizeConfig({
      format: "int4p2",

      calibration: {
        source: { prompts: calPrompts, pipeline: pipelineDir, guidance: 1 },
        samples: calPrompts.length,
        steps: STEPS,
        imageSide: 8,
        textTokens: 32,
        reservoir: 256,
        seed: 1000,
      },
    });
    await quantizeModel({ modelDir: join(pipelineDir, "transformer"), out, config });
    console.log(
      `quantized toy-flux to int4p2 (SVDQuant, paper grid, rank 32) in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
    );

    // weights: every W4A4 unit's residual exponents; λ by unit, and the model layer names that read each unit's input
    const ck = await readQuantizedCheckpoint(out);
    const weightOcc = new Map<string, Occupancy>(); // unit name → occupancy
    const unitOfLayer = new Map<string, string[]>(); // model layer name → units reading it
    const smoothOfUnit = new Map<string, Float32Array | Float64Array>();
    const accOfUnit = new Map<string, LayerAcc>();
    try {
      for (const [name, { unit, prefix, record }] of ck.w4a4) {
        const q = record.residual!;
        weightOcc.set(name, occupancy(q.exponents!, q.codes, q.rows, q.cols));
        smoothOfUnit.set(name, record.smooth ?? new Float64Array(q.cols).fill(1));
        const member = prefix + unit.members[0]!;
        unitOfLayer.set(member, [...(unitOfLayer.get(member) ?? []), name]);
        accOfUnit.set(name, addLayer(kindOfName(name), weightOcc.get(name)!));
      }
    } finally {
      await ck.close();
    }

    // activations: the quantized model's layer inputs during sampling, quantized as the kernel does (x/λ, pow2)
    const model = await loadQuantizedModel(out, { backend: "kernels" });
    const spec = specFor("int4p2", { p2RowScale: "pow2" });
    let calls = 0;
    const observer: LinearObserver = {
      onLinearInput(layer: LinearLayer, x: Float32Array, m: number) {
        const units = unitOfLayer.get(layer.name);
        if (units === undefined) return;
        for (const u of units) {
          const lam = smoothOfUnit.get(u)!;
          const w = weightOcc.get(u)!;
          const K = w.groups * G;
          const k0 = layer.inFeatures;
          const xs = new Float32Array(m * K); // K padded to 64 with zeros
          for (let r = 0; r < m; r++) for (let k = 0; k < k0; k++) xs[r * K + k] = x[r * k0 + k]! / lam[k]!;
          const q = quantize(xs, m, K, spec, u);
          const a = occupancy(q.exponents!, q.codes, m, K);
          addAct(accOfUnit.get(u)!, a);
          calls++;
        }
      },
    };
    const pipe = await FluxPipeline.load(pipelineDir);
    const cond = pipe.encode(evalPrompts, 32);
    const t1 = performance.now();
    for (let row = 0; row < evalPrompts.length; row++)
      await sampleFlux(
        pipe,
        model as Parameters<typeof sampleFlux>[1],
        cond,
        { steps: STEPS, guidance: 1, height: 64, width: 64, maxSequenceLength: 32 },
        { row, seed: 7000 + row, observer },
      );
    console.log(
      `sampled ${evalPrompts.length} prompts × ${STEPS} steps (${calls} unit inputs) in ${((performance.now() - t1) / 1000).toFixed(0)} s`,
    );
    report("toy-flux (trained), int4p2 SVDQuant r32, layer inputs of the quantized model while sampling");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (ONLY === undefined || ONLY === "bench") bench();
if (ONLY === undefined || ONLY === "toy") await toy();
if (ONLY === undefined || ONLY === "generated") await generated();
