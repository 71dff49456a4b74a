/** Machine-readable reasons a CUDA kernel call can fail. */
export type CudaKernelErrorCode =
  | "E_NO_ADDON" // the native addon was not built (no nvcc at build time) or failed to load
  | "E_NO_DEVICE" // no usable CUDA device / driver
  | "E_SHAPE" // a shape or buffer size does not fit the kernel's contract
  | "E_LAYOUT" // packed data does not fit the documented layout
  | "E_CUDA"; // a CUDA / cuBLAS call failed (the message names the call)

/** The one error class of @svdquant/kernels-cuda; `tensor` names the argument at fault when there is one. */
export class CudaKernelError extends Error {
  override readonly name = "CudaKernelError";
  readonly code: CudaKernelErrorCode;
  readonly tensor: string | undefined;

  constructor(code: CudaKernelErrorCode, message: string, where: { tensor?: string; cause?: unknown } = {}) {
    super(
      where.tensor !== undefined ? `tensor "${where.tensor}": ${message}` : message,
      where.cause !== undefined ? { cause: where.cause } : undefined,
    );
    this.code = code;
    this.tensor = where.tensor;
  }
}
