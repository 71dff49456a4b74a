/**
 * Float64 references for the pipeline parts, written as plain loops from the reference classes' definitions
 * (no GEMM, no im2col, no float32 rounding): the independent side of the tests on random models.
 */
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tensor, writeSafetensors } from "@svdquant/tensor";
import type { ParamSpec } from "../src/index.js";
import { t5RelativeBucket } from "../src/index.js";
import { rng } from "./helpers.js";

export type W = Map<string, Float64Array>;

/** A folder with config.json and seeded random float32 weights for `specs`; returns the weights as float64. */
export async function randomFolder(
  specs: readonly ParamSpec[],
  config: Record<string, unknown>,
  file: string,
  seed: number,
): Promise<{ dir: string; w: W }> {
  const dir = await mkdtemp(join(tmpdir(), "svdq-pipe-"));
  const r = rng(seed);
  const tensors = new Map<string, Tensor>();
  const w: W = new Map();
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const fan = s.shape.length >= 2 ? n / s.shape[0]! : 1;
    const v = new Float32Array(n);
    const isNormW = /norm[^.]*\.weight$|layer_norm\.weight$/.test(s.name);
    for (let i = 0; i < n; i++) {
      const z = r.normal();
      v[i] = isNormW
        ? 1 + 0.2 * z
        : s.name.endsWith(".bias")
          ? 0.1 * z
          : /embedding|shared|relative_attention_bias/.test(s.name)
            ? 0.5 * z
            : z / Math.sqrt(fan);
    }
    tensors.set(s.name, new Tensor("F32", s.shape, v));
    w.set(s.name, Float64Array.from(v));
  }
  await writeFile(join(dir, "config.json"), JSON.stringify(config));
  await writeSafetensors(join(dir, file), tensors);
  return { dir, w };
}

const get = (w: W, n: string) => {
  const v = w.get(n);
  if (v === undefined) throw new Error(`reference: missing ${n}`);
  return v;
};

/** y[m, n] = Σ_k x[m, k] W[n, k] + b[n] */
function linear(x: Float64Array, m: number, k: number, wt: Float64Array, b?: Float64Array): Float64Array {
  const n = wt.length / k;
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = b ? b[j]! : 0;
      for (let p = 0; p < k; p++) s += x[i * k + p]! * wt[j * k + p]!;
      y[i * n + j] = s;
    }
  return y;
}

function rms(x: Float64Array, d: number, wt: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x[r * d + i]! ** 2;
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = x[r * d + i]! * inv * wt[i]!;
  }
  return y;
}

function ln(x: Float64Array, d: number, wt: Float64Array, b: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / d; r++) {
    let mean = 0;
    for (let i = 0; i < d; i++) mean += x[r * d + i]!;
    mean /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[r * d + i]! - mean) ** 2;
    const inv = 1 / Math.sqrt(v / d + eps);
    for (let i = 0; i < d; i++) y[r * d + i] = (x[r * d + i]! - mean) * inv * wt[i]! + b[i]!;
  }
  return y;
}

/** Per batch item b and head h: softmax(scale·q·kᵀ + bias(b, h, q, k))·v over [L, heads·dh] rows. */
function mha(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  batch: number,
  l: number,
  heads: number,
  dh: number,
  scale: number,
  bias: (b: number, h: number, i: number, j: number) => number,
): Float64Array {
  const d = heads * dh;
  const out = new Float64Array(batch * l * d);
  const p = new Float64Array(l);
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < l; i++) {
        let mx = -Infinity;
        for (let j = 0; j < l; j++) {
          let s = 0;
          for (let t = 0; t < dh; t++) s += q[(b * l + i) * d + h * dh + t]! * k[(b * l + j) * d + h * dh + t]!;
          p[j] = s * scale + bias(b, h, i, j);
          mx = Math.max(mx, p[j]!);
        }
        let z = 0;
        for (let j = 0; j < l; j++) {
          p[j] = Math.exp(p[j]! - mx);
          z += p[j]!;
        }
        for (let t = 0; t < dh; t++) {
          let s = 0;
          for (let j = 0; j < l; j++) s += p[j]! * v[(b * l + j) * d + h * dh + t]!;
          out[(b * l + i) * d + h * dh + t] = s / z;
        }
      }
  return out;
}

const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

export interface T5RefConfig {
  vocab: number;
  d: number;
  dkv: number;
  dff: number;
  layers: number;
  heads: number;
  buckets: number;
  maxDistance: number;
}

/** T5EncoderModel (gated-gelu) in float64; mask 0 → the key is dropped. */
export function t5Reference64(
  w: W,
  c: T5RefConfig,
  ids: ArrayLike<number>,
  b: number,
  l: number,
  mask?: ArrayLike<number>,
): Float64Array {
  const d = c.d;
  const table = get(w, "shared.weight");
  let x = new Float64Array(b * l * d);
  for (let i = 0; i < b * l; i++) x.set(table.subarray(ids[i]! * d, (ids[i]! + 1) * d), i * d);
  const rb = get(w, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
  const bias = (bi: number, h: number, i: number, j: number) =>
    mask !== undefined && mask[bi * l + j] === 0
      ? -1e300
      : rb[t5RelativeBucket(j - i, c.buckets, c.maxDistance) * c.heads + h]!;
  const inner = c.heads * c.dkv;
  for (let li = 0; li < c.layers; li++) {
    const p = `encoder.block.${li}.layer.`;
    const h = rms(x, d, get(w, `${p}0.layer_norm.weight`), 1e-6);
    const q = linear(h, b * l, d, get(w, `${p}0.SelfAttention.q.weight`));
    const k = linear(h, b * l, d, get(w, `${p}0.SelfAttention.k.weight`));
    const v = linear(h, b * l, d, get(w, `${p}0.SelfAttention.v.weight`));
    const a = mha(q, k, v, b, l, c.heads, c.dkv, 1, bias);
    const o = linear(a, b * l, inner, get(w, `${p}0.SelfAttention.o.weight`));
    x = x.map((xv, i) => xv + o[i]!);
    const h2 = rms(x, d, get(w, `${p}1.layer_norm.weight`), 1e-6);
    const g = linear(h2, b * l, d, get(w, `${p}1.DenseReluDense.wi_0.weight`));
    const u = linear(h2, b * l, d, get(w, `${p}1.DenseReluDense.wi_1.weight`));
    const f = g.map((gv, i) => geluTanh(gv) * u[i]!);
    const y = linear(f, b * l, c.dff, get(w, `${p}1.DenseReluDense.wo.weight`));
    x = x.map((xv, i) => xv + y[i]!);
  }
  return rms(x, d, get(w, "encoder.final_layer_norm.weight"), 1e-6);
}

export interface ClipRefConfig {
  d: number;
  ff: number;
  layers: number;
  heads: number;
  act: "quick_gelu" | "gelu";
  eos: number;
}

/** CLIPTextModel in float64: hidden states and pooled rows (EOS rule as transformers). */
export function clipReference64(
  w: W,
  c: ClipRefConfig,
  ids: ArrayLike<number>,
  b: number,
  l: number,
  erf: (x: number) => number,
): { hidden: Float64Array; pooled: Float64Array } {
  const d = c.d;
  const tok = get(w, "text_model.embeddings.token_embedding.weight");
  const pos = get(w, "text_model.embeddings.position_embedding.weight");
  let x = new Float64Array(b * l * d);
  for (let i = 0; i < b * l; i++)
    for (let t = 0; t < d; t++) x[i * d + t] = tok[ids[i]! * d + t]! + pos[(i % l) * d + t]!;
  const dh = d / c.heads;
  const act = (v: number) =>
    c.act === "quick_gelu" ? v / (1 + Math.exp(-1.702 * v)) : 0.5 * v * (1 + erf(v / Math.SQRT2));
  for (let li = 0; li < c.layers; li++) {
    const p = `text_model.encoder.layers.${li}.`;
    const lin = (n: string, inp: Float64Array, k: number) =>
      linear(inp, b * l, k, get(w, `${p}${n}.weight`), get(w, `${p}${n}.bias`));
    const h = ln(x, d, get(w, `${p}layer_norm1.weight`), get(w, `${p}layer_norm1.bias`), 1e-5);
    const a = mha(
      lin("self_attn.q_proj", h, d),
      lin("self_attn.k_proj", h, d),
      lin("self_attn.v_proj", h, d),
      b,
      l,
      c.heads,
      dh,
      1 / Math.sqrt(dh),
      (_b, _h, i, j) => (j > i ? -1e300 : 0),
    );
    const o = lin("self_attn.out_proj", a, d);
    x = x.map((xv, i) => xv + o[i]!);
    const h2 = ln(x, d, get(w, `${p}layer_norm2.weight`), get(w, `${p}layer_norm2.bias`), 1e-5);
    const f = lin("mlp.fc1", h2, d).map(act);
    const y = lin("mlp.fc2", f, c.ff);
    x = x.map((xv, i) => xv + y[i]!);
  }
  const hidden = ln(
    x,
    d,
    get(w, "text_model.final_layer_norm.weight"),
    get(w, "text_model.final_layer_norm.bias"),
    1e-5,
  );
  const pooled = new Float64Array(b * d);
  for (let bi = 0; bi < b; bi++) {
    let t = 0;
    if (c.eos === 2) for (let j = 1; j < l; j++) t = ids[bi * l + j]! > ids[bi * l + t]! ? j : t;
    else t = Math.max(0, Array.from({ length: l }, (_, j) => ids[bi * l + j]).indexOf(c.eos));
    pooled.set(hidden.subarray((bi * l + t) * d, (bi * l + t + 1) * d), bi * d);
  }
  return { hidden, pooled };
}

export interface VaeRefConfig {
  latent: number;
  blocks: number[];
  layersPerBlock: number;
  groups: number;
  postQuant: boolean;
}

function conv64(
  x: Float64Array,
  cin: number,
  h: number,
  wd: number,
  wt: Float64Array,
  bias: Float64Array,
  k: number,
): Float64Array {
  const cout = bias.length;
  const pad = (k - 1) / 2;
  const y = new Float64Array(cout * h * wd);
  for (let co = 0; co < cout; co++)
    for (let i = 0; i < h; i++)
      for (let j = 0; j < wd; j++) {
        let s = bias[co]!;
        for (let ci = 0; ci < cin; ci++)
          for (let a = 0; a < k; a++)
            for (let bb = 0; bb < k; bb++) {
              const ii = i + a - pad;
              const jj = j + bb - pad;
              if (ii >= 0 && ii < h && jj >= 0 && jj < wd)
                s += x[(ci * h + ii) * wd + jj]! * wt[((co * cin + ci) * k + a) * k + bb]!;
            }
        y[(co * h + i) * wd + j] = s;
      }
  return y;
}

function gn64(x: Float64Array, c: number, hw: number, groups: number, wt: Float64Array, b: Float64Array): Float64Array {
  const y = new Float64Array(x.length);
  const cg = c / groups;
  for (let g = 0; g < groups; g++) {
    const s = x.subarray(g * cg * hw, (g + 1) * cg * hw);
    const mean = s.reduce((a, v) => a + v, 0) / s.length;
    const vr = s.reduce((a, v) => a + (v - mean) ** 2, 0) / s.length;
    for (let i = 0; i < s.length; i++) {
      const ch = g * cg + Math.floor(i / hw);
      y[g * cg * hw + i] = ((s[i]! - mean) / Math.sqrt(vr + 1e-6)) * wt[ch]! + b[ch]!;
    }
  }
  return y;
}

const silu = (v: number) => v / (1 + Math.exp(-v));

/** AutoencoderKL decoder in float64 on one latent [C, h, w]. */
export function vaeReference64(w: W, c: VaeRefConfig, z: Float64Array, h0: number, w0: number): Float64Array {
  let h = h0;
  let wd = w0;
  const conv = (n: string, x: Float64Array, cin: number, k: number) =>
    conv64(x, cin, h, wd, get(w, `${n}.weight`), get(w, `${n}.bias`), k);
  const norm = (n: string, x: Float64Array, ch: number) =>
    gn64(x, ch, h * wd, c.groups, get(w, `${n}.weight`), get(w, `${n}.bias`));
  const resnet = (n: string, x: Float64Array, cin: number, cout: number) => {
    let y = conv(`${n}.conv1`, norm(`${n}.norm1`, x, cin).map(silu), cin, 3);
    y = conv(`${n}.conv2`, norm(`${n}.norm2`, y, cout).map(silu), cout, 3);
    const skip = cin === cout ? x : conv(`${n}.conv_shortcut`, x, cin, 1);
    return y.map((v, i) => v + skip[i]!);
  };
  let x = c.postQuant ? conv("post_quant_conv", z, c.latent, 1) : z;
  const top = c.blocks[c.blocks.length - 1]!;
  x = conv("decoder.conv_in", x, c.latent, 3);
  x = resnet("decoder.mid_block.resnets.0", x, top, top);
  {
    const a = "decoder.mid_block.attentions.0";
    const hw = h * wd;
    const n = norm(`${a}.group_norm`, x, top);
    const t = new Float64Array(hw * top);
    for (let ci = 0; ci < top; ci++) for (let p = 0; p < hw; p++) t[p * top + ci] = n[ci * hw + p]!;
    const lin = (nm: string, inp: Float64Array) =>
      linear(inp, hw, top, get(w, `${a}.${nm}.weight`), get(w, `${a}.${nm}.bias`));
    const att = mha(lin("to_q", t), lin("to_k", t), lin("to_v", t), 1, hw, 1, top, 1 / Math.sqrt(top), () => 0);
    const o = lin("to_out.0", att);
    for (let ci = 0; ci < top; ci++) for (let p = 0; p < hw; p++) x[ci * hw + p] = x[ci * hw + p]! + o[p * top + ci]!;
  }
  x = resnet("decoder.mid_block.resnets.1", x, top, top);
  const rev = [...c.blocks].reverse();
  let prev = rev[0]!;
  rev.forEach((out, i) => {
    for (let j = 0; j <= c.layersPerBlock; j++)
      x = resnet(`decoder.up_blocks.${i}.resnets.${j}`, x, j === 0 ? prev : out, out);
    if (i < rev.length - 1) {
      const up = new Float64Array(out * 4 * h * wd);
      for (let ci = 0; ci < out; ci++)
        for (let yy = 0; yy < 2 * h; yy++)
          for (let xx = 0; xx < 2 * wd; xx++)
            up[(ci * 2 * h + yy) * 2 * wd + xx] = x[(ci * h + (yy >> 1)) * wd + (xx >> 1)]!;
      h *= 2;
      wd *= 2;
      x = conv(`decoder.up_blocks.${i}.upsamplers.0.conv`, up, out, 3);
    }
    prev = out;
  });
  x = norm("decoder.conv_norm_out", x, c.blocks[0]!).map(silu);
  return conv("decoder.conv_out", x, c.blocks[0]!, 3);
}
