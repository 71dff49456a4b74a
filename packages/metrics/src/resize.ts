import { MetricsError } from "./errors.js";
import type { Rgb8Image } from "./image.js";

/**
 * Pillow's bicubic resampling (Pillow src/libImaging/Resample.c), reproduced for the two ways the reference
 * protocols call it:
 * - float planes (`Image.fromarray(x, mode="F").resize(size, BICUBIC)`, clean-fid's "clean" FID resize), and
 * - 8-bit RGB images (`img.resize(size, BICUBIC)`, the CLIP / ImageReward `Resize` on PIL images), which Pillow
 *   computes in 22-bit fixed point with rounding and clipping.
 * Both are separable with an antialiasing support scaled by the downscale factor; the horizontal pass runs first.
 */

/** Pillow's bicubic kernel, a = −0.5 (Keys 1981). */
function bicubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}
const SUPPORT = 2; // bicubic support radius

interface Coeffs {
  /** first input index of each output sample */
  start: Int32Array;
  /** number of taps of each output sample */
  count: Int32Array;
  /** taps, `ksize` per output sample, normalized to sum 1 */
  k: Float64Array;
  ksize: number;
}

/** Pillow `precompute_coeffs` for a full-image box (in0 = 0, in1 = inSize). */
function precompute(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = SUPPORT * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const k = new Float64Array(outSize * ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0); // C (int) truncates toward zero
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bicubic((x + xmin - center + 0.5) * ss);
      k[xx * ksize + x] = w;
      ww += w;
    }
    if (ww !== 0) for (let x = 0; x < xmax; x++) k[xx * ksize + x] /= ww;
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { start, count, k, ksize };
}

function checkSizes(w: number, h: number, ow: number, oh: number, name?: string): void {
  for (const v of [w, h, ow, oh]) {
    if (!Number.isInteger(v) || v <= 0) {
      throw new MetricsError("E_ARGUMENT", `cannot resize ${w}x${h} to ${ow}x${oh}`, { file: name });
    }
  }
}

/**
 * Resize one float plane [h, w] to [oh, ow] as Pillow's mode "F" BICUBIC: float64 accumulation, each pass's result
 * stored as float32 (Pillow's F images are 32-bit). Returns Float32Array [oh, ow].
 */
export function resizePlaneF(src: ArrayLike<number>, w: number, h: number, ow: number, oh: number): Float32Array {
  checkSizes(w, h, ow, oh);
  let cur: ArrayLike<number> = src;
  let cw = w;
  if (ow !== w) {
    const c = precompute(w, ow);
    const out = new Float32Array(ow * h);
    for (let y = 0; y < h; y++) {
      const row = y * w;
      for (let x = 0; x < ow; x++) {
        const s0 = row + c.start[x];
        const kb = x * c.ksize;
        let ss = 0;
        for (let t = 0; t < c.count[x]; t++) ss += cur[s0 + t] * c.k[kb + t];
        out[y * ow + x] = ss;
      }
    }
    cur = out;
    cw = ow;
  }
  if (oh !== h) {
    const c = precompute(h, oh);
    const out = new Float32Array(cw * oh);
    for (let y = 0; y < oh; y++) {
      const s0 = c.start[y];
      const kb = y * c.ksize;
      const n = c.count[y];
      for (let x = 0; x < cw; x++) {
        let ss = 0;
        for (let t = 0; t < n; t++) ss += cur[(s0 + t) * cw + x] * c.k[kb + t];
        out[y * cw + x] = ss;
      }
    }
    return out;
  }
  return cur instanceof Float32Array && cur !== src ? cur : Float32Array.from(cur);
}

const PRECISION_BITS = 32 - 8 - 2; // Pillow Resample.c

function fixedCoeffs(c: Coeffs): Int32Array {
  const out = new Int32Array(c.k.length);
  const one = 1 << PRECISION_BITS;
  for (let i = 0; i < c.k.length; i++) {
    const v = c.k[i];
    out[i] = v < 0 ? Math.trunc(-0.5 + v * one) : Math.trunc(0.5 + v * one);
  }
  return out;
}

function clip8(ss: number): number {
  const v = ss >> PRECISION_BITS; // arithmetic shift = floor, as in C on int
  return Math.min(Math.max(v, 0), 255);
}

/**
 * Resize an 8-bit RGB image as Pillow's RGB BICUBIC resize (fixed point, rounded, clipped to 0..255 after each
 * pass). Interleaved HWC in and out.
 */
export function resizeRgb8(img: Rgb8Image, ow: number, oh: number): Rgb8Image {
  const { width: w, height: h } = img;
  checkSizes(w, h, ow, oh, img.name);
  let cur = img.data;
  let cw = w;
  const half = 1 << (PRECISION_BITS - 1);
  if (ow !== w) {
    const c = precompute(w, ow);
    const k = fixedCoeffs(c);
    const out = new Uint8Array(ow * h * 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < ow; x++) {
        const kb = x * c.ksize;
        const n = c.count[x];
        for (let ch = 0; ch < 3; ch++) {
          let ss = half;
          let p = (y * w + c.start[x]) * 3 + ch;
          for (let t = 0; t < n; t++, p += 3) ss += cur[p] * k[kb + t];
          out[(y * ow + x) * 3 + ch] = clip8(ss);
        }
      }
    }
    cur = out;
    cw = ow;
  }
  if (oh !== h) {
    const c = precompute(h, oh);
    const k = fixedCoeffs(c);
    const out = new Uint8Array(cw * oh * 3);
    const stride = cw * 3;
    for (let y = 0; y < oh; y++) {
      const kb = y * c.ksize;
      const n = c.count[y];
      const s0 = c.start[y] * stride;
      for (let q = 0; q < stride; q++) {
        let ss = half;
        for (let t = 0, p = s0 + q; t < n; t++, p += stride) ss += cur[p] * k[kb + t];
        out[y * stride + q] = clip8(ss);
      }
    }
    cur = out;
  }
  const data = cur === img.data ? Uint8Array.from(cur) : cur;
  return img.name === undefined ? { width: ow, height: oh, data } : { width: ow, height: oh, data, name: img.name };
}

/** Python's round(): halves to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * torchvision `Resize(size)` (shortest side → size, long side int(size·long/short)) with BICUBIC on a PIL image,
 * then `CenterCrop(size)` (offsets int(round((dim − size)/2))): the CLIP and ImageReward (BLIP) image transform.
 */
export function resizeShortSideCenterCrop(img: Rgb8Image, size: number): Rgb8Image {
  const { width: w, height: h } = img;
  const short = Math.min(w, h);
  const long = Math.max(w, h);
  const newLong = Math.trunc((size * long) / short);
  const [rw, rh] = w <= h ? [size, newLong] : [newLong, size];
  const r = rw === w && rh === h ? img : resizeRgb8(img, rw, rh);
  if (rw === size && rh === size) return r;
  const top = roundHalfEven((rh - size) / 2);
  const left = roundHalfEven((rw - size) / 2);
  const out = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    const from = ((top + y) * rw + left) * 3;
    out.set(r.data.subarray(from, from + size * 3), y * size * 3);
  }
  return img.name === undefined
    ? { width: size, height: size, data: out }
    : { width: size, height: size, data: out, name: img.name };
}
