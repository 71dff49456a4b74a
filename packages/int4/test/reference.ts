// Independent float64 reference quantizers for the tests: nearest-candidate search by exact distances
// instead of the implementation's closed-form rounding, written separately from src/.
import {
  bf16BitsToF32,
  e4m3BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToE4m3Bits,
  f32ToF16Bits,
} from "@svdquant/tensor";

export type RefFormat = "int4" | "uint4" | "nvfp4" | "fp4" | "mxfp4" | "int8" | "nf4";

export interface RefResult {
  codes: number[];
  scales: number[];
  values: number[];
  /** For nf4: rows × cols flags of elements that sit within 1e-6 of a decision point (ambiguous). */
  ambiguous?: boolean[];
}

const FP4_MAG = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
const NF4 = [
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
].map(Math.fround);

function roundTo(v: number, dt: string): number {
  if (dt === "BF16") return bf16BitsToF32(f32ToBf16Bits(v));
  if (dt === "F16") return f16BitsToF32(f32ToF16Bits(v));
  return Math.fround(v);
}

/** Nearest candidate to target by |target − value|; ties to the candidate whose tie-key is even. */
function nearest(
  target: number,
  cands: { code: number; value: number; tieKey: number }[],
): { code: number; value: number } {
  let best = cands[0]!;
  let bestD = Math.abs(target - best.value);
  for (const c of cands) {
    const d = Math.abs(target - c.value);
    if (d < bestD || (d === bestD && c.tieKey % 2 === 0 && best.tieKey % 2 !== 0)) {
      best = c;
      bestD = d;
    }
  }
  return best;
}

export function refQuantize(
  x: ArrayLike<number>,
  rows: number,
  cols: number,
  format: RefFormat,
  groupSize: number,
  scaleDtype?: string,
  globalScale?: number,
): RefResult {
  const g = groupSize === 0 ? cols : groupSize;
  const codes: number[] = [];
  const scales: number[] = [];
  const values: number[] = [];
  const ambiguous: boolean[] = [];
  const dt = scaleDtype ?? (format === "nf4" ? "F32" : "BF16");
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols / g; j++) {
      const grp: number[] = [];
      for (let k = 0; k < g; k++) grp.push(x[r * cols + j * g + k]!);
      const amax = Math.max(...grp.map(Math.abs));
      const vmax = Math.max(0, ...grp);
      let s: number;
      let sExact: number;
      if (format === "int4") s = roundTo(Math.fround(amax / 7), dt);
      else if (format === "uint4") s = roundTo(Math.fround(vmax / 15), dt);
      else if (format === "int8") s = roundTo(Math.fround(amax / 127), dt);
      else if (format === "nf4") s = roundTo(amax, dt);
      else if (format === "mxfp4") {
        if (amax === 0) s = 0;
        else {
          let e = 0;
          while (2 ** e > amax) e--;
          while (2 ** (e + 1) <= amax) e++;
          s = 2 ** Math.max(-127, e - 2);
        }
      } else {
        const raw = Math.fround(amax / 6);
        if (globalScale === undefined) s = e4m3BitsToF32(f32ToE4m3Bits(raw));
        else s = e4m3BitsToF32(f32ToE4m3Bits(Math.fround(raw / globalScale))) * globalScale;
      }
      sExact = s;
      s = Math.fround(s);
      scales.push(s);
      for (const v of grp) {
        if (sExact === 0) {
          codes.push(0);
          values.push(0);
          ambiguous.push(false);
          continue;
        }
        let cands: { code: number; value: number; tieKey: number }[];
        if (format === "int4" || format === "uint4" || format === "int8") {
          const lo = format === "int4" ? -8 : format === "int8" ? -128 : 0;
          const hi = format === "int4" ? 7 : format === "int8" ? 127 : 15;
          cands = [];
          for (let c = lo; c <= hi; c++) cands.push({ code: c, value: c * sExact, tieKey: c & 1 });
          const b = nearest(v, cands);
          codes.push(b.code);
          values.push(b.code * s);
          ambiguous.push(false);
        } else if (format === "nf4") {
          const xn = Math.fround(v * Math.fround(1 / s));
          cands = NF4.map((t, c) => ({ code: c, value: t, tieKey: 0 }));
          const b = nearest(xn, cands);
          let amb = false;
          for (let c = 0; c < 15; c++) if (Math.abs(xn - (NF4[c]! + NF4[c + 1]!) / 2) < 1e-6) amb = true;
          codes.push(b.code);
          values.push(NF4[b.code]! * s);
          ambiguous.push(amb);
        } else {
          cands = [];
          FP4_MAG.forEach((m, c) => {
            cands.push({ code: c, value: m * sExact, tieKey: c });
            if (c > 0) cands.push({ code: c | 8, value: -m * sExact, tieKey: c });
          });
          const b = nearest(v, cands);
          codes.push(b.code);
          values.push(FP4_MAG[b.code & 7]! * (b.code & 8 ? -1 : 1) * s);
          ambiguous.push(false);
        }
      }
    }
  }
  return { codes, scales, values, ambiguous };
}
