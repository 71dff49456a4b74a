/**
 * Device script of GPU calibration (bundled with esbuild; see docs/benchmarks.md "Calibration on the GPU"):
 *   node calibrate-device.mjs check FIXTURE_MODELS_DIR   observer vs CalibrationRecorder, sampler with the engine vs
 *                                                        CPU, pipeline calibration engine vs CPU (flux-tiny BF16)
 *   node calibrate-device.mjs measure                    FLUX.1-dev at full size (random weights on the device),
 *                                                        1024² (4096 + 512 tokens): step time with / without the
 *                                                        observer (same engine, same inputs), statistics memory
 *   node calibrate-device.mjs verify FILE SAMPLES STEPS  the statistics file of `svdquant calibrate --random flux-dev
 *                                                        --device cuda --synthetic` (the run itself is the CLI)
 * Env: OUT (result JSON folder).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { engineAvailability, FLUX_CONFIGS, FluxEngine } from "@svdquant/engine-cuda";
import type { FluxInputs } from "@svdquant/models";
import { checkObserverTiny, OBSERVER_CASES } from "../../engine-cuda/test/gpu-checks.js";
// src modules, not the index: the bundle must not pull in @svdquant/metrics' ONNX runtime
import { readCalibration, syntheticInputs } from "../src/calibrate.js";
import { parseQuantizeConfig, recipeOf } from "../src/config.js";
import { calibrationTargets } from "../src/quantize-model.js";
import { checkPipelineCalibrationTiny, checkSamplerTiny } from "../test/engine-checks.js";

const out = process.env.OUT ?? "/tmp";
const GiB = 2 ** 30;
const log = (s: string) => console.log(s);

async function check(models: string): Promise<boolean> {
  const tiny = join(models, "flux-tiny-a-bf16");
  let ok = true;
  const rows: unknown[] = [];
  for (const c of OBSERVER_CASES) {
    const t0 = Date.now();
    try {
      const r = await checkObserverTiny(tiny, c);
      rows.push(r);
      ok &&= r.ok;
      log(
        `${r.ok ? "PASS" : "FAIL"} ${r.name}: ${r.layers} layers, counts ${r.countsEqual ? "equal" : "DIFFER"}, absmax rel-max ${r.absmaxRelMax.toExponential(2)}, reservoir rel-L2 ${r.reservoirRelL2.toExponential(2)} (tol ${r.tol}) ${Date.now() - t0} ms`,
      );
    } catch (e) {
      ok = false;
      log(`FAIL observer ${c.label}: ${(e as Error).stack ?? e}`);
    }
  }
  for (const [name, f] of [
    ["sampler", () => checkSamplerTiny(tiny)],
    ["pipeline calibration", () => checkPipelineCalibrationTiny(tiny, "/tmp/calib-tiny.safetensors")],
  ] as const) {
    const t0 = Date.now();
    try {
      const r = await f();
      rows.push(r);
      ok &&= r.ok;
      log(
        `${r.ok ? "PASS" : "FAIL"} ${r.name}: rel-L2 ${r.relL2.toExponential(2)} rel-max ${r.relMax.toExponential(2)} (tol ${r.tol})${r.detail ? ` — ${r.detail}` : ""} ${Date.now() - t0} ms`,
      );
    } catch (e) {
      ok = false;
      log(`FAIL ${name}: ${(e as Error).stack ?? e}`);
    }
  }
  writeFileSync(join(out, "calib-check.json"), JSON.stringify(rows, null, 1));
  return ok;
}

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

async function measure(): Promise<boolean> {
  const config = FLUX_CONFIGS["flux-dev"];
  const samples = Number(process.env.CAL_SAMPLES ?? 2);
  const steps = Number(process.env.CAL_STEPS ?? 50); // configs/reference-flux-dev.json: 50 steps, 128 prompts
  const q = parseQuantizeConfig({
    calibration: { source: "synthetic", samples, steps, imageSide: 64, textTokens: 512, reservoir: 256, seed: 0 },
  });
  const targets = calibrationTargets(config, recipeOf(q));
  const res: Record<string, unknown> = { samples, steps, targets: targets.size };
  // 1. step time with and without the observer, same engine, same inputs
  const t0 = Date.now();
  const e = FluxEngine.random(config, { mode: "bf16" });
  let inp: FluxInputs | undefined;
  for (const x of syntheticInputs(config, q.calibration)) {
    if (x.kind === "flux") inp = x.inputs;
    break;
  }
  if (!inp) throw new Error("no synthetic input");
  try {
    res.initMs = Date.now() - t0;
    const rssBefore = process.memoryUsage().rss;
    await e.forward(inp); // warm-up (workspace, cuBLAS)
    const wall = async (n: number) => {
      const t: number[] = [];
      for (let i = 0; i < n; i++) {
        const a = performance.now();
        await e.forward(inp!);
        t.push(performance.now() - a);
      }
      return t;
    };
    const plainWall = await wall(3);
    const plainDev = e.timeSteps(3);
    const m0 = e.memory();
    const obs = e.observe({ reservoirSize: 256, seed: 0, layers: targets });
    const m1 = e.memory();
    const obsWall = await wall(3);
    // one profiled observed step: the observer's kernels (absmax + gather) per op kind
    e.setInputs(inp);
    e.run({ profile: true });
    const prof = e.profile();
    const obsOp = prof.find((p) => p.op === "calibration observer");
    const profTotal = prof.reduce((a, p) => a + p.ms, 0);
    res.profile = prof;
    log(
      `profiled observed step: observer kernels ${obsOp ? `${obsOp.ms.toFixed(2)} ms in ${obsOp.count} launches` : "absent"} of ${profTotal.toFixed(1)} ms`,
    );
    const statsT0 = performance.now();
    const st = obs.stats();
    const downloadMs = performance.now() - statsT0;
    let hostBytes = 0;
    for (const s of st.values()) hostBytes += s.absmax.byteLength + s.reservoir.byteLength;
    const rssAfter = process.memoryUsage().rss;
    const obsDev = e.timeSteps(3); // invalidates the statistics (no plans), timing only
    const plainWall2 = await (async () => {
      e.unobserve();
      return wall(3);
    })();
    res.step = {
      wallMsNoObserver: plainWall.concat(plainWall2),
      wallMsObserver: obsWall,
      deviceMsNoObserver: plainDev,
      deviceMsObserver: obsDev,
      medianWallNo: median(plainWall.concat(plainWall2)),
      medianWallObs: median(obsWall),
    };
    res.statsMemory = {
      deviceAllocatedBytes: m1.weights - m0.weights,
      deviceFreeDropBytes: m0.deviceFree - m1.deviceFree,
      hostStatsBytes: hostBytes,
      hostRssGrowthBytes: rssAfter - rssBefore,
      downloadMs,
      layers: st.size,
    };
    res.engine = { weightsGiB: m0.weights / GiB, peakGiB: e.memory().peak / GiB };
    log(
      `FLUX.1-dev bf16 1024²: step wall ${median(plainWall.concat(plainWall2)).toFixed(1)} ms without observer, ${median(obsWall).toFixed(1)} ms with (${targets.size} layer inputs, reservoir 256); device ${plainDev.toFixed(1)} / ${obsDev.toFixed(1)} ms`,
    );
    log(
      `statistics: ${((m1.weights - m0.weights) / GiB).toFixed(3)} GiB allocated on the device (free drop ${((m0.deviceFree - m1.deviceFree) / GiB).toFixed(3)} GiB), ${(hostBytes / GiB).toFixed(3)} GiB on the host (RSS +${((rssAfter - rssBefore) / GiB).toFixed(3)} GiB), download ${downloadMs.toFixed(0)} ms`,
    );
  } finally {
    e.free();
  }
  writeFileSync(join(out, "calib-measure.json"), JSON.stringify(res, null, 1));
  return true;
}

/**
 * The statistics file of `svdquant calibrate --random flux-dev --device cuda --synthetic` (1024², reservoir 256):
 * every target of the default recipe, absmax [K] and tokens [256, K] finite, tokensSeen = samples · steps · tokens.
 */
async function verify(file: string, samples: number, steps: number): Promise<boolean> {
  const config = FLUX_CONFIGS["flux-dev"];
  const targets = calibrationTargets(config, recipeOf(parseQuantizeConfig({})));
  const tRead = performance.now();
  const back = await readCalibration(file);
  const readMs = performance.now() - tRead;
  let finite = true;
  let shapes = back.stats.size === targets.size;
  const bad: string[] = [];
  const d = config.numAttentionHeads * config.attentionHeadDim;
  const S = 512 + 4096;
  let bytes = 0;
  for (const name of targets) {
    const s = back.stats.get(name);
    if (!s) {
      shapes = false;
      bad.push(`${name}: missing`);
      continue;
    }
    bytes += s.absmax.byteLength + s.tokens.byteLength;
    const K = /ff(_context)?\.net\.2$/.test(name)
      ? 4 * d
      : /single_transformer_blocks\.\d+\.proj_out$/.test(name)
        ? 5 * d
        : d;
    const m = /single_/.test(name) ? S : /add_q_proj|to_add_out|ff_context/.test(name) ? 512 : 4096;
    if (
      s.absmax.length !== K ||
      s.rows !== 256 ||
      s.tokens.length !== 256 * K ||
      s.tokensSeen !== samples * steps * m
    ) {
      shapes = false;
      bad.push(`${name}: K ${s.absmax.length}/${K} rows ${s.rows} seen ${s.tokensSeen}/${samples * steps * m}`);
    }
    for (const v of s.absmax) if (!Number.isFinite(v)) finite = false;
    for (const v of s.tokens) if (!Number.isFinite(v)) finite = false;
  }
  let amMin = Number.POSITIVE_INFINITY;
  let amMax = 0;
  for (const s of back.stats.values())
    for (const v of s.absmax) {
      amMin = Math.min(amMin, v);
      amMax = Math.max(amMax, v);
    }
  const res = {
    file,
    layers: back.stats.size,
    targets: targets.size,
    finite,
    shapes,
    bytes,
    readMs,
    absmaxRange: [amMin, amMax],
    bad: bad.slice(0, 10),
    metadata: back.metadata,
  };
  writeFileSync(join(out, "calib-verify.json"), JSON.stringify(res, null, 1));
  log(
    `${finite && shapes ? "PASS" : "FAIL"} statistics file ${file}: ${back.stats.size}/${targets.size} layer inputs, ${(bytes / GiB).toFixed(3)} GiB, finite ${finite}, shapes ${shapes}, absmax in [${amMin.toExponential(2)}, ${amMax.toExponential(2)}], read back in ${readMs.toFixed(0)} ms${bad.length ? `; ${bad.slice(0, 3).join("; ")}` : ""}`,
  );
  return finite && shapes;
}

const av = engineAvailability();
const [cmd, arg] = process.argv.slice(2);
if (!av.available) {
  log(`SKIP: ${av.reason}`);
  process.exit(cmd === "dry" ? 0 : 2);
}
log(`device: ${av.reason}`);
const ok =
  cmd === "check"
    ? await check(arg ?? "fixtures/models")
    : cmd === "measure"
      ? await measure()
      : cmd === "verify"
        ? await verify(arg ?? "", Number(process.argv[4]), Number(process.argv[5]))
        : false;
process.exit(ok ? 0 : 1);
