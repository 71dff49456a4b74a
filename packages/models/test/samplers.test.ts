import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  calculateShift,
  classifierFreeGuidance,
  DpmSolverMultistepScheduler,
  epsilonHalf,
  FLUX_DEV_SCHEDULER,
  FLUX_SCHNELL_SCHEDULER,
  FlowMatchEulerScheduler,
  fluxImageIds,
  fluxLatentShape,
  fluxSigmas,
  ModelError,
  PIXART_SIGMA_SCHEDULER,
  packFluxLatents,
  parseDpmSolverConfig,
  parseFlowMatchConfig,
  unpackFluxLatents,
} from "../src/index.js";
import { randn } from "./helpers.js";
import { type Loaded, maxUlps, PIPELINE, readPipelineFixture, relErr } from "./pipeline-fixtures.js";

let S: Record<string, Loaded>;
beforeAll(async () => {
  S = (await readPipelineFixture("samplers.safetensors")).t;
});

const get = (n: string) => {
  const v = S[n];
  if (v === undefined) throw new Error(`fixture tensor ${n} missing`);
  return v;
};

function flowCases(): { tag: string; name: string; steps: number; seq: number }[] {
  return Object.keys(S)
    .filter((k) => k.startsWith("flow.") && k.endsWith(".sigmas"))
    .map((k) => {
      const [, name, steps, seq] = k.split(".");
      return { tag: k.slice(0, -".sigmas".length), name: name!, steps: Number(steps), seq: Number(seq) };
    });
}

describe(`FlowMatchEulerScheduler vs diffusers (FluxPipeline's sigmas and calculate_shift)`, () => {
  it("has the recorded cases (dev at several resolutions, schnell)", () => {
    const cases = flowCases();
    expect(cases.length).toBeGreaterThanOrEqual(6);
    expect(cases.some((c) => c.name === "schnell" && c.steps === 4)).toBe(true);
    expect(cases.some((c) => c.name === "dev" && c.steps === 50)).toBe(true);
  });

  it("mu, sigmas and timesteps equal diffusers' bit for bit", () => {
    for (const c of flowCases()) {
      const cfg = c.name === "dev" ? FLUX_DEV_SCHEDULER : FLUX_SCHNELL_SCHEDULER;
      const mu = calculateShift(c.seq, cfg);
      expect(mu, c.tag).toBe(get(`${c.tag}.mu`).data[0]);
      const s = new FlowMatchEulerScheduler(cfg);
      s.setTimesteps(c.steps, { sigmas: fluxSigmas(c.steps), mu });
      expect(maxUlps(s.sigmas, get(`${c.tag}.sigmas`).data), `${c.tag} sigmas`).toBe(0);
      expect(maxUlps(s.timesteps, get(`${c.tag}.timesteps`).data), `${c.tag} timesteps`).toBe(0);
    }
  });

  it("Euler trajectories on recorded model outputs match within 1e-6", () => {
    let n = 0;
    for (const c of flowCases()) {
      if (S[`${c.tag}.samples`] === undefined) continue;
      n++;
      const cfg = c.name === "dev" ? FLUX_DEV_SCHEDULER : FLUX_SCHNELL_SCHEDULER;
      const s = new FlowMatchEulerScheduler(cfg);
      s.setTimesteps(c.steps, { sigmas: fluxSigmas(c.steps), mu: calculateShift(c.seq, cfg) });
      const outs = get(`${c.tag}.model_outputs`).data;
      const samples = get(`${c.tag}.samples`).data;
      let x: Float32Array = Float32Array.from(get(`${c.tag}.x0`).data);
      const per = x.length;
      let worst = 0;
      for (let i = 0; i < c.steps; i++) {
        x = s.step(Float32Array.from(outs.subarray(i * per, (i + 1) * per)), x);
        worst = Math.max(worst, relErr(x, samples.subarray(i * per, (i + 1) * per)));
      }
      console.log(
        `${c.tag}: worst step rel err ${worst}, final ulps ${maxUlps(x, samples.subarray((c.steps - 1) * per))}`,
      );
      expect(worst, c.tag).toBeLessThan(1e-6);
    }
    expect(n).toBeGreaterThanOrEqual(2);
  });

  it("reads the FLUX scheduler folder, and the default (no sigmas) path is monotone from 1 to 0", async () => {
    const s = await FlowMatchEulerScheduler.fromFolder(join(PIPELINE, "flux/scheduler"));
    expect(s.config).toEqual(FLUX_DEV_SCHEDULER);
    s.setTimesteps(7, { mu: 0.8 });
    expect(s.sigmas[0]).toBe(1);
    expect(s.sigmas[7]).toBe(0);
    for (let i = 0; i < 7; i++) expect(s.sigmas[i + 1]!).toBeLessThan(s.sigmas[i]!);
  });

  it("rejects bad use with one clear error", () => {
    const s = new FlowMatchEulerScheduler(FLUX_DEV_SCHEDULER);
    expect(() => s.setTimesteps(4)).toThrow(/mu must be a finite number/);
    expect(() => s.setTimesteps(0, { mu: 1 })).toThrow(ModelError);
    expect(() => s.setTimesteps(3, { mu: 1, sigmas: [1, 0.5] })).toThrow(/2 sigmas given for 3 steps/);
    s.setTimesteps(1, { mu: 1, sigmas: [1] });
    expect(() => s.step(new Float32Array(2), new Float32Array(3))).toThrow(/model output has 2 values, the sample 3/);
    expect(() => s.step(Float32Array.of(0, Number.NaN), new Float32Array(2))).toThrow(/element 1 is NaN/);
    s.step(new Float32Array(2), new Float32Array(2));
    expect(() => s.step(new Float32Array(2), new Float32Array(2))).toThrow(/all 1 steps are taken/);
    expect(() => parseFlowMatchConfig({ stochastic_sampling: true })).toThrow(/stochastic_sampling.*not supported/);
    expect(() => parseFlowMatchConfig({ _class_name: "DDIMScheduler" })).toThrow(
      /expected "FlowMatchEulerDiscreteScheduler"/,
    );
  });
});

describe(`DpmSolverMultistepScheduler (DPM-Solver++ 2M, PixArt-Σ's config) vs diffusers`, () => {
  it("reads the PixArt scheduler folder (with lambda_min_clipped: -Infinity) as the defaults", async () => {
    const s = await DpmSolverMultistepScheduler.fromFolder(join(PIPELINE, "pixart/scheduler"));
    expect(s.config).toEqual(PIXART_SIGMA_SCHEDULER);
  });

  it("alphas_cumprod bit-identical (float32)", () => {
    const s = new DpmSolverMultistepScheduler();
    const u = maxUlps(s.alphasCumprod, get("dpm.alphas_cumprod").data);
    console.log("alphas_cumprod max ulps:", u);
    expect(u).toBe(0);
  });

  it("timesteps exact and sigmas within 1e-6 for 1, 2, 10, 20, 25 steps", () => {
    for (const n of [1, 2, 10, 20, 25]) {
      const s = new DpmSolverMultistepScheduler();
      s.setTimesteps(n);
      expect(Array.from(s.timesteps), `${n} steps`).toEqual(Array.from(get(`dpm.${n}.timesteps`).data));
      expect(relErr(s.sigmas, get(`dpm.${n}.sigmas`).data), `${n} steps`).toBeLessThan(1e-6);
    }
  });

  it("CFG 4.5 + learned-sigma split + 2M steps reproduce the recorded trajectories within 1e-6", () => {
    for (const n of [20, 10, 2]) {
      const s = new DpmSolverMultistepScheduler();
      s.setTimesteps(n);
      let x: Float32Array = Float32Array.from(get(`dpm.${n}.x0`).data);
      const per = x.length;
      const unc = get(`dpm.${n}.uncond`).data;
      const txt = get(`dpm.${n}.text`).data;
      const samples = get(`dpm.${n}.samples`).data;
      let worst = 0;
      for (let i = 0; i < n; i++) {
        const u = Float32Array.from(unc.subarray(i * 2 * per, (i + 1) * 2 * per));
        const c = Float32Array.from(txt.subarray(i * 2 * per, (i + 1) * 2 * per));
        const eps = epsilonHalf(classifierFreeGuidance(u, c, 4.5), 1, 4, per / 4);
        x = s.step(eps, x);
        worst = Math.max(worst, relErr(x, samples.subarray(i * per, (i + 1) * per)));
      }
      console.log(`dpm ${n} steps: worst step rel err ${worst}`);
      expect(worst, `${n} steps`).toBeLessThan(1e-6);
    }
  });

  it("rejects configs outside DPM-Solver++ 1/2 and bad steps", () => {
    expect(() => parseDpmSolverConfig({ algorithm_type: "sde-dpmsolver++" })).toThrow(/algorithm_type.*not supported/);
    expect(() => parseDpmSolverConfig({ solver_order: 3 })).toThrow(/solver_order/);
    expect(() => parseDpmSolverConfig({ use_karras_sigmas: true })).toThrow(ModelError);
    const s = new DpmSolverMultistepScheduler();
    expect(() => s.setTimesteps(1.5)).toThrow(/positive integer/);
    expect(() => s.step(new Float32Array(1), new Float32Array(1))).toThrow(/all 0 steps are taken/);
  });
});

describe("FLUX latent packing and CFG helpers", () => {
  it(`unpack matches FluxPipeline._unpack_latents`, async () => {
    const { t } = await readPipelineFixture("vae.safetensors");
    const packed = Float32Array.from(t["flux.packed"]!.data);
    const [, c, h, w] = t["flux.unpacked"]!.shape as number[];
    const un = unpackFluxLatents(packed, 1, c!, h!, w!);
    expect(Array.from(un)).toEqual(Array.from(t["flux.unpacked"]!.data));
    expect(Array.from(packFluxLatents(un, 1, c!, h!, w!))).toEqual(Array.from(packed));
  });

  it("pack/unpack are inverse permutations; pack takes 2x2 patches channel-major", () => {
    // [1, 1, 2, 4] → two patches [a b e f], [c d g h]
    expect(Array.from(packFluxLatents(Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8), 1, 1, 2, 4))).toEqual([
      1, 2, 5, 6, 3, 4, 7, 8,
    ]);
    const x = randn(2 * 3 * 4 * 6, 7);
    expect(Array.from(unpackFluxLatents(packFluxLatents(x, 2, 3, 4, 6), 2, 3, 4, 6))).toEqual(Array.from(x));
  });

  it("latent geometry and ids as FluxPipeline", () => {
    expect(fluxLatentShape(1024, 1024)).toEqual({ h: 128, w: 128, imageSeqLen: 4096 });
    expect(fluxLatentShape(768, 1360)).toEqual({ h: 96, w: 170, imageSeqLen: 4080 });
    expect(() => fluxLatentShape(8, 1024)).toThrow(/too small/);
    expect(Array.from(fluxImageIds(2, 3))).toEqual([0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 1, 0, 0, 1, 1, 0, 1, 2]);
  });

  it("classifierFreeGuidance is u + g(c − u); epsilonHalf keeps the first half of channels per batch item", () => {
    const u = randn(16, 1);
    const c = randn(16, 2);
    const g = classifierFreeGuidance(u, c, 4.5);
    for (let i = 0; i < 16; i++) expect(Math.abs(g[i]! - (u[i]! + 4.5 * (c[i]! - u[i]!)))).toBeLessThan(1e-5);
    const e = epsilonHalf(
      Float32Array.from({ length: 16 }, (_, i) => i),
      2,
      2,
      2,
    );
    expect(Array.from(e)).toEqual([0, 1, 2, 3, 8, 9, 10, 11]);
    expect(() => classifierFreeGuidance(u, c.subarray(1), 1)).toThrow(/16 values, conditional 15/);
  });
});
