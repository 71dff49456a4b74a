/** Machine-readable reasons a layer quantization can fail. */
export type QuantizerErrorCode = "E_SHAPE" | "E_ARGUMENT" | "E_NONFINITE" | "E_UNKNOWN_METHOD";

/** The one error class of @svdquant/quantizer; `code` says what went wrong, `tensor` names the layer at fault. */
export class QuantizerError extends Error {
  override readonly name = "QuantizerError";
  readonly code: QuantizerErrorCode;
  readonly tensor: string | undefined;

  constructor(code: QuantizerErrorCode, message: string, tensor?: string) {
    super(tensor !== undefined ? `layer "${tensor}": ${message}` : message);
    this.code = code;
    this.tensor = tensor;
  }
}
