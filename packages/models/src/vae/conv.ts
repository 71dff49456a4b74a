import { ModelError } from "../errors.js";
import { type GemmBackend, getGemmBackend } from "../gemm.js";

/**
 * A 2-D convolution (stride 1, zero padding, kernel k x k) as a GEMM over im2col columns.
 *
 * | tensor  | shape                 | notes                                              |
 * | ------- | --------------------- | -------------------------------------------------- |
 * | x       | [Cin, H, W]           | one image, channel-major (NCHW without N)           |
 * | weight  | [Cout, Cin·k·k]       | nn.Conv2d's [Cout, Cin, k, k] flattened = N x K     |
 * | cols    | [M = rows·W, K]       | im2col of a band of output rows (M tokens)          |
 * | out     | [Cout, H, W]          |                                                    |
 *
 * The band height keeps the column buffer near `COLS_BUDGET` floats, so a 1024² image's last conv does not
 * need its whole im2col (gigabytes) at once. The product goes through the GEMM backend (native when
 * installed, else the TypeScript GEMM).
 */
export class Conv2d {
  readonly name: string;
  readonly cin: number;
  readonly cout: number;
  readonly k: number;
  readonly pad: number;
  private readonly weight: Float32Array;
  private readonly bias: Float32Array | undefined;
  private readonly backend: GemmBackend | undefined;
  /** Floats of im2col scratch per band of output rows. */
  private readonly colsBudget: number;

  constructor(
    name: string,
    weight: Float32Array,
    bias: Float32Array | undefined,
    cout: number,
    cin: number,
    k: number,
    backend?: GemmBackend,
    colsBudget = COLS_BUDGET,
  ) {
    if (weight.length !== cout * cin * k * k)
      throw new ModelError(
        "E_SHAPE",
        `weight has ${weight.length} values, expected [${cout}, ${cin}, ${k}, ${k}]`,
        name,
      );
    if (bias !== undefined && bias.length !== cout)
      throw new ModelError("E_SHAPE", `bias has ${bias.length} values, expected [${cout}]`, name);
    this.name = name;
    this.weight = weight;
    this.bias = bias;
    this.cout = cout;
    this.cin = cin;
    this.k = k;
    this.pad = (k - 1) / 2; // diffusers' VAE convs: 3x3 padding 1, 1x1 padding 0
    this.backend = backend;
    this.colsBudget = colsBudget;
  }

  forward(x: Float32Array, h: number, w: number): Float32Array {
    const { cin, cout, k, pad } = this;
    if (x.length !== cin * h * w)
      throw new ModelError("E_SHAPE", `input has ${x.length} values, expected [${cin}, ${h}, ${w}]`, this.name);
    const gemm = this.backend ?? getGemmBackend();
    const kk = cin * k * k;
    const out = new Float32Array(cout * h * w);
    const band = Math.max(1, Math.min(h, Math.floor(this.colsBudget / Math.max(1, w * kk))));
    const cols = new Float32Array(band * w * kk);
    const y = new Float32Array(band * w * cout);
    for (let r0 = 0; r0 < h; r0 += band) {
      const rows = Math.min(band, h - r0);
      const m = rows * w;
      const c = rows === band ? cols : cols.subarray(0, m * kk);
      if (k === 1) {
        for (let ci = 0; ci < cin; ci++) for (let p = 0; p < m; p++) c[p * kk + ci] = x[ci * h * w + r0 * w + p]!;
      } else {
        c.fill(0);
        for (let ry = 0; ry < rows; ry++) {
          const oy = r0 + ry;
          for (let ox = 0; ox < w; ox++) {
            const base = (ry * w + ox) * kk;
            for (let ci = 0; ci < cin; ci++)
              for (let dy = 0; dy < k; dy++) {
                const iy = oy + dy - pad;
                if (iy < 0 || iy >= h) continue;
                const src = (ci * h + iy) * w;
                const dst = base + (ci * k + dy) * k;
                for (let dx = 0; dx < k; dx++) {
                  const ix = ox + dx - pad;
                  if (ix >= 0 && ix < w) c[dst + dx] = x[src + ix]!;
                }
              }
          }
        }
      }
      const yb = rows === band ? y : y.subarray(0, m * cout);
      gemm.gemm(c, this.weight, this.bias, yb, m, kk, cout);
      for (let p = 0; p < m; p++) for (let co = 0; co < cout; co++) out[co * h * w + r0 * w + p] = yb[p * cout + co]!;
    }
    return out;
  }
}

// Floats of im2col scratch per band (16 Mi floats = 64 MiB).
const COLS_BUDGET = 1 << 24;

/**
 * Direct convolution in float64 accumulation (no GEMM): the independent reference `Conv2d` is tested against,
 * and a fallback that needs no scratch.
 */
export function conv2dDirect(
  x: Float32Array,
  h: number,
  w: number,
  weight: Float32Array,
  bias: Float32Array | undefined,
  cout: number,
  cin: number,
  k: number,
): Float32Array {
  const pad = (k - 1) / 2;
  const out = new Float32Array(cout * h * w);
  for (let co = 0; co < cout; co++)
    for (let oy = 0; oy < h; oy++)
      for (let ox = 0; ox < w; ox++) {
        let s = bias === undefined ? 0 : bias[co]!;
        for (let ci = 0; ci < cin; ci++)
          for (let dy = 0; dy < k; dy++) {
            const iy = oy + dy - pad;
            if (iy < 0 || iy >= h) continue;
            for (let dx = 0; dx < k; dx++) {
              const ix = ox + dx - pad;
              if (ix < 0 || ix >= w) continue;
              s += x[(ci * h + iy) * w + ix]! * weight[((co * cin + ci) * k + dy) * k + dx]!;
            }
          }
        out[(co * h + oy) * w + ox] = s;
      }
  return out;
}

/** In place: GroupNorm over [C, HW] with `groups` groups, affine weight/bias [C] (torch.nn.GroupNorm). */
export function groupNorm(
  x: Float32Array,
  c: number,
  hw: number,
  groups: number,
  weight: Float32Array,
  bias: Float32Array,
  eps: number,
): Float32Array {
  const cg = c / groups;
  const out = new Float32Array(x.length);
  for (let g = 0; g < groups; g++) {
    const o = g * cg * hw;
    const n = cg * hw;
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[o + i]!;
    mean /= n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (x[o + i]! - mean) ** 2;
    const inv = 1 / Math.sqrt(v / n + eps);
    for (let ci = 0; ci < cg; ci++) {
      const ch = g * cg + ci;
      const a = weight[ch]!;
      const b = bias[ch]!;
      const base = ch * hw;
      for (let i = 0; i < hw; i++) out[base + i] = (x[base + i]! - mean) * inv * a + b;
    }
  }
  return out;
}

/** In place: x · σ(x). */
export function siluInPlace(x: Float32Array): Float32Array {
  for (let i = 0; i < x.length; i++) x[i] = x[i]! / (1 + Math.exp(-x[i]!));
  return x;
}

/** Nearest-neighbour 2x upsampling of [C, H, W] → [C, 2H, 2W] (F.interpolate(scale_factor=2, mode="nearest")). */
export function upsampleNearest2x(x: Float32Array, c: number, h: number, w: number): Float32Array {
  const out = new Float32Array(c * 4 * h * w);
  const w2 = 2 * w;
  for (let ci = 0; ci < c; ci++)
    for (let y = 0; y < 2 * h; y++) {
      const src = (ci * h + (y >> 1)) * w;
      const dst = (ci * 2 * h + y) * w2;
      for (let xx = 0; xx < w2; xx++) out[dst + xx] = x[src + (xx >> 1)]!;
    }
  return out;
}
