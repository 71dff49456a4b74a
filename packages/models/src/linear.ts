import { bf16BitsToF32 } from "@svdquant/tensor";
import { ModelError } from "./errors.js";
import { type GemmBackend, getGemmBackend, type PreparedGemm } from "./gemm.js";
import { geluTanhInPlace } from "./ops.js";

/**
 * The seam every linear layer of the models goes through: Y = layer(X).
 *
 * | tensor | shape  | dtype | layout                       |
 * | ------ | ------ | ----- | ---------------------------- |
 * | X      | [M, K] | f32   | row-major, M tokens          |
 * | Y      | [M, N] | f32   | row-major, fresh array       |
 *
 * K = inFeatures, N = outFeatures. Implementations: `DenseLinear` (f32 or bf16 weights), `FakeQuantLinear`
 * (quantize-dequantize simulation), and whatever `registerLinearKind` adds (packed W4A4 / W4A16 kernels).
 */
export interface LinearLayer {
  /** State-dict name without `.weight`, e.g. `transformer_blocks.0.attn.to_q`. */
  readonly name: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** Which implementation: "dense-f32", "dense-bf16", "fake-w4a4", … */
  readonly kind: string;
  forward(x: Float32Array, m: number): Float32Array;
  /**
   * Layers whose input transform (e.g. activation quantization) is identical report the same key;
   * layers of one input group with equal keys transform their common input once (`prepareInput`),
   * then each runs `forwardPrepared`. Undefined: the input is used as is.
   */
  readonly inputKey?: string;
  prepareInput?(x: Float32Array, m: number): unknown;
  /** Runs on what `prepareInput` of a layer with the same `inputKey` returned. */
  forwardPrepared?(prepared: unknown, m: number): Float32Array;
  /** Optional: GELU(tanh)(layer(x)) with the GELU fused into the layer's GEMM epilogue. */
  forwardGelu?(x: Float32Array, m: number): Float32Array;
  /** Optional: `forwardPrepared` followed by GELU(tanh), fused. */
  forwardPreparedGelu?(prepared: unknown, m: number): Float32Array;
  /**
   * Optional: packs the weight once for the GEMM backend now in use (`DenseLinear.prepare`); returns whether
   * later forwards on that backend run on the packed copy. The models' `prepare()` calls it on every layer.
   */
  prepare?(): boolean;
}

export function checkInput(layer: LinearLayer, x: Float32Array, m: number): void {
  if (!Number.isSafeInteger(m) || m < 0 || x.length !== m * layer.inFeatures)
    throw new ModelError(
      "E_SHAPE",
      `input of ${x.length} elements is not [M=${m}, K=${layer.inFeatures}]`,
      `linear ${layer.name}`,
    );
}

/** Weight storage of a dense layer: float32 values, or bfloat16 bit patterns (decoded on the fly). */
export type DenseWeight =
  | { readonly dtype: "f32"; readonly data: Float32Array }
  | { readonly dtype: "bf16"; readonly data: Uint16Array };

// bf16 weights are decoded in chunks of this many output rows (64 x K floats of scratch), so a bf16 layer
// never holds its whole weight in f32.
const BF16_ROWS = 64;

/** A dense linear layer: Y = X·Wᵀ + b through a GEMM backend (the process default unless given). */
export class DenseLinear implements LinearLayer {
  readonly name: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly weight: DenseWeight;
  readonly bias: Float32Array | undefined;
  private readonly backend: GemmBackend | undefined;
  private prepared: { backend: GemmBackend; gemm: PreparedGemm } | undefined;

  constructor(
    name: string,
    weight: DenseWeight,
    bias: Float32Array | undefined,
    inFeatures: number,
    outFeatures: number,
    backend?: GemmBackend,
  ) {
    if (weight.data.length !== inFeatures * outFeatures)
      throw new ModelError(
        "E_SHAPE",
        `weight has ${weight.data.length} elements, expected [N=${outFeatures}, K=${inFeatures}]`,
        `linear ${name}`,
      );
    if (bias !== undefined && bias.length !== outFeatures)
      throw new ModelError("E_SHAPE", `bias has ${bias.length} elements, expected N=${outFeatures}`, `linear ${name}`);
    this.name = name;
    this.weight = weight;
    this.bias = bias;
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    this.backend = backend;
  }

  get kind(): string {
    return `dense-${this.weight.dtype}`;
  }

  /**
   * Packs the weight once for the layer's GEMM backend (its own, or the process default now), when that backend
   * can (`GemmBackend.prepare`, e.g. @svdquant/kernels' native f32 GEMM); later forwards on the same backend skip
   * the per-call packing. bf16 weights are decoded to f32 once for this (the packed copy holds 4 bytes per
   * weight). Returns whether the weight is now prepared; forwards on another backend run unprepared.
   */
  prepare(): boolean {
    const gemm = this.backend ?? getGemmBackend();
    if (!gemm.prepare) return false;
    if (this.prepared?.backend === gemm) return true;
    this.prepared = {
      backend: gemm,
      gemm: gemm.prepare(this.weightF32(), this.bias, this.outFeatures, this.inFeatures),
    };
    return true;
  }

  /** Whether a forward now uses a weight packed by `prepare()`. */
  get isPrepared(): boolean {
    return this.prepared !== undefined && this.prepared.backend === (this.backend ?? getGemmBackend());
  }

  forward(x: Float32Array, m: number): Float32Array {
    checkInput(this, x, m);
    const k = this.inFeatures;
    const n = this.outFeatures;
    const gemm = this.backend ?? getGemmBackend();
    const out = new Float32Array(m * n);
    if (this.prepared?.backend === gemm) {
      this.prepared.gemm.run(x, out, m);
      return out;
    }
    if (this.weight.dtype === "f32") {
      gemm.gemm(x, this.weight.data, this.bias, out, m, k, n);
      return out;
    }
    const bits = this.weight.data;
    const rows = Math.min(BF16_ROWS, n);
    const scratch = new Float32Array(rows * k);
    const part = new Float32Array(m * rows);
    for (let j0 = 0; j0 < n; j0 += rows) {
      const nb = Math.min(rows, n - j0);
      const w = nb === rows ? scratch : scratch.subarray(0, nb * k);
      for (let i = 0; i < nb * k; i++) w[i] = bf16BitsToF32(bits[j0 * k + i]!);
      const b = this.bias?.subarray(j0, j0 + nb);
      const y = nb === rows ? part : part.subarray(0, m * nb);
      gemm.gemm(x, w, b, y, m, k, nb);
      for (let i = 0; i < m; i++) out.set(y.subarray(i * nb, (i + 1) * nb), i * n + j0);
    }
    return out;
  }

  /**
   * GELU(tanh)(X·Wᵀ + b): in the GEMM's epilogue when the weight is prepared for the current backend (one pass
   * over Y), otherwise `forward` followed by the TypeScript GELU.
   */
  forwardGelu(x: Float32Array, m: number): Float32Array {
    const gemm = this.backend ?? getGemmBackend();
    if (this.prepared?.backend !== gemm) return geluTanhInPlace(this.forward(x, m));
    checkInput(this, x, m);
    const out = new Float32Array(m * this.outFeatures);
    this.prepared.gemm.run(x, out, m, { gelu: true });
    return out;
  }

  /** The weight as float32 values [N, K] (a copy for bf16, the storage itself for f32). */
  weightF32(): Float32Array {
    if (this.weight.dtype === "f32") return this.weight.data;
    const out = new Float32Array(this.weight.data.length);
    for (let i = 0; i < out.length; i++) out[i] = bf16BitsToF32(this.weight.data[i]!);
    return out;
  }
}

/** GELU(tanh)(layer(x)): in the layer's GEMM epilogue where it offers one (`forwardGelu`), otherwise after. */
export function linearGelu(layer: LinearLayer, x: Float32Array, m: number): Float32Array {
  return layer.forwardGelu ? layer.forwardGelu(x, m) : geluTanhInPlace(layer.forward(x, m));
}

/**
 * Run the layers of one input group on their common input X. Layers that report the same defined `inputKey`
 * share one `prepareInput` (e.g. one activation quantization for fused q/k/v); the others run plainly.
 * `gelu[i]` applies GELU(tanh) to layer i's output: in the layer's GEMM epilogue where it has one, otherwise after.
 */
export function forwardShared(
  layers: readonly LinearLayer[],
  x: Float32Array,
  m: number,
  gelu?: readonly boolean[],
): Float32Array[] {
  const prepared = new Map<string, unknown>();
  return layers.map((l, i) => {
    const key = l.inputKey;
    const act = gelu?.[i] === true;
    if (key === undefined || l.prepareInput === undefined || l.forwardPrepared === undefined)
      return act ? linearGelu(l, x, m) : l.forward(x, m);
    if (!prepared.has(key)) {
      checkInput(l, x, m);
      prepared.set(key, l.prepareInput(x, m));
    }
    if (!act) return l.forwardPrepared(prepared.get(key), m);
    return l.forwardPreparedGelu
      ? l.forwardPreparedGelu(prepared.get(key), m)
      : geluTanhInPlace(l.forwardPrepared(prepared.get(key), m));
  });
}

/**
 * Packs every layer that can be packed (`LinearLayer.prepare`) for the GEMM backend now in use; returns how many
 * are now prepared. The models' `prepare()` runs this on their resident layers.
 */
export function prepareLayers(layers: Iterable<LinearLayer>): number {
  let n = 0;
  for (const l of layers) if (l.prepare?.() === true) n++;
  return n;
}
