/** Machine-readable reasons a metric computation can fail. */
export type MetricsErrorCode =
  | "E_IO"
  | "E_NOT_FILE"
  | "E_IMAGE_TOO_LARGE"
  | "E_MODEL_MISSING"
  | "E_ONNXRUNTIME"
  | "E_MODEL_SIGNATURE"
  | "E_MODEL_OUTPUT"
  | "E_SIZE_MISMATCH"
  | "E_EMPTY"
  | "E_SHAPE"
  | "E_NUMERIC"
  | "E_DECODE"
  | "E_PAIRING"
  | "E_ARGUMENT";

/**
 * The one error class of @svdquant/metrics. `code` says what went wrong; `file` names the image or model
 * at fault when there is one (it also starts the message).
 */
export class MetricsError extends Error {
  override readonly name = "MetricsError";
  readonly code: MetricsErrorCode;
  readonly file: string | undefined;

  constructor(code: MetricsErrorCode, message: string, where: { file?: string; cause?: unknown } = {}) {
    super(
      where.file ? `${where.file}: ${message}` : message,
      where.cause !== undefined ? { cause: where.cause } : undefined,
    );
    this.code = code;
    this.file = where.file;
  }
}
