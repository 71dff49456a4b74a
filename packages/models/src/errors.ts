/** Machine-readable reasons a model operation can fail. */
export type ModelErrorCode =
  | "E_CONFIG"
  | "E_WEIGHTS"
  | "E_SHAPE"
  | "E_INPUT"
  | "E_RECIPE"
  | "E_BACKEND"
  | "E_UNSUPPORTED";

/**
 * The one error class of @svdquant/models. `code` says what went wrong; `where` names the file, tensor,
 * config key or layer at fault (it also leads the message).
 */
export class ModelError extends Error {
  override readonly name = "ModelError";
  readonly code: ModelErrorCode;
  readonly where: string | undefined;

  constructor(code: ModelErrorCode, message: string, where?: string, cause?: unknown) {
    super(where !== undefined ? `${where}: ${message}` : message, cause !== undefined ? { cause } : undefined);
    this.code = code;
    this.where = where;
  }
}
