/** Machine-readable reasons a whole-model step can fail. */
export type PipelineErrorCode =
  | "E_CONFIG" // a quantization config or recipe that cannot be used
  | "E_MODEL" // a model folder/checkpoint that is not a supported transformer
  | "E_CHECKPOINT" // a quantized checkpoint that is malformed or does not match its config
  | "E_RESUME" // a previous run's state that belongs to another model or config
  | "E_CALIBRATION" // calibration inputs that are missing, malformed or non-finite
  | "E_UNSUPPORTED"; // a combination the native kernels do not run

/** The one error class of @svdquant/pipeline; `where` names the file, layer or tensor at fault. */
export class PipelineError extends Error {
  override readonly name = "PipelineError";
  readonly code: PipelineErrorCode;
  readonly where: string | undefined;

  constructor(code: PipelineErrorCode, message: string, where?: string, options?: { cause?: unknown }) {
    super(where !== undefined ? `${where}: ${message}` : message, options);
    this.code = code;
    this.where = where;
  }
}
