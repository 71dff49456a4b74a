import { QuantError } from "./errors.js";
import { checkSpec, type Quantized, type QuantSpec, scaleDtypeOf } from "./formats.js";
import { quantize } from "./quantize.js";
import { roundScale } from "./scales.js";

type Floats = Float32Array | Float64Array;

/**
 * Dynamic activation quantization, the runtime path of W4A4 inference: each token (row of X [M, K]) gets its
 * own scale per group of G along K, computed from the values at hand (SVDQuant §5.1: INT4 g64 / NVFP4 g16
 * per-token-group activations). Same numerics as `quantize`; named for the call sites that quantize inputs.
 *
 * | tensor | shape       | dtype   | order                         |
 * | ------ | ----------- | ------- | ----------------------------- |
 * | x      | [M, K]      | f32/f64 | row-major, tokens × features  |
 * | codes  | [M, K]      | int8    | one code per element          |
 * | scales | [M, K/G]    | f32     | decoded scales, row-major     |
 */
export function quantizeActivations(x: Floats, M: number, K: number, spec: QuantSpec, name?: string): Quantized {
  return quantize(x, M, K, spec, name);
}

const STATIC_QMAX = { int4: 7, uint4: 15, int8: 127 } as const;
type StaticFormat = keyof typeof STATIC_QMAX;

function staticFormat(spec: QuantSpec, name?: string): StaticFormat {
  if (spec.format in STATIC_QMAX) return spec.format as StaticFormat;
  throw new QuantError(
    "E_ARGUMENT",
    `static per-tensor quantization supports int4, uint4 and int8, not ${spec.format}`,
    name,
  );
}

/**
 * Static per-tensor scale from calibration data: absmax/7 (int4), max/15 (uint4) or absmax/127 (int8) over the
 * whole tensor, rounded to the spec's scale dtype. Feed it to `quantizeStatic` for every later batch.
 */
export function calibrateStaticScale(x: Floats, spec: QuantSpec, name?: string): number {
  const fmt = staticFormat(spec, name);
  let m = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (!Number.isFinite(v)) throw new QuantError("E_NONFINITE", `non-finite value ${v} at flat index ${i}`, name);
    const a = fmt === "uint4" ? v : Math.abs(v);
    if (a > m) m = a;
  }
  const s = roundScale(Math.fround(Math.fround(m) / STATIC_QMAX[fmt]), scaleDtypeOf(spec));
  if (!Number.isFinite(s))
    throw new QuantError("E_RANGE", `static scale of absmax ${m} overflows ${scaleDtypeOf(spec)}`, name);
  return s;
}

/**
 * Static per-tensor quantization of X [M, K] with a fixed, calibrated scale: codes = round-half-even(x / scale)
 * clamped to the format's range (values beyond the calibration range saturate). The result has groupSize 0
 * and every row's scale equal to `scale`, so `dequantize` applies.
 */
export function quantizeStatic(
  x: Floats,
  M: number,
  K: number,
  spec: QuantSpec,
  scale: number,
  name?: string,
): Quantized {
  const fmt = staticFormat(spec, name);
  const s: QuantSpec = { ...spec, groupSize: 0 };
  checkSpec(s, M, K, name);
  if (x.length !== M * K)
    throw new QuantError("E_SHAPE", `buffer holds ${x.length} values, shape [${M}, ${K}] needs ${M * K}`, name);
  if (!(scale >= 0) || !Number.isFinite(scale) || Math.fround(scale) !== scale)
    throw new QuantError("E_ARGUMENT", `static scale must be a finite float32 ≥ 0, got ${scale}`, name);
  const lo = fmt === "int4" ? -8 : fmt === "int8" ? -128 : 0;
  const hi = fmt === "int4" ? 7 : fmt === "int8" ? 127 : 15;
  const codes = new Int8Array(M * K);
  for (let i = 0; i < codes.length; i++) {
    const v = x[i]!;
    if (!Number.isFinite(v))
      throw new QuantError(
        "E_NONFINITE",
        `non-finite value ${v} at [${(i / K) | 0}, ${i % K}] of shape [${M}, ${K}]`,
        name,
      );
    if (scale === 0) continue;
    let q = v / scale + 6755399441055744 - 6755399441055744; // round half to even (float64)
    q = q < lo ? lo : Math.min(q, hi);
    codes[i] = q;
  }
  return { spec: s, rows: M, cols: K, codes, scales: new Float32Array(M).fill(scale) };
}
