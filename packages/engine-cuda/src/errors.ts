/** Machine-readable reasons an engine operation can fail. */
export type EngineErrorCode =
  | "E_NO_ADDON" // the native addon was not built (no nvcc at build time) or failed to load
  | "E_NO_DEVICE" // no usable CUDA device / driver
  | "E_CHECKPOINT" // a weight is missing, mis-shaped or in a layout the engine does not take
  | "E_INPUT" // step inputs do not fit the model
  | "E_FREED" // the engine's device memory was released
  | "E_CUDA"; // a CUDA / cuBLAS / kernel call failed (the message names it)

/** The one error class of @svdquant/engine-cuda; `where` names the tensor, layer or input at fault. */
export class EngineError extends Error {
  override readonly name = "EngineError";
  readonly code: EngineErrorCode;
  readonly where: string | undefined;

  constructor(code: EngineErrorCode, message: string, where?: string, cause?: unknown) {
    super(where !== undefined ? `${where}: ${message}` : message, cause !== undefined ? { cause } : undefined);
    this.code = code;
    this.where = where;
  }
}
