import { createCanvas, type SKRSContext2D } from "@napi-rs/canvas";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

export interface Series {
  label: string;
  values: ArrayLike<number>;
}

function axes(g: SKRSContext2D, x0: number, y0: number, w: number, h: number): void {
  g.strokeStyle = "#333";
  g.lineWidth = 1;
  g.strokeRect(x0, y0, w, h);
}

/** Line chart of several series against their index, log10 y axis (singular values, SVDQuant Fig. 5), as PNG bytes. */
export function singularValueChart(title: string, series: Series[]): Buffer {
  const W = 900;
  const H = 560;
  const pad = { l: 80, r: 30, t: 50, b: 60 };
  const c = createCanvas(W, H);
  const g = c.getContext("2d");
  g.fillStyle = "#fff";
  g.fillRect(0, 0, W, H);
  const pw = W - pad.l - pad.r;
  const ph = H - pad.t - pad.b;
  let lo = Number.POSITIVE_INFINITY;
  let hi = 0;
  let len = 0;
  for (const s of series) {
    len = Math.max(len, s.values.length);
    for (let i = 0; i < s.values.length; i++) {
      const v = s.values[i];
      if (v > 0) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    }
  }
  const ylo = Math.floor(Math.log10(lo));
  const yhi = Math.ceil(Math.log10(hi));
  const X = (i: number): number => pad.l + (len <= 1 ? 0 : (i / (len - 1)) * pw);
  const Y = (v: number): number => pad.t + ph - ((Math.log10(v) - ylo) / Math.max(1, yhi - ylo)) * ph;
  axes(g, pad.l, pad.t, pw, ph);
  g.fillStyle = "#000";
  g.font = "18px sans-serif";
  g.fillText(title, pad.l, 30);
  g.font = "13px sans-serif";
  for (let e = ylo; e <= yhi; e++) {
    const y = Y(10 ** e);
    g.strokeStyle = "#ddd";
    g.beginPath();
    g.moveTo(pad.l, y);
    g.lineTo(pad.l + pw, y);
    g.stroke();
    g.fillStyle = "#000";
    g.fillText(`1e${e}`, 20, y + 4);
  }
  for (let t = 0; t <= 4; t++) {
    const i = Math.round(((len - 1) * t) / 4);
    g.fillText(String(i), X(i) - 8, pad.t + ph + 20);
  }
  g.fillText("singular value index", pad.l + pw / 2 - 60, H - 15);
  series.forEach((s, si) => {
    g.strokeStyle = COLORS[si % COLORS.length];
    g.lineWidth = 2;
    g.beginPath();
    let started = false;
    for (let i = 0; i < s.values.length; i++) {
      const v = s.values[i];
      if (!(v > 0)) continue;
      if (!started) g.moveTo(X(i), Y(v));
      else g.lineTo(X(i), Y(v));
      started = true;
    }
    g.stroke();
    g.fillStyle = COLORS[si % COLORS.length];
    g.fillRect(pad.l + pw - 230, pad.t + 15 + si * 22, 18, 4);
    g.fillStyle = "#000";
    g.fillText(s.label, pad.l + pw - 205, pad.t + 22 + si * 22);
  });
  return c.toBuffer("image/png");
}

/** One histogram panel per series (log10 counts), side by side (value distributions, SVDQuant Fig. 4), as PNG bytes. */
export function histogramChart(title: string, panels: Series[], bins = 60): Buffer {
  const PW = 300;
  const PH = 240;
  const cols = Math.min(3, panels.length);
  const rows = Math.ceil(panels.length / cols);
  const W = cols * PW + 40;
  const H = rows * (PH + 60) + 60;
  const c = createCanvas(W, H);
  const g = c.getContext("2d");
  g.fillStyle = "#fff";
  g.fillRect(0, 0, W, H);
  g.fillStyle = "#000";
  g.font = "18px sans-serif";
  g.fillText(title, 20, 30);
  panels.forEach((p, pi) => {
    const x0 = 30 + (pi % cols) * PW;
    const y0 = 60 + Math.floor(pi / cols) * (PH + 60);
    const w = PW - 30;
    const h = PH - 30;
    let amax = 0;
    for (let i = 0; i < p.values.length; i++) amax = Math.max(amax, Math.abs(p.values[i]));
    amax = amax || 1;
    const counts = new Float64Array(bins);
    for (let i = 0; i < p.values.length; i++) {
      const b = Math.min(bins - 1, Math.floor(((p.values[i] + amax) / (2 * amax)) * bins));
      counts[b]++;
    }
    const cmax = Math.log10(1 + Math.max(...counts));
    axes(g, x0, y0, w, h);
    g.fillStyle = COLORS[pi % COLORS.length];
    for (let b = 0; b < bins; b++) {
      const bh = (Math.log10(1 + counts[b]) / cmax) * (h - 4);
      g.fillRect(x0 + (b * w) / bins, y0 + h - bh, Math.max(1, w / bins - 1), bh);
    }
    g.fillStyle = "#000";
    g.font = "14px sans-serif";
    g.fillText(`${p.label}  (max |v| = ${amax.toPrecision(3)})`, x0, y0 - 8);
    g.font = "12px sans-serif";
    g.fillText(`-${amax.toPrecision(2)}`, x0, y0 + h + 16);
    g.fillText(`${amax.toPrecision(2)}`, x0 + w - 30, y0 + h + 16);
    g.fillText("log count", x0 + 4, y0 + 14);
  });
  return c.toBuffer("image/png");
}
