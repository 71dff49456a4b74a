// Throughput of PSNR/SSIM on 1024x1024 images and of the Fréchet distance at 2048-d, each against a peer in the
// same process. Quick by default (a shared 2-core machine); SVDQ_HEAVY=1 runs the full sizes:
//   quick: 4 images (time for 1,000 extrapolated), Fréchet 2048-d (ours) + 512-d (ours vs ml-matrix)
//   heavy: 1,000 images, Fréchet 2048-d ours vs ml-matrix
//   both: Fréchet 2048-d on @svdquant/kernels' native float64 linear algebra (3 runs + a per-step split) against the
//   TypeScript linear algebra, same inputs, same process
// Usage: pnpm --filter @svdquant/metrics bench   (or SVDQ_HEAVY=1 …; SVDQ_BENCH_IMAGES=N overrides the image count,
// SVDQ_PEER_DIM=D the dimension at which the ml-matrix peer runs, SVDQ_BENCH_SECTIONS=pixels,frechet,runner picks
// the sections, all by default)
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { backendInfo } from "@svdquant/kernels";
import { EigenvalueDecomposition, Matrix } from "ml-matrix";
import {
  evaluateFolders,
  type FeatureStats,
  frechetDistance,
  kernelsFrechetLinalg,
  psnr,
  type RgbImage,
  ssim,
  TS_FRECHET_LINALG,
  writePng,
} from "../src/index.js";
import { rng } from "../test/helpers.js";
import { ssimDirect } from "../test/reference.js";

const heavy = process.env.SVDQ_HEAVY === "1";
const nImages = Number(process.env.SVDQ_BENCH_IMAGES ?? (heavy ? 1000 : 4));
const SIDE = 1024;
const sections = new Set((process.env.SVDQ_BENCH_SECTIONS ?? "pixels,frechet,runner").split(","));

function image(r: () => number): RgbImage {
  const data = new Float32Array(3 * SIDE * SIDE);
  for (let i = 0; i < data.length; i++) data[i] = r();
  return { width: SIDE, height: SIDE, data };
}

/** Random SPD covariance-like matrix with a decaying spectrum, as stats. */
function stats(r: () => number, d: number): FeatureStats {
  const q = new Float64Array(d * d);
  for (let i = 0; i < d; i++)
    for (let j = 0; j <= i; j++) {
      const v = (r() - 0.5) / Math.sqrt(d);
      q[i * d + j] = v;
      q[j * d + i] = v;
    }
  for (let i = 0; i < d; i++) q[i * d + i] += 1 + 1 / (i + 1);
  return { n: 10 * d, dim: d, mean: Float64Array.from({ length: d }, () => r()), cov: q };
}

/** Embeds stats of dimension d0 < d into d dimensions by repeating the first d − d0 ones: a singular covariance. */
function singular(s: FeatureStats, d: number): FeatureStats {
  const d0 = s.dim;
  const src = (i: number) => (i < d0 ? i : i - d0);
  const cov = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) cov[i * d + j] = s.cov[src(i) * d0 + src(j)];
  return { n: s.n, dim: d, mean: Float64Array.from({ length: d }, (_, i) => s.mean[src(i)]), cov };
}

/** Peer: ml-matrix's generic path: √Σa by eigen-decomposition, then eigenvalues of √Σa·Σb·√Σa. */
function frechetMlMatrix(a: FeatureStats, b: FeatureStats): number {
  const d = a.dim;
  const A = Matrix.from1DArray(d, d, Array.from(a.cov));
  const B = Matrix.from1DArray(d, d, Array.from(b.cov));
  const e = new EigenvalueDecomposition(A, { assumeSymmetric: true });
  const root = e.eigenvectorMatrix
    .mmul(Matrix.diag(e.realEigenvalues.map((l) => Math.sqrt(Math.max(l, 0)))))
    .mmul(e.eigenvectorMatrix.transpose());
  const s = root.mmul(B).mmul(root);
  const ev = new EigenvalueDecomposition(s.add(s.transpose()).div(2), { assumeSymmetric: true }).realEigenvalues;
  let m = 0;
  for (let i = 0; i < d; i++) m += (a.mean[i] - b.mean[i]) ** 2;
  return m + A.trace() + B.trace() - 2 * ev.reduce((t, l) => t + Math.sqrt(Math.max(l, 0)), 0);
}

function time<T>(f: () => T): [T, number] {
  const t = performance.now();
  const v = f();
  return [v, performance.now() - t];
}

const rows: string[] = [];
console.log(
  `load average at start: ${loadavg()
    .map((v) => v.toFixed(2))
    .join(" ")}; mode ${heavy ? "heavy" : "quick"}`,
);

// 1. PSNR/SSIM
if (sections.has("pixels")) {
  const r = rng(1);
  const a = image(r);
  const b = image(r);
  let tPsnr = 0;
  let tSsim = 0;
  for (let i = 0; i < nImages; i++) {
    tPsnr += time(() => psnr(a, b))[1];
    tSsim += time(() => ssim(a, b))[1];
  }
  const [vPeer, tPeer] = time(() => ssimDirect(a, b));
  const [vOurs] = time(() => ssim(a, b));
  if (Math.abs(vPeer - vOurs) > 1e-9) throw new Error(`SSIM peer disagrees: ${vPeer} vs ${vOurs}`);
  const per = (tPsnr + tSsim) / nImages;
  rows.push(`| PSNR, 1024², per image | ${(tPsnr / nImages).toFixed(1)} ms | — | — |`);
  rows.push(
    `| SSIM (separable), 1024², per image | ${(tSsim / nImages).toFixed(0)} ms | direct 11x11 window: ${tPeer.toFixed(0)} ms | ${(tPeer / (tSsim / nImages)).toFixed(1)}x |`,
  );
  rows.push(
    `| PSNR+SSIM over 1,000 images 1024² | ${((per * 1000) / 1000).toFixed(0)} s ${nImages === 1000 ? "(measured)" : `(extrapolated from ${nImages})`} | — | — |`,
  );
}

// 2. Fréchet distance
if (sections.has("frechet")) {
  const r = rng(2);
  const peerDim = Number(process.env.SVDQ_PEER_DIM ?? (heavy ? 2048 : 512));
  const a5 = stats(r, peerDim);
  const b5 = stats(r, peerDim);
  const [ours5, tOurs5] = time(() => frechetDistance(a5, b5));
  const [peer5, tPeer5] = time(() => frechetMlMatrix(a5, b5));
  const rel = Math.abs(ours5.value - peer5) / Math.abs(peer5);
  rows.push(
    `| Fréchet distance, ${peerDim}-d (${ours5.method}) | ${(tOurs5 / 1000).toFixed(2)} s | ml-matrix eigen path: ${(tPeer5 / 1000).toFixed(2)} s | ${(tPeer5 / tOurs5).toFixed(1)}x (rel. diff ${rel.toExponential(1)}) |`,
  );
  // 2048-d: @svdquant/kernels' native float64 linear algebra against the TypeScript one, same inputs.
  const D = 2048;
  const a = stats(r, D);
  const b = stats(r, D);
  const { linalg: native, reason } = await kernelsFrechetLinalg();
  const [ts, tTs] = time(() => frechetDistance(a, b, { linalg: TS_FRECHET_LINALG }));
  if (!native) {
    rows.push(
      `| Fréchet distance, ${D}-d (${ts.method}), TypeScript | ${(tTs / 1000).toFixed(2)} s | native: unavailable (${reason}) | — |`,
    );
  } else {
    const info = backendInfo();
    const runs = [0, 1, 2].map(() => time(() => frechetDistance(a, b, { linalg: native })));
    const ts3 = runs.map(([, t]) => t).sort((x, y) => x - y);
    const v = runs[0][0];
    const rel = Math.abs(v.value - ts.value) / Math.abs(ts.value);
    rows.push(
      `| Fréchet distance, ${D}-d (${v.method}), native f64 kernels (${info.isa}, ${info.threads} threads): best / median / worst of 3 | ${(ts3[0] / 1000).toFixed(2)} / ${(ts3[1] / 1000).toFixed(2)} / ${(ts3[2] / 1000).toFixed(2)} s | TypeScript linalg: ${(tTs / 1000).toFixed(2)} s | ${(tTs / ts3[1]).toFixed(1)}x (median; rel. diff ${rel.toExponential(1)}) |`,
    );
    // The three steps, timed separately (plus what frechetDistance adds: traces, validation, copies).
    const [l, tChol] = time(() => native.cholesky(a.cov, D));
    if (!l) throw new Error("bench covariance is not positive definite");
    const [m, tCong] = time(() => native.congruence(l, b.cov, D));
    const [, tEig] = time(() => native.eigenvalues(m, D));
    rows.push(
      `| … native steps: Cholesky / Lᵀ·Σb·L / eigenvalues (tridiagonalization + QL) | ${tChol.toFixed(0)} / ${tCong.toFixed(0)} / ${tEig.toFixed(0)} ms | — | — |`,
    );
    // Singular covariances without samples (duplicated dimensions, rank 7/8·D): native pivoted Cholesky against
    // the TypeScript eigen route (ml-matrix eigen-decomposition) at 512-d, and native alone at 2048-d.
    for (const d of [512, 2048]) {
      const sa = singular(stats(r, (d * 7) / 8), d);
      const sb = singular(stats(r, (d * 7) / 8), d);
      const [x, tx] = time(() => frechetDistance(sa, sb, { linalg: native }));
      if (d === 2048) {
        rows.push(
          `| Fréchet distance, ${d}-d, singular without samples (${x.method}), native | ${(tx / 1000).toFixed(2)} s | (TypeScript eigen route: minutes) | — |`,
        );
        continue;
      }
      const [y, ty] = time(() => frechetDistance(sa, sb, { linalg: TS_FRECHET_LINALG }));
      const rel = Math.abs(x.value - y.value) / Math.abs(y.value);
      rows.push(
        `| Fréchet distance, ${d}-d, singular without samples (${x.method}), native | ${(tx / 1000).toFixed(2)} s | TypeScript ${y.method} route: ${(ty / 1000).toFixed(2)} s | ${(ty / tx).toFixed(1)}x (rel. diff ${rel.toExponential(1)}) |`,
      );
    }
  }
}

// 3. The runner end to end (PNG decode + PSNR + SSIM), 12 pairs of 1024² PNGs, 1 vs 2 threads.
if (sections.has("runner")) {
  const dir = mkdtempSync(join(tmpdir(), "svdq-bench-"));
  const r = rng(3);
  const pairs = Number(process.env.SVDQ_BENCH_PAIRS ?? 12); // enough to amortize the workers' start (tsx from sources)
  for (const side of ["ref", "test"]) {
    const { mkdirSync } = await import("node:fs");
    mkdirSync(join(dir, side));
    for (let i = 0; i < pairs; i++) {
      const data = new Uint8Array(SIDE * SIDE * 3);
      for (let k = 0; k < data.length; k++) data[k] = Math.floor(256 * r());
      await writePng(join(dir, side, `${i}.png`), { width: SIDE, height: SIDE, data });
    }
  }
  const perPair = async (threads: number) => {
    const t = performance.now();
    await evaluateFolders({ refDir: join(dir, "ref"), testDir: join(dir, "test"), batchSize: 4, threads });
    return (performance.now() - t) / pairs;
  };
  const one = await perPair(1);
  const two = await perPair(2);
  rows.push(
    `| \`evaluateFolders\` PSNR+SSIM incl. PNG decode, per 1024² pair, 2 worker threads | ${two.toFixed(0)} ms | 1 thread: ${one.toFixed(0)} ms | ${(one / two).toFixed(2)}x |`,
  );
  rmSync(dir, { recursive: true, force: true });
}

console.log("\n| what | ours | peer | ratio |\n| --- | --- | --- | --- |");
for (const r of rows) console.log(r);
console.log(
  `\nload average at end: ${loadavg()
    .map((v) => v.toFixed(2))
    .join(" ")}`,
);
