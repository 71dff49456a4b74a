import type { RgbImage } from "../src/index.js";

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random smooth-ish image (so SSIM is not trivially ~0) in [0, 1]. */
export function randomImage(r: () => number, width: number, height: number, name?: string): RgbImage {
  const data = new Float32Array(3 * width * height);
  for (let c = 0; c < 3; c++) {
    const fx = 0.05 + 0.3 * r();
    const fy = 0.05 + 0.3 * r();
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++)
        data[(c * height + y) * width + x] = 0.5 + 0.35 * Math.sin(fx * x + fy * y + c) + 0.1 * (r() - 0.5);
  }
  return name === undefined ? { width, height, data } : { width, height, data, name };
}

/** The same image with seeded noise added and clamped to [0, 1]. */
export function perturb(r: () => number, img: RgbImage, amount: number): RgbImage {
  const data = img.data.map((v) => Math.min(1, Math.max(0, v + amount * (r() - 0.5))));
  return { width: img.width, height: img.height, data };
}

/** Gaussian-ish features with correlated dimensions (n x d, row-major): x = z·Mix + offset·(j % 3). */
export function features(r: () => number, n: number, d: number, offset: number): Float64Array {
  const mix = Array.from({ length: d * d }, () => r() - 0.5);
  const out = new Float64Array(n * d);
  const z = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < d; k++) z[k] = r() + r() + r() - 1.5;
    for (let j = 0; j < d; j++) {
      let s = offset * (j % 3);
      for (let k = 0; k < d; k++) s += z[k]! * mix[k * d + j]!;
      out[i * d + j] = s;
    }
  }
  return out;
}
