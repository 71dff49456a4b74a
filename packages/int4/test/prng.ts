// Seeded PRNG for tests (mulberry32) and helpers for random matrices with outliers.
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal via Box–Muller. */
export function gaussian(rand: () => number): number {
  const u = 1 - rand();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

/** rows × cols float32 values ~ N(0, std²) with a few outliers (×30) and, per row, some exact zeros. */
export function randomMatrix(seed: number, rows: number, cols: number, std = 1, outlierRate = 0.01): Float32Array {
  const r = mulberry32(seed);
  const x = new Float32Array(rows * cols);
  for (let i = 0; i < x.length; i++) {
    let v = gaussian(r) * std;
    if (r() < outlierRate) v *= 30;
    x[i] = v;
  }
  return x;
}
