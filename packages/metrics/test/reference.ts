/**
 * Float64 references for the preprocessing, written independently of src/resize.ts: the antialiased bicubic
 * (a = −0.5) resampling is evaluated directly per output pixel from its definition.
 */
import type { Rgb8Image } from "../src/index.js";

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
