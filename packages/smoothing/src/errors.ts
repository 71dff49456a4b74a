/** Machine-readable reasons a smoothing operation can fail. */
export type SmoothingErrorCode = "E_SHAPE" | "E_ARGUMENT" | "E_NONFINITE" | "E_EMPTY";

/** The one error class of @svdquant/smoothing; `code` says what went wrong, `tensor` names the input at fault. */
export class SmoothingError extends Error {
  override readonly name = "SmoothingError";
  readonly code: SmoothingErrorCode;
  readonly tensor: string | undefined;

  constructor(code: SmoothingErrorCode, message: string, tensor?: string) {
    super(tensor !== undefined ? `tensor "${tensor}": ${message}` : message);
    this.code = code;
    this.tensor = tensor;
  }
}
