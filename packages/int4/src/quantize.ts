import { QuantError } from "./errors.js";
import { checkSpec, type Quantized, type QuantSpec, type ScaleDType, scaleDtypeOf } from "./formats.js";
import { quantizeRowP2 } from "./p2.js";
import { mxSharedExponent, roundE4m3, roundScale } from "./scales.js";
import { E2M1_VALUES, NF4_VALUES, nf4Code } from "./tables.js";

type Floats = Float32Array | Float64Array;

/** 1.5 · 2^52: (q + RHE) − RHE rounds q half to even in float64 for |q| < 2^51. */
const RHE = 6755399441055744;

/**
 * Shared loop of quantize / fakeQuantize: per row, per group along the row, compute the group scale, then
 * each element's code; writes codes, decoded scales and/or the dequantized values (any may be null).
 *
 * Numerics (all formats): the input is read as float32/float64 values; the raw scale (absmax/7, amax/6, …)
 * is computed in float32 as a float32 PyTorch reference would; it is rounded to its storage format; each
 * code is chosen from the exact quotient x / scale (float64 division, so ties are real ties); the
 * dequantized value is code value × scale (exact in float64; rounded once when stored to float32).
 * A scale of 0 (all-zero group, or a scale that underflows its storage format) gives codes 0 (value 0).
 */
function run(
  x: Floats,
  rows: number,
  cols: number,
  spec: QuantSpec,
  name: string | undefined,
  codes: Int8Array | null,
  scales: Float32Array | null,
  dq: Floats | null,
  parts: { rowScales: Float32Array; exponents: Int8Array } | null = null,
): void {
  const g = checkSpec(spec, rows, cols, name);
  if (x.length !== rows * cols)
    throw new QuantError(
      "E_SHAPE",
      `buffer holds ${x.length} values, shape [${rows}, ${cols}] needs ${rows * cols}`,
      name,
    );
  if (rows === 0 || cols === 0) return;
  const groups = cols / g;
  const fmt = spec.format;
  if (fmt === "int4p2") {
    // per row: the row scale depends on every group of the row (p2.ts)
    for (let r = 0; r < rows; r++) quantizeRowP2(x, r, cols, g, spec, codes, scales, dq, parts, name);
    return;
  }
  const sdt: ScaleDType = scaleDtypeOf(spec);
  const gs = spec.globalScale;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < groups; j++) {
      const base = r * cols + j * g;
      const end = base + g;
      // Group statistics; `nan` becomes NaN if any element is NaN or ±Inf (v·0 is NaN for those).
      let amax = 0;
      let vmax = 0;
      let nan = 0;
      for (let i = base; i < end; i++) {
        const v = x[i]!;
        nan += v * 0;
        const a = v < 0 ? -v : v;
        if (a > amax) amax = a;
        if (v > vmax) vmax = v;
      }
      if (nan !== 0) {
        let bad = base;
        while (Number.isFinite(x[bad]!)) bad++;
        const c = bad - r * cols;
        throw new QuantError(
          "E_NONFINITE",
          `non-finite value ${x[bad]} at [${r}, ${c}] of shape [${rows}, ${cols}]`,
          name,
        );
      }
      let scale: number; // decoded scale (float32 value)
      let sq = 0; // scale the quotient x / sq is taken against (nvfp4 with a global scale: e4m3 × global, exact)
      if (fmt === "int4" || fmt === "int8" || fmt === "uint4" || fmt === "nf4") {
        const raw =
          fmt === "int4"
            ? Math.fround(Math.fround(amax) / 7) // SVDQuant §3: symmetric INT4, scale = absmax / 7
            : fmt === "int8"
              ? Math.fround(Math.fround(amax) / 127)
              : fmt === "uint4"
                ? Math.fround(Math.fround(vmax) / 15) // unsigned: scale = max / 15 (inputs ≥ 0)
                : Math.fround(amax); // NF4: absmax (QLoRA §3)
        scale = roundScale(raw, sdt);
        if (scale === Number.POSITIVE_INFINITY)
          throw new QuantError(
            "E_RANGE",
            `row ${r}, group ${j}: scale ${raw} overflows ${sdt} (absmax ${amax}); store the scales in a wider dtype`,
            name,
          );
      } else if (fmt === "mxfp4") {
        scale = sq = amax === 0 ? 0 : 2 ** mxSharedExponent(Math.fround(amax));
      } else {
        // nvfp4 / fp4: E4M3 scale of amax/6 (6 = largest E2M1 value), saturated at 448; nvfp4 × global scale.
        const raw = Math.fround(Math.fround(amax) / 6);
        if (gs === undefined) scale = sq = roundE4m3(raw);
        else {
          sq = roundE4m3(Math.fround(raw / Math.fround(gs))) * Math.fround(gs);
          scale = Math.fround(sq);
        }
      }
      if (scales !== null) scales[r * groups + j] = scale;
      if (scale === 0) {
        if (codes !== null) codes.fill(0, base, end);
        if (dq !== null) dq.fill(0, base, end);
        continue;
      }
      if (fmt === "int4" || fmt === "int8" || fmt === "uint4") {
        const lo = fmt === "int4" ? -8 : fmt === "int8" ? -128 : 0;
        const hi = fmt === "int4" ? 7 : fmt === "int8" ? 127 : 15;
        for (let i = base; i < end; i++) {
          let q = x[i]! / scale + RHE - RHE;
          q = q < lo ? lo : Math.min(q, hi);
          if (codes !== null) codes[i] = q;
          if (dq !== null) dq[i] = q * scale;
        }
      } else if (fmt === "nf4") {
        const inv = Math.fround(1 / scale); // bitsandbytes multiplies by 1/absmax in float32
        for (let i = base; i < end; i++) {
          const c = nf4Code(Math.fround(x[i]! * inv));
          if (codes !== null) codes[i] = c;
          if (dq !== null) dq[i] = NF4_VALUES[c]! * scale;
        }
      } else {
        for (let i = base; i < end; i++) {
          const q = x[i]! / sq;
          const a = q < 0 ? -q : q;
          // E2M1 round-to-nearest-even with saturation (see tables.ts e2m1Code); inlined for speed.
          let c: number;
          if (a <= 1.25) c = a <= 0.25 ? 0 : a < 0.75 ? 1 : 2;
          else if (a <= 2.5) c = a < 1.75 ? 3 : 4;
          else c = a < 3.5 ? 5 : a <= 5 ? 6 : 7;
          if (c !== 0 && q < 0) c |= 8;
          if (codes !== null) codes[i] = c;
          if (dq !== null) dq[i] = E2M1_VALUES[c]! * scale;
        }
      }
    }
  }
}

function scalesLength(spec: QuantSpec, rows: number, cols: number): number {
  return spec.groupSize === 0 ? rows : (rows * cols) / spec.groupSize;
}

/**
 * Quantizes each row of a row-major [rows, cols] matrix in groups of `spec.groupSize` along the row.
 * Rows are the output channels N of a weight [N, K] or the tokens M of an activation [M, K].
 * Errors (QuantError): NaN/±Inf in x (E_NONFINITE, naming `name` and the element), cols not a multiple of the
 * group (E_SHAPE), a scale beyond its storage dtype (E_RANGE), a bad spec (E_ARGUMENT).
 */
export function quantize(x: Floats, rows: number, cols: number, spec: QuantSpec, name?: string): Quantized {
  checkSpec(spec, rows, cols, name);
  const codes = new Int8Array(rows * cols);
  const scales = new Float32Array(scalesLength(spec, rows, cols));
  if (spec.format === "int4p2") {
    const parts = { rowScales: new Float32Array(rows), exponents: new Int8Array(scales.length) };
    run(x, rows, cols, spec, name, codes, scales, null, parts);
    return { spec: { ...spec }, rows, cols, codes, scales, ...parts };
  }
  run(x, rows, cols, spec, name, codes, scales, null);
  return { spec: { ...spec }, rows, cols, codes, scales };
}

/** The value of each code times its group scale, row-major [rows, cols] float32. */
export function dequantize(q: Quantized): Float32Array {
  const { rows, cols, codes, scales, spec } = q;
  const g = checkSpec(spec, rows, cols);
  if (codes.length !== rows * cols || scales.length !== scalesLength(spec, rows, cols))
    throw new QuantError(
      "E_SHAPE",
      `codes (${codes.length}) / scales (${scales.length}) do not match shape [${rows}, ${cols}] with group ${spec.groupSize}`,
    );
  const out = new Float32Array(rows * cols);
  const fmt = spec.format;
  const table =
    fmt === "nf4"
      ? NF4_VALUES
      : fmt === "int4" || fmt === "uint4" || fmt === "int8" || fmt === "int4p2"
        ? null
        : E2M1_VALUES;
  const lo = fmt === "int4" || fmt === "int4p2" ? -8 : fmt === "int8" ? -128 : 0;
  const hi = fmt === "int4" || fmt === "int4p2" ? 7 : fmt === "int8" ? 127 : 15;
  for (let i = 0, n = rows * cols; i < n; i++) {
    const c = codes[i]!;
    if (c < lo || c > hi)
      throw new QuantError("E_CODE", `${fmt} code ${c} at flat index ${i} is outside [${lo}, ${hi}]`);
    const s = scales[(i / g) | 0]!;
    out[i] = (table === null ? c : table[c]!) * s;
  }
  return out;
}

/**
 * quantize→dequantize along each row of a row-major [rows, cols] matrix, fused (no code buffer);
 * returns a new array of the same type as x. Equal to dequantize(quantize(x)) for float32 input.
 */
export function fakeQuantize<T extends Floats>(x: T, rows: number, cols: number, spec: QuantSpec, name?: string): T {
  checkSpec(spec, rows, cols, name);
  const out = (x instanceof Float64Array ? new Float64Array(x.length) : new Float32Array(x.length)) as T;
  run(x, rows, cols, spec, name, null, null, out);
  return out;
}

/** fakeQuantize writing into `out` (may be x itself, for in-place simulation). Returns out. */
export function fakeQuantizeInto<T extends Floats>(
  x: Floats,
  rows: number,
  cols: number,
  spec: QuantSpec,
  out: T,
  name?: string,
): T {
  if (out.length !== x.length)
    throw new QuantError("E_SHAPE", `output holds ${out.length} values, input ${x.length}`, name);
  run(x, rows, cols, spec, name, null, null, out);
  return out;
}

/** Codes and scales into caller-owned buffers (codes [rows·cols], scales [rows·cols/G]); no allocation. */
export function quantizeInto(
  x: Floats,
  rows: number,
  cols: number,
  spec: QuantSpec,
  codes: Int8Array,
  scales: Float32Array,
  name?: string,
): void {
  checkSpec(spec, rows, cols, name);
  if (codes.length !== rows * cols || scales.length !== scalesLength(spec, rows, cols))
    throw new QuantError("E_SHAPE", `codes/scales buffers do not fit shape [${rows}, ${cols}]`, name);
  run(x, rows, cols, spec, name, codes, scales, null);
}

/** INT4 symmetric, groups of 64 along K, BF16 scales: SVDQuant's W4A4 INT4 setting (§5.1). */
export function quantizeInt4(
  x: Floats,
  rows: number,
  cols: number,
  opts: { groupSize?: number; scaleDtype?: ScaleDType; name?: string } = {},
): Quantized {
  const spec: QuantSpec = { format: "int4", groupSize: opts.groupSize ?? 64 };
  if (opts.scaleDtype !== undefined) spec.scaleDtype = opts.scaleDtype;
  return quantize(x, rows, cols, spec, opts.name);
}

/** dequantize for an int4 `Quantized` (checks the format). */
export function dequantizeInt4(q: Quantized): Float32Array {
  if (q.spec.format !== "int4") throw new QuantError("E_ARGUMENT", `dequantizeInt4 got a ${q.spec.format} tensor`);
  return dequantize(q);
}

/**
 * A per-tensor NVFP4 global scale for x: amax / (448 · 6), so that the largest block scale amax/6/global
 * lands on E4M3's maximum 448 (NVIDIA's two-level NVFP4 recipe). Rounded up to `dtype` ("BF16" default, the
 * dtype nunchaku stores `wtscale` in; "F32" keeps it) so no block scale saturates. 1 for an all-zero x.
 */
export function nvfp4GlobalScale(x: Floats, dtype: ScaleDType = "BF16", name?: string): number {
  let amax = 0;
  for (let i = 0; i < x.length; i++) {
    const a = Math.abs(x[i]!);
    if (!(a < Number.POSITIVE_INFINITY))
      throw new QuantError("E_NONFINITE", `non-finite value ${x[i]} at flat index ${i}`, name);
    if (a > amax) amax = a;
  }
  if (amax === 0) return 1;
  const raw = Math.fround(Math.fround(amax) / (448 * 6)); // E4M3_MAX · E2M1_MAX
  let g = roundScale(raw, dtype);
  if (g < raw)
    g = roundScale(raw * (dtype === "BF16" ? 1 + 2 ** -8 : dtype === "F16" ? 1 + 2 ** -11 : 1 + 2 ** -24), dtype);
  if (g === 0 || !Number.isFinite(g))
    throw new QuantError("E_RANGE", `global scale of amax ${amax} does not fit ${dtype}`, name);
  return g;
}
