// A whole int4p2 W4A4 layer (p2.ts) ↔ the tensors of a checkpoint. int4p2 is this project's opt-in Hopper format:
// no published engine reads it, so its tensors are plain row-major arrays (no MMA-fragment permutation, no padding).
import { decodeToFloat32, encodeFloats, Tensor } from "@svdquant/tensor";
import { QuantError } from "./errors.js";
import { specFor } from "./formats.js";
import { packNibbles, unpackNibbles } from "./nibbles.js";
import { P2_EXP_MAX, P2_EXP_MIN } from "./p2.js";
import { activationSpecFor, INT4_GROUP_SIZE, type QuantizedLinear } from "./record.js";

/** 16-bit storage of the layer's vectors and low-rank branch. */
export type P2HalfDType = "BF16" | "F16";

/** Suffixes of an int4p2 layer's tensors (`<layer>.<suffix>`), in the order packP2Layer writes them. */
export const P2_LAYER_TENSORS = [
  "p2_codes",
  "p2_exponents",
  "p2_wscale",
  "proj_down",
  "proj_up",
  "smooth_factor",
  "bias",
] as const;

/**
 * Packs an int4p2 W4A4 layer (residual from quantize(…, specFor("int4p2")), N out, K in, G = 64, R rank) into
 * checkpoint tensors; K must be a multiple of G, nothing is padded:
 *
 * | name          | shape     | dtype    | meaning                                                                 |
 * | ------------- | --------- | -------- | ----------------------------------------------------------------------- |
 * | p2_codes      | [N, K/2]  | U8       | packNibbles of the residual codes q ∈ [−8, 7] (low nibble = even k)      |
 * | p2_exponents  | [N, K/G]  | I8       | group exponents e ∈ [−9, 5]: group scale = S_w[n]·2^e                    |
 * | p2_wscale     | [N]       | F32      | S_w, the row scales                                                     |
 * | proj_down     | [R, K]    | BF16/F16 | lowRankDown (1/λ folded in: the branch reads the raw x), row-major      |
 * | proj_up       | [N, R]    | BF16/F16 | lowRankUp, row-major                                                    |
 * | smooth_factor | [K]       | BF16/F16 | λ (the 4-bit path divides x by it); absent when the layer has none      |
 * | bias          | [N]       | BF16/F16 | bias; absent when the layer has none                                    |
 *
 * Activations are int4p2 with power-of-two row scales ("pow2", signed, no shift) at run time; R = 0 writes no
 * proj_down / proj_up. λ must be exactly representable in `dtype` (the pipeline searches it in BF16), since the
 * residual was quantized against it; the branch and bias are rounded to `dtype`.
 */
export function packP2Layer(
  layer: QuantizedLinear,
  opts: { dtype?: P2HalfDType; name?: string } = {},
): Record<string, Tensor> {
  const dtype = opts.dtype ?? "BF16";
  const name = opts.name ?? layer.name;
  const q = layer.residual;
  if (q.spec.format !== "int4p2" || q.rowScales === undefined || q.exponents === undefined)
    throw new QuantError("E_ARGUMENT", `an int4p2 layer needs an int4p2 residual, got ${q.spec.format}`, name);
  if (q.spec.groupSize !== INT4_GROUP_SIZE)
    throw new QuantError("E_ARGUMENT", `int4p2 layers use groups of ${INT4_GROUP_SIZE}, got ${q.spec.groupSize}`, name);
  if (layer.act.shift !== 0)
    throw new QuantError(
      "E_ARGUMENT",
      `int4p2 activations are signed with no shift, got shift ${layer.act.shift}`,
      name,
    );
  const N = q.rows;
  const K = q.cols;
  const R = layer.rank;
  const G = K / INT4_GROUP_SIZE;
  if (q.codes.length !== N * K || q.rowScales.length !== N || q.exponents.length !== N * G)
    throw new QuantError(
      "E_SHAPE",
      `residual parts do not fit [N=${N}, K=${K}]: ${q.codes.length} codes, ${q.rowScales.length} row scales, ${q.exponents.length} exponents`,
      name,
    );
  if (layer.lowRankDown.length !== R * K || layer.lowRankUp.length !== N * R)
    throw new QuantError("E_SHAPE", `lowRankDown must be [R=${R}, K=${K}] and lowRankUp [N=${N}, R=${R}]`, name);
  const out: Record<string, Tensor> = {
    p2_codes: new Tensor("U8", [N, K / 2], packNibbles(q.codes, N, K, name)),
    p2_exponents: new Tensor("I8", [N, G], Int8Array.from(q.exponents)),
    p2_wscale: new Tensor("F32", [N], Float32Array.from(q.rowScales)),
  };
  if (R > 0) {
    out.proj_down = new Tensor(dtype, [R, K], encodeFloats(dtype, layer.lowRankDown) as Uint16Array);
    out.proj_up = new Tensor(dtype, [N, R], encodeFloats(dtype, layer.lowRankUp) as Uint16Array);
  }
  if (layer.smooth !== undefined) {
    if (layer.smooth.length !== K) throw new QuantError("E_SHAPE", `smooth must have K = ${K} values`, name);
    const bits = encodeFloats(dtype, layer.smooth) as Uint16Array;
    const back = decodeToFloat32(dtype, bits);
    for (let i = 0; i < K; i++)
      if (back[i] !== layer.smooth[i])
        throw new QuantError(
          "E_ARGUMENT",
          `smooth value ${layer.smooth[i]} at ${i} is not a ${dtype} value (the residual was quantized against it)`,
          name,
        );
    out.smooth_factor = new Tensor(dtype, [K], bits);
  }
  if (layer.bias !== undefined) {
    if (layer.bias.length !== N) throw new QuantError("E_SHAPE", `bias must have N = ${N} values`, name);
    out.bias = new Tensor(dtype, [N], encodeFloats(dtype, layer.bias) as Uint16Array);
  }
  return out;
}

/**
 * Inverse of packP2Layer: the layer as a QuantizedLinear (values in float32; the residual carries rowScales,
 * exponents and decoded scales S_w·2^e, 0 for a group whose codes are all 0 at e = −9). Every tensor is checked
 * (dtype, shape against p2_codes' [N, K/2], exponents in [−9, 5], finite positive-or-zero row scales); faults throw
 * one QuantError line naming `<name>.<tensor>`.
 */
export function unpackP2Layer(
  tensors: Readonly<Record<string, Tensor>> | ReadonlyMap<string, Tensor>,
  opts: { name?: string } = {},
): QuantizedLinear {
  const get = (k: string) => (tensors instanceof Map ? tensors.get(k) : (tensors as Record<string, Tensor>)[k]);
  const name = opts.name;
  const at = (k: string) => (name !== undefined ? `${name}.${k}` : k);
  const need = (k: string): Tensor => {
    const t = get(k);
    if (t === undefined) throw new QuantError("E_CODE", "missing tensor of an int4p2 layer", at(k));
    return t;
  };
  const check = (k: string, t: Tensor, dtypes: readonly string[], shape: readonly number[]) => {
    if (!dtypes.includes(t.dtype) || t.shape.length !== shape.length || t.shape.some((v, i) => v !== shape[i]))
      throw new QuantError(
        "E_CODE",
        `${t.dtype} [${t.shape.join(", ")}], expected ${dtypes.join("/")} [${shape.join(", ")}]`,
        at(k),
      );
  };
  const codesT = need("p2_codes");
  if (codesT.rank !== 2 || (codesT.dtype !== "U8" && codesT.dtype !== "I8"))
    throw new QuantError(
      "E_CODE",
      `${codesT.dtype} [${codesT.shape.join(", ")}], expected U8 [N, K/2]`,
      at("p2_codes"),
    );
  const N = codesT.shape[0]!;
  const K = codesT.shape[1]! * 2;
  if (K % INT4_GROUP_SIZE !== 0)
    throw new QuantError("E_SHAPE", `K = ${K} is not a multiple of the group size ${INT4_GROUP_SIZE}`, at("p2_codes"));
  const G = K / INT4_GROUP_SIZE;
  const expT = need("p2_exponents");
  check("p2_exponents", expT, ["I8"], [N, G]);
  const wsT = need("p2_wscale");
  check("p2_wscale", wsT, ["F32"], [N]);
  const codes = unpackNibbles(codesT.data as Uint8Array, N, K, true, at("p2_codes"));
  const exponents = Int8Array.from(expT.data as Int8Array);
  const rowScales = Float32Array.from(wsT.data as Float32Array);
  for (let n = 0; n < N; n++)
    if (!(rowScales[n]! >= 0) || !Number.isFinite(rowScales[n]!))
      throw new QuantError("E_CODE", `row scale ${rowScales[n]} at ${n} is not finite and ≥ 0`, at("p2_wscale"));
  const scales = new Float32Array(N * G);
  for (let i = 0; i < N * G; i++) {
    const e = exponents[i]!;
    if (e < P2_EXP_MIN || e > P2_EXP_MAX)
      throw new QuantError(
        "E_CODE",
        `exponent ${e} at ${i} is outside [${P2_EXP_MIN}, ${P2_EXP_MAX}]`,
        at("p2_exponents"),
      );
    let zero = e === P2_EXP_MIN;
    for (let k = i * INT4_GROUP_SIZE, end = k + INT4_GROUP_SIZE; zero && k < end; k++) zero = codes[k] === 0;
    scales[i] = zero ? 0 : rowScales[(i / G) | 0]! * 2 ** e; // exact: S_w is float32, 2^e in range
  }
  const half = ["BF16", "F16", "F32"] as const;
  const pd = get("proj_down");
  const pu = get("proj_up");
  if ((pd === undefined) !== (pu === undefined))
    throw new QuantError(
      "E_CODE",
      "proj_down and proj_up come together",
      at(pd === undefined ? "proj_down" : "proj_up"),
    );
  let R = 0;
  let lowRankDown: Float32Array = new Float32Array(0);
  let lowRankUp: Float32Array = new Float32Array(0);
  if (pd !== undefined && pu !== undefined) {
    R = pd.shape[0] ?? 0;
    check("proj_down", pd, half, [R, K]);
    check("proj_up", pu, half, [N, R]);
    lowRankDown = decodeToFloat32(pd.dtype, pd.data);
    lowRankUp = decodeToFloat32(pu.dtype, pu.data);
  }
  const vector = (k: string, len: number): Float32Array | undefined => {
    const t = get(k);
    if (t === undefined) return undefined;
    check(k, t, half, [len]);
    return decodeToFloat32(t.dtype, t.data);
  };
  const smooth = vector("smooth_factor", K);
  const bias = vector("bias", N);
  return {
    ...(name !== undefined ? { name } : {}),
    residual: { spec: specFor("int4p2"), rows: N, cols: K, codes, scales, rowScales, exponents },
    rank: R,
    lowRankDown,
    lowRankUp,
    ...(bias !== undefined ? { bias } : {}),
    ...(smooth !== undefined ? { smooth } : {}),
    act: activationSpecFor("int4p2"),
  };
}
