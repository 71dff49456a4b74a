// An independent float64 forward of FLUX and PixArt for tests, written from the diffusers source as plain
// per-token loops (no GEMM backend, no blocking, no shared code with src/). Only the sinusoidal timestep
// embedding rounds to float32, because the reference computes it in float32 even in a float64 model.

type W = Map<string, Float64Array>;
const f32 = Math.fround;

function lin(w: W, name: string, x: Float64Array[]): Float64Array[] {
  const wt = w.get(`${name}.weight`)!;
  const b = w.get(`${name}.bias`);
  const k = x[0]!.length;
  const n = wt.length / k;
  return x.map((row) => {
    const y = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      let s = b ? b[j]! : 0;
      for (let p = 0; p < k; p++) s += row[p]! * wt[j * k + p]!;
      y[j] = s;
    }
    return y;
  });
}
const map = (x: Float64Array[], f: (v: number) => number) => x.map((r) => r.map(f));
const siluF = (v: number) => v / (1 + Math.exp(-v));
const geluF = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
function ln(r: Float64Array, eps: number): Float64Array {
  const mu = r.reduce((a, b) => a + b, 0) / r.length;
  const va = r.reduce((a, b) => a + (b - mu) ** 2, 0) / r.length;
  return r.map((v) => (v - mu) / Math.sqrt(va + eps));
}
function tproj(t: number): Float64Array {
  const e = new Float64Array(256);
  for (let i = 0; i < 128; i++) {
    const fr = f32(Math.exp(f32(f32(f32(-Math.log(10000)) * i) / 128)));
    const a = f32(f32(t) * fr);
    e[i] = f32(Math.cos(a));
    e[128 + i] = f32(Math.sin(a));
  }
  return e;
}
function chunk(v: Float64Array, n: number, i: number): Float64Array {
  const d = v.length / n;
  return v.slice(i * d, (i + 1) * d);
}
function sdpa(q: Float64Array[], k: Float64Array[], v: Float64Array[], heads: number, bias?: number[]): Float64Array[] {
  const d = q[0]!.length;
  const dh = d / heads;
  return q.map((qr) => {
    const o = new Float64Array(d);
    for (let h = 0; h < heads; h++) {
      const sc = k.map((kr, j) => {
        let s = 0;
        for (let i = 0; i < dh; i++) s += qr[h * dh + i]! * kr[h * dh + i]!;
        return s / Math.sqrt(dh) + (bias ? bias[j]! : 0);
      });
      const mx = Math.max(...sc);
      const ex = sc.map((s) => Math.exp(s - mx));
      const z = ex.reduce((a, b) => a + b, 0);
      for (let j = 0; j < k.length; j++)
        for (let i = 0; i < dh; i++) o[h * dh + i]! += (ex[j]! / z) * v[j]![h * dh + i]!;
    }
    return o;
  });
}
function rms(r: Float64Array, heads: number, g: Float64Array): Float64Array {
  const dh = r.length / heads;
  const o = new Float64Array(r.length);
  for (let h = 0; h < heads; h++) {
    let ss = 0;
    for (let i = 0; i < dh; i++) ss += r[h * dh + i]! ** 2;
    const inv = 1 / Math.sqrt(ss / dh + 1e-6);
    for (let i = 0; i < dh; i++) o[h * dh + i] = r[h * dh + i]! * inv * g[i]!;
  }
  return o;
}
function rope(r: Float64Array, heads: number, id: number[], axes: number[]): Float64Array {
  const dh = r.length / heads;
  const ang: number[] = [];
  axes.forEach((da, a) => {
    for (let i = 0; i < da / 2; i++) ang.push(id[a]! / 10000 ** ((2 * i) / da));
  });
  const o = new Float64Array(r.length);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < dh / 2; i++) {
      const x0 = r[h * dh + 2 * i]!;
      const x1 = r[h * dh + 2 * i + 1]!;
      const c = Math.cos(ang[i]!);
      const s = Math.sin(ang[i]!);
      o[h * dh + 2 * i] = x0 * c - x1 * s;
      o[h * dh + 2 * i + 1] = x1 * c + x0 * s;
    }
  return o;
}
const addRows = (a: Float64Array[], b: Float64Array[], g?: Float64Array) =>
  a.map((r, t) => r.map((v, i) => v + (g ? g[i]! : 1) * b[t]![i]!));
const modRows = (x: Float64Array[], sc: Float64Array, sh: Float64Array, eps = 1e-6) =>
  x.map((r) => ln(r, eps).map((v, i) => v * (1 + sc[i]!) + sh[i]!));

export interface FluxRefCfg {
  heads: number;
  axes: number[];
  double: number;
  single: number;
  guidance: boolean;
}

/** One batch item: img [Si][Cin], txt [St][J], pooled [P], ids [S][3] → [Si][out]. */
export function fluxRef64(
  w: W,
  c: FluxRefCfg,
  img0: Float64Array[],
  txt0: Float64Array[],
  pooled: Float64Array,
  t: number,
  guidance: number | undefined,
  imgIds: number[][],
  txtIds: number[][],
): Float64Array[] {
  const H = c.heads;
  let img = lin(w, "x_embedder", img0);
  let txt = lin(w, "context_embedder", txt0);
  const te = (p: string, v: number) =>
    lin(w, `time_text_embed.${p}.linear_2`, map(lin(w, `time_text_embed.${p}.linear_1`, [tproj(v)]), siluF))[0]!;
  let temb = te("timestep_embedder", t * 1000);
  if (c.guidance) temb = temb.map((v, i) => v + te("guidance_embedder", guidance! * 1000)[i]!);
  const pp = lin(
    w,
    "time_text_embed.text_embedder.linear_2",
    map(lin(w, "time_text_embed.text_embedder.linear_1", [pooled]), siluF),
  )[0]!;
  temb = temb.map((v, i) => v + pp[i]!);
  const ts = [temb.map(siluF)];
  const ids = [...txtIds, ...imgIds];
  const st = txt.length;
  for (let bi = 0; bi < c.double; bi++) {
    const p = `transformer_blocks.${bi}.`;
    const m = lin(w, `${p}norm1.linear`, ts)[0]!;
    const cm = lin(w, `${p}norm1_context.linear`, ts)[0]!;
    const ni = modRows(img, chunk(m, 6, 1), chunk(m, 6, 0));
    const nt = modRows(txt, chunk(cm, 6, 1), chunk(cm, 6, 0));
    const g = (n: string) => w.get(`${p}attn.${n}.weight`)!;
    const q = [
      ...lin(w, `${p}attn.add_q_proj`, nt).map((r) => rms(r, H, g("norm_added_q"))),
      ...lin(w, `${p}attn.to_q`, ni).map((r) => rms(r, H, g("norm_q"))),
    ];
    const k = [
      ...lin(w, `${p}attn.add_k_proj`, nt).map((r) => rms(r, H, g("norm_added_k"))),
      ...lin(w, `${p}attn.to_k`, ni).map((r) => rms(r, H, g("norm_k"))),
    ];
    const v = [...lin(w, `${p}attn.add_v_proj`, nt), ...lin(w, `${p}attn.to_v`, ni)];
    const a = sdpa(
      q.map((r, i) => rope(r, H, ids[i]!, c.axes)),
      k.map((r, i) => rope(r, H, ids[i]!, c.axes)),
      v,
      H,
    );
    img = addRows(img, lin(w, `${p}attn.to_out.0`, a.slice(st)), chunk(m, 6, 2));
    txt = addRows(txt, lin(w, `${p}attn.to_add_out`, a.slice(0, st)), chunk(cm, 6, 2));
    const ffi = lin(
      w,
      `${p}ff.net.2`,
      map(lin(w, `${p}ff.net.0.proj`, modRows(img, chunk(m, 6, 4), chunk(m, 6, 3))), geluF),
    );
    img = addRows(img, ffi, chunk(m, 6, 5));
    const fft = lin(
      w,
      `${p}ff_context.net.2`,
      map(lin(w, `${p}ff_context.net.0.proj`, modRows(txt, chunk(cm, 6, 4), chunk(cm, 6, 3))), geluF),
    );
    txt = addRows(txt, fft, chunk(cm, 6, 5));
  }
  let x = [...txt, ...img];
  for (let bi = 0; bi < c.single; bi++) {
    const p = `single_transformer_blocks.${bi}.`;
    const m = lin(w, `${p}norm.linear`, ts)[0]!;
    const nx = modRows(x, chunk(m, 3, 1), chunk(m, 3, 0));
    const q = lin(w, `${p}attn.to_q`, nx).map((r, i) =>
      rope(rms(r, H, w.get(`${p}attn.norm_q.weight`)!), H, ids[i]!, c.axes),
    );
    const k = lin(w, `${p}attn.to_k`, nx).map((r, i) =>
      rope(rms(r, H, w.get(`${p}attn.norm_k.weight`)!), H, ids[i]!, c.axes),
    );
    const a = sdpa(q, k, lin(w, `${p}attn.to_v`, nx), H);
    const mlp = map(lin(w, `${p}proj_mlp`, nx), geluF);
    const cat = a.map((r, i) => Float64Array.from([...r, ...mlp[i]!]));
    x = addRows(x, lin(w, `${p}proj_out`, cat), chunk(m, 3, 2));
  }
  img = x.slice(st);
  const mo = lin(w, "norm_out.linear", ts)[0]!;
  return lin(w, "proj_out", modRows(img, chunk(mo, 2, 0), chunk(mo, 2, 1)));
}

export interface PixArtRefCfg {
  heads: number;
  layers: number;
  patch: number;
  inC: number;
  outC: number;
  sample: number;
  interp: number;
}

/** One batch item: latent [C][H][W] flat, caption [L][Cc], mask [L] → [outC][H][W] flat. */
export function pixartRef64(
  w: W,
  c: PixArtRefCfg,
  latent: Float64Array,
  hgt: number,
  wid: number,
  caption: Float64Array[],
  mask: number[] | undefined,
  t: number,
): Float64Array {
  const p = c.patch;
  const gh = hgt / p;
  const gw = wid / p;
  const convW = w.get("pos_embed.proj.weight")!;
  const convB = w.get("pos_embed.proj.bias")!;
  const D = convB.length;
  const base = c.sample / p;
  const om = (k: number) => 1 / 10000 ** (k / (D / 4));
  let x: Float64Array[] = [];
  for (let i = 0; i < gh; i++)
    for (let j = 0; j < gw; j++) {
      const tok = new Float64Array(D);
      // grid values are float32 in the reference
      const wv = f32(f32(j / f32(gw / base)) / c.interp);
      const hv = f32(f32(i / f32(gh / base)) / c.interp);
      for (let o = 0; o < D; o++) {
        let s = convB[o]!;
        for (let ch = 0; ch < c.inC; ch++)
          for (let a = 0; a < p; a++)
            for (let b = 0; b < p; b++)
              s += convW[((o * c.inC + ch) * p + a) * p + b]! * latent[(ch * hgt + i * p + a) * wid + j * p + b]!;
        const q = D / 4;
        const k = o % q;
        const pe =
          o < q
            ? Math.sin(wv * om(k))
            : o < 2 * q
              ? Math.cos(wv * om(k))
              : o < 3 * q
                ? Math.sin(hv * om(k))
                : Math.cos(hv * om(k));
        tok[o] = s + f32(pe);
      }
      x.push(tok);
    }
  const emb = lin(
    w,
    "adaln_single.emb.timestep_embedder.linear_2",
    map(lin(w, "adaln_single.emb.timestep_embedder.linear_1", [tproj(t)]), siluF),
  )[0]!;
  const t6 = lin(w, "adaln_single.linear", [emb.map(siluF)])[0]!;
  const enc = lin(w, "caption_projection.linear_2", map(lin(w, "caption_projection.linear_1", caption), geluF));
  const bias = mask?.map((m) => (1 - m) * -10000);
  for (let l = 0; l < c.layers; l++) {
    const pre = `transformer_blocks.${l}.`;
    const sst = w.get(`${pre}scale_shift_table`)!;
    const m = (r: number) => chunk(sst, 6, r).map((v, i) => v + chunk(t6, 6, r)[i]!);
    const n1 = modRows(x, m(1), m(0));
    const a1 = sdpa(
      lin(w, `${pre}attn1.to_q`, n1),
      lin(w, `${pre}attn1.to_k`, n1),
      lin(w, `${pre}attn1.to_v`, n1),
      c.heads,
    );
    x = addRows(x, lin(w, `${pre}attn1.to_out.0`, a1), m(2));
    const a2 = sdpa(
      lin(w, `${pre}attn2.to_q`, x),
      lin(w, `${pre}attn2.to_k`, enc),
      lin(w, `${pre}attn2.to_v`, enc),
      c.heads,
      bias,
    );
    x = addRows(x, lin(w, `${pre}attn2.to_out.0`, a2));
    const ff = lin(w, `${pre}ff.net.2`, map(lin(w, `${pre}ff.net.0.proj`, modRows(x, m(4), m(3))), geluF));
    x = addRows(x, ff, m(5));
  }
  const sst = w.get("scale_shift_table")!;
  const shift = chunk(sst, 2, 0).map((v, i) => v + emb[i]!);
  const scale = chunk(sst, 2, 1).map((v, i) => v + emb[i]!);
  const y = lin(w, "proj_out", modRows(x, scale, shift));
  const out = new Float64Array(c.outC * hgt * wid);
  for (let i = 0; i < gh; i++)
    for (let j = 0; j < gw; j++)
      for (let a = 0; a < p; a++)
        for (let b = 0; b < p; b++)
          for (let ch = 0; ch < c.outC; ch++)
            out[(ch * hgt + i * p + a) * wid + j * p + b] = y[i * gw + j]![(a * p + b) * c.outC + ch]!;
  return out;
}
