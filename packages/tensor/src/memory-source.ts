import { TensorError } from "./errors.js";
import type { TensorSource } from "./safetensors.js";
import type { Tensor } from "./tensor.js";

/** An in-memory TensorSource over `tensors` (no file I/O): for tests, benchmarks and tensors built in memory. */
export function memorySource(tensors: ReadonlyMap<string, Tensor>, path = "<memory>"): TensorSource {
  const get = (n: string): Tensor => {
    const t = tensors.get(n);
    if (t === undefined) throw new TensorError("E_NOT_FOUND", "no such tensor", { file: path, tensor: n });
    return t;
  };
  return {
    path,
    metadata: {},
    names: () => [...tensors.keys()].sort(),
    has: (n) => tensors.has(n),
    info: (n) => {
      const t = get(n);
      return { name: n, dtype: t.dtype, shape: t.shape, dataOffsets: [0, t.byteLength], file: path };
    },
    read: async (n) => get(n),
    close: async () => {},
  };
}
