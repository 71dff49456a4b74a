/** Machine-readable reasons a CLI command can fail before a package's own error applies. */
export type CliErrorCode = "E_ARGUMENT" | "E_CONFIG";

/** The one error class of @svdquant/cli; `file` names the input at fault (it also leads the message). */
export class CliError extends Error {
  override readonly name = "CliError";
  readonly code: CliErrorCode;
  readonly file: string | undefined;

  constructor(code: CliErrorCode, message: string, file?: string, cause?: unknown) {
    super(file !== undefined ? `${file}: ${message}` : message, cause !== undefined ? { cause } : undefined);
    this.code = code;
    this.file = file;
  }
}
