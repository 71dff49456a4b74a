/** Machine-readable reasons a quantization or packing call can fail. */
export type QuantErrorCode =
  /** NaN or ±Inf in the input tensor. */
  | "E_NONFINITE"
  /** Shape does not fit (cols not a multiple of the group, buffer length ≠ rows × cols, padding rule broken). */
  | "E_SHAPE"
  /** Invalid spec or argument (unknown format, group size the format does not allow, bad scale). */
  | "E_ARGUMENT"
  /** A scale does not fit its storage dtype (e.g. absmax/7 beyond the f16 range). */
  | "E_RANGE"
  /** A code out of its format's range, or a packed tensor of the wrong dtype/shape. */
  | "E_CODE";

/**
 * The one error class of @svdquant/int4. `code` says what went wrong; `tensor` names the tensor at
 * fault when the caller passed a name (it also appears in the message).
 */
export class QuantError extends Error {
  override readonly name = "QuantError";
  readonly code: QuantErrorCode;
  readonly tensor: string | undefined;

  constructor(code: QuantErrorCode, message: string, tensor?: string) {
    super(tensor !== undefined ? `tensor "${tensor}": ${message}` : message);
    this.code = code;
    this.tensor = tensor;
  }
}
