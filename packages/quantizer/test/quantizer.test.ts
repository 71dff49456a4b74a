import { dequantize, fakeQuantize, specFor } from "@svdquant/int4";
import { SeededRng } from "@svdquant/lowrank";
import { CalibrationRecorder } from "@svdquant/models";
import { Matrix, SingularValueDecomposition } from "ml-matrix";
import { describe, expect, it } from "vitest";
import {
  branchBitsPerParam,
  calibrationFromStats,
  calibrationFromTokens,
  evaluateLayer,
  forwardQuantized,
  GELU_SHIFT,
  getMethod,
  type LinearLayer,
  METHOD_NAMES,
  QuantizerError,
  quantBitsPerParam,
  quantizeLayer,
  quantizeSharedLayers,
  smoothWeight,
} from "../src/index.ts";

/** Small layer with outlier activation channels (independent of the experiment's generator). */
function makeCase(seed: number, n = 64, k = 128, m = 96, postGelu = false) {
  const rng = new SeededRng(seed);
  const w = new Float64Array(n * k).map(() => rng.normal() / Math.sqrt(k));
  for (let i = 0; i < n; i++) w[i * k + 5] *= 6; // an outlier input channel of W
  const bias = new Float64Array(n).map(() => 0.1 * rng.normal());
  const scale = new Float64Array(k).map(() => Math.exp(0.3 * rng.normal()));
  scale[7] *= 60;
  scale[70] *= 30;
  const tok = (): Float64Array =>
    new Float64Array(m * k).map((_, i) => {
      const v = scale[i % k] * rng.studentT(4);
      return postGelu ? 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))) : v;
    });
  const layer: LinearLayer = { name: `case${seed}`, n, k, weight: w, bias };
  return { layer, x: tok(), xe: tok(), m };
}

/** Independent float64 reference of the published-checkpoint forward, with naive loops. */
function manualForward(
  q: ReturnType<typeof quantizeLayer>,
  x: Float64Array,
  m: number,
  actSpec: Parameters<typeof fakeQuantize>[3],
): Float64Array {
  const { n, k, rank } = q;
  const p = new Float64Array(m * k);
  for (let t = 0; t < m; t++) for (let j = 0; j < k; j++) p[t * k + j] = (x[t * k + j] + q.shift) / q.smooth[j];
  const pq = fakeQuantize(p, m, k, actSpec);
  const r = dequantize(q.residual!);
  const y = new Float64Array(m * n);
  for (let t = 0; t < m; t++)
    for (let o = 0; o < n; o++) {
      let s = q.bias ? q.bias[o] : 0;
      for (let j = 0; j < k; j++) s += pq[t * k + j] * r[o * k + j];
      for (let c = 0; c < rank; c++) {
        let d = 0;
        for (let j = 0; j < k; j++) d += x[t * k + j] * q.lowRankDown[c * k + j];
        s += d * q.lowRankUp[o * rank + c];
      }
      y[t * n + o] = s;
    }
  return y;
}

describe("quantizeLayer (SVDQuant)", () => {
  it("returns λ, 16-bit L_up [N,R] / L_down [R,K], 4-bit codes + scales and a forward matching a naive reference", () => {
    const { layer, x, xe, m } = makeCase(1);
    const q = quantizeLayer(layer, calibrationFromTokens(x, m, layer.k), {
      rank: 16,
      refinement: { maxIterations: 3 },
    });
    expect(q.smooth.length).toBe(128);
    expect(q.lowRankUp.length).toBe(64 * 16);
    expect(q.lowRankDown.length).toBe(16 * 128);
    expect(q.residual!.codes.length).toBe(64 * 128);
    expect(q.residual!.scales.length).toBe(64 * 2); // groups of 64 along K
    for (const c of q.residual!.codes) expect(c >= -8 && c <= 7).toBe(true);
    // BF16 values: rounding them again changes nothing
    const bf = new Float32Array(1);
    const u = new Uint32Array(bf.buffer);
    for (const v of [...q.lowRankUp, ...q.lowRankDown]) {
      bf[0] = v;
      expect(u[0] & 0xffff).toBe(0);
    }
    const got = forwardQuantized(q, xe, m);
    const want = manualForward(q, xe, m, specFor("int4"));
    for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 9);
    expect(q.metrics.relError).toBeLessThan(0.05);
    expect(q.trials.length).toBe(39);
  });

  it("folds 1/λ into L_down: L_up·L_down·diag(λ) is the rank-R SVD of Ŵ (up to BF16) without refinement", () => {
    const { layer, x, m } = makeCase(2);
    const q = quantizeLayer(layer, calibrationFromTokens(x, m, layer.k), { rank: 8, refinement: { maxIterations: 0 } });
    const wh = smoothWeight(layer, q.smooth);
    const svd = new SingularValueDecomposition(Matrix.from1DArray(64, 128, wh), { autoTranspose: true });
    const best = svd.leftSingularVectors
      .subMatrix(0, 63, 0, 7)
      .mmul(Matrix.diag(svd.diagonal.slice(0, 8)))
      .mmul(svd.rightSingularVectors.subMatrix(0, 127, 0, 7).transpose());
    let num = 0;
    let den = 0;
    for (let i = 0; i < 64; i++)
      for (let j = 0; j < 128; j++) {
        let l = 0;
        for (let c = 0; c < 8; c++) l += q.lowRankUp[i * 8 + c] * q.lowRankDown[c * 128 + j];
        l *= q.smooth[j];
        num += (l - best.get(i, j)) ** 2;
        den += best.get(i, j) ** 2;
      }
    expect(Math.sqrt(num / den)).toBeLessThan(1e-2);
  });

  it("absorbs the GELU shift into the bias for unsigned activations", () => {
    const { layer, x, xe, m } = makeCase(3, 64, 128, 96, true);
    const act = specFor("uint4");
    const q = quantizeLayer(layer, calibrationFromTokens(x, m, layer.k), {
      rank: 16,
      activation: act,
      shift: GELU_SHIFT,
      refinement: { maxIterations: 0 },
    });
    expect(q.shift).toBe(0.171875);
    const r = dequantize(q.residual!);
    for (let o = 0; o < 64; o++) {
      let s = 0;
      for (let j = 0; j < 128; j++) s += r[o * 128 + j] / q.smooth[j];
      expect(q.bias![o]).toBeCloseTo((layer.bias as Float64Array)[o] - GELU_SHIFT * s, 9);
    }
    const got = forwardQuantized(q, xe, m);
    const want = manualForward(q, xe, m, act);
    for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 9);
    expect(evaluateLayer(layer, q, xe, m).relError).toBeLessThan(0.05);
    expect(() =>
      quantizeLayer(layer, calibrationFromTokens(x, m, layer.k), { shift: GELU_SHIFT, activation: specFor("int4") }),
    ).toThrow(/unsigned/);
  });

  it("is deterministic per seed and refinement never increases the calibration error", () => {
    const { layer, x, m } = makeCase(4);
    const cal = calibrationFromTokens(x, m, layer.k);
    const a = quantizeLayer(layer, cal, { rank: 16, seed: 3, refinement: { maxIterations: 5 } });
    const b = quantizeLayer(layer, cal, { rank: 16, seed: 3, refinement: { maxIterations: 5 } });
    expect(Array.from(a.residual!.codes)).toEqual(Array.from(b.residual!.codes));
    expect(Array.from(a.lowRankUp)).toEqual(Array.from(b.lowRankUp));
    const plain = quantizeLayer(layer, cal, { rank: 16, seed: 3, refinement: { maxIterations: 0 } });
    expect(a.metrics.relError).toBeLessThanOrEqual(plain.metrics.relError);
  });

  it("layers sharing an input share one λ chosen on their joint error", () => {
    const c = makeCase(5);
    const rng = new SeededRng(50);
    const other: LinearLayer = {
      name: "k_proj",
      n: 32,
      k: 128,
      weight: new Float64Array(32 * 128).map(() => rng.normal() / 11),
    };
    const r = quantizeSharedLayers([c.layer, other], calibrationFromTokens(c.x, c.m, 128), {
      rank: 8,
      refinement: { maxIterations: 0 },
    });
    expect(r.layers[0].smooth).toBe(r.layers[1].smooth);
    const min = Math.min(...r.trials.map((t) => t.error));
    expect(r.trials.find((t) => t.candidate === r.candidate)?.error ?? min).toBe(min);
    expect(() =>
      quantizeSharedLayers(
        [c.layer, { ...other, k: 64, weight: new Float64Array(32 * 64) }],
        calibrationFromTokens(c.x, c.m, 128),
      ),
    ).toThrow(QuantizerError);
  });

  it("takes streamed calibration statistics and FP4 g32 weights", () => {
    const { layer, x, xe, m } = makeCase(8);
    const rec = new CalibrationRecorder({ reservoirSize: 48, seed: 1 });
    const x32 = Float32Array.from(x);
    for (let b = 0; b < 4; b++) rec.add("fc", x32.subarray(b * 24 * 128, (b + 1) * 24 * 128), 24, 128);
    const cal = calibrationFromStats(rec.get("fc"));
    expect(cal.count).toBe(48);
    expect(cal.xAbsMax[5]).toBe(Math.max(...Array.from({ length: 96 }, (_, t) => Math.abs(x32[t * 128 + 5]))));
    expect(() =>
      calibrationFromStats({ inFeatures: 4, absmax: new Float32Array(4), reservoir: new Float32Array(0), rows: 0 }),
    ).toThrow(/no calibration tokens/);
    const fp4 = specFor("fp4");
    const q = quantizeLayer(layer, cal, { rank: 8, weight: fp4, refinement: { maxIterations: 0 } });
    expect(q.residual!.spec.format).toBe("fp4");
    expect(q.residual!.scales.length).toBe(64 * 4); // groups of 32 along K = 128
    const e = evaluateLayer(layer, q, xe, m);
    const naive = evaluateLayer(layer, getMethod("w4a4-naive").quantize(layer, cal), xe, m);
    expect(e.relError).toBeLessThan(naive.relError);
  });

  it("names the layer and shape at fault", () => {
    const { layer, x, m } = makeCase(6);
    const cal = calibrationFromTokens(x, m, 128);
    expect(() => quantizeLayer({ ...layer, n: 65 }, cal)).toThrow(/case6.*\[65, 128\]/);
    const bad = Float64Array.from(layer.weight);
    bad[130] = Number.NaN;
    expect(() => quantizeLayer({ ...layer, weight: bad }, cal)).toThrow(/weight\[1, 2\]/);
    expect(() => getMethod("gptq")).toThrow(/unknown method "gptq"/);
  });
});

describe("bits per parameter", () => {
  it("counts codes, scales and the branch", () => {
    expect(quantBitsPerParam(specFor("int4"), 3072, 3072)).toBe(4 + 16 / 64);
    expect(quantBitsPerParam(specFor("nvfp4"), 3072, 3072)).toBe(4 + 8 / 16);
    expect(quantBitsPerParam(specFor("int8"), 3072, 3072)).toBe(8 + 16 / 3072);
    expect(quantBitsPerParam(specFor("nf4"), 3072, 3072)).toBe(4 + 32 / 64);
    expect(quantBitsPerParam(specFor("int4p2"), 3072, 3072)).toBe(4 + 4 / 64 + 32 / 3072);
    // FLUX.1 [3072, 3072] with a rank-32 BF16 branch: 16·32·6144 / 3072² ≈ 0.333 bits/param
    expect(branchBitsPerParam(3072, 3072, 32, false)).toBeCloseTo(1 / 3, 12);
  });
});

describe("baselines harness", () => {
  it("runs every method by name and each obeys the error bound", () => {
    const { layer, x, xe, m } = makeCase(7, 32, 128, 64);
    const cal = calibrationFromTokens(x, m, 128);
    expect(METHOD_NAMES.length).toBe(17);
    for (const name of METHOD_NAMES) {
      const q = getMethod(name).quantize(layer, cal, { rank: 8, refinement: 3 });
      expect(q.method).toBe(name);
      const e = evaluateLayer(layer, q, xe, m);
      expect(Number.isFinite(e.relError)).toBe(true);
      expect(e.absError).toBeLessThanOrEqual(e.bound * (1 + 1e-9));
    }
  });
});

describe("int4p2 (issue 16)", () => {
  it("costs accuracy against free int4 scales, and the low-rank branch still pays for itself", () => {
    const { layer, x, xe, m } = makeCase(11, 64, 256, 96);
    const cal = calibrationFromTokens(x, m, 256);
    const err = (name: string) =>
      evaluateLayer(layer, getMethod(name).quantize(layer, cal, { rank: 16 }), xe, m).relError;
    const [p2, int4, p2NoBranch, p2Naive] = [
      err("svdquant-int4p2"),
      err("svdquant-int4"),
      err("smoothing-only-int4p2"),
      err("w4a4-int4p2-naive"),
    ];
    const q = getMethod("svdquant-int4p2").quantize(layer, cal, { rank: 16 });
    expect(q.residual?.spec.format).toBe("int4p2");
    expect(q.activation).toMatchObject({ format: "int4p2", p2RowScale: "pow2" });
    expect(p2).toBeGreaterThan(int4);
    expect(p2).toBeLessThan(int4 * 1.6);
    expect(p2).toBeLessThan(p2NoBranch);
    expect(p2NoBranch).toBeLessThan(p2Naive);
  });
});
