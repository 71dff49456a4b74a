// GPU checks of the pipeline with the engine (@svdquant/engine-cuda), shared by engine-gpu.test.ts (vitest) and
// bench/calibrate-device.ts (the device script): the host sampler driving the engine's transformer vs the CPU
// transformer, and calibration on the engine vs the CPU recorder through recordCalibration.
import { FluxEngine } from "@svdquant/engine-cuda";
import { FlowMatchEulerScheduler, FluxTransformer, parseModelConfig } from "@svdquant/models";
import { openModelFolder } from "@svdquant/tensor";
// src modules, not the index: the device bundle must not pull in @svdquant/metrics' ONNX runtime
import { type InputStats, readCalibration, recordCalibration, writeCalibration } from "../src/calibrate.js";
import { recordCalibrationOnEngine } from "../src/calibrate-device.js";
import { parseQuantizeConfig, recipeOf } from "../src/config.js";
import { denoiseFlux, type TextConditioning } from "../src/generate.js";
import { calibrationTargets } from "../src/quantize-model.js";

export interface PipelineCheck {
  name: string;
  relL2: number;
  relMax: number;
  tol: number;
  ok: boolean;
  detail?: string;
}

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): { relL2: number; relMax: number; finite: boolean } {
  let num = 0;
  let den = 0;
  let mx = 0;
  let mr = 0;
  let finite = a.length === b.length;
  for (let i = 0; i < b.length; i++) {
    const d = a[i]! - b[i]!;
    if (!Number.isFinite(a[i]!)) finite = false;
    num += d * d;
    den += b[i]! * b[i]!;
    mx = Math.max(mx, Math.abs(d));
    mr = Math.max(mr, Math.abs(b[i]!));
  }
  return { relL2: Math.sqrt(num / den), relMax: mx / mr, finite };
}

function normals(seed: number, n: number): Float32Array {
  let s = seed >>> 0;
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()));
}

/**
 * flux-tiny (BF16 fixture): FluxPipeline's denoising loop (FlowMatch Euler, FLUX.1-dev scheduler config, dynamic
 * shift) with the engine's transformer vs the CPU transformer, same seeded latents and synthetic conditioning.
 */
export async function checkSamplerTiny(dir: string, steps = 8): Promise<PipelineCheck> {
  const cpu = await FluxTransformer.fromFolder(dir);
  const folder = await openModelFolder(dir);
  const e = await FluxEngine.load(cpu.config, folder.weights);
  try {
    const c = cpu.config;
    const T = 7;
    const cond: TextConditioning = {
      batch: 1,
      promptEmbeds: normals(1, T * c.jointAttentionDim),
      length: T,
      pooled: normals(2, c.pooledProjectionDim),
    };
    const s = { steps, guidance: 3.5, height: 64, width: 64, maxSequenceLength: T };
    const o = { row: 0, seed: 4 };
    const ref = await denoiseFlux(cpu, new FlowMatchEulerScheduler(), 8, cond, s, o); // FLUX VAE: 8x
    const got = await denoiseFlux(e, new FlowMatchEulerScheduler(), 8, cond, s, o);
    const r = relErr(got, ref);
    const tol = 2e-2; // bf16 forwards (flux-tiny step: ~5e-3) accumulated over the schedule
    return {
      name: `flux-tiny sampler (${steps} FlowMatch Euler steps, 64x64 px) with the engine vs the CPU transformer: final latents`,
      relL2: r.relL2,
      relMax: r.relMax,
      tol,
      ok: r.finite && r.relL2 <= tol,
    };
  } finally {
    e.free();
    await folder.weights.close();
  }
}

/**
 * flux-tiny: recordCalibrationOnEngine vs recordCalibration (CPU) on the seeded synthetic source with the default
 * recipe's targets; the engine's statistics also round-trip through writeCalibration / readCalibration.
 */
export async function checkPipelineCalibrationTiny(dir: string, tmpFile: string): Promise<PipelineCheck> {
  const folder = await openModelFolder(dir);
  try {
    if (folder.config === undefined) throw new Error(`${dir}: no config.json`);
    const config = parseModelConfig(folder.config, dir);
    if (config.kind !== "flux") throw new Error(`${dir} is not a FLUX model`);
    const q = parseQuantizeConfig({
      calibration: { source: "synthetic", samples: 2, steps: 3, imageSide: 4, textTokens: 8, reservoir: 24, seed: 7 },
    });
    const targets = calibrationTargets(config, recipeOf(q));
    const ref = await recordCalibration(config, folder.weights, q.calibration, targets);
    const e = await FluxEngine.load(config, folder.weights);
    let got: Map<string, InputStats>;
    try {
      got = await recordCalibrationOnEngine(e, q.calibration, targets);
    } finally {
      e.free();
    }
    await writeCalibration(tmpFile, got, { check: "engine" });
    const back = (await readCalibration(tmpFile)).stats;
    let worstAbs = 0;
    let worstRes = 0;
    let same = got.size === ref.size && back.size === ref.size;
    for (const [name, a] of ref) {
      const g = got.get(name);
      const b = back.get(name);
      if (!g || !b || g.rows !== a.rows || g.tokensSeen !== a.tokensSeen || b.rows !== g.rows) {
        same = false;
        continue;
      }
      if (
        b.tokensSeen !== g.tokensSeen ||
        relErr(b.absmax, g.absmax).relMax !== 0 ||
        relErr(b.tokens, g.tokens).relMax !== 0
      )
        same = false;
      worstAbs = Math.max(worstAbs, relErr(g.absmax, a.absmax).relMax);
      worstRes = Math.max(worstRes, relErr(g.tokens, a.tokens).relL2);
    }
    const tol = 3e-2;
    return {
      name: `flux-tiny calibration through the pipeline: engine vs CPU recorder (${ref.size} targets, 2 x 3 synthetic forwards), file round trip`,
      relL2: worstRes,
      relMax: worstAbs,
      tol,
      ok: same && worstAbs <= tol && worstRes <= tol,
      detail: `counts/layout/round trip ${same ? "identical" : "DIFFER"}; worst absmax rel-max ${worstAbs.toExponential(2)}, worst reservoir rel-L2 ${worstRes.toExponential(2)}`,
    };
  } finally {
    await folder.weights.close();
  }
}
