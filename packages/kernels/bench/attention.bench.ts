/**
 * Attention benchmark: @svdquant/kernels' `attentionF32` (online softmax, kernels/cpu/attention_f32.cc) against
 * ONNX Runtime's com.microsoft MultiHeadAttention (onnxruntime-node, same process, intra-op spinning off and on),
 * 2 threads each, at the attention sizes of the models' CPU forward: flux-small (1280 tokens, 6 heads × 128) and
 * FLUX.1's 4608 tokens (2 of its 24 heads, to keep a round short). Tasks alternate round by round in a new random
 * order; the table gives the median wall time and the process CPU time of the median round. "of peak": GFLOP/s
 * over the measured f32 FMA peak of all pool threads (zmm on AVX-512 machines, else ymm; kernels/cpu/peak.cc, the
 * larger of the measurements before and after the run).
 *
 *   flock /tmp/svdq-bench.lock pnpm --filter @svdquant/kernels bench
 */
import { availableParallelism, cpus, loadavg } from "node:os";
import * as ort from "onnxruntime-node";
import { attentionF32, backendInfo, reference, setThreads } from "../src/index.ts";
import { native } from "../src/native.ts";
import { multiHeadAttentionModel } from "./onnx.ts";

const threads = Number(process.env.SVDQ_KERNELS_THREADS) || availableParallelism();
const info = backendInfo();
if (!info.native) throw new Error(`the benchmark needs the native addon: ${info.reason}`);
setThreads(threads);
const cpuModel = info.cpu;

let seed = 777;
const rand = () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296;
};
const f32 = (n: number) => Float32Array.from({ length: n }, () => rand() * 2 - 1);

const ortOpts = (spin: boolean) => ({
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  graphOptimizationLevel: "all" as const,
  ...(spin ? {} : { extra: { session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } } } }),
});

// f32 FMA peak (FLOP/s, all pool threads): kind 2 = zmm, 0 = ymm (kernels/cpu/peak.cc), best of 3
const peakKind = info.supportedIsas.includes("avx512") ? 2 : 0;
const peakLabel = peakKind === 2 ? "fma512" : "fma256";
const measurePeak = () => {
  let p = 0;
  for (let i = 0; i < 3; i++) p = Math.max(p, native()!.peak({ kind: peakKind, iters: 2e7 }));
  return p;
};
const peak0 = measurePeak();
const rows: string[] = [];
console.log(
  `machine: ${cpuModel} × ${cpus().length}, threads ${threads}, path ${info.isa}, load ${loadavg()
    .map((v) => v.toFixed(2))
    .join(" ")}`,
);
for (const [S, H, Dh] of [
  [1280, 6, 128],
  [4608, 2, 128],
] as const) {
  const d = H * Dh;
  const q = f32(S * d);
  const k = f32(S * d);
  const v = f32(S * d);
  const out = new Float32Array(S * d);
  // the peers must agree before they are timed: ours and ORT's against the float64 reference on the first 8 rows
  const want = reference.refAttention(q.subarray(0, 8 * d), k, v, 1, 8, S, H, Dh);
  const tasks: { name: string; path: string; run: () => Promise<unknown> | unknown }[] = [];
  for (const spin of [false, true]) {
    const s = await ort.InferenceSession.create(multiHeadAttentionModel(H, d), ortOpts(spin));
    const feeds = {
      Q: new ort.Tensor("float32", q, [1, S, d]),
      K: new ort.Tensor("float32", k, [1, S, d]),
      V: new ort.Tensor("float32", v, [1, S, d]),
    };
    const y = (await s.run(feeds)).Y!.data as Float32Array;
    let err = 0;
    for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(y[i]! - want[i]!));
    if (!(err < 1e-4)) throw new Error(`ORT MultiHeadAttention differs from the reference by ${err}`);
    tasks.push({ name: `ORT MultiHeadAttention (spin ${spin ? "on" : "off"})`, path: "ort", run: () => s.run(feeds) });
  }
  attentionF32(q, k, v, { B: 1, Sq: S, Skv: S, heads: H, headDim: Dh, out });
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(out[i]! - want[i]!));
  if (!(err < 1e-4)) throw new Error(`attentionF32 differs from the reference by ${err}`);
  tasks.push({
    name: "attentionF32",
    path: info.isa,
    run: () => attentionF32(q, k, v, { B: 1, Sq: S, Skv: S, heads: H, headDim: Dh, out }),
  });
  const wall: number[][] = tasks.map(() => []);
  const cpu: number[][] = tasks.map(() => []);
  const rounds = Number(process.env.SVDQ_BENCH_ROUNDS) || 5;
  for (let r = 0; r <= rounds; r++) {
    const order = tasks.map((_, i) => i).sort(() => rand() - 0.5);
    for (const i of order) {
      await new Promise((res) => setTimeout(res, 50));
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await tasks[i]!.run();
      const t = performance.now() - t0;
      const c = process.cpuUsage(c0);
      if (r > 0) {
        wall[i]!.push(t);
        cpu[i]!.push((c.user + c.system) / 1000);
      }
    }
  }
  const med = (a: number[]) => {
    const idx = a.map((_, i) => i).sort((x, y) => a[x]! - a[y]!)[Math.floor(a.length / 2)]!;
    return idx;
  };
  const flop = 4 * S * S * d;
  const ours = tasks.length - 1;
  const oursMs = wall[ours]![med(wall[ours]!)]!;
  tasks.forEach((t, i) => {
    const j = med(wall[i]!);
    const ms = wall[i]![j]!;
    const gf = flop / ms / 1e6;
    rows.push(
      `| ${cpuModel} | ${t.path} | ${S} | ${H} × ${Dh} | ${t.name} | ${ms.toFixed(1)} | ${cpu[i]![j]!.toFixed(0)} | ${gf.toFixed(0)} | %PEAK${gf} | ${(ms / oursMs).toFixed(2)} |`,
    );
  });
}
console.log(
  `load after: ${loadavg()
    .map((v) => v.toFixed(2))
    .join(" ")}`,
);
const peak = Math.max(peak0, measurePeak());
console.log(`peak: f32 FMA ${peakLabel} ${(peak / 1e9).toFixed(0)} GFLOP/s (${threads} threads)`);
console.log("| CPU | path | tokens | heads × Dh | kernel | ms (median) | CPU ms | GFLOP/s | of peak | ORT / ours |");
console.log("| - | - | -: | -: | - | -: | -: | -: | -: | -: |");
for (const r of rows)
  console.log(r.replace(/%PEAK([0-9.e+-]+)/, (_, g) => `${((Number(g) * 1e9 * 100) / peak).toFixed(0)}% ${peakLabel}`));
