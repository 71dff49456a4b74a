/**
 * Per-step latency on this CPU: one transformer forward of the pipeline's 16-bit model (float32 weights, on the
 * TypeScript GEMM the pipeline uses by default, and on @svdquant/kernels' native f32 GEMM) vs its packed SVDQuant
 * W4A4 checkpoint on the native W4A4 kernels, in the same process, alternating round by round, medians.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExperimentError } from "@svdquant/experiment-common";
import { f32GemmBackend } from "@svdquant/kernels";
import {
  DENSE_RECIPE,
  type FluxInputs,
  FluxTransformer,
  fluxImageIds,
  fluxLatentShape,
  LinearFactory,
} from "@svdquant/models";
import {
  FluxPipeline,
  initialLatents,
  loadQuantizedModel,
  parseQuantizeConfig,
  quantizeModel,
} from "@svdquant/pipeline";

export interface LatencyRow {
  readonly size: number;
  readonly imageTokens: number;
  readonly textTokens: number;
  /** 16-bit on the TypeScript GEMM (the pipeline's default backend) */
  readonly denseMs: number;
  /** 16-bit on the native f32 GEMM (the fair peer of the native W4A4 kernels) */
  readonly denseNativeMs: number;
  readonly w4a4Ms: number;
  /** w4a4 / 16-bit on the native GEMM (below 1: W4A4 faster) */
  readonly ratio: number;
  readonly denseSamples: number[];
  readonly denseNativeSamples: number[];
  readonly w4a4Samples: number[];
}

const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** One step's inputs at `size`² for prompt "a big red circle on the left" (seeded latents, t = 0.5). */
function stepInputs(pipe: FluxPipeline, t: FluxTransformer, size: number, maxSequenceLength: number): FluxInputs {
  const c = t.config;
  const { h, w, imageSeqLen } = fluxLatentShape(size, size, pipe.vae.scaleFactor);
  const cond = pipe.encode(["a big red circle on the left"], maxSequenceLength);
  const lat = initialLatents(1, c.inChannels, h / 2, w / 2); // already packed: [tokens, in_channels]
  return {
    batch: 1,
    imgTokens: imageSeqLen,
    txtTokens: cond.length,
    hiddenStates: lat,
    encoderHiddenStates: cond.promptEmbeds,
    pooledProjections: cond.pooled,
    timestep: [0.5],
    ...(c.guidanceEmbeds ? { guidance: [3.5] } : {}),
    imgIds: fluxImageIds(h / 2, w / 2),
    txtIds: new Float32Array(cond.length * 3),
  };
}

export async function measureLatency(
  pipelineDir: string,
  o: { sizes: number[]; maxSequenceLength: number; rounds: number; warmup: number; rank: number },
  log?: (line: string) => void,
): Promise<LatencyRow[]> {
  const pipe = await FluxPipeline.load(pipelineDir);
  const dense = await pipe.transformer();
  const denseNative = await FluxTransformer.fromFolder(pipe.transformerDir, {
    factory: new LinearFactory(DENSE_RECIPE, { gemm: f32GemmBackend() }),
  });
  const dir = await mkdtemp(join(tmpdir(), "svdquant-eff-"));
  let w4a4: FluxTransformer;
  try {
    const out = join(dir, "w4a4.safetensors");
    // λ and the branch do not change the kernels' work: one smoothing candidate, no refinement, synthetic calibration
    await quantizeModel({
      modelDir: pipe.transformerDir,
      out,
      config: parseQuantizeConfig({
        format: "int4",
        rank: o.rank,
        grid: [{ alpha: 0.5, beta: 0.5 }],
        refinement: { maxIterations: 0 },
      }),
    });
    const m = await loadQuantizedModel(out, { backend: "kernels" });
    if (!(m instanceof FluxTransformer)) throw new ExperimentError("E_MODEL", `${pipelineDir}: not a FLUX transformer`);
    w4a4 = m;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const rows: LatencyRow[] = [];
  for (const size of o.sizes) {
    const inputs = stepInputs(pipe, dense, size, o.maxSequenceLength);
    const d: number[] = [];
    const dn: number[] = [];
    const q: number[] = [];
    const time = async (t: FluxTransformer): Promise<number> => {
      const t0 = performance.now();
      await t.forward(inputs);
      return performance.now() - t0;
    };
    for (let r = 0; r < o.warmup + o.rounds; r++) {
      const dt = await time(dense);
      const dnt = await time(denseNative);
      const qt = await time(w4a4);
      if (r >= o.warmup) {
        d.push(dt);
        dn.push(dnt);
        q.push(qt);
      }
    }
    const row: LatencyRow = {
      size,
      imageTokens: inputs.imgTokens,
      textTokens: inputs.txtTokens,
      denseMs: median(d),
      denseNativeMs: median(dn),
      w4a4Ms: median(q),
      ratio: median(q) / median(dn),
      denseSamples: d,
      denseNativeSamples: dn,
      w4a4Samples: q,
    };
    log?.(
      `${size}²: 16-bit ${row.denseMs.toFixed(1)} ms (TypeScript GEMM), ${row.denseNativeMs.toFixed(1)} ms (native f32 GEMM), W4A4 ${row.w4a4Ms.toFixed(1)} ms per step (W4A4 / native 16-bit ${row.ratio.toFixed(2)})`,
    );
    rows.push(row);
  }
  return rows;
}
