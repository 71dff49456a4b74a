import { ModelError } from "./errors.js";
import type { GemmBackend } from "./gemm.js";
import { checkInput, DenseLinear, type LinearLayer } from "./linear.js";

/** A quantization format spec, as @svdquant/int4's `fakeQuantize` takes it. */
export interface QuantSpec {
  /** "int4" | "uint4" | "nvfp4" | "nf4" | "int8" | … (interpreted by the quantizer). */
  readonly format: string;
  /** Group size along K (the last axis); 0 = one group per row. */
  readonly groupSize: number;
  readonly scaleDtype?: string;
}

/**
 * Quantize-dequantize `rows` x `cols` row-major values, groups along the row (K). The contract of
 * @svdquant/int4's `fakeQuantize`; models take it as a parameter so any simulator plugs in.
 */
export type FakeQuantizeFn = {
  // Method syntax keeps the parameters bivariant, so @svdquant/int4's `fakeQuantize` (whose spec narrows
  // `format` to its union of names) can be passed as is.
  fq(x: Float32Array, rows: number, cols: number, spec: QuantSpec, name?: string): Float32Array;
}["fq"];

/**
 * A fake-quantized linear layer (simulation of W4A4 / W4A16): the weight [N, K] is quantize-dequantized once
 * at construction, the activation X [M, K] per token (rows) at every forward, then a float32 GEMM runs.
 */
export class FakeQuantLinear implements LinearLayer {
  readonly name: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly kind: string;
  readonly inputKey: string | undefined;
  readonly weightSpec: QuantSpec | null;
  readonly actSpec: QuantSpec | null;
  private readonly dense: DenseLinear;
  private readonly quantize: FakeQuantizeFn;

  constructor(
    name: string,
    weight: Float32Array,
    bias: Float32Array | undefined,
    inFeatures: number,
    outFeatures: number,
    specs: { weight: QuantSpec | null; act: QuantSpec | null; kind?: string; inputGroup?: string },
    quantize: FakeQuantizeFn,
    backend?: GemmBackend,
  ) {
    if (typeof quantize !== "function")
      throw new ModelError("E_BACKEND", "a fake-quantized layer needs a fakeQuantize function", `linear ${name}`);
    const wq =
      specs.weight === null ? weight : quantize(weight, outFeatures, inFeatures, specs.weight, `${name}.weight`);
    if (!(wq instanceof Float32Array) || wq.length !== weight.length)
      throw new ModelError("E_BACKEND", "fakeQuantize returned a wrong-sized result for the weight", `linear ${name}`);
    this.dense = new DenseLinear(name, { dtype: "f32", data: wq }, bias, inFeatures, outFeatures, backend);
    this.name = name;
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    this.weightSpec = specs.weight;
    this.actSpec = specs.act;
    this.quantize = quantize;
    this.kind = specs.kind ?? `fake-w${specs.weight === null ? 16 : 4}a${specs.act === null ? 16 : 4}`;
    this.inputKey =
      specs.inputGroup !== undefined && specs.act !== null
        ? `${specs.inputGroup}|${JSON.stringify(specs.act)}`
        : undefined;
  }

  /** The quantize-dequantized weight [N, K]. */
  get effectiveWeight(): Float32Array {
    return this.dense.weight.data as Float32Array;
  }

  prepareInput(x: Float32Array, m: number): Float32Array {
    checkInput(this, x, m);
    if (this.actSpec === null) return x;
    const xq = this.quantize(x, m, this.inFeatures, this.actSpec, `${this.name}.input`);
    if (!(xq instanceof Float32Array) || xq.length !== x.length)
      throw new ModelError(
        "E_BACKEND",
        "fakeQuantize returned a wrong-sized result for the input",
        `linear ${this.name}`,
      );
    return xq;
  }

  forwardPrepared(prepared: Float32Array, m: number): Float32Array {
    return this.dense.forward(prepared, m);
  }

  forward(x: Float32Array, m: number): Float32Array {
    return this.forwardPrepared(this.prepareInput(x, m), m);
  }
}
