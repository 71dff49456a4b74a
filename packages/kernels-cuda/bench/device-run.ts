// Device runner (bundled by tools/cuda-bench.sh, run on the GPU machine): `check` runs every correctness case,
// `small` one small case of each kernel (for compute-sanitizer), `bench` the timing table vs cuBLAS BF16 and INT8.
import {
  cudaAvailability,
  DeviceBuffer,
  gemmCublas,
  gemmCublasInt8,
  gemmW4A4,
  gemmW4A4Next,
  padM,
  quantizeAct,
  repackWeightWg,
  synchronize,
  timeGraphMs,
} from "../src/index.ts";
import { checkCrossCpu, cpuBackend, crossCases } from "../test/cpu-cross.ts";
import {
  checkCublas,
  checkCublasInt8,
  checkGemm,
  checkGemmNext,
  checkQuantize,
  gemmCases,
  gemmNextCases,
  gemmWgCases,
  quantCases,
} from "../test/gpu-cases.ts";
import { Rng } from "../test/reference.ts";

const mode = process.argv[2] ?? "check";
const av = cudaAvailability();
console.log(`device: ${av.reason}; cublas: ${av.info?.cublas ?? "?"}`);
if (!av.available) process.exit(2);

let failures = 0;
function run(name: string, fn: () => string): void {
  try {
    console.log(`ok   ${fn()}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${(e as Error).message}`);
  }
}

/**
 * The next-layer epilogue's cost, same process and device: the mma.sync "s8" GEMM (bias, GELU, rank 32) alone, with
 * its output quantized for the next layer in the epilogue (gemmW4A4Next: unsigned s8 codes, rank 32, smooth), and
 * followed by the separate kernel 1 on its output (what the epilogue replaces). Median of 5 CUDA-graph timings.
 */
function timeNextEpilogue(): string {
  const dtype = "bf16";
  const R = 32;
  const rng = new Rng(77);
  const median = (fn: () => void, iters: number): number => {
    fn();
    synchronize();
    const t: number[] = [];
    for (let i = 0; i < 5; i++) t.push(timeGraphMs(fn, iters));
    t.sort((a, b) => a - b);
    return t[2] * 1000;
  };
  const lines = [
    "| path | M | K | N | GEMM µs | GEMM+next µs | GEMM then quantize µs | epilogue cost | saved vs separate |",
  ];
  for (const [path, M, K, N] of [
    ["s8", 256, 3072, 3072],
    ["s8", 4608, 3072, 3072],
    ["s8", 4608, 3072, 12288],
    ["f8", 256, 3072, 3072],
    ["f8", 4608, 3072, 3072],
    ["f8", 4608, 3072, 12288],
  ] as const) {
    const G = K / 64;
    const Mp = padM(M);
    const bufs: DeviceBuffer[] = [];
    const mk = (b: DeviceBuffer): DeviceBuffer => {
      bufs.push(b);
      return b;
    };
    const x = mk(DeviceBuffer.from(rng.halfs(dtype, M * K)));
    const qw = mk(DeviceBuffer.from(Uint8Array.from({ length: (N * K) / 2 }, () => rng.int(0, 255))));
    const sw = mk(DeviceBuffer.from(rng.halfs(dtype, N * G, 0.001, 0.003)));
    const down = mk(DeviceBuffer.from(rng.halfs(dtype, R * K, 0.02)));
    const up = mk(DeviceBuffer.from(rng.halfs(dtype, N * R, 0.02)));
    const bias = mk(DeviceBuffer.from(rng.halfs(dtype, N, 0.1)));
    const down2 = mk(DeviceBuffer.from(rng.halfs(dtype, R * N, 0.02)));
    const smooth2 = mk(DeviceBuffer.from(rng.halfs(dtype, N, 0.2, 1)));
    const out = mk(new DeviceBuffer(M * N * 2));
    const codes2 = mk(new DeviceBuffer(Mp * N));
    const ascales2 = mk(new DeviceBuffer(Mp * (N / 64) * 2));
    const lora2 = mk(new DeviceBuffer(Mp * R * 4));
    const act = quantizeAct({ dtype, M, K, R, x, loraDown: down, format: path });
    for (const b of [act.codes, act.ascales, act.loraAct]) if (b) mk(b);
    // "f8": the wgmma GEMM on repacked weights, next codes in f8 too (the chain stays on the fast path)
    const wg = path === "f8" ? repackWeightWg({ dtype, N, K, qweight: qw, wscales: sw }) : undefined;
    if (wg) for (const b of [wg.qweight, wg.wscales]) mk(b);
    const base = { dtype, act, N, qweight: qw, wscales: sw, loraUp: up, bias, gelu: true, out, wg } as const;
    const next = { R, smooth: smooth2, loraDown: down2, actUnsigned: true, format: path };
    const iters = M >= 4096 ? 20 : 100;
    const tG = median(() => gemmW4A4(base), iters);
    const tN = median(
      () => gemmW4A4Next({ ...base, next: { ...next, codes: codes2, ascales: ascales2, loraAct: lora2 } }),
      iters,
    );
    const tS = median(() => {
      gemmW4A4(base);
      quantizeAct({ dtype, M, K: N, x: out, ...next, codes: codes2, ascales: ascales2, loraAct: lora2 });
    }, iters);
    lines.push(
      `| ${path} | ${M} | ${K} | ${N} | ${tG.toFixed(1)} | ${tN.toFixed(1)} | ${tS.toFixed(1)} | +${(((tN - tG) / tG) * 100).toFixed(1)}% | ${(tS / tN).toFixed(2)}x |`,
    );
    for (const b of bufs) b.free();
  }
  console.log(lines.join("\n"));
  return "next-layer epilogue timing (table above; bf16, rank 32 -> 32, bias, GELU, unsigned next codes in the GEMM's format)";
}

if (mode === "check") {
  const t0 = Date.now();
  for (const c of quantCases()) run(`quantize ${JSON.stringify(c)}`, () => checkQuantize(c));
  for (const c of gemmCases()) run(`gemm ${JSON.stringify(c)}`, () => checkGemm(c));
  for (const c of gemmWgCases()) run(`gemm wg ${JSON.stringify(c)}`, () => checkGemm(c));
  for (const c of gemmNextCases()) run(`gemm next ${JSON.stringify(c)}`, () => checkGemmNext(c));
  run("cublas bf16", () => checkCublas("bf16", 77, 256, 320, 1));
  run("cublas int8", () => checkCublasInt8(77, 256, 320, 4));
  run("cublas f16", () => checkCublas("f16", 130, 384, 192, 2));
  console.log(`${failures} failures; ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (!process.env.SKIP_NEXT_TIMING) run("next-layer epilogue timing", timeNextEpilogue);
  process.exit(failures ? 1 : 0);
}

if (mode === "cross") {
  // the same random inputs through the CPU kernels (@svdquant/kernels native addon) and the CUDA kernels
  console.log(`CPU kernels: ${cpuBackend()}`);
  for (const c of crossCases()) run(`cross ${JSON.stringify(c)}`, () => checkCrossCpu(c));
  console.log(`${failures} failures`);
  process.exit(failures ? 1 : 0);
}

if (mode === "small") {
  run("quantize small", () =>
    checkQuantize({ dtype: "bf16", M: 37, K: 192, R: 32, unsigned: false, smooth: true, format: "s8", seed: 7 }),
  );
  run("quantize small f8", () =>
    checkQuantize({ dtype: "bf16", M: 37, K: 192, R: 32, unsigned: true, smooth: true, format: "f8", seed: 8 }),
  );
  for (const format of ["s8", "s4"] as const)
    run(`gemm small ${format}`, () =>
      checkGemm({
        dtype: "bf16",
        M: 37,
        N: 256,
        K: 192,
        R: 32,
        unsigned: true,
        bias: true,
        gelu: true,
        format,
        seed: 9,
      }),
    );
  run("gemm small wg", () =>
    checkGemm({
      dtype: "bf16",
      M: 37,
      N: 256,
      K: 64 * 10,
      R: 32,
      unsigned: true,
      bias: true,
      gelu: true,
      format: "f8",
      wg: true,
      seed: 11,
    }),
  );
  for (const format of ["s8", "s4", "f8"] as const)
    run(`gemm+next small ${format}`, () =>
      checkGemmNext({
        dtype: "bf16",
        M: 37,
        N: 256,
        K: 192,
        R: 32,
        unsigned: false,
        bias: true,
        gelu: true,
        format,
        blockM: 64,
        nextR: 32,
        nextUnsigned: true,
        nextFormat: format,
        nextSmooth: true,
        seed: 13,
      }),
    );
  run("cublas small", () => checkCublas("bf16", 37, 128, 64, 3));
  run("cublas int8 small", () => checkCublasInt8(37, 128, 64, 5));
  process.exit(failures ? 1 : 0);
}

if (mode === "wgswap") {
  // negative control, run with SVDQ_WG_SWAP=1 (descriptor strides swapped): the wgmma cases must now FAIL, which
  // shows that they ran on the wgmma kernel and that the check can fail
  let bad = 0;
  const cs = gemmWgCases().slice(0, 4);
  for (const c of cs) {
    try {
      checkGemm(c);
    } catch {
      bad++;
    }
  }
  console.log(`wgswap negative control: ${bad}/${cs.length} wgmma cases failed with swapped descriptor strides`);
  process.exit(bad === cs.length ? 0 : 1);
}

if (mode === "ncu") {
  // the M=4608, K=N=3072 layer twice (ncu profiles the kernels it is told to)
  const dtype = "bf16";
  const [M, K, N, R] = [4608, 3072, 3072, 32];
  const rng = new Rng(3);
  const x = DeviceBuffer.from(rng.halfs(dtype, M * K));
  const qw = DeviceBuffer.from(Uint8Array.from({ length: (N * K) / 2 }, () => rng.int(0, 255)));
  const sw = DeviceBuffer.from(rng.halfs(dtype, N * (K / 64), 0.001, 0.003));
  const down = DeviceBuffer.from(rng.halfs(dtype, R * K, 0.02));
  const up = DeviceBuffer.from(rng.halfs(dtype, N * R, 0.02));
  const wg = repackWeightWg({ dtype, N, K, qweight: qw, wscales: sw });
  for (let i = 0; i < 2; i++) {
    const act = quantizeAct({ dtype, M, K, R, x, loraDown: down, format: "f8" });
    gemmW4A4({ dtype, act, N, qweight: qw, wscales: sw, loraUp: up, wg }).free();
    act.codes.free();
    act.ascales.free();
    act.loraAct?.free();
  }
  synchronize();
}

if (mode === "variants") {
  // bare W4A4 GEMM time per block-M, to pick the tile heuristic
  const dtype = "bf16";
  const rng = new Rng(5);
  for (const [M, K, N] of [
    [4608, 3072, 3072],
    [256, 3072, 3072],
    [256, 12288, 3072],
  ]) {
    const x = DeviceBuffer.from(rng.halfs(dtype, M * K));
    const qw = DeviceBuffer.from(Uint8Array.from({ length: (N * K) / 2 }, () => rng.int(0, 255)));
    const sw = DeviceBuffer.from(rng.halfs(dtype, N * (K / 64), 0.001, 0.003));
    const act = quantizeAct({ dtype, M, K, R: 0, x, format: "s8" });
    const actF8 = quantizeAct({ dtype, M, K, R: 0, x, format: "f8" });
    const out = new DeviceBuffer(M * N * 2);
    const line: string[] = [];
    const wg = repackWeightWg({ dtype, N, K, qweight: qw, wscales: sw });
    for (const [blockM, w] of [
      [32, undefined],
      [64, undefined],
      [128, undefined],
      [64, wg],
      [128, wg],
    ] as const) {
      const a = w ? actF8 : act;
      const f = () => gemmW4A4({ dtype, act: a, N, qweight: qw, wscales: sw, blockM, out, wg: w });
      f();
      synchronize();
      const t = timeGraphMs(f, 20) * 1000;
      line.push(
        `${w ? "wgmma" : "mma.sync"} bm=${blockM}: ${t.toFixed(1)} µs (${((2 * M * N * K) / (t * 1e-6) / 1e12).toFixed(0)} TOPS)`,
      );
    }
    wg.qweight.free();
    wg.wscales.free();
    console.log(`variants M=${M} K=${K} N=${N}: ${line.join(", ")}`);
    for (const b of [x, qw, sw, out, act.codes, act.ascales, actF8.codes, actF8.ascales]) b.free();
  }
}

if (mode === "bench") {
  const dtype = "bf16";
  const R = 32;
  const rng = new Rng(42);
  const median = (fn: () => void, iters: number): number => {
    for (let i = 0; i < 3; i++) fn();
    synchronize();
    const t: number[] = [];
    for (let i = 0; i < 7; i++) t.push(timeGraphMs(fn, iters));
    t.sort((a, b) => a - b);
    return t[3] * 1000; // microseconds
  };
  const rows: string[] = [];
  const header =
    "| M | K | N | cuBLAS BF16 µs | cuBLAS INT8 µs | quantize µs | W4A4 bare µs | W4A4+LR µs | layer (q+W4A4+LR) µs | GEMM (W4A4+LR) vs BF16 | layer vs BF16 | LR overhead (GEMM / layer) | W4A4+LR TOPS (% of 1341) | layer GB/s | mma.sync s8 W4A4+LR µs |";
  const shapes: [number, number, number][] = [];
  for (const M of [256, 4608])
    for (const [K, N] of [
      [3072, 3072],
      [3072, 12288],
      [12288, 3072],
    ] as const)
      shapes.push([M, K, N]);
  for (const [M, K, N] of shapes) {
    const G = K / 64;
    const Mp = padM(M);
    const x = DeviceBuffer.from(rng.halfs(dtype, M * K));
    const w = DeviceBuffer.from(rng.halfs(dtype, N * K, 0.02));
    const x8 = DeviceBuffer.from(Uint8Array.from({ length: M * K }, () => rng.int(0, 255)));
    const w8 = DeviceBuffer.from(Uint8Array.from({ length: N * K }, () => rng.int(0, 255)));
    const out32 = new DeviceBuffer(M * N * 4);
    const qw = DeviceBuffer.from(Uint8Array.from({ length: (N * K) / 2 }, () => rng.int(0, 255)));
    const sw = DeviceBuffer.from(rng.halfs(dtype, N * G, 0.001, 0.003));
    const down = DeviceBuffer.from(rng.halfs(dtype, R * K, 0.02));
    const up = DeviceBuffer.from(rng.halfs(dtype, N * R, 0.02));
    const bias = DeviceBuffer.from(rng.halfs(dtype, N, 0.1));
    const out = new DeviceBuffer(M * N * 2);
    const codes = new DeviceBuffer(Mp * K); // f8 codes (the wgmma path); s8 codes for the mma.sync column
    const codesS8 = new DeviceBuffer(Mp * K);
    const ascales = new DeviceBuffer(Mp * G * 2);
    const loraAct = new DeviceBuffer(Mp * R * 4);
    const iters = M >= 4096 ? 20 : 100;
    const tBlas = median(() => gemmCublas({ dtype, M, N, K, x, w, out }), iters);
    const tInt8 = median(() => gemmCublasInt8({ M, N, K, x: x8, w: w8, out: out32 }), iters);
    const q = () => quantizeAct({ dtype, M, K, R, x, loraDown: down, codes, ascales, loraAct, format: "f8" });
    const q0 = () => quantizeAct({ dtype, M, K, R: 0, x, codes, ascales, format: "f8" });
    const actS8 = quantizeAct({ dtype, M, K, R, x, loraDown: down, codes: codesS8, ascales, loraAct, format: "s8" });
    const act = q();
    const tQ = median(q, iters);
    const wg = repackWeightWg({ dtype, N, K, qweight: qw, wscales: sw });
    const gemm = (lr: boolean) => () =>
      gemmW4A4({ dtype, act, N, qweight: qw, wscales: sw, loraUp: up, useLowRank: lr, bias, out, wg });
    const tOld = median(
      () => gemmW4A4({ dtype, act: actS8, N, qweight: qw, wscales: sw, loraUp: up, bias, out }),
      iters,
    );
    const tBare = median(gemm(false), iters);
    const tFused = median(gemm(true), iters);
    const tLayer = median(() => {
      q();
      gemm(true)();
    }, iters);
    const tLayer0 = median(() => {
      q0();
      gemm(false)();
    }, iters);
    const tops = (2 * M * N * K) / (tFused * 1e-6) / 1e12;
    const bytes = M * K * 2 + (N * K) / 2 + M * N * 2 + N * G * 2 + (N + R * K + N * R) * 2;
    rows.push(
      `| ${M} | ${K} | ${N} | ${tBlas.toFixed(1)} | ${tInt8.toFixed(1)} | ${tQ.toFixed(1)} | ${tBare.toFixed(1)} | ${tFused.toFixed(1)} | ${tLayer.toFixed(1)} | ${(tBlas / tFused).toFixed(2)}x | ${(tBlas / tLayer).toFixed(2)}x | ${(((tFused - tBare) / tBare) * 100).toFixed(1)}% / ${(((tLayer - tLayer0) / tLayer0) * 100).toFixed(1)}% | ${tops.toFixed(0)} (${((tops / 1341) * 100).toFixed(0)}%) | ${(bytes / (tLayer * 1e-6) / 1e9).toFixed(0)} | ${tOld.toFixed(1)} |`,
    );
    console.log(rows[rows.length - 1]);
    for (const b of [
      x,
      w,
      x8,
      w8,
      out32,
      qw,
      sw,
      down,
      up,
      bias,
      out,
      codes,
      codesS8,
      ascales,
      loraAct,
      wg.qweight,
      wg.wscales,
    ])
      b.free();
  }
  console.log(
    `\nbf16, rank ${R}, bias on, median of 7 CUDA-graph replay timings (each the mean of many replays, after warm-ups)`,
  );
  console.log(header);
  console.log(`|${"---|".repeat(15)}`);
  for (const r of rows) console.log(r);
}
