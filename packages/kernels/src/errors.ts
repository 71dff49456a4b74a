/** Machine-readable reasons a kernel call can fail. */
export type KernelsErrorCode =
  | "E_SHAPE"
  | "E_DTYPE"
  | "E_LENGTH"
  | "E_VALUE"
  | "E_NATIVE"
  | "E_ARGUMENT"
  | "E_UNSUPPORTED";

/**
 * The one error class of @svdquant/kernels. `code` says what went wrong; `tensor` names the argument at
 * fault (it also appears in the message).
 */
export class KernelsError extends Error {
  override readonly name = "KernelsError";
  readonly code: KernelsErrorCode;
  readonly tensor: string | undefined;

  constructor(code: KernelsErrorCode, message: string, where: { tensor?: string; cause?: unknown } = {}) {
    super(
      where.tensor !== undefined ? `tensor "${where.tensor}": ${message}` : message,
      where.cause !== undefined ? { cause: where.cause } : undefined,
    );
    this.code = code;
    this.tensor = where.tensor;
  }
}
