/** One typed error of the model-level experiments: a code and one line naming the file, field or method at fault. */
export type ExperimentErrorCode = "E_CONFIG" | "E_IO" | "E_MODEL";

export class ExperimentError extends Error {
  override readonly name = "ExperimentError";
  readonly code: ExperimentErrorCode;
  constructor(code: ExperimentErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
