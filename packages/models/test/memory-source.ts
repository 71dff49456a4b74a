import type { Tensor, TensorSource } from "@svdquant/tensor";

/** An in-memory TensorSource over `tensors` (no file I/O): for tests and for the timed region of benchmarks. */
export function memorySource(tensors: Map<string, Tensor>, path = "<memory>"): TensorSource {
  return {
    path,
    metadata: {},
    names: () => [...tensors.keys()].sort(),
    has: (n) => tensors.has(n),
    info: (n) => {
      const t = tensors.get(n);
      if (t === undefined) throw new Error(`${path}: no tensor ${n}`);
      return { name: n, dtype: t.dtype, shape: t.shape, dataOffsets: [0, t.byteLength], file: path };
    },
    read: async (n) => {
      const t = tensors.get(n);
      if (t === undefined) throw new Error(`${path}: no tensor ${n}`);
      return t;
    },
    close: async () => {},
  };
}
