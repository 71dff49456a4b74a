/**
 * CPU kernel benchmark: @svdquant/kernels against ONNX Runtime (onnxruntime-node, same process) on the issue's
 * shapes, with this machine's measured instruction peaks. Run under the shared-machine lock:
 *
 *   flock /tmp/svdq-bench.lock pnpm --filter @svdquant/kernels bench            # quick: M ∈ {256,1024}, K=N=3072
 *   flock /tmp/svdq-bench.lock pnpm --filter @svdquant/kernels bench -- --full  # all M × (K,N) of the issue
 *   ... bench -- --only=f32   # only ORT MatMul f32 and our f32 GEMM;  --only=lr: only the W4A4 layer and the
 *                             # int4p2 layer (branch precision f32 and bf16) with and without their low-rank
 *                             # branch (issue 19's f32 and low-rank goals, more rounds fit)
 *   ... bench -- --only=p2    # the int4p2 layer (prepareP2Layer) with and without its branch on the best path
 *                             # (every path up to 1e10 MACs) and our INT4 layer, against ORT DynamicQuantizeMatMul,
 *                             # MatMulNBits (acc 4) and MatMul f32
 *   ... bench -- --only=f32 --ms=4096 --kns=12288x3072   # chosen M and K×N (comma-separated lists)
 *   SVDQ_BENCH_BASE_ADDON=/path/to/other/svdquant_kernels.node ... adds "f32 GEMM base": that build's gemmF32 on the
 *                             # same panels and output (a before/after of the f32 GEMM in one run, e.g. main's build)
 *
 * Tasks alternate round by round (each round runs every task once, in a new random order, 50 ms apart), so load
 * spikes of the shared machine and ORT's spinning threads hit all tasks alike; the table reports the median. A
 * layer and its no-low-rank twin run back to back in every round, and "paired" is the median over rounds of their
 * CPU-time ratio (the other low-rank columns are ratios of medians taken seconds apart: noisy on a shared host).
 * ORT runs with intra-op spinning off ("spin off") and with its default ("spin on"), as separate sessions.
 * Ours: "W4A4 layer" = prepareW4A4Layer(...).forward (quantize X/λ + rank-32 low-rank down + INT4 GEMM + low-rank
 * up + bias, reused buffers) on every native path the CPU has; on the best path also "W4A4 2 calls"
 * (quantizeActivations + gemmW4A4, fresh arrays), "W4A4 no LR", "f32 GEMM", "W4A16" and "W8A8" (per-token INT8
 * quantization + gemmW8A8 into a reused output, as the layers and ORT's arena reuse theirs). Peers get the same INT4 codes/scales (MatMulNBits, block 64) and INT8 codes
 * (DynamicQuantizeMatMul). "int4p2 layer" = prepareP2Layer(...).forward (pow2 activation quantization of x/λ,
 * rank-32 down-projection, one GEMM with the branch as 192 extra K columns, bias) on every native path (on `amx`
 * its default AMX-INT8 band GEMM, kernels/cpu/p2_int8.h, with the branch on bf16 tiles), "int4p2 layer bf16" its
 * branch precision "bf16" (bf16 down-projection on AMX tiles, 32 branch columns; the pipeline's default) on the best
 * path, "int4p2 no LR" without the branch and "int4p2 amx-bf16" (amxInt8: false); on avx2 its integer GEMM
 * (avx2-int8, p2_avx2.h) and "int4p2 avx2-f32" / "int4p2 avx2-f32 bf16" (avx2Int8: false: the f32 FMA GEMM on the
 * bf16 operand); "of peak" is against tdpbssd (amx-int8), tdpbf16ps (amx-bf16), vpmaddubsw (avx2-int8) or the
 * zmm / ymm FMA (avx512 / avx2). Every line names the CPU model and the code path.
 */
import { createRequire } from "node:module";
import { availableParallelism, cpus, loadavg } from "node:os";
import * as ort from "onnxruntime-node";
import {
  backendInfo,
  f32GemmBackend,
  gemmF32,
  gemmW4A4,
  gemmW4A16,
  gemmW8A8,
  type NativeIsa,
  p2GemmPath,
  packF32,
  packW4A4,
  packW4A16,
  packW8A8,
  prepareP2Layer,
  prepareW4A4Layer,
  quantizeActivations,
  quantizeActivationsInt8,
  setIsa,
  setThreads,
} from "../src/index.ts";
import { native } from "../src/native.ts";
import { dynamicQuantizeMatMulModel, matmulModel, matmulNBitsModel } from "./onnx.ts";

const full = process.argv.includes("--full") || process.env.SVDQ_BENCH_FULL === "1";
const only = process.argv.find((a) => a.startsWith("--only="))?.slice(7);
if (only !== undefined && only !== "f32" && only !== "lr" && only !== "p2")
  throw new Error(`--only=${only}: expected f32, lr or p2`);
const threads = Number(process.env.SVDQ_KERNELS_THREADS) || availableParallelism();
const RANK = 32; // SVDQuant §5: rank-32 low-rank branch
// --ms=256,4096 and --kns=3072x12288,12288x3072 pick shapes (a long --full run in pieces under the lock)
const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const Ms = arg("ms")?.split(",").map(Number) ?? (full ? [256, 1024, 4096] : [256, 1024]);
const KNs: [number, number][] = arg("kns")
  ? (arg("kns") as string).split(",").map((s) => s.split("x").map(Number) as [number, number])
  : full
    ? [
        [3072, 3072],
        [3072, 12288],
        [12288, 3072],
      ]
    : [[3072, 3072]];

// another build of the addon (SVDQ_BENCH_BASE_ADDON): its f32 GEMM runs as "f32 GEMM base" on the same panels
const baseAddonPath = process.env.SVDQ_BENCH_BASE_ADDON;
const baseAddon = baseAddonPath
  ? (createRequire(import.meta.url)(baseAddonPath) as {
      gemmF32(a: object): void;
      setThreads(n: number): number;
      setIsa(mode: number): void;
    })
  : undefined;

const info = backendInfo();
if (!info.native) throw new Error(`the benchmark needs the native addon: ${info.reason}`);
setThreads(threads);
baseAddon?.setThreads(threads);
const best = info.isa as NativeIsa;
const paths = info.supportedIsas.filter((i) => i !== "scalar").reverse() as NativeIsa[];
const cpuModel = info.cpu;

let seed = 12345;
const rand = () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296;
};
const f32 = (n: number, s = 1) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * s);

// Instruction peaks (best of 3, all pool threads): kind 0 f32 FMA ymm, 1 int8 vpmaddubsw ymm, 2 f32 FMA zmm,
// 3 int8 vpdpbusd zmm, 4 AMX tdpbssd, 5 AMX tdpbf16ps, 6 vdpbf16ps zmm (kernels/cpu/peak.cc; 5 and 6
// through peakBf16, where the CPU has them). Units: f32 FLOP/s, int8 or bf16 MAC/s.
function peaks(): number[] {
  const nb = native()!;
  const kinds = [0, 1, ...(info.supportedIsas.includes("avx512") ? [2, 3] : []), ...(paths.includes("amx") ? [4] : [])];
  const out = [0, 0, 0, 0, 0, 0, 0];
  for (const k of kinds) for (let i = 0; i < 3; i++) out[k] = Math.max(out[k], nb.peak({ kind: k, iters: 2e7 }));
  for (const [k, kind] of [
    [5, 0],
    [6, 1],
  ] as const)
    for (let i = 0; i < 3; i++)
      try {
        out[k] = Math.max(out[k], nb.peakBf16?.({ kind, iters: 2e7 }) ?? 0);
      } catch {} // this CPU lacks the instruction: the path does not use it either
  return out;
}
/** Peak MAC/s and its label for a task: integer, bf16 or f32 work on a path ("ort": the best this CPU has). */
function peakFor(p: number[], path: NativeIsa | "ort", int: boolean | "bf16"): [number, string] {
  const isa = path === "ort" ? best : path;
  if (int === "bf16") {
    if (isa === "amx" && p[5] > 0) return [p[5], "tdpbf16ps"];
    if (isa === "amx" || isa === "avx512") return [p[2] / 2, "fma512"]; // the avx512 path: f32 FMA on widened bf16
    return [p[0] / 2, "fma256"];
  }
  if (int) {
    if (isa === "amx") return [p[4], "amx"];
    if (isa === "avx512") return [p[3], "vpdpbusd"];
    return [p[1], "vpmaddubsw"];
  }
  if (isa === "amx" || isa === "avx512") return [p[2] / 2, "fma512"];
  return [p[0] / 2, "fma256"];
}

interface Task {
  name: string;
  path: NativeIsa | "ort";
  int: boolean | "bf16";
  run: () => unknown;
  /** Tasks with the same group run back to back in every round (in a random order inside the group), so that
   *  their per-round ratio (the low-rank overhead) sees the same machine load. */
  group?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Each round runs every task once in a fresh seeded random order (so no task always follows the same one: ORT's
// spinning threads keep both cores busy for a while after a "spin on" run), with a 50 ms pause between tasks; the
// tasks of one `group` stay adjacent (shuffled among themselves). Returns the median wall time and the median process
// CPU time (user + system, all threads) of each task, and the per-round CPU samples (round order) for paired ratios:
// on the shared machine the CPU time is far less sensitive to other jobs than the wall time (it counts ORT's spinning
// too).
async function timeRounds(
  tasks: Task[],
  rounds: number,
): Promise<{ wall: number[]; cpu: number[]; cpuRounds: number[][] }> {
  const samples: number[][] = tasks.map(() => []);
  const cpuSamples: number[][] = tasks.map(() => []);
  const shuffle = <T>(a: T[]): T[] => {
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  };
  const units: number[][] = [];
  const unitOf = new Map<string, number[]>();
  tasks.forEach((t, i) => {
    const u = t.group === undefined ? undefined : unitOf.get(t.group);
    if (u) u.push(i);
    else {
      units.push([i]);
      if (t.group !== undefined) unitOf.set(t.group, units[units.length - 1]);
    }
  });
  for (let r = -1; r < rounds; r++) {
    // round −1 warms every task up (ORT's first run plans its kernels; ours page-faults its buffers once)
    const order = shuffle(units.map((u) => shuffle([...u]))).flat();
    for (const i of order) {
      const t = tasks[i];
      if (t.path !== "ort") setIsa(t.path);
      await sleep(50);
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await t.run();
      const dt = performance.now() - t0;
      const c = process.cpuUsage(c0);
      if (r >= 0) {
        samples[i].push(dt);
        cpuSamples[i].push((c.user + c.system) / 1e3);
      }
    }
  }
  setIsa("auto");
  return { wall: samples.map(median), cpu: cpuSamples.map(median), cpuRounds: cpuSamples };
}

function median(s: number[]): number {
  const a = [...s].sort((x, y) => x - y);
  return a[Math.floor(a.length / 2)];
}

const results: {
  path: NativeIsa | "ort";
  int: boolean | "bf16";
  M: number;
  K: number;
  N: number;
  name: string;
  ms: number;
  cpu: number;
}[] = [];
const ratioRows: string[] = [];
const p2Stats: {
  M: number;
  K: number;
  N: number;
  vsInt: number;
  vsF32: number;
  lr: number;
  lrCpu: number;
  lrPaired: number;
  ms: number;
  vsOurs: number;
  vsIntBf: number;
  lrBfCpu: number;
  lrBfPaired: number;
  perPath: string;
}[] = [];
const p2LrRows: string[] = [];
const load0 = loadavg();
const peak0 = peaks();
console.log(
  `machine: ${cpuModel} × ${cpus().length}, threads ${threads}, paths ${info.supportedIsas.join("/")} (best ${best}), load ${load0.map((v) => v.toFixed(2)).join(" ")}`,
);
console.log(
  `peak: f32 FMA ymm ${(peak0[0] / 1e9).toFixed(0)} GFLOP/s, zmm ${(peak0[2] / 1e9).toFixed(0)} GFLOP/s; int8 vpmaddubsw ${(peak0[1] / 1e9).toFixed(0)}, vpdpbusd ${(peak0[3] / 1e9).toFixed(0)}, AMX tdpbssd ${(peak0[4] / 1e9).toFixed(0)} GMAC/s; bf16 AMX tdpbf16ps ${(peak0[5] / 1e9).toFixed(0)}, vdpbf16ps ${(peak0[6] / 1e9).toFixed(0)} GMAC/s`,
);

const ortOpts = (spin: boolean) => ({
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  graphOptimizationLevel: "all" as const,
  ...(spin ? {} : { extra: { session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } } } }),
});

for (const [K, N] of KNs) {
  const wf = f32(N * K, 0.05);
  // --only=f32 prepares no quantized weight (the setup of the K = 12288 shapes took minutes under the lock)
  const heavy = only !== "f32";
  const none = undefined as never;
  const codes = heavy ? Int8Array.from({ length: N * K }, () => Math.floor(rand() * 16) - 8) : none;
  const scales = heavy ? Float32Array.from({ length: (N * K) / 64 }, () => 0.001 + rand() * 0.01) : none;
  const lup = f32(N * RANK, 0.05);
  const ldown = f32(RANK * K, 0.05);
  const smooth = Float32Array.from({ length: K }, () => 0.5 + rand());
  const bias = f32(N);
  const codes8 = heavy ? Int8Array.from({ length: N * K }, () => Math.floor(rand() * 255) - 127) : none;
  const scales8 = heavy ? scales.subarray(0, N) : none;
  const pW4 = heavy ? packW4A4({ codes, scales }, N, K, { lowRankUp: lup, rank: RANK, bias }) : none;
  const pW4noLR = heavy ? packW4A4({ codes, scales }, N, K, { bias }) : none;
  const layer = heavy ? prepareW4A4Layer({ weight: pW4, smooth, lowRankDown: ldown }) : none;
  const layerNoLR = heavy ? prepareW4A4Layer({ weight: pW4noLR, smooth }) : none;
  const pF32 = packF32(wf, N, K, { bias });
  // what the models run: f32GemmBackend().prepare (on the amx path W split once into 3 bf16 parts, AMX-BF16 tiles)
  const prepF32 = only === "lr" || only === "p2" ? undefined : f32GemmBackend().prepare(wf, bias, N, K);
  // int4p2 weights: the same random codes, per-row scales and group exponents 5 − d with d in {0, 1, 2}: one band of
  // 5 levels per row, as every weight row of the trained toy FLUX and of the generated FLUX-width layers measured
  // (experiments/ablation-layer/bench/p2-bands.ts; d = 0..2 holds 95–100 % of their groups) except the post-GELU
  // one, whose rows all spread over 6+ levels: such a weight stays on AMX-BF16 (MAX_SHADOW_COLUMNS). The bf16 GEMM's
  // cost does not depend on the values; the int8 one's grows with the shadow columns of wider rows.
  const p2w = {
    N,
    K,
    codes,
    exponents: heavy ? Int8Array.from({ length: (N * K) / 64 }, () => 5 - Math.floor(rand() * 3)) : none,
    rowScales: Float32Array.from({ length: N }, () => 0.0005 + rand() * 0.001),
    smooth,
    bias,
  };
  const p2 = heavy ? prepareP2Layer({ ...p2w, lowRankDown: ldown, lowRankUp: lup }) : none;
  const p2noLR = heavy ? prepareP2Layer(p2w) : none;
  const p2bf = heavy ? prepareP2Layer({ ...p2w, lowRankDown: ldown, lowRankUp: lup, branch: "bf16" }) : none;
  // amx: AMX-BF16
  const p2amxBf16 = heavy ? prepareP2Layer({ ...p2w, lowRankDown: ldown, lowRankUp: lup, amxInt8: false }) : none;
  // avx2: the f32 FMA GEMM on the bf16 operand (the path before "avx2-int8"), both branch precisions
  const p2avx2F32 = heavy ? prepareP2Layer({ ...p2w, lowRankDown: ldown, lowRankUp: lup, avx2Int8: false }) : none;
  const p2avx2F32bf = heavy
    ? prepareP2Layer({ ...p2w, lowRankDown: ldown, lowRankUp: lup, branch: "bf16", avx2Int8: false })
    : none;
  // the path's integer GEMM (amx-int8, avx2-int8) where prepare packed its weight
  const p2Int = (p: NativeIsa) => ((p === "amx" && p2.int8Weight) || (p === "avx2" && p2.avx2Weight) ? true : "bf16");
  const pW4A16 = heavy ? packW4A16({ codes, scales }, N, K, { format: "int4", groupSize: 64, bias }) : none;
  const pW8 = heavy ? packW8A8({ codes: codes8, scales: scales8 }, N, K, { bias }) : none;
  const models: Record<string, Uint8Array> =
    only === "lr"
      ? {}
      : only === "f32"
        ? { "MatMul f32": matmulModel(wf, N, K) }
        : only === "p2"
          ? {
              "MatMul f32": matmulModel(wf, N, K),
              "MatMulNBits acc4": matmulNBitsModel(codes, scales, N, K, 64, 4),
              DynamicQuantizeMatMul: dynamicQuantizeMatMulModel(codes8, scales8, N, K),
            }
          : {
              "MatMul f32": matmulModel(wf, N, K),
              "MatMulNBits acc0": matmulNBitsModel(codes, scales, N, K, 64, 0),
              "MatMulNBits acc4": matmulNBitsModel(codes, scales, N, K, 64, 4),
              DynamicQuantizeMatMul: dynamicQuantizeMatMulModel(codes8, scales8, N, K),
            };
  const sessions: [string, ort.InferenceSession][] = [];
  for (const spin of [false, true])
    for (const [name, m] of Object.entries(models))
      sessions.push([`ORT ${name} (spin ${spin ? "on" : "off"})`, await ort.InferenceSession.create(m, ortOpts(spin))]);
  for (const M of Ms) {
    const x = f32(M * K);
    const xt = new ort.Tensor("float32", x, [M, K]);
    const out = new Float32Array(M * N);
    const tasks: Task[] = [
      ...sessions.map(
        ([name, s]): Task => ({
          name,
          path: "ort",
          int: !name.includes("f32") && !name.includes("acc0"),
          run: () => s.run({ X: xt }),
        }),
      ),
      ...(heavy ? quantTasks() : []),
      { name: "f32 GEMM", path: best, int: false, run: () => gemmF32(x, M, pF32) },
      ...(prepF32 ? [{ name: "f32 GEMM prepared", path: best, int: false, run: () => prepF32.run(x, out, M) }] : []),
      ...(baseAddon
        ? [
            {
              name: "f32 GEMM base",
              path: best,
              int: false,
              run: () => baseAddon.gemmF32({ x, M, K, N, wpanel: pF32.wpanel, bias: pF32.bias, gelu: false, y: out }),
            },
          ]
        : []),
      ...(paths.includes("avx2") && best !== "avx2"
        ? [{ name: "f32 GEMM", path: "avx2" as const, int: false, run: () => gemmF32(x, M, pF32) }]
        : []),
      ...(heavy
        ? [
            { name: "W4A16", path: best, int: false, run: () => gemmW4A16(x, M, pW4A16) },
            {
              name: "W8A8",
              path: best,
              int: true,
              run: () => gemmW8A8(quantizeActivationsInt8(x, M, K), pW8, { out }),
            },
          ]
        : []),
    ];
    function quantTasks(): Task[] {
      return [
        ...paths.map(
          (p): Task => ({
            name: "W4A4 layer",
            path: p,
            int: true,
            run: () => layer.forward(x, M, { out }),
            group: p === best ? "lr-w4a4" : undefined,
          }),
        ),
        ...paths.map(
          (p): Task => ({
            name: "int4p2 layer",
            path: p,
            int: p2Int(p), // amx: the AMX-INT8 path where prepare packed it; avx2: the avx2-int8 one
            run: () => p2.forward(x, M, { out }),
            group: p === best ? "lr-p2" : undefined,
          }),
        ),
        {
          name: "int4p2 layer bf16",
          path: best,
          int: p2Int(best),
          run: () => p2bf.forward(x, M, { out }),
          group: "lr-p2",
        },
        {
          name: "int4p2 no LR",
          path: best,
          int: p2Int(best),
          run: () => p2noLR.forward(x, M, { out }),
          group: "lr-p2",
        },
        ...(best === "amx" && p2.int8Weight
          ? [{ name: "int4p2 amx-bf16", path: best, int: "bf16" as const, run: () => p2amxBf16.forward(x, M, { out }) }]
          : []),
        ...(best === "avx2" && p2.avx2Weight
          ? [
              {
                name: "int4p2 avx2-f32",
                path: best,
                int: "bf16" as const,
                run: () => p2avx2F32.forward(x, M, { out }),
              },
              {
                name: "int4p2 avx2-f32 bf16",
                path: best,
                int: "bf16" as const,
                run: () => p2avx2F32bf.forward(x, M, { out }),
              },
            ]
          : []),
        {
          name: "W4A4 layer no LR",
          path: best,
          int: true,
          run: () => layerNoLR.forward(x, M, { out }),
          group: "lr-w4a4",
        },
        {
          name: "W4A4 2 calls",
          path: best,
          int: true,
          run: () => gemmW4A4(quantizeActivations(x, M, K, { smooth, lowRankDown: ldown, rank: RANK }), pW4),
        },
      ];
    }
    if (only === "f32") tasks.splice(0, tasks.length, ...tasks.filter((t) => t.name.includes("f32")));
    if (only === "lr")
      tasks.splice(
        0,
        tasks.length,
        ...tasks.filter((t) => (t.name.startsWith("W4A4 layer") || t.name.startsWith("int4p2")) && t.path === best),
      );
    if (only === "p2")
      tasks.splice(
        0,
        tasks.length,
        ...tasks.filter(
          (t) =>
            t.path === "ort" ||
            (t.name.startsWith("int4p2") && (t.path === best || M * N * K <= 1e10)) || // slow paths: small shapes
            (t.name === "W4A4 layer" && t.path === best),
        ),
      );
    const rounds = Number(process.env.SVDQ_BENCH_ROUNDS) || (M * N * K > 2e10 ? 3 : 5);
    const { wall: ms, cpu, cpuRounds } = await timeRounds(tasks, rounds);
    const get = (name: string, path?: string) => {
      const i = tasks.findIndex((t) => t.name === name && (path === undefined || t.path === path));
      return i < 0 ? Number.NaN : ms[i];
    };
    const getCpu = (name: string, path?: string) => {
      const i = tasks.findIndex((t) => t.name === name && (path === undefined || t.path === path));
      return i < 0 ? Number.NaN : cpu[i];
    };
    // low-rank overhead from the adjacent pair of each round (same load), median over rounds, in CPU time
    const paired = (name: string, base: string) => {
      const a = cpuRounds[tasks.findIndex((t) => t.name === name && t.path === best)];
      const b = cpuRounds[tasks.findIndex((t) => t.name === base && t.path === best)];
      return a && b ? (median(a.map((v, r) => v / b[r])) - 1) * 100 : Number.NaN;
    };
    const lrCpu = (getCpu("W4A4 layer", best) / getCpu("W4A4 layer no LR") - 1) * 100;
    const f32Cpu = getCpu("ORT MatMul f32 (spin off)") / getCpu("f32 GEMM", best);
    tasks.forEach((t, i) => {
      results.push({ path: t.path, int: t.int, M, K, N, name: t.name, ms: ms[i], cpu: cpu[i] });
    });
    const ortF32 = Math.min(get("ORT MatMul f32 (spin off)"), get("ORT MatMul f32 (spin on)"));
    const ortInt = Math.min(
      ...tasks.filter((t) => t.path === "ort" && !t.name.includes("f32")).map((t) => ms[tasks.indexOf(t)]),
    );
    const ortDq = Math.min(get("ORT DynamicQuantizeMatMul (spin off)"), get("ORT DynamicQuantizeMatMul (spin on)"));
    const lay = get("W4A4 layer", best);
    const p2lay = get("int4p2 layer", best);
    if (only === undefined || only === "p2")
      p2Stats.push({
        M,
        K,
        N,
        vsInt: ortInt / p2lay,
        vsF32: ortF32 / p2lay,
        lr: (p2lay / get("int4p2 no LR") - 1) * 100,
        lrCpu: (getCpu("int4p2 layer", best) / getCpu("int4p2 no LR") - 1) * 100,
        lrPaired: paired("int4p2 layer", "int4p2 no LR"),
        ms: p2lay,
        vsOurs: lay / p2lay,
        vsIntBf: ortInt / get("int4p2 layer bf16", best),
        lrBfCpu: (getCpu("int4p2 layer bf16", best) / getCpu("int4p2 no LR") - 1) * 100,
        lrBfPaired: paired("int4p2 layer bf16", "int4p2 no LR"),
        perPath: [
          ...paths
            .filter((p) => !Number.isNaN(get("int4p2 layer", p)))
            .map(
              (p) =>
                `${p === "amx" && p2.int8Weight ? "amx-int8" : p === "avx2" && p2.avx2Weight ? "avx2-int8" : p} ${(ortInt / get("int4p2 layer", p)).toFixed(2)}x`,
            ),
          ...(Number.isNaN(get("int4p2 amx-bf16"))
            ? []
            : [`amx-bf16 ${(ortInt / get("int4p2 amx-bf16")).toFixed(2)}x`]),
          ...(Number.isNaN(get("int4p2 avx2-f32"))
            ? []
            : [
                `avx2-f32 ${(ortInt / get("int4p2 avx2-f32")).toFixed(2)}x (bf16 branch ${(ortInt / get("int4p2 avx2-f32 bf16")).toFixed(2)}x)`,
              ]),
        ].join(", "),
      });
    const lrOf = (name: string, g: (n: string, p?: string) => number) =>
      (g(name, best) / g("int4p2 no LR", best) - 1) * 100;
    // a ratio or a percentage, or "—" where a task did not run (--only=lr has no ORT tasks, --only=f32 no layers)
    const fx = (v: number) => (Number.isFinite(v) ? `${v.toFixed(2)}x` : "—");
    const pc = (v: number) => (Number.isFinite(v) ? `${v.toFixed(1)}%` : "—");
    if (!Number.isNaN(get("int4p2 no LR")))
      p2LrRows.push(
        `| ${cpuModel} | ${best} | ${M} | ${K} | ${N} | ${get("int4p2 no LR").toFixed(1)} | ${pc(lrOf("int4p2 layer", get))} (CPU ${pc(lrOf("int4p2 layer", getCpu))}, paired ${pc(paired("int4p2 layer", "int4p2 no LR"))}) | ${pc(lrOf("int4p2 layer bf16", get))} (CPU ${pc(lrOf("int4p2 layer bf16", getCpu))}, paired ${pc(paired("int4p2 layer bf16", "int4p2 no LR"))}) |`,
      );
    if (only !== "p2")
      ratioRows.push(
        `| ${cpuModel} | ${best} | ${M} | ${K} | ${N} | ${fx(ortInt / lay)} | ${fx(ortF32 / lay)} | ${pc((lay / get("W4A4 layer no LR") - 1) * 100)} (CPU ${pc(lrCpu)}, paired ${pc(paired("W4A4 layer", "W4A4 layer no LR"))}) | ${fx(ortF32 / get("f32 GEMM", best))} (CPU ${fx(f32Cpu)}); prepared ${fx(ortF32 / get("f32 GEMM prepared", best))} (CPU ${fx(getCpu("ORT MatMul f32 (spin off)") / getCpu("f32 GEMM prepared", best))})${baseAddon ? `; base build ${fx(ortF32 / get("f32 GEMM base"))} (CPU ${fx(getCpu("ORT MatMul f32 (spin off)") / getCpu("f32 GEMM base"))})` : ""} | ${fx(ortF32 / get("W4A16"))} | ${fx(ortDq / get("W8A8"))} | ${paths.map((p) => `${p} ${fx(ortInt / get("W4A4 layer", p))}`).join(", ")} |`,
      );
    console.log(`done M=${M} K=${K} N=${N}`);
  }
  for (const [, s] of sessions) await s.release();
}
const peak1 = peaks();
// "of peak" against the larger of the two peak measurements (a load spike during one of them lowers it)
const peakMax = peak0.map((v, i) => Math.max(v, peak1[i]));
const rows = results.map((r) => {
  const [pk, label] = peakFor(peakMax, r.path, r.int);
  const rate = (r.M * r.N * r.K) / (r.ms / 1e3);
  return `| ${cpuModel} | ${r.path === "ort" ? `ort (${best} CPU)` : r.path} | ${r.M} | ${r.K} | ${r.N} | ${r.name} | ${r.ms.toFixed(1)} | ${r.cpu.toFixed(1)} | ${((rate * 2) / 1e9).toFixed(0)} | ${((rate / pk) * 100).toFixed(0)}% ${label} |`;
});
console.log(
  "\n| CPU | path | M | K | N | kernel | ms (median) | CPU ms (median) | G(FL)OP/s | of peak |\n| - | - | -: | -: | -: | - | -: | -: | -: | -: |",
);
console.log(rows.join("\n"));
console.log(
  "\n| CPU | path | M | K | N | W4A4 layer vs fastest ORT int8/4-bit | vs ORT f32 | low-rank overhead, wall (CPU time) | f32 GEMM / ORT f32, wall (CPU time vs spin off); prepared (`f32GemmBackend().prepare`) | W4A16 vs ORT f32 | W8A8 vs ORT DynamicQuantizeMatMul | W4A4 layer vs fastest ORT int, per path |\n| - | - | -: | -: | -: | -: | -: | -: | -: | -: | -: | - |",
);
console.log(ratioRows.join("\n"));
console.log(
  "\n| CPU | path | M | K | N | int4p2 layer vs fastest ORT int8/4-bit | vs ORT f32 | low-rank overhead, wall (CPU time) | of peak (GEMM MACs) | vs our INT4 W4A4 layer | per path vs fastest ORT int | branch bf16: vs fastest ORT int (low-rank overhead, CPU time) |\n| - | - | -: | -: | -: | -: | -: | -: | -: | -: | - | -: |",
);
const [p2pk, p2label] = peakFor(
  peakMax,
  best,
  (best === "amx" && p2GemmPath() === "amx-int8") || (best === "avx2" && p2GemmPath() === "avx2-int8") ? true : "bf16",
);
for (const r of p2Stats) {
  const rate = (r.M * r.N * (r.K + 6 * RANK)) / (r.ms / 1e3); // the GEMM's MACs: K code columns + 6R branch columns
  console.log(
    `| ${cpuModel} | ${best} | ${r.M} | ${r.K} | ${r.N} | ${r.vsInt.toFixed(2)}x | ${r.vsF32.toFixed(2)}x | ${r.lr.toFixed(1)}% (CPU ${r.lrCpu.toFixed(1)}%, paired ${r.lrPaired.toFixed(1)}%) | ${((rate / p2pk) * 100).toFixed(0)}% ${p2label} | ${r.vsOurs.toFixed(2)}x | ${r.perPath} | ${r.vsIntBf.toFixed(2)}x (${r.lrBfCpu.toFixed(1)}%, paired ${r.lrBfPaired.toFixed(1)}%) |`,
  );
}
console.log(
  "\n| CPU | path | M | K | N | int4p2 no LR ms | low-rank overhead, branch f32, wall (CPU time) | branch bf16, wall (CPU time) |\n| - | - | -: | -: | -: | -: | -: | -: |",
);
console.log(p2LrRows.join("\n"));
console.log(
  `\npeak after: f32 FMA ymm ${(peak1[0] / 1e9).toFixed(0)}, zmm ${(peak1[2] / 1e9).toFixed(0)} GFLOP/s; vpmaddubsw ${(peak1[1] / 1e9).toFixed(0)}, vpdpbusd ${(peak1[3] / 1e9).toFixed(0)}, AMX ${(peak1[4] / 1e9).toFixed(0)}, tdpbf16ps ${(peak1[5] / 1e9).toFixed(0)}, vdpbf16ps ${(peak1[6] / 1e9).toFixed(0)} GMAC/s; load ${loadavg()
    .map((v) => v.toFixed(2))
    .join(" ")}`,
);
