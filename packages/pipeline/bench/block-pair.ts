/**
 * Whole-model quantization cost at real FLUX.1 dimensions: one double + one single block (dim 3072 = 24 heads × 128,
 * MLP 12288), random weights with outlier channels, generated on the fly; calibration on synthetic inputs; then the
 * full SVDQuant search (39 candidates, refinement) and packing. Prints the time per block, the peak RSS and the
 * extrapolation to FLUX.1's 19 + 38 blocks.
 *
 * Run (minutes to hours, not in CI):
 *   node --import tsx --conditions=@svdquant/source packages/pipeline/bench/block-pair.ts [--threads 2] [--quick]
 * --quick: 4 smoothing candidates and at most 3 refinement iterations (a lower bound of the full search's cost).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { backendInfo } from "@svdquant/kernels";
import { parseQuantizeConfig, quantizeModel } from "../src/index.ts";
import { writeSyntheticFlux } from "./synthetic.ts";

const args = process.argv.slice(2);
const threads = Number(args[args.indexOf("--threads") + 1] ?? 1) || 1;
const quick = args.includes("--quick");
const dir = await mkdtemp(join(tmpdir(), "svdq-blockpair-"));
try {
  const model = join(dir, "model");
  await import("node:fs/promises").then((fs) => fs.mkdir(model));
  const t0 = performance.now();
  await writeSyntheticFlux(model, { num_layers: 1, num_single_layers: 1, guidance_embeds: true });
  console.log(`generated the block pair in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const config = parseQuantizeConfig({
    ...(quick
      ? {
          grid: "quick",
          refinement: { maxIterations: 3 },
        }
      : {}),
    calibration: { samples: 1, steps: 2, imageSide: 16, textTokens: 64 },
  });
  const times = new Map<string, number>();
  const cpu = new Map<string, number>(); // process CPU seconds (all threads, workers included) per block
  let last = performance.now();
  let lastCpu = process.cpuUsage();
  const t1 = performance.now();
  const r = await quantizeModel({
    modelDir: model,
    out: join(dir, "q.safetensors"),
    config,
    threads,
    onEvent: (e) => {
      const now = performance.now();
      const u = process.cpuUsage(lastCpu);
      if (e.stage === "quantize") {
        times.set(e.block, (now - last) / 1000);
        cpu.set(e.block, (u.user + u.system) / 1e6);
      }
      if (e.stage === "calibrate" || e.stage === "quantize") {
        last = now;
        lastCpu = process.cpuUsage();
      }
    },
  });
  const total = (performance.now() - t1) / 1000;
  const td = times.get("transformer_blocks.0.") ?? Number.NaN;
  const ts = times.get("single_transformer_blocks.0.") ?? Number.NaN;
  const rss = process.resourceUsage().maxRSS / 1024; // KiB → MiB
  const info = backendInfo();
  console.log(
    `CPU: ${info.cpu} (${cpus().length} cores), kernels ISA ${info.isa}, threads ${threads}, ${quick ? "quick" : "full"} search`,
  );
  const cd = cpu.get("transformer_blocks.0.") ?? Number.NaN;
  const cs = cpu.get("single_transformer_blocks.0.") ?? Number.NaN;
  console.log("| block | seconds | CPU seconds |\n|---|---|---|");
  console.log(
    `| double (transformer_blocks.0) | ${td.toFixed(1)} | ${cd.toFixed(1)} |\n| single (single_transformer_blocks.0) | ${ts.toFixed(1)} | ${cs.toFixed(1)} |`,
  );
  console.log(`whole run ${total.toFixed(1)} s (calibration, head, write included); peak RSS ${rss.toFixed(0)} MiB`);
  console.log(`extrapolated FLUX.1 (19 double + 38 single): ${((19 * td + 38 * ts) / 3600).toFixed(2)} h`);
  console.log(
    `CPU seconds extrapolated: ${((19 * cd + 38 * cs) / 3600).toFixed(2)} CPU h = ${((19 * cd + 38 * cs) / 3600 / cpus().length).toFixed(2)} h on ${cpus().length} fully used cores`,
  );
  console.log(`mean layer rel. error ${(r.report.reduce((a, l) => a + l.relError, 0) / r.report.length).toFixed(4)}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
