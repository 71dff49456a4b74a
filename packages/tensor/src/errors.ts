/** Machine-readable reasons a tensor or safetensors operation can fail. */
export type TensorErrorCode =
  | "E_IO"
  | "E_NOT_FILE"
  | "E_TOO_LARGE"
  | "E_HEADER_SIZE"
  | "E_HEADER_JSON"
  | "E_DTYPE"
  | "E_SHAPE"
  | "E_OFFSETS"
  | "E_OVERLAP"
  | "E_DUPLICATE"
  | "E_METADATA"
  | "E_NOT_FOUND"
  | "E_INDEX"
  | "E_ARGUMENT";

/**
 * The one error class of @svdquant/tensor. `code` says what went wrong; `file` and `tensor`
 * name the culprit when there is one (both also appear in the message).
 */
export class TensorError extends Error {
  override readonly name = "TensorError";
  readonly code: TensorErrorCode;
  readonly file: string | undefined;
  readonly tensor: string | undefined;
  /** The message without the file/tensor prefix (for wrapping into another package's error). */
  readonly detail: string;

  constructor(code: TensorErrorCode, message: string, where: { file?: string; tensor?: string; cause?: unknown } = {}) {
    const prefix = [where.file, where.tensor !== undefined ? `tensor "${where.tensor}"` : undefined]
      .filter((s) => s !== undefined)
      .join(": ");
    super(prefix ? `${prefix}: ${message}` : message, where.cause !== undefined ? { cause: where.cause } : undefined);
    this.code = code;
    this.file = where.file;
    this.tensor = where.tensor;
    this.detail = message;
  }
}
