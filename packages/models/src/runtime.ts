import { forwardShared, type LinearLayer, linearGelu } from "./linear.js";
import { type AttentionOptions, silu } from "./ops.js";

/** Sees every linear layer's input during a forward (calibration, tracing). */
export interface LinearObserver {
  onLinearInput(layer: LinearLayer, x: Float32Array, m: number): void;
}

/** Per-forward options shared by the model code. */
export interface ForwardOptions {
  readonly observer?: LinearObserver;
  readonly attention?: AttentionOptions;
  /** Called around each transformer block with its state-dict prefix (e.g. `transformer_blocks.3.`). */
  readonly onBlockStart?: (prefix: string) => void;
  readonly onBlockEnd?: (prefix: string) => void;
}

export function runLinear(opts: ForwardOptions, layer: LinearLayer, x: Float32Array, m: number): Float32Array {
  opts.observer?.onLinearInput(layer, x, m);
  return layer.forward(x, m);
}

/** GELU(tanh)(layer(x)): fused into the GEMM epilogue where the layer has one (`LinearLayer.forwardGelu`). */
export function runLinearGelu(opts: ForwardOptions, layer: LinearLayer, x: Float32Array, m: number): Float32Array {
  opts.observer?.onLinearInput(layer, x, m);
  return linearGelu(layer, x, m);
}

/** linear_2(SiLU(linear_1(x))): the timestep / text / guidance embedders of both models. */
export function runEmbedMlp(
  opts: ForwardOptions,
  l1: LinearLayer,
  l2: LinearLayer,
  x: Float32Array,
  m: number,
): Float32Array {
  return runLinear(opts, l2, silu(runLinear(opts, l1, x, m)), m);
}

/** The layers of one input group on their common input; `gelu[i]`: GELU(tanh) on layer i's output (fused if it can). */
export function runShared(
  opts: ForwardOptions,
  layers: readonly LinearLayer[],
  x: Float32Array,
  m: number,
  gelu?: readonly boolean[],
): Float32Array[] {
  if (opts.observer !== undefined) for (const l of layers) opts.observer.onLinearInput(l, x, m);
  return forwardShared(layers, x, m, gelu);
}

/** Gather rows [t0, t0+n) of each batch item of x [B, S, D] into [B, n, D]. */
export function sliceTokens(x: Float32Array, b: number, s: number, d: number, t0: number, n: number): Float32Array {
  const out = new Float32Array(b * n * d);
  for (let bi = 0; bi < b; bi++) out.set(x.subarray((bi * s + t0) * d, (bi * s + t0 + n) * d), bi * n * d);
  return out;
}

/** Concatenate along tokens: a [B, Sa, D], c [B, Sc, D] → [B, Sa+Sc, D]. */
export function concatTokens(
  a: Float32Array,
  sa: number,
  c: Float32Array,
  sc: number,
  b: number,
  d: number,
): Float32Array {
  const s = sa + sc;
  const out = new Float32Array(b * s * d);
  for (let bi = 0; bi < b; bi++) {
    out.set(a.subarray(bi * sa * d, (bi + 1) * sa * d), bi * s * d);
    out.set(c.subarray(bi * sc * d, (bi + 1) * sc * d), (bi * s + sa) * d);
  }
  return out;
}

/** Concatenate along features: a [T, Da], c [T, Dc] → [T, Da+Dc]. */
export function concatFeatures(a: Float32Array, da: number, c: Float32Array, dc: number, t: number): Float32Array {
  const d = da + dc;
  const out = new Float32Array(t * d);
  for (let i = 0; i < t; i++) {
    out.set(a.subarray(i * da, (i + 1) * da), i * d);
    out.set(c.subarray(i * dc, (i + 1) * dc), i * d + da);
  }
  return out;
}
