import { QuantError } from "./errors.js";

/**
 * Plain 4-bit packing: two codes per byte, low nibble first, row-major.
 *
 * | tensor | shape     | dtype | order                                                      |
 * | ------ | --------- | ----- | ---------------------------------------------------------- |
 * | codes  | [N, K]    | int8  | row-major; int4 in -8..7, uint4/E2M1/NF4 codes in 0..15    |
 * | packed | [N, K/2]  | uint8 | byte [n, j] = (codes[n, 2j] & 0xF) · (codes[n, 2j+1] « 4)  |
 *
 * K must be even. Signed codes are stored as their two's-complement nibble (−1 → 0xF).
 */
export function packNibbles(codes: Int8Array, rows: number, cols: number, name?: string): Uint8Array {
  if (cols % 2 !== 0)
    throw new QuantError("E_SHAPE", `nibble packing needs an even row length, got [${rows}, ${cols}]`, name);
  if (codes.length !== rows * cols)
    throw new QuantError(
      "E_SHAPE",
      `codes hold ${codes.length} values, shape [${rows}, ${cols}] needs ${rows * cols}`,
      name,
    );
  const out = new Uint8Array(codes.length >>> 1);
  for (let i = 0, j = 0; j < out.length; i += 2, j++) out[j] = (codes[i]! & 15) | ((codes[i + 1]! & 15) << 4);
  return out;
}

/** Inverse of packNibbles; `signed` sign-extends each nibble to −8..7 (int4), else 0..15. */
export function unpackNibbles(
  packed: Uint8Array | Int8Array,
  rows: number,
  cols: number,
  signed: boolean,
  name?: string,
): Int8Array {
  if (cols % 2 !== 0 || packed.length * 2 !== rows * cols)
    throw new QuantError(
      "E_SHAPE",
      `packed nibbles (${packed.length} bytes) do not fit shape [${rows}, ${cols}]`,
      name,
    );
  const out = new Int8Array(rows * cols);
  for (let j = 0, i = 0; j < packed.length; j++, i += 2) {
    const b = packed[j]! & 0xff;
    const lo = b & 15;
    const hi = b >>> 4;
    out[i] = signed ? (lo << 28) >> 28 : lo;
    out[i + 1] = signed ? (hi << 28) >> 28 : hi;
  }
  return out;
}
