/** Machine-readable reasons a low-rank operation can fail. */
export type LowRankErrorCode = "E_SHAPE" | "E_ARGUMENT" | "E_NONFINITE";

/** The one error class of @svdquant/lowrank; `code` says what went wrong, `tensor` names the input at fault. */
export class LowRankError extends Error {
  override readonly name = "LowRankError";
  readonly code: LowRankErrorCode;
  readonly tensor: string | undefined;

  constructor(code: LowRankErrorCode, message: string, tensor?: string) {
    super(tensor !== undefined ? `tensor "${tensor}": ${message}` : message);
    this.code = code;
    this.tensor = tensor;
  }
}
