import { join } from "node:path";
import { SafetensorsFile } from "@svdquant/tensor";
import { FIXTURES } from "./helpers.js";

export { relErr } from "./helpers.js";

/** fixtures/pipeline: made by tools/make-pipeline-fixtures.py (diffusers 0.40.0.dev0 / transformers on the GPU machine). */
export const PIPELINE = join(FIXTURES, "pipeline");

export interface Loaded {
  readonly shape: readonly number[];
  /** Float values (F32/F64 tensors) or integers as numbers (I64/I32). */
  readonly data: Float32Array | Float64Array | Int32Array;
}

/** Every tensor of a pipeline fixture file (I64 → Int32Array; F64 kept as Float64Array) and its metadata. */
export async function readPipelineFixture(
  file: string,
): Promise<{ t: Record<string, Loaded>; metadata: Readonly<Record<string, string>> }> {
  const f = await SafetensorsFile.open(join(PIPELINE, file));
  const t: Record<string, Loaded> = {};
  try {
    for (const n of f.names()) {
      const x = await f.read(n);
      let data: Loaded["data"];
      if (x.dtype === "I64") data = Int32Array.from(x.data as BigInt64Array, (v) => Number(v));
      else if (x.dtype === "I32") data = x.data as Int32Array;
      else if (x.dtype === "F64") data = x.data as Float64Array;
      else data = x.toFloat32();
      t[n] = { shape: x.shape, data };
    }
    return { t, metadata: f.metadata };
  } finally {
    await f.close();
  }
}

/** Largest distance in float32 ulps between a and b (0 = bit-identical float32 values). */
export function maxUlps(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  const fa = new Float32Array(1);
  const ia = new Int32Array(fa.buffer);
  const key = (v: number) => {
    fa[0] = v;
    const i = ia[0]!;
    return i < 0 ? -(i & 0x7fffffff) : i;
  };
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(key(a[i]!) - key(b[i]!)));
  return m;
}
