/** PNG charts of experiment results (drawn with @napi-rs/canvas): method × metric bars, metric-vs-x curves. */
import { createCanvas, type SKRSContext2D } from "@napi-rs/canvas";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"];

export interface Metric {
  /** Panel title, e.g. "PSNR vs 16-bit (dB) ↑". */
  readonly label: string;
  /** One value per category; null draws no bar (a metric that is missing for that row). */
  readonly values: readonly (number | null)[];
}

function fmt(v: number): string {
  const a = Math.abs(v);
  return a !== 0 && (a < 0.01 || a >= 1e5) ? v.toExponential(2) : a >= 100 ? v.toFixed(0) : v.toPrecision(3);
}

function frame(g: SKRSContext2D, x: number, y: number, w: number, h: number): void {
  g.strokeStyle = "#333";
  g.lineWidth = 1;
  g.strokeRect(x, y, w, h);
}

/** One panel per metric, one horizontal bar per category (method), value printed at the bar's end. */
export function barChart(title: string, categories: readonly string[], metrics: readonly Metric[]): Buffer {
  const labelW = Math.min(360, 12 + 7 * Math.max(...categories.map((c) => c.length)));
  const barH = 18;
  const panelW = 260;
  const panelH = categories.length * (barH + 6) + 10;
  const W = labelW + metrics.length * (panelW + 20) + 20;
  const H = panelH + 90;
  const c = createCanvas(W, H);
  const g = c.getContext("2d");
  g.fillStyle = "#fff";
  g.fillRect(0, 0, W, H);
  g.fillStyle = "#000";
  g.font = "17px sans-serif";
  g.fillText(title, 10, 26);
  g.font = "12px sans-serif";
  const top = 60;
  categories.forEach((cat, i) => {
    g.fillStyle = "#000";
    g.fillText(cat, 8, top + 8 + i * (barH + 6) + barH - 5);
  });
  metrics.forEach((m, mi) => {
    const x0 = labelW + mi * (panelW + 20);
    const finite = m.values.filter((v): v is number => v !== null && Number.isFinite(v));
    const lo = Math.min(0, ...finite);
    const hi = Math.max(0, ...finite);
    const span = hi - lo || 1;
    const X = (v: number) => x0 + ((v - lo) / span) * (panelW - 50);
    g.fillStyle = "#000";
    g.font = "13px sans-serif";
    g.fillText(m.label, x0, top - 8);
    frame(g, x0, top, panelW, panelH);
    g.font = "11px sans-serif";
    m.values.forEach((v, i) => {
      const y = top + 8 + i * (barH + 6);
      if (v === null || !Number.isFinite(v)) {
        g.fillStyle = "#888";
        g.fillText("missing", x0 + 4, y + barH - 5);
        return;
      }
      g.fillStyle = COLORS[i % COLORS.length]!;
      const a = X(Math.min(0, v));
      const b = X(Math.max(0, v));
      g.fillRect(a, y, Math.max(1, b - a), barH);
      g.fillStyle = "#000";
      g.fillText(fmt(v), b + 3, y + barH - 5);
    });
  });
  return c.toBuffer("image/png");
}

export interface Curve {
  readonly label: string;
  readonly y: readonly number[];
}

/** Curves over shared x values (e.g. rank), linear axes, one panel per metric; x ticks at the given values. */
export function lineChart(
  title: string,
  xLabel: string,
  x: readonly number[],
  panels: readonly { label: string; curves: readonly Curve[] }[],
): Buffer {
  const PW = 420;
  const PH = 300;
  const pad = { l: 60, r: 20, t: 70, b: 50 };
  const W = panels.length * (PW + pad.l + pad.r);
  const H = PH + pad.t + pad.b;
  const c = createCanvas(W, H);
  const g = c.getContext("2d");
  g.fillStyle = "#fff";
  g.fillRect(0, 0, W, H);
  g.fillStyle = "#000";
  g.font = "17px sans-serif";
  g.fillText(title, 10, 26);
  const xlo = Math.min(...x);
  const xhi = Math.max(...x);
  panels.forEach((p, pi) => {
    const x0 = pi * (PW + pad.l + pad.r) + pad.l;
    const ys = p.curves.flatMap((cv) => cv.y.filter(Number.isFinite));
    let lo = Math.min(...ys);
    let hi = Math.max(...ys);
    if (hi === lo) {
      lo -= 1;
      hi += 1;
    }
    const X = (v: number) => x0 + ((v - xlo) / (xhi - xlo || 1)) * PW;
    const Y = (v: number) => pad.t + PH - ((v - lo) / (hi - lo)) * PH;
    frame(g, x0, pad.t, PW, PH);
    g.fillStyle = "#000";
    g.font = "13px sans-serif";
    g.fillText(p.label, x0, pad.t - 10);
    g.font = "11px sans-serif";
    for (const v of x) g.fillText(String(v), X(v) - 6, pad.t + PH + 16);
    g.fillText(xLabel, x0 + PW / 2 - 20, pad.t + PH + 36);
    for (let t = 0; t <= 4; t++) {
      const v = lo + ((hi - lo) * t) / 4;
      g.fillText(fmt(v), x0 - 52, Y(v) + 4);
    }
    p.curves.forEach((cv, ci) => {
      const col = COLORS[ci % COLORS.length]!;
      g.strokeStyle = col;
      g.fillStyle = col;
      g.lineWidth = 2;
      g.beginPath();
      let started = false;
      cv.y.forEach((v, i) => {
        if (!Number.isFinite(v)) return;
        if (started) g.lineTo(X(x[i]!), Y(v));
        else g.moveTo(X(x[i]!), Y(v));
        started = true;
      });
      g.stroke();
      cv.y.forEach((v, i) => {
        if (Number.isFinite(v)) g.fillRect(X(x[i]!) - 3, Y(v) - 3, 6, 6);
      });
      if (p.curves.length > 1) g.fillText(cv.label, x0 + 8, pad.t + 16 + ci * 16);
    });
  });
  return c.toBuffer("image/png");
}
