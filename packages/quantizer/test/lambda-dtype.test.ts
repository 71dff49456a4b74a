/**
 * `lambdaDtype`: λ rounded to its storage dtype inside the search. One call must give what the two-pass recipe
 * gives (search, round λ, rebuild and refine at the rounded λ), and the stored λ must be the one evaluated.
 */
import * as kernels from "@svdquant/kernels";
import { SeededRng } from "@svdquant/lowrank";
import { decodeToFloat64, encodeFloats } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { calibrationFromTokens, type LinearLayer, quantizeSharedLayers, type SvdQuantConfig } from "../src/index.ts";

function makeCase(seed: number, n: number, k: number, m: number) {
  const rng = new SeededRng(seed);
  const w = new Float32Array(n * k).map(() => rng.normal() / Math.sqrt(k));
  for (let i = 0; i < n; i++) w[i * k + 5] *= 6;
  const scale = new Float64Array(k).map(() => Math.exp(0.4 * rng.normal()));
  scale[2] *= 40;
  const x = new Float32Array(m * k).map((_, i) => scale[i % k] * rng.studentT(4));
  const layers: LinearLayer[] = [
    { name: "q", n, k, weight: w, bias: new Float32Array(n).map(() => 0.1 * rng.normal()) },
    { name: "k", n: n / 2, k, weight: new Float32Array((n / 2) * k).map(() => rng.normal() / Math.sqrt(k)) },
  ];
  return { layers, cal: calibrationFromTokens(x, m, k) };
}

const bf16 = (a: Float64Array) => decodeToFloat64("BF16", encodeFloats("BF16", a));

describe.each([
  ["float64 path", {}],
  ["kernel path", { kernels }],
] as const)("lambdaDtype on the %s", (_name, extra) => {
  const { layers, cal } = makeCase(11, 128, 192, 64);
  const base: SvdQuantConfig = { rank: 8, seed: 4, svd: { exactMaxSide: 64 }, ...extra };

  it("one pass equals the two-pass recipe (search, round λ to BF16, rebuild and refine)", () => {
    const one = quantizeSharedLayers(layers, cal, { ...base, refinement: { maxIterations: 3 }, lambdaDtype: "BF16" });
    const search = quantizeSharedLayers(layers, cal, { ...base, refinement: { maxIterations: 0 } });
    const two = quantizeSharedLayers(layers, cal, {
      ...base,
      refinement: { maxIterations: 3 },
      lambda: { lambda: bf16(search.lambda), candidate: search.candidate },
    });
    expect(one.candidate).toEqual(search.candidate);
    expect(Array.from(one.lambda)).toEqual(Array.from(two.lambda));
    for (let i = 0; i < layers.length; i++) {
      expect(one.layers[i].residual!.codes).toEqual(two.layers[i].residual!.codes);
      expect(Array.from(one.layers[i].lowRankUp)).toEqual(Array.from(two.layers[i].lowRankUp));
      expect(one.metrics[i].relError).toBe(two.metrics[i].relError);
    }
  });

  it("stores exactly the λ it evaluated: BF16 values whose unrefined build has the winning trial's error", () => {
    // one power iteration everywhere, so the unrefined build is the search's own candidate build
    const cfg: SvdQuantConfig = { ...base, svd: { ...base.svd, powerIterations: 1 }, lambdaDtype: "BF16" };
    const r = quantizeSharedLayers(layers, cal, { ...cfg, refinement: { maxIterations: 0 } });
    expect(Array.from(bf16(r.lambda))).toEqual(Array.from(r.lambda));
    const best = Math.min(...r.trials.map((t) => t.error));
    let num = 0;
    let den = 0;
    for (let i = 0; i < layers.length; i++) {
      const y2 = (r.metrics[i].absError / r.metrics[i].relError) ** 2;
      num += r.metrics[i].absError ** 2;
      den += y2;
    }
    expect(Math.sqrt(num / den)).toBeCloseTo(best, 10);
    // and the unrounded search would have evaluated other λ values
    const raw = quantizeSharedLayers(layers, cal, { ...cfg, lambdaDtype: undefined, refinement: { maxIterations: 0 } });
    expect(Array.from(raw.lambda)).not.toEqual(Array.from(r.lambda));
  });

  it("rejects an unknown dtype", () => {
    expect(() => quantizeSharedLayers(layers, cal, { ...base, lambdaDtype: "FP8" as never })).toThrow(/lambdaDtype/);
  });
});
