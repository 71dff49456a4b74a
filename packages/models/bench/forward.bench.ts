// Forward time and memory of flux-tiny (fixture) and a generated "flux-small" (2 double + 4 single blocks,
// dim 768, 1024 image + 256 text tokens), each against a peer in the same process:
//   GEMM:      blocked TS GEMM (default) vs the naive triple loop (gemmNaive)
//   attention: queries in blocks of 128 (default) vs one block of all queries (unblocked)
//   native:    @svdquant/kernels' f32 GEMM (useKernelsGemm) vs the TS GEMM, alone and in the flux-small forward
// Run: pnpm --filter @svdquant/models bench            (SVDQ_BENCH_QUICK=1: flux-tiny and GEMM only;
//      SVDQ_BENCH_NATIVE_ONLY=1: flux-small on the native backends only, without the ~45 s TypeScript-GEMM forwards;
//      SVDQ_BENCH_AMX_AB=1: also the prepared forward with and without the AMX-BF16 split kernels, same process)
import { join } from "node:path";
import { Tensor } from "@svdquant/tensor";
import { Bench } from "tinybench";
import {
  attention,
  type FluxInputs,
  FluxTransformer,
  fluxParams,
  gemmNaive,
  gemmTs,
  parseFluxConfig,
  setGemmBackend,
  TS_GEMM,
  useKernelsGemm,
} from "../src/index.js";
import { memorySource } from "../test/memory-source.js";

const MB = 1 << 20;
const quick = process.env.SVDQ_BENCH_QUICK === "1";
const nativeOnly = process.env.SVDQ_BENCH_NATIVE_ONLY === "1";
const amxAB = process.env.SVDQ_BENCH_AMX_AB === "1";

function rand(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 4294967296 - 0.5) * 2 * scale;
  }
  return out;
}

function ids(h: number, w: number): Float32Array {
  const a = new Float32Array(h * w * 3);
  for (let i = 0; i < h * w; i++) {
    a[i * 3 + 1] = Math.floor(i / w);
    a[i * 3 + 2] = i % w;
  }
  return a;
}

function meanMs(b: Bench, name: string): number {
  const r = b.getTask(name)?.result as { latency?: { mean: number } } | undefined;
  return r?.latency?.mean ?? Number.NaN;
}

function table(rows: [string, string, string][]): void {
  console.log("| case | peer | ratio (peer / ours) |\n| --- | --- | --- |");
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
}

const out: [string, string, string][] = [];

// The native GEMM, when @svdquant/kernels' addon loads; the TS GEMM stays the process default between tasks.
const nativeChoice = await useKernelsGemm();
const NATIVE = nativeChoice.reason === "" ? nativeChoice.backend : undefined;
setGemmBackend(TS_GEMM);
if (!NATIVE) console.log(`native GEMM rows skipped: ${nativeChoice.reason}`);

// ---- GEMM alone: one FLUX-small MLP-in projection, M=1280 tokens, K=768, N=3072
{
  const m = quick ? 256 : 1280;
  const k = 768;
  const n = 3072;
  const x = rand(m * k, 1, 1);
  const w = rand(n * k, 2, 0.03);
  const y = new Float32Array(m * n);
  const b = new Bench({ iterations: 2, warmupIterations: 1, time: 0 });
  b.add("gemm ts-blocked", () => gemmTs(x, w, undefined, y, m, k, n));
  b.add("gemm naive", () => gemmNaive(x, w, undefined, y, m, k, n));
  if (NATIVE) b.add("gemm native", () => NATIVE.gemm(x, w, undefined, y, m, k, n));
  await b.run();
  const ours = meanMs(b, "gemm ts-blocked");
  const peer = meanMs(b, "gemm naive");
  const gf = (ms: number) => ((2 * m * k * n) / ms / 1e6).toFixed(2);
  out.push([
    `GEMM ${m}x${k}x${n}: ts-blocked ${ours.toFixed(0)} ms (${gf(ours)} GFLOP/s)`,
    `naive ${peer.toFixed(0)} ms (${gf(peer)} GFLOP/s)`,
    (peer / ours).toFixed(2),
  ]);
  if (NATIVE) {
    const nat = meanMs(b, "gemm native");
    out.push([
      `GEMM ${m}x${k}x${n}: ${NATIVE.name} ${nat.toFixed(0)} ms (${gf(nat)} GFLOP/s), W packed on every call`,
      `ts-blocked ${ours.toFixed(0)} ms`,
      (ours / nat).toFixed(2),
    ]);
  }
}

// ---- flux-tiny fixture forward, ts-blocked vs naive GEMM backend
{
  const dir = join(import.meta.dirname, "../../../fixtures/models/flux-tiny-a");
  const model = await FluxTransformer.fromFolder(dir);
  const inp: FluxInputs = {
    batch: 1,
    imgTokens: 16,
    txtTokens: 8,
    hiddenStates: rand(16 * 16, 3, 1),
    encoderHiddenStates: rand(8 * 48, 4, 1),
    pooledProjections: rand(24, 5, 1),
    timestep: [0.5],
    imgIds: ids(4, 4),
    txtIds: new Float32Array(24),
  };
  const naive = { name: "naive", gemm: gemmNaive };
  const b = new Bench({ time: 1000, warmupIterations: 20 });
  b.add("flux-tiny ts-blocked", async () => {
    setGemmBackend(TS_GEMM);
    await model.forward(inp);
  });
  b.add("flux-tiny naive", async () => {
    setGemmBackend(naive);
    await model.forward(inp);
    setGemmBackend(TS_GEMM);
  });
  await b.run();
  const ours = meanMs(b, "flux-tiny ts-blocked");
  const peer = meanMs(b, "flux-tiny naive");
  console.log(`flux-tiny: process peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
  out.push([
    `flux-tiny forward (2+3 blocks, dim 64, 24 tokens): ${ours.toFixed(3)} ms`,
    `naive GEMM ${peer.toFixed(3)} ms`,
    (peer / ours).toFixed(2),
  ]);
}

// ---- attention alone at flux-small size: 1 x 1280 tokens, 6 heads x 128
{
  const s = quick ? 320 : 1280;
  const h = 6;
  const dh = 128;
  const q = rand(s * h * dh, 11, 1);
  const k = rand(s * h * dh, 12, 1);
  const v = rand(s * h * dh, 13, 1);
  const b = new Bench({ iterations: 3, warmupIterations: 1, time: 0 });
  b.add("attention blocked-128", () => {
    attention(q, k, v, 1, s, s, h, dh, undefined, { queryBlock: 128 });
  });
  b.add("attention unblocked", () => {
    attention(q, k, v, 1, s, s, h, dh, undefined, { queryBlock: Number.POSITIVE_INFINITY });
  });
  await b.run();
  const ours = meanMs(b, "attention blocked-128");
  const peer = meanMs(b, "attention unblocked");
  out.push([
    `attention ${s} tokens, 6x128 heads: blocked-128 ${ours.toFixed(0)} ms, scores ${((128 * s * 4) / MB).toFixed(2)} MB`,
    `unblocked ${peer.toFixed(0)} ms, scores ${((s * s * 4) / MB).toFixed(2)} MB`,
    (peer / ours).toFixed(2),
  ]);
  if (NATIVE?.attention) {
    // the native online-softmax kernel (GemmBackend.attention) vs the same native GEMM with the TypeScript
    // softmax/gathers, alternating run by run; median of 5
    const gemmOnly = { name: `${NATIVE.name} (GEMM only)`, gemm: NATIVE.gemm };
    const tKernel: number[] = [];
    const tGemm: number[] = [];
    for (let r = 0; r < 6; r++)
      for (const [be, ts] of [
        [NATIVE, tKernel],
        [gemmOnly, tGemm],
      ] as const) {
        setGemmBackend(be);
        const t0 = performance.now();
        attention(q, k, v, 1, s, s, h, dh);
        if (r > 0) ts.push(performance.now() - t0); // round 0 warms up
      }
    setGemmBackend(TS_GEMM);
    const med = (a: number[]) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
    out.push([
      `attention ${s} tokens, 6x128 heads: ${NATIVE.name} attention kernel ${med(tKernel).toFixed(0)} ms`,
      `native GEMM + TypeScript softmax ${med(tGemm).toFixed(0)} ms`,
      (med(tGemm) / med(tKernel)).toFixed(2),
    ]);
  }
}

// ---- flux-small: 2 double + 4 single blocks, dim 768, 1024 image + 256 text tokens
if (!quick) {
  const raw = {
    _class_name: "FluxTransformer2DModel",
    num_layers: 2,
    num_single_layers: 4,
    num_attention_heads: 6,
    attention_head_dim: 128,
  };
  const config = parseFluxConfig(raw);
  const rss0 = process.memoryUsage().rss;
  const tensors = new Map<string, Tensor>();
  let bytes = 0;
  fluxParams(config).forEach((p, i) => {
    const n = p.shape.reduce((a, c) => a * c, 1);
    const fan = p.shape.length === 2 ? p.shape[1]! : 1;
    const t = new Tensor("F32", p.shape, rand(n, 100 + i, p.shape.length === 2 ? 1 / Math.sqrt(fan) : 1));
    if (p.shape.length === 1 && p.name.includes("norm_")) t.data.fill(1);
    tensors.set(p.name, t);
    bytes += t.byteLength;
  });
  const model = await FluxTransformer.fromSource(config, memorySource(tensors));
  const rssBuilt = process.memoryUsage().rss;
  const si = 1024;
  const st = 256;
  const inp: FluxInputs = {
    batch: 1,
    imgTokens: si,
    txtTokens: st,
    hiddenStates: rand(si * 64, 6, 1),
    encoderHiddenStates: rand(st * 4096, 7, 1),
    pooledProjections: rand(768, 8, 1),
    timestep: [0.5],
    imgIds: ids(32, 32),
    txtIds: new Float32Array(st * 3),
  };
  const s = si + st;
  const run = async (queryBlock: number, gemm = TS_GEMM) => {
    setGemmBackend(gemm);
    try {
      await model.forward(inp, { attention: { queryBlock } });
    } finally {
      setGemmBackend(TS_GEMM);
    }
  };
  // ABBA order (each task one forward) so drift in the shared machine's load hits the variants alike.
  const b = new Bench({ iterations: 1, warmupIterations: 0, warmup: false, time: 0 });
  if (!nativeOnly) {
    b.add("blocked #1", () => run(128));
    b.add("unblocked #1", () => run(Number.POSITIVE_INFINITY));
  }
  if (NATIVE) {
    b.add("native #1", () => run(128, NATIVE));
    b.add("native #2", () => run(128, NATIVE));
  }
  if (!nativeOnly) {
    b.add("unblocked #2", () => run(Number.POSITIVE_INFINITY));
    b.add("blocked #2", () => run(128));
  }
  await b.run();
  for (const t of b.tasks) console.log(`flux-small ${t.name}: ${(meanMs(b, t.name) / 1000).toFixed(1)} s`);
  const ours = (meanMs(b, "blocked #1") + meanMs(b, "blocked #2")) / 2;
  const peer = (meanMs(b, "unblocked #1") + meanMs(b, "unblocked #2")) / 2;
  const score = (q: number) => ((Math.min(q, s) * s * 4) / MB).toFixed(2);
  if (!nativeOnly)
    out.push([
      `flux-small forward (2+4 blocks, dim 768, ${si}+${st} tokens, ${(bytes / MB).toFixed(0)} MB f32 weights): ${(ours / 1000).toFixed(1)} s, score buffer ${score(128)} MB`,
      `unblocked attention ${(peer / 1000).toFixed(1)} s, score buffer ${score(s)} MB`,
      (peer / ours).toFixed(2),
    ]);
  if (NATIVE && !nativeOnly) {
    const nat = (meanMs(b, "native #1") + meanMs(b, "native #2")) / 2;
    out.push([
      `flux-small forward with ${NATIVE.name} (blocked attention, unprepared): ${(nat / 1000).toFixed(1)} s`,
      `TS GEMM ${(ours / 1000).toFixed(1)} s`,
      (ours / nat).toFixed(2),
    ]);
  }
  if (NATIVE) {
    // The native forward three ways, alternated round by round (median of 3 rounds after a warm-up round; wall
    // and process CPU time, which load from other jobs inflates less):
    //   issue:     the native GEMM alone (W packed per call, TypeScript softmax and GELU): the 3.1 s setup
    //   unprep:    + the native attention kernel, W still packed per call, GELU in TypeScript
    //   prepared:  model.prepare() (W packed once), GELU in the GEMM epilogue, native attention
    const gemmOnly = { name: `${NATIVE.name} (GEMM only)`, gemm: NATIVE.gemm };
    const unprep = { name: `${NATIVE.name} (unprepared)`, gemm: NATIVE.gemm, attention: NATIVE.attention };
    const rssBefore = process.memoryUsage().rss;
    setGemmBackend(NATIVE);
    const c0 = process.cpuUsage();
    const tp = performance.now();
    const nPrepared = model.prepare();
    const prepMs = performance.now() - tp;
    const prepCpu = process.cpuUsage(c0);
    const rssPrepared = process.memoryUsage().rss;
    setGemmBackend(TS_GEMM);
    const variants = [
      ["issue", gemmOnly],
      ["unprep", unprep],
      ["prepared", NATIVE],
    ] as const;
    const wall = new Map<string, number[]>();
    const cpu = new Map<string, number[]>();
    for (let r = 0; r < 4; r++)
      for (const [name, be] of variants) {
        setGemmBackend(be);
        const u0 = process.cpuUsage();
        const t0 = performance.now();
        await model.forward(inp);
        const t = performance.now() - t0;
        const u = process.cpuUsage(u0);
        setGemmBackend(TS_GEMM);
        if (r === 0) continue; // warm-up round
        wall.set(name, [...(wall.get(name) ?? []), t]);
        cpu.set(name, [...(cpu.get(name) ?? []), (u.user + u.system) / 1000]);
      }
    const med = (a: number[] | undefined) => [...(a ?? [])].sort((x, y) => x - y)[1]!;
    for (const [name] of variants)
      console.log(
        `flux-small native ${name}: wall ${wall
          .get(name)!
          .map((t) => t.toFixed(0))
          .join(", ")} ms; CPU ${cpu
          .get(name)!
          .map((t) => t.toFixed(0))
          .join(", ")} ms`,
      );
    console.log(
      `flux-small prepare(): ${nPrepared} layers in ${prepMs.toFixed(0)} ms (CPU ${((prepCpu.user + prepCpu.system) / 1000).toFixed(0)} ms), RSS +${((rssPrepared - rssBefore) / MB).toFixed(0)} MB`,
    );
    const [wi, wu, wp] = [med(wall.get("issue")), med(wall.get("unprep")), med(wall.get("prepared"))];
    const [ci, cu, cp] = [med(cpu.get("issue")), med(cpu.get("unprep")), med(cpu.get("prepared"))];
    out.push([
      `flux-small forward, ${NATIVE.name}, model.prepare() + GELU epilogue + attention kernel: ${wp.toFixed(0)} ms wall, ${cp.toFixed(0)} ms CPU`,
      `same backend, unprepared (W packed per call, TS GELU): ${wu.toFixed(0)} ms wall, ${cu.toFixed(0)} ms CPU`,
      `${(wu / wp).toFixed(2)} wall, ${(cu / cp).toFixed(2)} CPU`,
    ]);
    out.push([
      `flux-small forward, prepared (as above): ${wp.toFixed(0)} ms wall, ${cp.toFixed(0)} ms CPU`,
      `native GEMM only (the issue's setup: TS softmax + GELU, W packed per call): ${wi.toFixed(0)} ms wall, ${ci.toFixed(0)} ms CPU`,
      `${(wi / wp).toFixed(2)} wall, ${(ci / cp).toFixed(2)} CPU`,
    ]);
  }
  if (NATIVE && amxAB) {
    // What the AMX-BF16 split kernels (@svdquant/kernels' gemmF32Split and attention) gain in the prepared forward,
    // variants alternated round by round (median of 3 rounds after a warm-up round), each round re-preparing the
    // model for its backend (prepare time not counted):
    //   avx512:      f32 panels, kernels on the avx512 path, TypeScript norms (the kernels of the previous pass)
    //   +attention:  f32 panels, the amx path: attention on split-bf16 tiles
    //   +split3:     weights split in 3 bf16 parts (f32-class), amx path: GEMM and attention on tiles
    //   +norms:      + the native LayerNorm+modulation and RMSNorm+RoPE (the default backend)
    //   +split2:     2 parts (3 products, ≈ 2⁻¹⁶ relative; the explicit faster option)
    const kernels = await import("@svdquant/kernels");
    if (!kernels.f32SplitInfo().amx) console.log("AMX A/B skipped: the amx path with AMX-BF16 does not run here");
    else {
      const variants = [
        ["avx512", 0, "avx512", false],
        ["+attention", 0, "amx", false],
        ["+split3", 3, "amx", false],
        ["+norms", 3, "amx", true],
        ["+split2", 2, "amx", true],
      ] as const;
      const wall = new Map<string, number[]>();
      const cpu = new Map<string, number[]>();
      const names = new Map<string, string>();
      for (let r = 0; r < 4; r++)
        for (const [name, amxSplits, isa, norms] of variants) {
          kernels.setIsa(isa);
          const full = kernels.f32GemmBackend({ amxSplits });
          const be = norms ? full : { ...full, layerNormModulate: undefined, rmsNormRopeHeads: undefined };
          names.set(name, `${be.name}${norms ? "" : ", TypeScript norms"}`);
          setGemmBackend(be);
          model.prepare();
          const u0 = process.cpuUsage();
          const t0 = performance.now();
          await model.forward(inp);
          const t = performance.now() - t0;
          const u = process.cpuUsage(u0);
          setGemmBackend(TS_GEMM);
          kernels.setIsa("auto");
          if (r === 0) continue;
          wall.set(name, [...(wall.get(name) ?? []), t]);
          cpu.set(name, [...(cpu.get(name) ?? []), (u.user + u.system) / 1000]);
        }
      const med = (a: number[] | undefined) => [...(a ?? [])].sort((x, y) => x - y)[1]!;
      for (const [name] of variants)
        console.log(
          `flux-small AMX A/B ${name} (${names.get(name)}): wall ${wall
            .get(name)!
            .map((t) => t.toFixed(0))
            .join(", ")} ms; CPU ${cpu
            .get(name)!
            .map((t) => t.toFixed(0))
            .join(", ")} ms`,
        );
      for (let i = 1; i < variants.length; i++) {
        const [a, b] = [variants[i - 1]![0], variants[i]![0]];
        out.push([
          `flux-small prepared forward ${b}: ${med(wall.get(b)).toFixed(0)} ms wall, ${med(cpu.get(b)).toFixed(0)} ms CPU`,
          `${a}: ${med(wall.get(a)).toFixed(0)} ms wall, ${med(cpu.get(a)).toFixed(0)} ms CPU`,
          `${(med(wall.get(a)) / med(wall.get(b))).toFixed(2)} wall, ${(med(cpu.get(a)) / med(cpu.get(b))).toFixed(2)} CPU`,
        ]);
      }
    }
  }
  console.log(
    `flux-small: RSS after building the model ${((rssBuilt - rss0) / MB).toFixed(0)} MB above the section start; ` +
      `process peak RSS after both forwards ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`,
  );
}

table(out);
