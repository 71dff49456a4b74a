import { ModelError } from "./errors.js";
import { getGemmBackend } from "./gemm.js";

const f32 = Math.fround;

/** In place: LayerNorm over rows of width `d`, no affine (eps as given; diffusers uses 1e-6 here). */
export function layerNormRows(x: Float32Array, rows: number, d: number, eps: number): Float32Array {
  const out = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    let mean = 0;
    for (let i = 0; i < d; i++) mean += x[o + i]!;
    mean /= d;
    let v = 0;
    for (let i = 0; i < d; i++) {
      const t = x[o + i]! - mean;
      v += t * t;
    }
    const inv = 1 / Math.sqrt(v / d + eps); // biased variance, as torch.nn.LayerNorm
    for (let i = 0; i < d; i++) out[o + i] = (x[o + i]! - mean) * inv;
  }
  return out;
}

/** y = norm(x) * (1 + scale) + shift per batch row: x [B, S, D], scale/shift [B, D] given by (array, offset). */
export function modulate(
  x: Float32Array,
  b: number,
  s: number,
  d: number,
  scale: Float32Array,
  scaleOff: number,
  shift: Float32Array,
  shiftOff: number,
  stride: number,
): void {
  for (let bi = 0; bi < b; bi++) {
    const sc = bi * stride + scaleOff;
    const sh = bi * stride + shiftOff;
    for (let t = 0; t < s; t++) {
      const o = (bi * s + t) * d;
      for (let i = 0; i < d; i++) x[o + i] = x[o + i]! * (1 + scale[sc + i]!) + shift[sh + i]!;
    }
  }
}

/**
 * LayerNorm over each row of x [B, S, D] (no affine, eps as given) followed by the AdaLN modulation
 * y = norm(x)·(1 + scale) + shift (scale/shift [B, D] at (array, offset, row stride)), in one pass per row into a
 * new array: `layerNormRows` then `modulate`, with the same float32 roundings (bit-identical). A GEMM backend with
 * its own `layerNormModulate` (@svdquant/kernels' native one: within one f32 ulp) runs it instead.
 */
export function layerNormModulate(
  x: Float32Array,
  b: number,
  s: number,
  d: number,
  eps: number,
  scale: Float32Array,
  scaleOff: number,
  shift: Float32Array,
  shiftOff: number,
  stride: number,
): Float32Array {
  const be = getGemmBackend();
  if (be.layerNormModulate) return be.layerNormModulate(x, b, s, d, eps, scale, scaleOff, shift, shiftOff, stride);
  const out = new Float32Array(b * s * d);
  for (let bi = 0; bi < b; bi++) {
    const sc = bi * stride + scaleOff;
    const sh = bi * stride + shiftOff;
    for (let t = 0; t < s; t++) {
      const o = (bi * s + t) * d;
      let mean = 0;
      for (let i = 0; i < d; i++) mean += x[o + i]!;
      mean /= d;
      let v = 0;
      for (let i = 0; i < d; i++) {
        const u = x[o + i]! - mean;
        v += u * u;
      }
      const inv = 1 / Math.sqrt(v / d + eps); // biased variance, as torch.nn.LayerNorm
      for (let i = 0; i < d; i++) out[o + i] = f32((x[o + i]! - mean) * inv) * (1 + scale[sc + i]!) + shift[sh + i]!;
    }
  }
  return out;
}

/** In place: x += gate ⊙ y per batch row; x, y [B, S, D]; gate [B, D] at (array, offset, row stride). */
export function gatedAdd(
  x: Float32Array,
  y: Float32Array,
  b: number,
  s: number,
  d: number,
  gate: Float32Array | undefined,
  gateOff: number,
  stride: number,
): void {
  for (let bi = 0; bi < b; bi++) {
    const g = bi * stride + gateOff;
    for (let t = 0; t < s; t++) {
      const o = (bi * s + t) * d;
      if (gate === undefined) for (let i = 0; i < d; i++) x[o + i] = x[o + i]! + y[o + i]!;
      else for (let i = 0; i < d; i++) x[o + i] = x[o + i]! + gate[g + i]! * y[o + i]!;
    }
  }
}

export function silu(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    out[i] = v / (1 + Math.exp(-v));
  }
  return out;
}

// GELU, tanh approximation (torch approximate="tanh"): 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))).
const GELU_C = Math.sqrt(2 / Math.PI);
export function geluTanhInPlace(x: Float32Array): Float32Array {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    x[i] = 0.5 * v * (1 + Math.tanh(GELU_C * (v + 0.044715 * v * v * v)));
  }
  return x;
}

/**
 * Sinusoidal timestep embedding (diffusers get_timestep_embedding, flip_sin_to_cos=True,
 * downscale_freq_shift=0, max_period 10000), [B, dim]. The reference computes it in float32 even inside a
 * float64 model (`timesteps.float()`), so every step is rounded to float32 here too.
 */
export function timestepEmbedding(t: ArrayLike<number>, dim: number): Float32Array {
  const half = Math.floor(dim / 2);
  const out = new Float32Array(t.length * dim);
  const c = f32(-Math.log(10000));
  const freqs = new Float64Array(half);
  for (let i = 0; i < half; i++) freqs[i] = f32(Math.exp(f32(f32(c * i) / half)));
  for (let b = 0; b < t.length; b++) {
    const tv = f32(t[b]!);
    for (let i = 0; i < half; i++) {
      const a = f32(tv * freqs[i]!);
      out[b * dim + i] = Math.cos(a); // flip_sin_to_cos: [cos, sin]
      out[b * dim + half + i] = Math.sin(a);
    }
  }
  return out;
}

/**
 * FLUX 3-axis RoPE tables (FluxPosEmbed, theta 10000): for each token and axis a, frequencies
 * 1/θ^(2i/d_a) (float64), angles pos·freq, cos/sin each repeated twice (interleaved pairs). [S, headDim] each.
 */
export function fluxRope(
  ids: Float32Array,
  s: number,
  axes: readonly number[],
): { cos: Float32Array; sin: Float32Array } {
  const dim = axes.reduce((a, b) => a + b, 0);
  const cos = new Float32Array(s * dim);
  const sin = new Float32Array(s * dim);
  const n = axes.length;
  for (let t = 0; t < s; t++) {
    let off = 0;
    for (let a = 0; a < n; a++) {
      const da = axes[a]!;
      const pos = f32(ids[t * n + a]!);
      for (let i = 0; i < da / 2; i++) {
        const freq = 1 / 10000 ** ((2 * i) / da);
        const ang = pos * freq;
        const c = Math.cos(ang);
        const si = Math.sin(ang);
        cos[t * dim + off + 2 * i] = c;
        cos[t * dim + off + 2 * i + 1] = c;
        sin[t * dim + off + 2 * i] = si;
        sin[t * dim + off + 2 * i + 1] = si;
      }
      off += da;
    }
  }
  return { cos, sin };
}

/**
 * 2-D sin-cos position embedding of PixArt's PatchEmbed for an H x W grid of patches: token (i, j) gets
 * [1-D(D/2, w_j), 1-D(D/2, h_i)] with w_j = j / (W / base) / scale, h_i = i / (H / base) / scale (grid in
 * float32 as the reference), 1-D(d, p) = [sin(p ω_k), cos(p ω_k)], ω_k = 1/10000^(k/(d/2)). Result is float32.
 */
export function sincos2d(d: number, h: number, w: number, baseSize: number, interpolationScale: number): Float32Array {
  const out = new Float32Array(h * w * d);
  const half = d / 2;
  const quarter = half / 2;
  const omega = new Float64Array(quarter);
  for (let k = 0; k < quarter; k++) omega[k] = 1 / 10000 ** (k / quarter);
  for (let i = 0; i < h; i++) {
    const hv = f32(f32(i / f32(h / baseSize)) / interpolationScale);
    for (let j = 0; j < w; j++) {
      const wv = f32(f32(j / f32(w / baseSize)) / interpolationScale);
      const o = (i * w + j) * d;
      for (let k = 0; k < quarter; k++) {
        out[o + k] = Math.sin(wv * omega[k]!);
        out[o + quarter + k] = Math.cos(wv * omega[k]!);
        out[o + half + k] = Math.sin(hv * omega[k]!);
        out[o + half + quarter + k] = Math.cos(hv * omega[k]!);
      }
    }
  }
  return out;
}

export interface AttentionOptions {
  /** Queries processed per block; scores use O(block x keys) memory. Infinity = one block (the naive path). */
  readonly queryBlock?: number;
}

/**
 * Multi-head scaled-dot-product attention, queries in blocks.
 *
 * | tensor | shape           | dtype | notes                                          |
 * | ------ | --------------- | ----- | ---------------------------------------------- |
 * | q      | [B, Sq, H·Dh]   | f32   | heads interleaved along the last axis          |
 * | k, v   | [B, Skv, H·Dh]  | f32   |                                                |
 * | bias   | [B, Skv]        | f32   | optional additive key bias (PixArt text mask)  |
 * | out    | [B, Sq, H·Dh]   | f32   |                                                |
 *
 * Scale 1/√Dh. Per (batch, head) K and Vᵀ are gathered once; each block of queries computes
 * scores = Q·Kᵀ through the GEMM backend, a float64-accumulated softmax, then P·V.
 */
export function attention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  b: number,
  sq: number,
  skv: number,
  heads: number,
  dh: number,
  bias?: Float32Array,
  opts: AttentionOptions = {},
): Float32Array {
  const d = heads * dh;
  if (q.length !== b * sq * d || k.length !== b * skv * d || v.length !== b * skv * d)
    throw new ModelError(
      "E_SHAPE",
      `q/k/v sizes do not fit B=${b}, Sq=${sq}, Skv=${skv}, H=${heads}, Dh=${dh}`,
      "attention",
    );
  if (bias !== undefined && bias.length !== b * skv)
    throw new ModelError("E_SHAPE", `key bias has ${bias.length} elements, expected B*Skv = ${b * skv}`, "attention");
  const qb0 = opts.queryBlock ?? 128;
  if (!(qb0 >= 1)) throw new ModelError("E_INPUT", `queryBlock must be >= 1 (or Infinity), got ${qb0}`, "attention");
  const block = Math.min(sq, Math.floor(qb0));
  const gemm = getGemmBackend();
  const out = new Float32Array(b * sq * d);
  // A backend with its own attention (the native online-softmax kernel) takes the whole call; queryBlock then
  // only bounds the TypeScript path's score buffer.
  if (gemm.attention !== undefined && skv > 0 && sq > 0) {
    gemm.attention(q, k, v, bias, out, b, sq, skv, heads, dh);
    return out;
  }
  const scale = 1 / Math.sqrt(dh);
  const kh = new Float32Array(skv * dh);
  const vt = new Float32Array(dh * skv);
  const qb = new Float32Array(block * dh);
  const scores = new Float32Array(block * skv);
  const ob = new Float32Array(block * dh);
  for (let bi = 0; bi < b; bi++) {
    for (let h = 0; h < heads; h++) {
      for (let t = 0; t < skv; t++) {
        const src = (bi * skv + t) * d + h * dh;
        for (let i = 0; i < dh; i++) {
          kh[t * dh + i] = k[src + i]! * scale;
          vt[i * skv + t] = v[src + i]!;
        }
      }
      for (let q0 = 0; q0 < sq; q0 += block) {
        const nq = Math.min(block, sq - q0);
        const qv = nq === block ? qb : qb.subarray(0, nq * dh);
        for (let t = 0; t < nq; t++) {
          const src = (bi * sq + q0 + t) * d + h * dh;
          qv.set(q.subarray(src, src + dh), t * dh);
        }
        const sc = nq === block ? scores : scores.subarray(0, nq * skv);
        gemm.gemm(qv, kh, undefined, sc, nq, dh, skv);
        for (let t = 0; t < nq; t++) {
          const o = t * skv;
          let mx = -Infinity;
          if (bias !== undefined) for (let j = 0; j < skv; j++) sc[o + j] = sc[o + j]! + bias[bi * skv + j]!;
          for (let j = 0; j < skv; j++) if (sc[o + j]! > mx) mx = sc[o + j]!;
          let sum = 0;
          for (let j = 0; j < skv; j++) {
            const e = Math.exp(sc[o + j]! - mx);
            sc[o + j] = e;
            sum += e;
          }
          const inv = 1 / sum;
          for (let j = 0; j < skv; j++) sc[o + j] = sc[o + j]! * inv;
        }
        const ov = nq === block ? ob : ob.subarray(0, nq * dh);
        gemm.gemm(sc, vt, undefined, ov, nq, skv, dh);
        for (let t = 0; t < nq; t++) out.set(ov.subarray(t * dh, (t + 1) * dh), (bi * sq + q0 + t) * d + h * dh);
      }
    }
  }
  return out;
}

/** In place: RMSNorm over each head's Dh values (x [T, H·Dh]), weight [Dh], eps. */
export function rmsNormHeads(
  x: Float32Array,
  t: number,
  heads: number,
  dh: number,
  weight: Float32Array,
  eps: number,
): void {
  for (let r = 0; r < t * heads; r++) {
    const o = r * dh;
    let ss = 0;
    for (let i = 0; i < dh; i++) ss += x[o + i]! * x[o + i]!;
    const inv = 1 / Math.sqrt(ss / dh + eps);
    for (let i = 0; i < dh; i++) x[o + i] = x[o + i]! * inv * weight[i]!;
  }
}

/**
 * In place: `rmsNormHeads` then `applyRope` in one pass (same float32 roundings, bit-identical), x [B, S, H·Dh];
 * token t of each batch item takes rope row `ropeRow0 + t` of cos/sin [·, Dh] (FLUX's joint attention puts the
 * text tokens' rows first, so the image tokens' rows start at the text length). A GEMM backend with its own
 * `rmsNormRopeHeads` (@svdquant/kernels' native one: within one f32 ulp) runs it instead.
 */
export function rmsNormRopeHeads(
  x: Float32Array,
  b: number,
  s: number,
  heads: number,
  dh: number,
  weight: Float32Array,
  eps: number,
  cos: Float32Array,
  sin: Float32Array,
  ropeRow0: number,
): void {
  const be = getGemmBackend();
  if (be.rmsNormRopeHeads) {
    be.rmsNormRopeHeads(x, b, s, heads, dh, weight, eps, cos, sin, ropeRow0);
    return;
  }
  for (let bi = 0; bi < b; bi++) {
    for (let t = 0; t < s; t++) {
      const ro = (ropeRow0 + t) * dh;
      for (let h = 0; h < heads; h++) {
        const o = ((bi * s + t) * heads + h) * dh;
        let ss = 0;
        for (let i = 0; i < dh; i++) ss += x[o + i]! * x[o + i]!;
        const inv = 1 / Math.sqrt(ss / dh + eps);
        for (let i = 0; i < dh; i += 2) {
          const a = f32(x[o + i]! * inv * weight[i]!);
          const c = f32(x[o + i + 1]! * inv * weight[i + 1]!);
          x[o + i] = a * cos[ro + i]! - c * sin[ro + i]!;
          x[o + i + 1] = c * cos[ro + i + 1]! + a * sin[ro + i + 1]!;
        }
      }
    }
  }
}

/**
 * In place: rotary embedding with interleaved pairs (x₂ᵢ, x₂ᵢ₊₁) → (x₂ᵢ c − x₂ᵢ₊₁ s, x₂ᵢ₊₁ c + x₂ᵢ s),
 * x [B, S, H·Dh]; cos/sin [S, Dh] shared by batch and heads.
 */
export function applyRope(
  x: Float32Array,
  b: number,
  s: number,
  heads: number,
  dh: number,
  cos: Float32Array,
  sin: Float32Array,
): void {
  for (let bi = 0; bi < b; bi++) {
    for (let t = 0; t < s; t++) {
      const ro = t * dh;
      for (let h = 0; h < heads; h++) {
        const o = ((bi * s + t) * heads + h) * dh;
        for (let i = 0; i < dh; i += 2) {
          const a = x[o + i]!;
          const c = x[o + i + 1]!;
          x[o + i] = a * cos[ro + i]! - c * sin[ro + i]!;
          x[o + i + 1] = c * cos[ro + i + 1]! + a * sin[ro + i + 1]!;
        }
      }
    }
  }
}
