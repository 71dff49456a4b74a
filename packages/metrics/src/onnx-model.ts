import { checkInputFile, TensorError } from "@svdquant/tensor";
import type * as Ort from "onnxruntime-node";
import { MetricsError } from "./errors.js";

let ortLoading: Promise<typeof Ort> | undefined;

/**
 * onnxruntime-node is an optional peer dependency (~300 MB, only the neural metrics use it): imported on first use,
 * with one clear error when it is not installed or does not load.
 */
function loadOnnxRuntime(): Promise<typeof Ort> {
  ortLoading ??= import("onnxruntime-node").catch((cause: NodeJS.ErrnoException) => {
    ortLoading = undefined;
    const missing = cause?.code === "ERR_MODULE_NOT_FOUND" && String(cause.message).includes("onnxruntime-node");
    throw new MetricsError(
      "E_ONNXRUNTIME",
      missing
        ? "FID, LPIPS, CLIP score and ImageReward need onnxruntime-node, an optional peer dependency of @svdquant/metrics: install it next to it (npm install onnxruntime-node@^1.30.0); PSNR/SSIM/Fréchet distance do not"
        : `onnxruntime-node failed to load: ${cause?.message ?? String(cause)}`,
      { cause },
    );
  });
  return ortLoading;
}

/** One expected graph input or output: element type and dims (a number = that size; null = any size). */
export interface IoSpec {
  name: string;
  type: "float32" | "int64";
  dims: (number | null)[];
}

/** The signature a metric network must have. Extra graph outputs are allowed, extra inputs are not. */
export interface ModelSpec {
  metric: string;
  inputs: IoSpec[];
  outputs: IoSpec[];
}

function fmtDims(d: readonly (number | string | null)[]): string {
  return `[${d.map((x) => (x === null ? "?" : String(x))).join(", ")}]`;
}

function describeSpec(spec: ModelSpec): string {
  const io = (l: IoSpec[]) => l.map((s) => `${s.name}: ${s.type} ${fmtDims(s.dims)}`).join(", ");
  return `inputs {${io(spec.inputs)}} → outputs {${io(spec.outputs)}}`;
}

function checkValue(
  path: string,
  spec: ModelSpec,
  want: IoSpec,
  meta: Ort.InferenceSession.ValueMetadata | undefined,
  kind: string,
): void {
  if (meta === undefined || !meta.isTensor) return; // nothing declared: checked at run time
  const bad = (why: string) =>
    new MetricsError(
      "E_MODEL_SIGNATURE",
      `${spec.metric} model ${kind} "${want.name}" ${why}; expected ${describeSpec(spec)}`,
      { file: path },
    );
  if (meta.type !== want.type) throw bad(`has type ${meta.type}`);
  if (meta.shape.length === 0) return;
  if (meta.shape.length !== want.dims.length) throw bad(`has shape ${fmtDims(meta.shape)}`);
  meta.shape.forEach((d, i) => {
    const w = want.dims[i];
    if (typeof d === "number" && d > 0 && w !== null && d !== w && !(i === 0 && d === 1)) {
      throw bad(`has shape ${fmtDims(meta.shape)}`);
    }
  });
}

/** An onnxruntime-node session whose signature was checked against a ModelSpec. */
export class OnnxModel {
  readonly path: string;
  readonly spec: ModelSpec;
  private readonly session: Ort.InferenceSession;
  private readonly ort: typeof Ort;

  private constructor(path: string, spec: ModelSpec, session: Ort.InferenceSession, ort: typeof Ort) {
    this.path = path;
    this.spec = spec;
    this.session = session;
    this.ort = ort;
  }

  /** Load an ONNX file from a local path (never downloaded) and check its inputs/outputs against `spec`. */
  static async load(path: string, spec: ModelSpec, threads?: number): Promise<OnnxModel> {
    try {
      await checkInputFile(path); // a regular file (a FIFO would hang onnxruntime's read)
    } catch (cause) {
      if (cause instanceof TensorError && cause.code === "E_NOT_FILE")
        throw new MetricsError("E_NOT_FILE", cause.detail, { file: path, cause });
      throw new MetricsError("E_MODEL_MISSING", `${spec.metric} model file not found (export it first, see docs)`, {
        file: path,
        cause,
      });
    }
    const ort = await loadOnnxRuntime();
    let session: Ort.InferenceSession;
    try {
      const opts: Ort.InferenceSession.SessionOptions = threads ? { intraOpNumThreads: threads } : {};
      session = await ort.InferenceSession.create(path, opts);
    } catch (cause) {
      throw new MetricsError("E_MODEL_SIGNATURE", `not a loadable ONNX model: ${(cause as Error).message}`, {
        file: path,
        cause,
      });
    }
    const names = [...session.inputNames].sort();
    const wanted = spec.inputs.map((s) => s.name).sort();
    if (names.join("\0") !== wanted.join("\0")) {
      await session.release();
      throw new MetricsError(
        "E_MODEL_SIGNATURE",
        `${spec.metric} model has inputs [${session.inputNames.join(", ")}]; expected ${describeSpec(spec)}`,
        { file: path },
      );
    }
    for (const o of spec.outputs) {
      if (!session.outputNames.includes(o.name)) {
        await session.release();
        throw new MetricsError(
          "E_MODEL_SIGNATURE",
          `${spec.metric} model has outputs [${session.outputNames.join(", ")}], none named "${o.name}"; expected ${describeSpec(spec)}`,
          { file: path },
        );
      }
    }
    try {
      spec.inputs.forEach((s) => {
        checkValue(path, spec, s, session.inputMetadata?.[session.inputNames.indexOf(s.name)], "input");
      });
      spec.outputs.forEach((s) => {
        checkValue(path, spec, s, session.outputMetadata?.[session.outputNames.indexOf(s.name)], "output");
      });
    } catch (e) {
      await session.release();
      throw e;
    }
    return new OnnxModel(path, spec, session, ort);
  }

  /**
   * Run on a batch of `n`; feeds are flat arrays whose shapes are the spec dims with null dims given by `dims`.
   * Returns each spec output as a flat Float32Array after checking its shape ([n, …spec dims]) and finiteness.
   */
  async run(
    n: number,
    feeds: Record<string, { data: Float32Array | BigInt64Array; dims: number[] }>,
  ): Promise<Record<string, { data: Float32Array; dims: readonly number[] }>> {
    const ort = this.ort;
    const ortFeeds: Record<string, Ort.Tensor> = {};
    for (const s of this.spec.inputs) {
      const f = feeds[s.name];
      ortFeeds[s.name] =
        f.data instanceof Float32Array
          ? new ort.Tensor("float32", f.data, f.dims)
          : new ort.Tensor("int64", f.data, f.dims);
    }
    let out: Ort.InferenceSession.OnnxValueMapType;
    try {
      out = await this.session.run(ortFeeds);
    } catch (cause) {
      throw new MetricsError(
        "E_MODEL_SIGNATURE",
        `${this.spec.metric} model failed on inputs ${Object.entries(feeds)
          .map(([k, v]) => `${k} ${fmtDims(v.dims)}`)
          .join(", ")}: ${(cause as Error).message}`,
        { file: this.path, cause },
      );
    }
    const res: Record<string, { data: Float32Array; dims: readonly number[] }> = {};
    for (const s of this.spec.outputs) {
      const t = out[s.name] as Ort.Tensor;
      const dims = t.dims;
      const ok =
        t.type === "float32" &&
        dims.length === s.dims.length &&
        dims[0] === n &&
        s.dims.every((d, i) => i === 0 || d === null || d === dims[i]);
      if (!ok) {
        throw new MetricsError(
          "E_MODEL_OUTPUT",
          `${this.spec.metric} output "${s.name}" is ${t.type} ${fmtDims(dims)}; expected float32 ${fmtDims([n, ...s.dims.slice(1)])}`,
          { file: this.path },
        );
      }
      const data = t.data as Float32Array;
      for (let i = 0; i < data.length; i++) {
        if (!Number.isFinite(data[i])) {
          throw new MetricsError("E_NUMERIC", `${this.spec.metric} output "${s.name}" holds NaN/Infinity`, {
            file: this.path,
          });
        }
      }
      res[s.name] = { data, dims };
    }
    return res;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
