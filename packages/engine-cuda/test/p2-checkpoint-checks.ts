// GPU check of the int4p2 checkpoint path, shared by p2-gpu.test.ts (vitest) and bench/p2-checkpoint-run.ts (the
// device script): one int4p2 layer packed by @svdquant/int4 packP2Layer into a safetensors file, read back and
// converted by engineLinearItems (convert.ts) into the engine's 4-bit device tensors, run by the engine's `linear`
// (expansion to FP8, activation quantizer, FP8 GEMM with the low-rank columns, bias / GELU epilogue), against
// float64 on @svdquant/int4's int4p2 numerics and the exact low-rank branch; and a small FLUX step (D = 1024)
// loaded from int4p2 checkpoint tensors by FluxEngine.load, vs the CPU reference and, bit for bit, vs the same
// model uploaded as FP8-expanded operands.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  activationSpecFor,
  dequantize,
  packP2Layer,
  type Quantized,
  type QuantizedLinear,
  quantize,
  specFor,
} from "@svdquant/int4";
import { p2WeightOperand } from "@svdquant/kernels-cuda";
import {
  DENSE_RECIPE,
  type FluxConfig,
  FluxTransformer,
  fluxParams,
  LinearFactory,
  type LinearLayer,
  parseFluxConfig,
} from "@svdquant/models";
import { SafetensorsFile, type Tensor, writeSafetensors } from "@svdquant/tensor";
import { engineLinearItems, FluxEngine } from "../src/index.js";
import { fluxInputs } from "./gpu-checks.js";
import { bf, bf16Bits, bf16Tensor, memorySource, relErr, rng, uniformBf16 } from "./helpers.js";

export interface P2CheckResult {
  name: string;
  relL2: number;
  relMax: number;
  tol: number;
  ok: boolean;
  /** Device tensors the converter produced (names after the layer's). */
  tensors: string[];
  /**
   * The converted layer's output equals, bit for bit, the same layer uploaded as the FP8-expanded operand
   * (`L.p2_weight` = @svdquant/kernels-cuda p2WeightOperand of the in-memory record, before any file).
   */
  sameAsOperand: boolean;
}

const geluTanh = (v: number): number => 0.5 * v * (1 + Math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));

/**
 * One int4p2 layer [N, K] (rank 32, λ, bias; outlier input channels) from a packed file through the engine, vs
 * float64: Q_a(x·(1/λ))·dequant(residual)ᵀ + (x·L_downᵀ)·L_upᵀ + b (GELU-tanh when `gelu`), with Q_a the int4p2
 * "pow2" activation quantizer the engine's kernel implements. Left to differ: near-tie groups, the hi/lo E4M3
 * split of the branch (about 2^-8 of it), the bf16 output.
 */
export async function checkP2CheckpointLinear(
  M: number,
  K: number,
  N: number,
  gelu: boolean,
  seed = 13,
): Promise<P2CheckResult> {
  const r = rng(seed);
  const R = 32;
  const x = uniformBf16(r, M * K, -2, 2);
  for (let m = 0; m < M; m++) for (let k = 5; k < K; k += 97) x[m * K + k] = bf(x[m * K + k]! * 12); // outliers
  const lam = uniformBf16(r, K, 0.6, 1.6);
  const w = new Float32Array(N * K);
  for (let i = 0; i < w.length; i++) w[i] = (2 * r() - 1) / Math.sqrt(K);
  for (let n = 0; n < N; n += 7) for (let k = 0; k < K; k += 61) w[n * K + k] = w[n * K + k]! * 16; // weight outliers
  const rec: QuantizedLinear = {
    residual: quantize(w, N, K, specFor("int4p2")),
    rank: R,
    lowRankDown: uniformBf16(r, R * K, -1 / Math.sqrt(K), 1 / Math.sqrt(K)),
    lowRankUp: uniformBf16(r, N * R, -0.05, 0.05),
    bias: uniformBf16(r, N, -0.1, 0.1),
    smooth: lam,
    act: activationSpecFor("int4p2"),
  };
  // float64 reference; the kernel's v = x · (1/λ) in f32 (reciprocal, then product)
  const xs = new Float32Array(M * K);
  for (let m = 0; m < M; m++)
    for (let k = 0; k < K; k++) xs[m * K + k] = Math.fround(x[m * K + k]! * Math.fround(1 / lam[k]!));
  const dqx = dequantize(quantize(xs, M, K, specFor("int4p2", { p2RowScale: "pow2" })));
  const dw = dequantize(rec.residual);
  const lact = new Float64Array(M * R);
  for (let m = 0; m < M; m++)
    for (let q = 0; q < R; q++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k]! * rec.lowRankDown[q * K + k]!;
      lact[m * R + q] = s;
    }
  const ref = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = rec.bias![n]!;
      for (let k = 0; k < K; k++) s += dqx[m * K + k]! * dw[n * K + k]!;
      for (let q = 0; q < R; q++) s += lact[m * R + q]! * rec.lowRankUp[n * R + q]!;
      ref[m * N + n] = gelu ? geluTanh(s) : s;
    }

  const dir = await mkdtemp(join(tmpdir(), "svdq-p2-"));
  const path = join(dir, "layer.safetensors");
  const tensors: string[] = [];
  // a throwaway zero-block model: only its workspace and `linear` are used
  const cfg = parseFluxConfig({ num_attention_heads: 2, attention_head_dim: 16, axes_dims_rope: [4, 6, 6] });
  const e = FluxEngine.random(
    { ...cfg, numLayers: 0, numSingleLayers: 0, inChannels: 16, jointAttentionDim: 16, pooledProjectionDim: 16 },
    { mode: "bf16" },
  );
  try {
    const packed = packP2Layer(rec, { name: "blk.lin" });
    await writeSafetensors(path, new Map(Object.entries(packed).map(([k, t]) => [`blk.lin.${k}`, t])));
    const file = await SafetensorsFile.open(path);
    e.prepare(1, 8, M);
    const raw = e.raw;
    try {
      // the default p2SupportedK is the addon's: a K the kernels lack fails here, naming the layer
      for await (const it of engineLinearItems({ name: "p.lin", sources: ["blk.lin"], N: [N], K }, file)) {
        if (it.kind === "int") raw.setInt(it.name, it.value);
        else {
          raw.alloc(it.name, it.data.byteLength);
          raw.upload(it.name, it.data);
          tensors.push(it.name.slice("p.lin.".length));
        }
      }
    } finally {
      await file.close();
    }
    raw.alloc("p.x", M * K * 2);
    raw.upload("p.x", bf16Bits(x));
    raw.alloc("p.y", M * N * 2);
    raw.fillRandom("p.y", "bytes", 9); // poison
    raw.linear("p.lin", N, K, "p.x", "p.y", M, gelu ? 1 : 0);
    const bits = new Uint16Array(raw.download("p.y"));
    // the same layer as the FP8-expanded operand, straight from the record (no file, no converter)
    const op = p2WeightOperand(rec.residual, rec.lowRankUp, R);
    const put = (name: string, a: ArrayBufferView) => {
      raw.alloc(name, a.byteLength);
      raw.upload(name, a);
    };
    put("p.op.p2_weight", op.b8);
    put("p.op.p2_wscale", op.sw);
    put("p.op.p2_lr_shift", op.lrShift);
    put("p.op.lora_down", bf16Bits(rec.lowRankDown));
    put("p.op.smooth", bf16Bits(lam));
    put("p.op.bias", bf16Bits(rec.bias!));
    raw.alloc("p.y2", M * N * 2);
    raw.fillRandom("p.y2", "bytes", 10); // another poison
    raw.linear("p.op", N, K, "p.x", "p.y2", M, gelu ? 1 : 0);
    const bits2 = new Uint16Array(raw.download("p.y2"));
    const sameAsOperand = bits.length === bits2.length && bits.every((b, i) => b === bits2[i]);
    const got = Float32Array.from(bits, (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!);
    const err = relErr(got, ref);
    const tol = 1e-2; // as the device-tensor int4p2 check (gpu-checks.ts checkP2Linear): bf16 output, E4M3 hi/lo branch
    return {
      name: `int4p2 layer from a packed file → convert → engine linear M=${M} K=${K} N=${N}${gelu ? " +GELU" : ""} vs float64`,
      relL2: err.relL2,
      relMax: err.relMax,
      tol,
      ok: err.finite && err.relL2 <= tol && sameAsOperand,
      tensors: tensors.sort(),
      sameAsOperand,
    };
  } finally {
    e.free();
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- a FLUX step from int4p2 checkpoint layers
/**
 * CPU reference of one member (rows of a stacked int4p2 layer) as the engine computes it: x rounded to bf16 (the
 * engine's activations; `roundInput` false keeps f32 for the noise floor), v = x · f32(1/λ), int4p2 "pow2" codes of
 * v (@svdquant/int4), y = Q(v)·dequant(residual)ᵀ + (x·L_downᵀ)·L_upᵀ + b in float64.
 */
class RefP2 implements LinearLayer {
  readonly kind = "ref-int4p2";
  private readonly w: Float32Array;
  private readonly inv: Float32Array;
  constructor(
    readonly name: string,
    readonly inFeatures: number,
    readonly outFeatures: number,
    private readonly rec: QuantizedLinear,
    private readonly roundInput: boolean,
  ) {
    this.w = dequantize(rec.residual);
    this.inv = Float32Array.from(rec.smooth!, (l) => 1 / l);
  }
  forward(x: Float32Array, m: number): Float32Array {
    const K = this.inFeatures;
    const N = this.outFeatures;
    const R = this.rec.rank;
    const xr = Float32Array.from(x, (v) => (this.roundInput ? bf(v) : v));
    const v = Float32Array.from(xr, (u, i) => u * this.inv[i % K]!);
    const q = dequantize(quantize(v, m, K, specFor("int4p2", { p2RowScale: "pow2" }), this.name));
    const out = new Float32Array(m * N);
    const la = new Float64Array(R);
    for (let i = 0; i < m; i++) {
      for (let r = 0; r < R; r++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += xr[i * K + k]! * this.rec.lowRankDown[r * K + k]!;
        la[r] = s;
      }
      for (let n = 0; n < N; n++) {
        let s = this.rec.bias![n]!;
        for (let k = 0; k < K; k++) s += q[i * K + k]! * this.w[n * K + k]!;
        for (let r = 0; r < R; r++) s += la[r]! * this.rec.lowRankUp[n * R + r]!;
        out[i * N + n] = s;
      }
    }
    return out;
  }
}

/**
 * FLUX with D = 1024 (8 heads x 128; the int4p2 kernels take K = 1024), one double and one single block, guidance.
 * int4p2: every block linear with K = D (q/k/v and add_q/k/v fused, to_out, to_add_out, both ff.net.0.proj, the
 * single block's q/k/v + proj_mlp on one operand); 16-bit: the K = 4D / 5D layers, AdaNorm, embedders.
 */
export function p2ModelConfig(): FluxConfig {
  return parseFluxConfig({
    num_attention_heads: 8,
    attention_head_dim: 128,
    axes_dims_rope: [16, 56, 56],
    in_channels: 64,
    joint_attention_dim: 128,
    pooled_projection_dim: 64,
    num_layers: 1,
    num_single_layers: 1,
    guidance_embeds: true,
  });
}

/**
 * The input groups of p2ModelConfig's int4p2 layers (the members of each share one branch and λ) and the engine
 * linears they become, each with its count of members (rows in order).
 */
function p2Groups(): { members: string[]; engine: [string, number][] }[] {
  const d = "transformer_blocks.0.";
  const s = "single_transformer_blocks.0.";
  const one = (n: string, e = n) => ({ members: [n], engine: [[e, 1]] as [string, number][] });
  return [
    { members: [`${d}attn.to_q`, `${d}attn.to_k`, `${d}attn.to_v`], engine: [[`${d}attn.qkv`, 3]] },
    {
      members: [`${d}attn.add_q_proj`, `${d}attn.add_k_proj`, `${d}attn.add_v_proj`],
      engine: [[`${d}attn.add_qkv`, 3]],
    },
    one(`${d}attn.to_out.0`),
    one(`${d}attn.to_add_out`),
    one(`${d}ff.net.0.proj`),
    one(`${d}ff_context.net.0.proj`),
    {
      members: [`${s}attn.to_q`, `${s}attn.to_k`, `${s}attn.to_v`, `${s}proj_mlp`],
      engine: [
        [`${s}attn.qkv`, 3],
        [`${s}proj_mlp`, 1],
      ],
    },
  ];
}

/**
 * The model: dense random bf16 weights; each int4p2 group quantized from its stacked dense weight (int4p2 "max"),
 * with a random λ, rank-32 branch and the dense bias, split into its members' packP2Layer tensors (the checkpoint
 * layout the converter reads); the CPU model runs RefP2 layers of the same records.
 */
export async function buildP2Model(seed: number, roundInput: boolean) {
  const c = p2ModelConfig();
  const r = rng(seed);
  const dense = new Map<string, Tensor>();
  for (const p of fluxParams(c)) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const vals =
      p.shape.length === 1 && p.name.includes("norm")
        ? uniformBf16(r, n, 0.9, 1.1)
        : p.name.endsWith(".bias")
          ? uniformBf16(r, n, -0.02, 0.02)
          : uniformBf16(r, n, -1 / Math.sqrt(p.shape[1] ?? 1), 1 / Math.sqrt(p.shape[1] ?? 1));
    dense.set(p.name, bf16Tensor([...p.shape], vals));
  }
  const R = 32;
  const layers = new Map<string, LinearLayer>();
  const src = new Map<string, Tensor>();
  const stacked: { engine: [string, number][]; rows: number[]; residual: Quantized; up: Float32Array }[] = [];
  for (const { members: group, engine } of p2Groups()) {
    const K = dense.get(`${group[0]}.weight`)!.shape[1]!;
    const rows = group.map((m) => dense.get(`${m}.weight`)!.shape[0]!);
    const N = rows.reduce((a, b) => a + b, 0);
    const w = new Float32Array(N * K);
    const bias = new Float32Array(N);
    let n0 = 0;
    for (const [i, m] of group.entries()) {
      w.set(dense.get(`${m}.weight`)!.toFloat32(), n0 * K);
      bias.set(dense.get(`${m}.bias`)!.toFloat32(), n0);
      n0 += rows[i]!;
    }
    const residual = quantize(w, N, K, specFor("int4p2"));
    const smooth = uniformBf16(r, K, 0.5, 2);
    const down = uniformBf16(r, R * K, -1 / Math.sqrt(K), 1 / Math.sqrt(K));
    const up = uniformBf16(r, N * R, -0.2 / Math.sqrt(R), 0.2 / Math.sqrt(R));
    stacked.push({ engine, rows, residual, up });
    const G = K / 64;
    n0 = 0;
    for (const [i, m] of group.entries()) {
      const [a, b] = [n0, n0 + rows[i]!];
      n0 = b;
      const rec: QuantizedLinear = {
        residual: {
          spec: residual.spec,
          rows: b - a,
          cols: K,
          codes: residual.codes.slice(a * K, b * K),
          scales: residual.scales.slice(a * G, b * G),
          rowScales: residual.rowScales!.slice(a, b),
          exponents: residual.exponents!.slice(a * G, b * G),
        },
        rank: R,
        lowRankDown: down,
        lowRankUp: up.slice(a * R, b * R),
        bias: bias.slice(a, b),
        smooth,
        act: activationSpecFor("int4p2"),
      };
      for (const [k, t] of Object.entries(packP2Layer(rec, { name: m }))) src.set(`${m}.${k}`, t);
      layers.set(m, new RefP2(m, K, b - a, rec, roundInput));
    }
  }
  for (const [k, t] of dense) if (!layers.has(k.replace(/\.(weight|bias)$/, ""))) src.set(k, t);
  const factory = new LinearFactory(DENSE_RECIPE, {
    provider: {
      has: (n) => layers.has(n),
      build: (n) => {
        const l = layers.get(n);
        if (l === undefined) throw new Error(`no reference layer ${n}`);
        return l;
      },
    },
  });
  const cpu = await FluxTransformer.fromSource(c, memorySource(dense), { factory });
  return { c, cpu, src, stacked };
}

/**
 * A FLUX step (D = 1024, 1 double + 1 single block) whose int4p2 layers come from checkpoint tensors through
 * FluxEngine.load (the converter: fused q/k/v from three files, the single block's q/k/v + proj_mlp on one operand
 * with c_r over all 7D rows) vs the CPU forward with RefP2 layers of the same records. Tolerance as the W4A4 model
 * check: max(3e-2, 1.5 x the noise floor of re-quantized activations, measured as the reference on f32 vs bf16 inputs).
 */
export async function checkP2Model(B: number, St: number, Si: number, seed = 21): Promise<P2CheckResult> {
  const { c, cpu, src, stacked } = await buildP2Model(seed, true);
  const inp = fluxInputs(c, B, St, Si, seed + 100);
  const ref = await cpu.forward(inp);
  const { cpu: cpuF32 } = await buildP2Model(seed, false);
  const floor = relErr(await cpuF32.forward(inp), ref).relL2;
  let got: Float32Array;
  const e = await FluxEngine.load(c, memorySource(src));
  try {
    got = e.step(inp);
  } finally {
    e.free();
  }
  // The same model with every int4p2 linear uploaded as the FP8-expanded operand of its stacked group
  // (p2WeightOperand: c_r over the group's rows, no file, no converter): the step must agree bit for bit.
  const e2 = await FluxEngine.load(c, memorySource(src));
  let sameAsOperand = false;
  try {
    const raw = e2.raw;
    for (const { engine, rows, residual, up } of stacked) {
      const op = p2WeightOperand(residual, up, 32);
      let m0 = 0;
      let n0 = 0;
      for (const [i, [name, count]] of engine.entries()) {
        const n1 = n0 + rows.slice(m0, m0 + count).reduce((a, b) => a + b, 0);
        m0 += count;
        for (const t of ["p2_codes", "p2_exps", "p2_lowrank"]) raw.freeTensor(`${name}.${t}`);
        const put = (t: string, a: ArrayBufferView) => {
          raw.alloc(`${name}.${t}`, a.byteLength);
          raw.upload(`${name}.${t}`, a);
        };
        put("p2_weight", op.b8.subarray(n0 * op.Kx, n1 * op.Kx));
        put("p2_wscale", op.sw.subarray(n0, n1));
        if (i === 0) put("p2_lr_shift", op.lrShift);
        n0 = n1;
      }
    }
    const got2 = e2.step(inp);
    sameAsOperand = got2.length === got.length && got2.every((v, i) => Object.is(v, got[i]));
  } finally {
    e2.free();
  }
  const err = relErr(got, ref);
  const tol = Math.max(3e-2, 1.5 * floor);
  return {
    name: `FLUX D=1024 (1 double + 1 single) from int4p2 checkpoint layers via FluxEngine.load vs CPU reference B=${B} St=${St} Si=${Si} (noise floor ${floor.toExponential(2)})`,
    relL2: err.relL2,
    relMax: err.relMax,
    tol,
    ok: err.finite && err.relL2 <= tol && sameAsOperand,
    tensors: [...src.keys()].filter((k) => /\.p2_codes$/.test(k)).sort(),
    sameAsOperand,
  };
}
