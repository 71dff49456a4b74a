// Rank-32 truncated SVD of a 3072 x 12288 matrix (FLUX.1's MLP fc1/fc2 shape) with the TypeScript GEMM.
// Peers in the same process: the blocked GEMM against a plain dot-product loop on one sketch pass, and the
// randomized path against the exact ml-matrix SVD on a 512 x 1024 matrix. Prints the ratios.
// SVDQ_BENCH_SMALL=1 shrinks the big case to 768 x 3072 for a quick check.
import { Bench } from "tinybench";
import { SeededRng, truncatedSvd, tsGemm } from "../src/index.ts";

const small = process.env.SVDQ_BENCH_SMALL === "1";
const M = small ? 768 : 3072;
const N = small ? 3072 : 12288;
const R = 32;

/** Weight-like matrix: Gaussian bulk (std 0.02) plus a 16-direction head decaying from 8 (outlier directions). */
function weightLike(m: number, n: number, seed: number): Float32Array {
  const rng = new SeededRng(seed);
  const a = new Float64Array(m * n);
  for (let i = 0; i < a.length; i++) a[i] = 0.02 * rng.normal();
  for (let c = 0; c < 16; c++) {
    const u = rng.normals(m);
    const v = rng.normals(n);
    const w = (8 * 0.8 ** c) / Math.sqrt(m * n);
    for (let i = 0; i < m; i++) {
      const ui = w * u[i];
      const row = i * n;
      for (let j = 0; j < n; j++) a[row + j] += ui * v[j];
    }
  }
  return Float32Array.from(a);
}

function plainNT(a: Float64Array, b: Float64Array, m: number, n: number, k: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[j * k + p];
      c[i * n + j] = s;
    }
  return c;
}

const big = weightLike(M, N, 1);
const big64 = Float64Array.from(big);
const sketch = new SeededRng(2).normals(48 * N);
const mid = weightLike(512, 1024, 3);

const bench = new Bench({ iterations: 2, time: 0, warmup: false });
let last = { it: 0, res: 0 };
bench
  .add(`gemm pass blocked [48,${N}]x[${M},${N}]^T`, () => {
    tsGemm.nt(sketch, big64, 48, M, N);
  })
  .add(`gemm pass plain   [48,${N}]x[${M},${N}]^T`, () => {
    plainNT(sketch, big64, 48, M, N);
  })
  .add(`svd rank-32 ${M}x${N} randomized auto`, () => {
    const r = truncatedSvd(big, M, N, R, { method: "randomized" });
    last = { it: r.powerIterations, res: r.residualNorm / r.frobeniusNorm };
  })
  .add(`svd rank-32 ${M}x${N} randomized q=2`, () => {
    truncatedSvd(big, M, N, R, { method: "randomized", powerIterations: 2 });
  })
  .add("svd rank-32 512x1024 randomized auto", () => {
    truncatedSvd(mid, 512, 1024, R, { method: "randomized" });
  })
  .add("svd rank-32 512x1024 exact (ml-matrix)", () => {
    truncatedSvd(mid, 512, 1024, R, { method: "exact" });
  });
await bench.run();
console.table(bench.table());
const ms = (i: number): number =>
  (bench.tasks[i]!.result as { latency?: { mean: number } }).latency?.mean ?? Number.NaN;
console.log(`auto power iterations on ${M}x${N}: ${last.it}, relative residual ${last.res.toFixed(4)}`);
console.log(`blocked GEMM is ${(ms(1) / ms(0)).toFixed(2)}x the plain loop`);
console.log(`randomized is ${(ms(5) / ms(4)).toFixed(2)}x faster than exact ml-matrix at 512x1024`);
console.log(
  `rank-32 SVD ${M}x${N}: auto ${(ms(2) / 1000).toFixed(2)} s, q=2 ${(ms(3) / 1000).toFixed(2)} s (goal <= 10 s)`,
);
