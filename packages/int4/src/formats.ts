import { QuantError } from "./errors.js";

/**
 * Number formats of the quantizers.
 *
 * | format  | element                    | scale per group                          | default G | codes in `Quantized.codes` |
 * | ------- | -------------------------- | ---------------------------------------- | --------- | -------------------------- |
 * | `int4`  | signed int, [-8, 7]        | absmax/7 in `scaleDtype` (BF16)          | 64        | -8..7                      |
 * | `uint4` | unsigned int, [0, 15]      | max/15 in `scaleDtype` (BF16)            | 64        | 0..15                      |
 * | `nvfp4` | FP4 E2M1                   | E4M3 of amax/6 (≤ 448) × optional f32 global | 16 (fixed) | 4-bit E2M1 code 0..15  |
 * | `fp4`   | FP4 E2M1                   | E4M3 of amax/6 (≤ 448)                   | 32        | 4-bit E2M1 code 0..15      |
 * | `mxfp4` | FP4 E2M1                   | E8M0 2^(floor(log2 amax) − 2)            | 32 (fixed) | 4-bit E2M1 code 0..15     |
 * | `int8`  | signed int, [-128, 127]    | absmax/127 in `scaleDtype` (BF16)        | 0 (per row) | -128..127                |
 * | `nf4`   | NormalFloat4 table index   | absmax in `scaleDtype` (F32)             | 64        | 0..15 (table index)        |
 * | `int4p2`| signed int, [-8, 7]        | f32 row scale S × 2^e, e in [−9, 5] (p2.ts) | 64     | -8..7                      |
 *
 * Sources: SVDQuant §3 and §5 (INT4 g64, NVFP4 g16, FP W4A4 g32); NVIDIA PTX ISA (e2m1, ue4m3 block scales);
 * OCP Microscaling Formats (MX) v1.0 §5.2, §6.3 (MXFP4, E8M0); QLoRA (Dettmers et al. 2023) appendix E and
 * bitsandbytes csrc/kernels.cu (NF4 table and decision tree). `int4p2` is this project's opt-in Hopper variant
 * (issue 16; p2.ts): q·2^e is exact in FP8 E4M3, so a layer is a plain FP8 GEMM with per-row × per-column scales.
 */
export type QuantFormat = "int4" | "uint4" | "nvfp4" | "fp4" | "mxfp4" | "int8" | "nf4" | "int4p2";

export const QUANT_FORMATS: readonly QuantFormat[] = [
  "int4",
  "uint4",
  "nvfp4",
  "fp4",
  "mxfp4",
  "int8",
  "nf4",
  "int4p2",
];

/** Storage dtype of the scales of the integer-like formats (int4, uint4, int8, nf4). */
export type ScaleDType = "BF16" | "F16" | "F32";

export interface QuantSpec {
  format: QuantFormat;
  /** Elements per scale along the row (the K axis); 0 = one scale per row (per-channel / per-token INT8). */
  groupSize: number;
  /**
   * Storage dtype the int4/uint4/int8/nf4 scales are rounded to before codes are computed
   * ("BF16" | "F16" | "F32"; default "BF16", "F32" for nf4 as bitsandbytes keeps absmax in float32).
   * Ignored by the FP4 formats, whose scales are E4M3 or E8M0 by definition.
   */
  scaleDtype?: ScaleDType;
  /**
   * nvfp4 only: optional per-tensor float32 scale (global scale). The value is x ≈ e2m1 × e4m3 × globalScale,
   * so the E4M3 block scale stores amax/6/globalScale (nunchaku's `wtscale` convention). See `nvfp4GlobalScale`.
   */
  globalScale?: number;
  /** int4p2 only: how the row scale S is chosen ("max" default, "pow2" as the GPU activation kernel; p2.ts). */
  p2RowScale?: "max" | "pow2";
  /** int4p2 only: pick each group's exponent as the better of ⌈·⌉ and ⌈·⌉ − 1 by squared error (default true). */
  p2Search?: boolean;
}

export interface Quantized {
  spec: QuantSpec;
  rows: number;
  cols: number;
  /** One code per element, row-major [rows, cols], unpacked; uint4/nf4 in 0..15; FP4 formats as the 4-bit E2M1 code. */
  codes: Int8Array;
  /** Decoded scale values, row-major [rows, cols/groupSize] ([rows, 1] for groupSize 0). */
  scales: Float32Array;
  /** int4p2 only: the row scales S [rows] (f32); scales = S·2^e. */
  rowScales?: Float32Array;
  /** int4p2 only: the group exponents e [rows, cols/groupSize] in [−9, 5]. */
  exponents?: Int8Array;
}

/** Facts of a format used by the quantizers and packers. */
export interface FormatInfo {
  /** Group size used when none is given; 0 = per row. */
  defaultGroupSize: number;
  /** The only group size the format allows, or undefined when any is allowed. */
  fixedGroupSize?: number;
  /** Bits per code. */
  bits: 4 | 8;
  /** Smallest and largest code. */
  minCode: number;
  maxCode: number;
  /** Default storage of the scales. */
  defaultScaleDtype: ScaleDType | "E4M3" | "E8M0";
}

export const FORMAT_INFO: Readonly<Record<QuantFormat, FormatInfo>> = {
  int4: { defaultGroupSize: 64, bits: 4, minCode: -8, maxCode: 7, defaultScaleDtype: "BF16" },
  uint4: { defaultGroupSize: 64, bits: 4, minCode: 0, maxCode: 15, defaultScaleDtype: "BF16" },
  nvfp4: { defaultGroupSize: 16, fixedGroupSize: 16, bits: 4, minCode: 0, maxCode: 15, defaultScaleDtype: "E4M3" },
  fp4: { defaultGroupSize: 32, bits: 4, minCode: 0, maxCode: 15, defaultScaleDtype: "E4M3" },
  mxfp4: { defaultGroupSize: 32, fixedGroupSize: 32, bits: 4, minCode: 0, maxCode: 15, defaultScaleDtype: "E8M0" },
  int8: { defaultGroupSize: 0, bits: 8, minCode: -128, maxCode: 127, defaultScaleDtype: "BF16" },
  nf4: { defaultGroupSize: 64, bits: 4, minCode: 0, maxCode: 15, defaultScaleDtype: "F32" },
  int4p2: { defaultGroupSize: 64, bits: 4, minCode: -8, maxCode: 7, defaultScaleDtype: "F32" },
};

/** The spec a format uses in SVDQuant / its reference when nothing else is said (e.g. `specFor("int4")`). */
export function specFor(format: QuantFormat, overrides: Partial<Omit<QuantSpec, "format">> = {}): QuantSpec {
  const info = FORMAT_INFO[format];
  if (info === undefined) throw new QuantError("E_ARGUMENT", `unknown quantization format "${String(format)}"`);
  return { format, groupSize: info.defaultGroupSize, ...overrides };
}

/** The scale storage dtype a spec resolves to for the int-like formats. */
export function scaleDtypeOf(spec: QuantSpec): ScaleDType {
  return spec.scaleDtype ?? (spec.format === "nf4" || spec.format === "int4p2" ? "F32" : "BF16");
}

/**
 * Checks a spec against a row length and returns the effective group size (cols for groupSize 0).
 * Errors: unknown format, bad group size, cols not a multiple of the group (SVDQuant pads K to a multiple
 * of 128 before quantizing, so a partial group is a caller error, not something to pad silently).
 */
export function checkSpec(spec: QuantSpec, rows: number, cols: number, name?: string): number {
  const info = FORMAT_INFO[spec?.format];
  if (info === undefined)
    throw new QuantError("E_ARGUMENT", `unknown quantization format "${String(spec?.format)}"`, name);
  const g = spec.groupSize;
  if (!Number.isInteger(g) || g < 0)
    throw new QuantError("E_ARGUMENT", `${spec.format}: group size must be an integer ≥ 0, got ${g}`, name);
  if (info.fixedGroupSize !== undefined && g !== info.fixedGroupSize)
    throw new QuantError(
      "E_ARGUMENT",
      `${spec.format}: the format defines groups of ${info.fixedGroupSize}, got groupSize ${g}`,
      name,
    );
  if ((spec.format === "fp4" || spec.format === "nvfp4" || spec.format === "mxfp4") && g === 0)
    throw new QuantError("E_ARGUMENT", `${spec.format}: per-row scales (groupSize 0) are not defined for FP4`, name);
  if (spec.format === "int4p2" && g === 0)
    throw new QuantError(
      "E_ARGUMENT",
      "int4p2: groups along the row are the format (groupSize 0 is plain per-row int4)",
      name,
    );
  if (spec.format === "int4p2" && spec.scaleDtype !== undefined && spec.scaleDtype !== "F32")
    throw new QuantError(
      "E_ARGUMENT",
      `int4p2: the row scale is float32 by definition, got scaleDtype ${spec.scaleDtype}`,
      name,
    );
  if (spec.format !== "int4p2" && (spec.p2RowScale !== undefined || spec.p2Search !== undefined))
    throw new QuantError("E_ARGUMENT", `p2RowScale / p2Search apply to int4p2 only, not ${spec.format}`, name);
  if (spec.p2RowScale !== undefined && spec.p2RowScale !== "max" && spec.p2RowScale !== "pow2")
    throw new QuantError("E_ARGUMENT", `p2RowScale must be "max" or "pow2", got ${String(spec.p2RowScale)}`, name);
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0)
    throw new QuantError("E_SHAPE", `bad shape [${rows}, ${cols}]`, name);
  const eff = g === 0 ? cols : g;
  if (g !== 0 && cols % g !== 0)
    throw new QuantError(
      "E_SHAPE",
      `shape [${rows}, ${cols}]: cols ${cols} is not a multiple of the group size ${g} (pad K first; SVDQuant pads K to a multiple of 128)`,
      name,
    );
  if (spec.scaleDtype !== undefined && !["BF16", "F16", "F32"].includes(spec.scaleDtype))
    throw new QuantError("E_ARGUMENT", `scaleDtype must be BF16, F16 or F32, got ${String(spec.scaleDtype)}`, name);
  if (spec.globalScale !== undefined) {
    if (spec.format !== "nvfp4")
      throw new QuantError("E_ARGUMENT", `globalScale applies to nvfp4 only, not ${spec.format}`, name);
    const gs = spec.globalScale;
    if (!Number.isFinite(gs) || gs <= 0 || Math.fround(gs) === 0 || !Number.isFinite(Math.fround(gs)))
      throw new QuantError("E_ARGUMENT", `nvfp4 globalScale must be a positive finite float32, got ${gs}`, name);
  }
  return eff;
}
