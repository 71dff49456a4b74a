/**
 * Forward of a quantized model on the CPU kernels vs the same model in 16 bit, same process, rounds alternated:
 * a generated "flux-small" (2 double + 4 single blocks, dim 768 = 6 heads × 128, 1024 image + 256 text tokens).
 * The 16-bit peer runs its linears through @svdquant/kernels' native f32 GEMM, prepared (each weight packed once,
 * GELU in the epilogue, as the pipeline's loads do); the quantized model runs the fused W4A4 kernels (its 16-bit
 * layers prepared too). Quantization here uses one smoothing
 * candidate and no refinement: forward speed does not depend on the search.
 * Run: pnpm --filter @svdquant/pipeline bench
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { backendInfo } from "@svdquant/kernels";
import { SeededRng } from "@svdquant/lowrank";
import { type FluxInputs, FluxTransformer, setGemmBackend, TS_GEMM, useKernelsGemm } from "@svdquant/models";
import { loadQuantizedModel, parseQuantizeConfig, quantizeModel } from "../src/index.ts";
import { writeSyntheticFlux } from "./synthetic.ts";

const RAW = {
  num_layers: 2,
  num_single_layers: 4,
  num_attention_heads: 6,
  joint_attention_dim: 768,
  pooled_projection_dim: 768,
};
const SIDE = 32; // 32 × 32 = 1024 image tokens
const TXT = 256;
const ROUNDS = Number(process.env.SVDQ_BENCH_ROUNDS ?? 3);

const dir = await mkdtemp(join(tmpdir(), "svdq-fwd-"));
try {
  const model = join(dir, "model");
  await mkdir(model);
  await writeSyntheticFlux(model, RAW);
  const out = join(dir, "q.safetensors");
  await quantizeModel({
    modelDir: model,
    out,
    config: parseQuantizeConfig({
      grid: [{ alpha: 0.5, beta: 0.5 }],
      refinement: { maxIterations: 0 },
      calibration: { samples: 1, steps: 1, imageSide: 8, textTokens: 32 },
    }),
    threads: Math.min(2, cpus().length),
  });
  const native = await useKernelsGemm();
  if (native.reason !== "") console.log(`native GEMM unavailable: ${native.reason}`);
  else setGemmBackend(native.backend);
  const dense = await FluxTransformer.fromFolder(model);
  dense.prepare();
  const packed = await loadQuantizedModel(out, { backend: "kernels" }); // prepared by the load
  const rng = new SeededRng(3);
  const r = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
  const imgIds = new Float32Array(SIDE * SIDE * 3);
  for (let i = 0; i < SIDE * SIDE; i++) {
    imgIds[i * 3 + 1] = Math.floor(i / SIDE);
    imgIds[i * 3 + 2] = i % SIDE;
  }
  const inp: FluxInputs = {
    batch: 1,
    imgTokens: SIDE * SIDE,
    txtTokens: TXT,
    hiddenStates: r(SIDE * SIDE * 64),
    encoderHiddenStates: r(TXT * 768),
    pooledProjections: r(768),
    timestep: [0.5],
    imgIds,
    txtIds: new Float32Array(TXT * 3),
  };
  const times = { dense: [] as number[], packed: [] as number[] };
  for (let i = 0; i < ROUNDS; i++)
    for (const [k, m] of [
      ["dense", dense],
      ["packed", packed],
    ] as const) {
      const t0 = performance.now();
      await m.forward(inp as never);
      times[k].push(performance.now() - t0);
    }
  setGemmBackend(TS_GEMM);
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
  const tok = SIDE * SIDE + TXT;
  const d = med(times.dense);
  const p = med(times.packed);
  const info = backendInfo();
  console.log(
    `CPU ${info.cpu}, ${info.threads} kernel threads, ISA ${info.isa}; median of ${ROUNDS} alternated rounds`,
  );
  console.log("| flux-small forward (1280 tokens) | ms | tokens/s | weights resident |\n|---|---|---|---|");
  console.log(
    `| 16-bit (BF16 weights, native f32 GEMM, prepared) | ${d.toFixed(0)} | ${((tok / d) * 1000).toFixed(0)} | BF16 |`,
  );
  console.log(
    `| SVDQuant W4A4 (packed CPU kernels) | ${p.toFixed(0)} | ${((tok / p) * 1000).toFixed(0)} | packed 4-bit |`,
  );
  console.log(
    `ratio (16-bit time / W4A4 time): ${(d / p).toFixed(2)}x; peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`,
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
