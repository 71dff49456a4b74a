import { MetricsError } from "./errors.js";
import { checkImage, checkSameSize, type RgbImage } from "./image.js";

export interface SsimOptions {
  /** Gaussian σ; the window size follows torchmetrics: int(3.5σ + 0.5)·2 + 1 (11 for σ = 1.5). */
  sigma?: number;
  dataRange?: number;
  /** SSIM constants (Wang et al. 2004, eq. 7): C1 = (k1·L)², C2 = (k2·L)². */
  k1?: number;
  k2?: number;
}

/** The normalized 1-D Gaussian window of torchmetrics (`_gaussian`): taps at −(s−1)/2 … (s−1)/2. */
export function gaussianWindow(sigma: number): Float64Array {
  const size = Math.trunc(3.5 * sigma + 0.5) * 2 + 1;
  const g = new Float64Array(size);
  const half = (size - 1) / 2;
  let sum = 0;
  for (let i = 0; i < size; i++) {
    const x = (i - half) / sigma;
    g[i] = Math.exp(-0.5 * x * x);
    sum += g[i];
  }
  for (let i = 0; i < size; i++) g[i] /= sum;
  return g;
}

let scratch: Float64Array | undefined;
function scratchOf(n: number): Float64Array {
  if (scratch === undefined || scratch.length < n) scratch = new Float64Array(n);
  return scratch;
}

/** Reflect index i into [0, n) without repeating the edge (PyTorch's "reflect" padding). */
function reflect(i: number, n: number): number {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

/**
 * Mean structural similarity of one image pair (torchmetrics 1.9 `structural_similarity_index_measure` with
 * `gaussian_kernel=True, sigma=1.5, data_range=1`), computed in float64.
 *
 * Convention (checked against fixtures/metrics/case-a, produced by torchmetrics 1.9): each channel is reflect-padded
 * by p = (s−1)/2 (PyTorch "reflect": the edge pixel is not repeated), filtered with the separable s x s Gaussian, and
 * the SSIM map is averaged over all H x W positions and the 3 channels — the map is NOT cropped to "valid" windows
 * (cropping changes case-a's mean by 1.8e-4).
 */
export function ssim(ref: RgbImage, test: RgbImage, opts: SsimOptions = {}): number {
  checkImage(ref);
  checkImage(test);
  checkSameSize(ref, test);
  const sigma = opts.sigma ?? 1.5;
  const L = opts.dataRange ?? 1;
  const c1 = ((opts.k1 ?? 0.01) * L) ** 2;
  const c2 = ((opts.k2 ?? 0.03) * L) ** 2;
  const g = gaussianWindow(sigma);
  const s = g.length;
  const p = (s - 1) / 2;
  const { width: W, height: H } = ref;
  if (W <= p || H <= p) {
    throw new MetricsError(
      "E_SHAPE",
      `SSIM with a ${s}x${s} window needs images larger than ${p}x${p}, got ${W}x${H}`,
      {
        file: ref.name,
      },
    );
  }
  const plane = H * W;
  // Horizontal results of the last s source rows, in a ring (slot = row mod s): 5 quantities x s rows x W,
  // small enough to stay in cache; any output row reads a contiguous window of ≤ s source rows.
  const ring = s * W;
  const buf = scratchOf(5 * ring + 2 * (W + 2 * p));
  const px = buf.subarray(5 * ring, 5 * ring + W + 2 * p);
  const py = buf.subarray(5 * ring + W + 2 * p);
  const offs = new Int32Array(s);
  let total = 0;
  const xa = ref.data;
  const ya = test.data;
  for (let c = 0; c < 3; c++) {
    const base = c * plane;
    let next = 0; // next source row to filter horizontally
    for (let r = 0; r < H; r++) {
      const need = Math.min(H - 1, r + p);
      for (; next <= need; next++) {
        const row = base + next * W;
        for (let j = -p; j < W + p; j++) {
          const q = row + reflect(j, W);
          px[j + p] = xa[q];
          py[j + p] = ya[q];
        }
        const o = (next % s) * W;
        for (let j = 0; j < W; j++) {
          let mx = 0;
          let my = 0;
          let mxx = 0;
          let myy = 0;
          let mxy = 0;
          for (let k = 0; k < s; k++) {
            const w = g[k];
            const x = px[j + k];
            const y = py[j + k];
            const wx = w * x;
            const wy = w * y;
            mx += wx;
            my += wy;
            mxx += wx * x;
            myy += wy * y;
            mxy += wx * y;
          }
          buf[o + j] = mx;
          buf[ring + o + j] = my;
          buf[2 * ring + o + j] = mxx;
          buf[3 * ring + o + j] = myy;
          buf[4 * ring + o + j] = mxy;
        }
      }
      for (let k = 0; k < s; k++) offs[k] = (reflect(r + k - p, H) % s) * W;
      for (let j = 0; j < W; j++) {
        let mx = 0;
        let my = 0;
        let mxx = 0;
        let myy = 0;
        let mxy = 0;
        for (let k = 0; k < s; k++) {
          const w = g[k];
          const q = offs[k] + j;
          mx += w * buf[q];
          my += w * buf[ring + q];
          mxx += w * buf[2 * ring + q];
          myy += w * buf[3 * ring + q];
          mxy += w * buf[4 * ring + q];
        }
        // torchmetrics clamps the variances at 0 (not the covariance).
        const vx = Math.max(mxx - mx * mx, 0);
        const vy = Math.max(myy - my * my, 0);
        const cxy = mxy - mx * my;
        total += ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
      }
    }
  }
  const v = total / (3 * plane);
  if (!Number.isFinite(v))
    throw new MetricsError("E_NUMERIC", "SSIM is not finite (NaN/Inf in input?)", { file: test.name });
  return v;
}
