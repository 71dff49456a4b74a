/**
 * CPU kernel benchmark: @svdquant/kernels against ONNX Runtime (onnxruntime-node, same process) on the issue's
 * shapes, with this machine's f32 FMA and int8 vpmaddubsw peaks. Run under the shared-machine lock:
 *
 *   flock /tmp/svdq-bench.lock pnpm --filter @svdquant/kernels bench            # quick: M ∈ {256,1024}, K=N=3072
 *   flock /tmp/svdq-bench.lock pnpm --filter @svdquant/kernels bench -- --full  # all M × (K,N) of the issue
 *
 * Every operator runs on the pool sized to the cores and ORT gets the same intra-op thread count.
 * Timed work per entry: "W4A4 fused" = quantizeActivations (λ, L_down, rank 32) + gemmW4A4 (L_up, bias), i.e.
 * the whole SVDQuant linear from f32 X; "W4A4 no LR" = the same without the low-rank branch; "W8A8" = per-token
 * INT8 quantization + gemmW8A8; ORT MatMulNBits is given the same INT4 codes and scales (block 64).
 */
import { availableParallelism, cpus, loadavg } from "node:os";
import * as ort from "onnxruntime-node";
import { Bench } from "tinybench";
import {
  backendInfo,
  gemmF32,
  gemmW4A4,
  gemmW4A16,
  gemmW8A8,
  packF32,
  packW4A4,
  packW4A16,
  packW8A8,
  quantizeActivations,
  quantizeActivationsInt8,
  setThreads,
} from "../src/index.ts";
import { native } from "../src/native.ts";
import { matmulModel, matmulNBitsModel } from "./onnx.ts";

const full = process.argv.includes("--full") || process.env.SVDQ_BENCH_FULL === "1";
const threads = Number(process.env.SVDQ_KERNELS_THREADS) || availableParallelism();
const RANK = 32; // SVDQuant §5: rank-32 low-rank branch
const Ms = full ? [256, 1024, 4096] : [256, 1024];
const KNs: [number, number][] = full
  ? [
      [3072, 3072],
      [3072, 12288],
      [12288, 3072],
    ]
  : [[3072, 3072]];

const info = backendInfo();
if (!info.native) throw new Error(`the benchmark needs the native addon: ${info.reason}`);
setThreads(threads);

let seed = 12345;
const rand = () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296;
};
const f32 = (n: number, s = 1) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * s);

function peaks() {
  const nb = native()!;
  let fma = 0;
  let mad = 0;
  for (let i = 0; i < 3; i++) {
    fma = Math.max(fma, nb.peak({ kind: 0, iters: 2e7 }));
    mad = Math.max(mad, nb.peak({ kind: 1, iters: 2e7 }));
  }
  return { fmaFlops: fma, maddubsMacs: mad };
}

const rows: string[] = [];
const ratioRows: string[] = [];
const load0 = loadavg();
const peak0 = peaks();
console.log(
  `machine: ${cpus()[0]?.model} × ${cpus().length}, threads ${threads}, isa ${info.isa}, load ${load0.map((v) => v.toFixed(2)).join(" ")}`,
);
console.log(
  `peak: f32 FMA ${(peak0.fmaFlops / 1e9).toFixed(1)} GFLOP/s, int8 vpmaddubsw ${(peak0.maddubsMacs / 1e9).toFixed(1)} GMAC/s`,
);

for (const [K, N] of KNs) {
  const wf = f32(N * K, 0.05);
  const codes = Int8Array.from({ length: N * K }, () => Math.floor(rand() * 16) - 8);
  const scales = Float32Array.from({ length: (N * K) / 64 }, () => 0.001 + rand() * 0.01);
  const lup = f32(N * RANK, 0.05);
  const ldown = f32(RANK * K, 0.05);
  const smooth = Float32Array.from({ length: K }, () => 0.5 + rand());
  const bias = f32(N);
  const pW4 = packW4A4({ codes, scales }, N, K, { lowRankUp: lup, rank: RANK, bias });
  const pW4noLR = packW4A4({ codes, scales }, N, K, { bias });
  const pF32 = packF32(wf, N, K, { bias });
  const pW4A16 = packW4A16({ codes, scales }, N, K, { format: "int4", groupSize: 64, bias });
  const pW8 = packW8A8(
    { codes: Int8Array.from({ length: N * K }, () => Math.floor(rand() * 255) - 127), scales: scales.subarray(0, N) },
    N,
    K,
    { bias },
  );
  // ORT's pool spin-waits after each run by default; with three sessions and our pool sharing 2 cores, the spinning
  // threads would steal time from whatever runs next (measured: +6 ms on the next task at M=256). Turn it off.
  const opts = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all" as const,
    extra: { session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } } },
  };
  const sF32 = await ort.InferenceSession.create(matmulModel(wf, N, K), opts);
  const sNb0 = await ort.InferenceSession.create(matmulNBitsModel(codes, scales, N, K, 64, 0), opts);
  const sNb4 = await ort.InferenceSession.create(matmulNBitsModel(codes, scales, N, K, 64, 4), opts);
  for (const M of Ms) {
    const x = f32(M * K);
    const xt = new ort.Tensor("float32", x, [M, K]);
    const bench = new Bench({ iterations: M * N * K > 2e10 ? 2 : 4, time: 0, warmupIterations: 1, warmupTime: 0 });
    bench
      .add("ORT MatMul f32", async () => {
        await sF32.run({ X: xt });
      })
      .add("ORT MatMulNBits acc0", async () => {
        await sNb0.run({ X: xt });
      })
      .add("ORT MatMulNBits acc4", async () => {
        await sNb4.run({ X: xt });
      })
      .add("W4A4 fused", () => {
        gemmW4A4(quantizeActivations(x, M, K, { smooth, lowRankDown: ldown, rank: RANK }), pW4);
      })
      .add("W4A4 no LR", () => {
        gemmW4A4(quantizeActivations(x, M, K, { smooth }), pW4noLR);
      })
      .add("f32 GEMM", () => {
        gemmF32(x, M, pF32);
      })
      .add("W4A16", () => {
        gemmW4A16(x, M, pW4A16);
      })
      .add("W8A8", () => {
        gemmW8A8(quantizeActivationsInt8(x, M, K), pW8);
      });
    await bench.run();
    const ms: Record<string, number> = {};
    for (const t of bench.tasks) {
      const r = t.result;
      if (r.state !== "completed") throw new Error(`${t.name}: ${r.state === "errored" ? r.error.message : r.state}`);
      ms[t.name] = r.latency.mean;
    }
    const macs = M * N * K;
    for (const [name, t] of Object.entries(ms)) {
      const intPeak = name.startsWith("W4A4") || name === "W8A8" || name === "ORT MatMulNBits acc4";
      const frac = (macs / (t / 1e3) / (intPeak ? peak0.maddubsMacs : peak0.fmaFlops / 2)) * 100;
      rows.push(
        `| ${M} | ${K} | ${N} | ${name} | ${t.toFixed(1)} | ${((macs / (t / 1e3)) * 2e-9).toFixed(0)} | ${frac.toFixed(0)}% ${intPeak ? "int8" : "f32"} |`,
      );
    }
    const nb = Math.min(ms["ORT MatMulNBits acc0"], ms["ORT MatMulNBits acc4"]);
    ratioRows.push(
      `| ${M} | ${K} | ${N} | ${(ms["ORT MatMul f32"] / ms["W4A4 fused"]).toFixed(2)}x | ${(nb / ms["W4A4 fused"]).toFixed(2)}x | ${((ms["W4A4 fused"] / ms["W4A4 no LR"] - 1) * 100).toFixed(1)}% | ${((ms["ORT MatMul f32"] / ms["f32 GEMM"]) * 100).toFixed(0)}% | ${(ms["ORT MatMul f32"] / ms.W4A16).toFixed(2)}x | ${(ms["ORT MatMul f32"] / ms.W8A8).toFixed(2)}x |`,
    );
    console.log(`done M=${M} K=${K} N=${N}`);
  }
  await sF32.release();
  await sNb0.release();
  await sNb4.release();
}
const peak1 = peaks();
console.log("\n| M | K | N | kernel | ms | G(FL)OP/s | of peak |\n| -: | -: | -: | - | -: | -: | -: |");
console.log(rows.join("\n"));
console.log(
  "\n| M | K | N | W4A4 fused vs ORT f32 | vs best MatMulNBits | low-rank overhead | f32 GEMM / ORT f32 | W4A16 vs ORT f32 | W8A8 vs ORT f32 |\n| -: | -: | -: | -: | -: | -: | -: | -: | -: |",
);
console.log(ratioRows.join("\n"));
console.log(
  `\npeak after: f32 FMA ${(peak1.fmaFlops / 1e9).toFixed(1)} GFLOP/s, int8 ${(peak1.maddubsMacs / 1e9).toFixed(1)} GMAC/s; load ${loadavg()
    .map((v) => v.toFixed(2))
    .join(" ")}`,
);
