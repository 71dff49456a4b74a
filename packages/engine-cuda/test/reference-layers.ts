// Reference layers of the GPU checks (gpu-checks.ts for FLUX, pixart-checks.ts for PixArt): CPU layers that follow
// the kernels' documented arithmetic for packed W4A4 / W4A16 engine linears, the random packed layers they stand for
// (ReferenceModelParts: packed tensors for the engine, a recipe for the CPU model), and the single-linear check of
// an engine against them.
import { activationSpecFor, packW4A4Layer, packW4A16Layer, type QuantizedLinear, quantizeW4A16 } from "@svdquant/int4";
import { type LinearLayer, type Recipe, registerLinearKind } from "@svdquant/models";
import type { Tensor } from "@svdquant/tensor";
import type { NativeEngine } from "../src/index.js";
import { bf, bf16Bits, type CheckResult, downloadBf16, relErr, result, uniformBf16 } from "./helpers.js";

/**
 * CPU reference of a packed W4A4 layer, following the kernels' arithmetic (svdq_cuda.h, next_quant.cuh): x rounded
 * to bf16 (the engine's activations), v = (x [+ 0.171875 unsigned]) · (1/λ), per token and 64-group scale
 * s = amax/qmax (stored as bf16), codes rint(v/s) clamped to [-8, 7] / [0, 15];
 * y = Σ_g s_x s_w Σ q_x q_w + (x · downᵀ) · upᵀ + bias.
 */
export class RefW4A4 implements LinearLayer {
  readonly kind = "ref-w4a4";
  constructor(
    readonly name: string,
    readonly inFeatures: number,
    readonly outFeatures: number,
    private readonly l: QuantizedLinear,
    private readonly unsigned: boolean,
    private readonly roundInput = true,
  ) {}
  forward(x: Float32Array, m: number): Float32Array {
    const K = this.inFeatures;
    const N = this.outFeatures;
    const { residual: weight, lowRankDown, lowRankUp, rank: R, bias, smooth } = this.l;
    const qmax = this.unsigned ? 15 : 7;
    const qlo = this.unsigned ? 0 : -8;
    const out = new Float32Array(m * N);
    const codes = new Float64Array(K);
    const sx = new Float64Array(K / 64);
    const la = new Float64Array(R);
    for (let i = 0; i < m; i++) {
      const xr = Array.from(x.subarray(i * K, (i + 1) * K), (v) => (this.roundInput ? bf(v) : v));
      for (let g = 0; g < K / 64; g++) {
        let amax = 0;
        const v = new Float64Array(64);
        for (let j = 0; j < 64; j++) {
          const k = g * 64 + j;
          const inv = Math.fround(1 / (smooth ? smooth[k]! : 1));
          v[j] = Math.fround(Math.fround(xr[k]! + (this.unsigned ? 0.171875 : 0)) * inv);
          amax = Math.max(amax, Math.abs(v[j]!));
        }
        const s = Math.fround(amax * Math.fround(1 / qmax));
        const rs = amax > 0 ? Math.fround(1 / s) : 0;
        for (let j = 0; j < 64; j++) {
          const t = Math.min(Math.max(Math.fround(v[j]! * rs), qlo), qmax);
          const rnd = Math.round(t);
          codes[g * 64 + j] = Math.abs(t % 1) === 0.5 ? 2 * Math.round(t / 2) : rnd; // round half to even
        }
        sx[g] = bf(s);
      }
      for (let r = 0; r < R; r++) {
        let a = 0;
        for (let k = 0; k < K; k++) a += xr[k]! * lowRankDown[r * K + k]!;
        la[r] = Math.fround(a);
      }
      for (let n = 0; n < N; n++) {
        let y = 0;
        for (let g = 0; g < K / 64; g++) {
          let d = 0;
          for (let j = 0; j < 64; j++) d += codes[g * 64 + j]! * weight.codes[n * K + g * 64 + j]!;
          y += d * sx[g]! * weight.scales[n * (K / 64) + g]!;
        }
        for (let r = 0; r < R; r++) y += la[r]! * lowRankUp[n * R + r]!;
        out[i * N + n] = y + (bias ? bias[n]! : 0);
      }
    }
    return out;
  }
}

export class RefW4A16 implements LinearLayer {
  readonly kind = "ref-w4a16";
  constructor(
    readonly name: string,
    readonly inFeatures: number,
    readonly outFeatures: number,
    private readonly w: Float32Array,
    private readonly bias: Float32Array,
  ) {}
  forward(x: Float32Array, m: number): Float32Array {
    const K = this.inFeatures;
    const N = this.outFeatures;
    const out = new Float32Array(m * N);
    for (let i = 0; i < m; i++)
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += bf(x[i * K + k]!) * this.w[n * K + k]!;
        out[i * N + n] = s + this.bias[n]!;
      }
    return out;
  }
}

export const refLayers = new Map<string, LinearLayer>();
let registered = false;
export function registerRefs(): void {
  if (registered) return;
  registered = true;
  for (const kind of ["engine-ref-w4a4", "engine-ref-w4a16"])
    registerLinearKind(kind, (ctx) => {
      const l = refLayers.get(ctx.name);
      if (!l) throw new Error(`no reference layer ${ctx.name}`);
      return l;
    });
}

/**
 * The quantized layers of a random reference model as they are added: packed tensors (the engine's source), their
 * reference layers (in `refLayers`, registered) and the recipe rules that put those in the CPU model.
 */
export class ReferenceModelParts {
  readonly packed = new Map<string, Tensor>();
  private readonly rules: Recipe["rules"][number][] = [];
  private readonly smooths = new Map<string, Float32Array>();

  /** r: the model's seeded draw; roundInput false feeds the W4A4 reference layers f32 activations, not bf16. */
  constructor(
    private readonly r: () => number,
    private readonly roundInput = true,
  ) {
    registerRefs();
  }

  /** A W4A16 layer quantized from its dense weight [N, K] (quantizeW4A16, g64, bf16 scales). */
  w4a16(name: string, weight: Tensor, bias: Float32Array): void {
    const [N, K] = weight.shape as [number, number];
    const q = quantizeW4A16(weight.toFloat32(), N, K, { groupSize: 64, scaleDtype: "BF16" });
    for (const [k, t] of Object.entries(packW4A16Layer(q, bias, { dtype: "BF16", name })))
      this.packed.set(`${name}.${k}`, t);
    const w = new Float32Array(N * K);
    for (let i = 0; i < N * K; i++) {
      const g = Math.floor(i / 64);
      w[i] = q.codes[i]! * q.scales[g]! + q.zeros[g]!;
    }
    refLayers.set(name, new RefW4A16(name, K, N, w, bias));
    this.rules.push({ match: name, treatment: "w4a16" });
  }

  /**
   * A random W4A4 layer [N, K]: int4 codes, g64 scales, rank 32 (SVDQuant §5.1) and one smooth factor per
   * `smoothGroup` (the layers reading the same input share it); `unsigned`: post-GELU input (shifted uint4).
   */
  w4a4(name: string, N: number, K: number, bias: Float32Array, smoothGroup: string, unsigned: boolean): void {
    const r = this.r;
    const R = 32;
    const codes = new Int8Array(N * K);
    for (let i = 0; i < codes.length; i++) codes[i] = Math.floor(r() * 16) - 8;
    const scales = uniformBf16(r, (N * K) / 64, 0.3 / Math.sqrt(K) / 4, 0.7 / Math.sqrt(K) / 4);
    let smooth = this.smooths.get(smoothGroup);
    if (!smooth) {
      smooth = uniformBf16(r, K, 0.5, 2);
      this.smooths.set(smoothGroup, smooth);
    }
    const layer: QuantizedLinear = {
      act: activationSpecFor("int4"),
      residual: { spec: { format: "int4", groupSize: 64 }, rows: N, cols: K, codes, scales },
      lowRankDown: uniformBf16(r, R * K, -1 / Math.sqrt(K), 1 / Math.sqrt(K)),
      lowRankUp: uniformBf16(r, N * R, -0.2 / Math.sqrt(R), 0.2 / Math.sqrt(R)),
      rank: R,
      bias,
      smooth,
    };
    for (const [k, t] of Object.entries(packW4A4Layer(layer, { dtype: "BF16", name })))
      this.packed.set(`${name}.${k}`, t);
    refLayers.set(name, new RefW4A4(name, K, N, layer, unsigned, this.roundInput));
    this.rules.push({ match: name, treatment: "w4a4" });
  }

  /** The CPU model's recipe: the added layers through their reference layers, every other linear dense. */
  recipe(): Recipe {
    return {
      name: "engine-reference",
      treatments: { dense: { kind: "dense" }, w4a4: { kind: "engine-ref-w4a4" }, w4a16: { kind: "engine-ref-w4a16" } },
      rules: this.rules,
      default: "dense",
      inputGroups: [],
    };
  }

  /** The engine's tensor source: packed tensors for the added layers, the dense ones for everything else. */
  engineSource(dense: ReadonlyMap<string, Tensor>): Map<string, Tensor> {
    const src = new Map<string, Tensor>(this.packed);
    for (const [k, t] of dense) {
      const layer = k.replace(/\.(weight|bias)$/, "");
      if (!this.packed.has(`${layer}.qweight`)) src.set(k, t);
    }
    return src;
  }
}

/** One single-linear case: engine layer `name` [N, K] (`sources` stacked along N), M rows drawn in [lo, 2). */
export interface LinearCase {
  name: string;
  sources: string[];
  N: number;
  K: number;
  M: number;
  lo: number;
}

/**
 * Single engine linears on one bf16 input each vs the reference layers on the same values (the sources' outputs
 * side by side): same input bits on both sides, so the activation codes agree and only f32 summation order and the
 * bf16 output rounding remain. The engine must be prepared for M tokens.
 */
export function checkEngineLinears(raw: NativeEngine, cases: readonly LinearCase[], r: () => number): CheckResult[] {
  const out: CheckResult[] = [];
  for (const { name, sources, N, K, M: m, lo } of cases) {
    const x = uniformBf16(r, m * K, lo, 2);
    raw.alloc("t.x", m * K * 2);
    raw.upload("t.x", bf16Bits(x));
    raw.alloc("t.y", m * N * 2);
    raw.fillRandom("t.y", "bytes", 3); // poison
    raw.linear(name, N, K, "t.x", "t.y", m);
    const got = downloadBf16(raw, "t.y");
    const ref = new Float32Array(m * N);
    let n0 = 0;
    for (const src of sources) {
      const L = refLayers.get(src)!;
      const y = L.forward(x, m);
      for (let i = 0; i < m; i++) ref.set(y.subarray(i * L.outFeatures, (i + 1) * L.outFeatures), i * N + n0);
      n0 += L.outFeatures;
    }
    out.push(result(`engine linear ${name} M=${m} K=${K} N=${N} vs reference layer`, relErr(got, ref), 1e-2));
  }
  return out;
}
