/**
 * Float64 references for the preprocessing, written independently of src/resize.ts: the antialiased bicubic
 * (a = −0.5) resampling is evaluated directly per output pixel from its definition.
 */
import type { Rgb8Image, RgbImage } from "../src/index.js";

function cubic(x: number): number {
  const t = Math.abs(x);
  return t < 1 ? 1.5 * t ** 3 - 2.5 * t ** 2 + 1 : t < 2 ? -0.5 * t ** 3 + 2.5 * t ** 2 - 4 * t + 2 : 0;
}

/** Taps (index, weight) of output sample `o` when resampling n → m, support widened by the downscale factor. */
export function taps(o: number, n: number, m: number): [number, number][] {
  const scale = n / m;
  const fs = Math.max(1, scale);
  const center = (o + 0.5) * scale;
  const out: [number, number][] = [];
  for (let i = Math.max(0, Math.floor(center - 2 * fs) - 1); i < Math.min(n, Math.ceil(center + 2 * fs) + 1); i++) {
    // Pillow's window: i in [trunc(center − support + 0.5), trunc(center + support + 0.5))
    if (i < Math.trunc(center - 2 * fs + 0.5) || i >= Math.trunc(center + 2 * fs + 0.5)) continue;
    out.push([i, cubic((i + 0.5 - center) / fs)]);
  }
  const s = out.reduce((a, [, w]) => a + w, 0);
  return out.map(([i, w]) => [i, w / s]);
}

/** Float64 separable resize of a plane [h, w] → [oh, ow] (horizontal first), optional rounding after each pass. */
export function resizeRef(
  src: ArrayLike<number>,
  w: number,
  h: number,
  ow: number,
  oh: number,
  round8 = false,
): Float64Array {
  const q = (v: number) => (round8 ? Math.min(255, Math.max(0, Math.floor(v + 0.5))) : v);
  const mid = new Float64Array(ow * h);
  for (let x = 0; x < ow; x++) {
    const t = ow === w ? [[x, 1] as [number, number]] : taps(x, w, ow);
    for (let y = 0; y < h; y++) mid[y * ow + x] = q(t.reduce((a, [i, k]) => a + k * src[y * w + i], 0));
  }
  const out = new Float64Array(ow * oh);
  for (let y = 0; y < oh; y++) {
    const t = oh === h ? [[y, 1] as [number, number]] : taps(y, h, oh);
    for (let x = 0; x < ow; x++) out[y * ow + x] = q(t.reduce((a, [i, k]) => a + k * mid[i * ow + x], 0));
  }
  return out;
}

export function channel(img: Rgb8Image, c: number): Float64Array {
  return Float64Array.from({ length: img.width * img.height }, (_, p) => img.data[p * 3 + c]);
}

/** A seeded smooth random 8-bit image with some texture. */
export function randomRgb8(r: () => number, width: number, height: number, name?: string): Rgb8Image {
  const data = new Uint8Array(width * height * 3);
  const f = [r(), r(), r()].map((v) => 0.02 + 0.2 * v);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let c = 0; c < 3; c++)
        data[(y * width + x) * 3 + c] = Math.round(
          Math.min(255, Math.max(0, 128 + 90 * Math.sin(f[c] * x + 1.3 * f[(c + 1) % 3] * y + c) + 30 * (r() - 0.5))),
        );
  return name === undefined ? { width, height, data } : { width, height, data, name };
}

/**
 * SSIM by the direct 2-D (non-separable) 11x11 Gaussian window (σ 1.5) over a reflect-padded image, no crop,
 * float64: the reference of the tests and the peer of the benchmark.
 */
export function ssimDirect(a: RgbImage, b: RgbImage): number {
  const g: number[] = [];
  let s = 0;
  for (let i = 0; i < 11; i++) {
    g.push(Math.exp(-(((i - 5) / 1.5) ** 2) / 2));
    s += g[i];
  }
  const w = new Float64Array(121);
  for (let i = 0; i < 11; i++) for (let j = 0; j < 11; j++) w[i * 11 + j] = (g[i] / s) * (g[j] / s);
  const refl = (i: number, n: number) => (i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i);
  const { width: W, height: H } = a;
  let tot = 0;
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        let mx = 0;
        let my = 0;
        let mxx = 0;
        let myy = 0;
        let mxy = 0;
        for (let i = 0; i < 11; i++) {
          const row = (c * H + refl(y + i - 5, H)) * W;
          for (let j = 0; j < 11; j++) {
            const q = row + refl(x + j - 5, W);
            const k = w[i * 11 + j];
            const u = a.data[q];
            const v = b.data[q];
            mx += k * u;
            my += k * v;
            mxx += k * u * u;
            myy += k * v * v;
            mxy += k * u * v;
          }
        }
        const vx = Math.max(mxx - mx * mx, 0);
        const vy = Math.max(myy - my * my, 0);
        tot += ((2 * mx * my + 1e-4) * (2 * (mxy - mx * my) + 9e-4)) / ((mx * mx + my * my + 1e-4) * (vx + vy + 9e-4));
      }
  return tot / (3 * W * H);
}
