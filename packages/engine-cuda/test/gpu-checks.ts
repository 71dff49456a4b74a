// Correctness checks of the engine on a GPU, shared by gpu.test.ts (vitest) and bench/device-run.ts (the device
// script). Every check compares against an independent host reference: float64 attention / GEMV, or the CPU
// FLUX forward of @svdquant/models on the same parameters (W4A4 / W4A16 layers through the reference layers of
// reference-layers.ts that follow the kernels' documented arithmetic).
import { dequantize, p2Parts, packNibbles, quantize, quantizeW4A16, specFor } from "@svdquant/int4";
import { p2WeightOperand } from "@svdquant/kernels-cuda";
import {
  CalibrationRecorder,
  type FluxConfig,
  type FluxInputs,
  FluxTransformer,
  LinearFactory,
  parseFluxConfig,
} from "@svdquant/models";
import { openModelFolder, type Tensor } from "@svdquant/tensor";
import { FluxEngine } from "../src/index.js";
import {
  bf,
  bf16Bits,
  bf16Tensor,
  type CheckResult,
  downloadBf16,
  memorySource,
  relErr,
  result,
  rng,
  uniformBf16,
} from "./helpers.js";
import { checkEngineLinears, ReferenceModelParts, refLayers } from "./reference-layers.js";

export type { CheckResult } from "./helpers.js";

// ---------------------------------------------------------------- attention vs float64
export function checkAttention(B: number, H: number, S: number, Dh: number, seed = 1): CheckResult {
  const r = rng(seed);
  const n = B * H * S * Dh;
  const q = uniformBf16(r, n, -2, 2);
  const k = uniformBf16(r, n, -2, 2);
  const v = uniformBf16(r, n, -1, 1);
  const ref = new Float64Array(B * S * H * Dh); // [B, S, H·Dh]
  const sc = new Float64Array(S);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const base = (b * H + h) * S * Dh;
      for (let i = 0; i < S; i++) {
        let mx = -Infinity;
        for (let j = 0; j < S; j++) {
          let s = 0;
          for (let d = 0; d < Dh; d++) s += q[base + i * Dh + d]! * k[base + j * Dh + d]!;
          sc[j] = s / Math.sqrt(Dh);
          mx = Math.max(mx, sc[j]!);
        }
        let sum = 0;
        for (let j = 0; j < S; j++) sum += sc[j] = Math.exp(sc[j]! - mx);
        for (let d = 0; d < Dh; d++) {
          let o = 0;
          for (let j = 0; j < S; j++) o += sc[j]! * v[base + j * Dh + d]!;
          ref[((b * S + i) * H + h) * Dh + d] = o / sum;
        }
      }
    }
  const cfg = parseFluxConfig({ num_attention_heads: H, attention_head_dim: Dh, axes_dims_rope: [2, 2, Dh - 4] });
  const e = engineFor(cfg);
  try {
    const raw = e.raw;
    for (const [name, a] of [
      ["t.q", q],
      ["t.k", k],
      ["t.v", v],
    ] as const) {
      raw.alloc(name, n * 2);
      raw.upload(name, bf16Bits(a));
    }
    raw.alloc("t.o", n * 2);
    raw.fillRandom("t.o", "bytes", 7); // poison
    raw.attention("t.q", "t.k", "t.v", "t.o", B, H, S, Dh);
    const got = downloadBf16(raw, "t.o");
    return result(`attention B=${B} H=${H} S=${S} Dh=${Dh}`, relErr(got, ref), 1e-2);
  } finally {
    e.free();
  }
}

// An engine with no model (single-op checks only).
function engineFor(cfg: FluxConfig): FluxEngine {
  // FluxEngine.random on a zero-block config would still allocate head weights; use a throwaway tiny model.
  return FluxEngine.random(
    { ...cfg, numLayers: 0, numSingleLayers: 0, inChannels: 16, jointAttentionDim: 16, pooledProjectionDim: 16 },
    { mode: "bf16" },
  );
}

// ---------------------------------------------------------------- W4A16 GEMV vs float64
export function checkGemvW4A16(M: number, K: number, N: number, seed = 2, variant: 0 | 1 | 2 | 3 = 0): CheckResult {
  const r = rng(seed);
  const x = uniformBf16(r, M * K, -1, 1);
  const w = new Float32Array(N * K);
  for (let i = 0; i < w.length; i++) w[i] = (r() - 0.5) / Math.sqrt(K);
  const q = quantizeW4A16(w, N, K, { groupSize: 64, scaleDtype: "BF16" });
  const bias = uniformBf16(r, N, -0.1, 0.1);
  const ref = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const g = n * (K / 64) + Math.floor(k / 64);
        s += x[m * K + k]! * (q.codes[n * K + k]! * q.scales[g]! + q.zeros[g]!);
      }
      ref[m * N + n] = s + bias[n]!;
    }
  const cfg = parseFluxConfig({ num_attention_heads: 2, attention_head_dim: 16, axes_dims_rope: [4, 6, 6] });
  const e = engineFor(cfg);
  try {
    const raw = e.raw;
    const codes = new Uint8Array((N * K) / 2);
    for (let i = 0; i < N * K; i += 2) codes[i / 2] = (q.codes[i]! & 15) | ((q.codes[i + 1]! & 15) << 4);
    const put = (name: string, a: ArrayBufferView) => {
      raw.alloc(name, a.byteLength);
      raw.upload(name, a);
    };
    put("g.x", bf16Bits(x));
    put("g.c", codes);
    put("g.s", bf16Bits(q.scales));
    put("g.z", bf16Bits(q.zeros));
    put("g.b", bf16Bits(bias));
    raw.alloc("g.o", M * N * 2);
    raw.gemvW4A16("g.x", "g.c", "g.s", "g.z", "g.b", "g.o", M, K, N, variant);
    const got = downloadBf16(raw, "g.o");
    const kind = ["auto", "CUDA cores", "tensor cores", "stream"][variant];
    return result(`w4a16 gemv (${kind}) M=${M} K=${K} N=${N}`, relErr(got, ref), 1e-2);
  } finally {
    e.free();
  }
}

// ---------------------------------------------------------------- whole model vs the CPU forward
export function fluxInputs(c: FluxConfig, B: number, St: number, Si: number, seed: number): FluxInputs {
  const r = rng(seed);
  const u = (n: number, s = 1) => Float32Array.from({ length: n }, () => s * (2 * r() - 1));
  const w = Math.ceil(Math.sqrt(Si));
  const imgIds = new Float32Array(Si * 3);
  for (let i = 0; i < Si; i++) {
    imgIds[i * 3 + 1] = Math.floor(i / w);
    imgIds[i * 3 + 2] = i % w;
  }
  return {
    batch: B,
    imgTokens: Si,
    txtTokens: St,
    hiddenStates: u(B * Si * c.inChannels),
    encoderHiddenStates: u(B * St * c.jointAttentionDim),
    pooledProjections: u(B * c.pooledProjectionDim),
    timestep: Array.from({ length: B }, (_, i) => 0.25 + 0.5 * i),
    ...(c.guidanceEmbeds ? { guidance: Array.from({ length: B }, (_, i) => 3.5 + i) } : {}),
    imgIds,
    txtIds: new Float32Array(St * 3),
  };
}

/** flux-tiny (a BF16 fixture folder): the engine's 16-bit mode vs the CPU float32 forward on the same bf16 weights. */
export async function checkTinyBf16(dir: string, B: number, St: number, Si: number): Promise<CheckResult> {
  const cpu = await FluxTransformer.fromFolder(dir);
  const folder = await openModelFolder(dir);
  const e = await FluxEngine.load(cpu.config, folder.weights);
  try {
    const inp = fluxInputs(cpu.config, B, St, Si, 11 + B + St + Si);
    const ref = await cpu.forward(inp);
    const got = e.step(inp);
    return result(`flux-tiny bf16 mode vs CPU B=${B} St=${St} Si=${Si}`, relErr(got, ref), 2e-2);
  } finally {
    e.free();
    await folder.weights.close();
  }
}

/** A small FLUX (D = 256 = 2 x 128, so W4A4's N % 128 holds) with guidance, for the W4A4 check. */
export function smallW4A4Config(): FluxConfig {
  return parseFluxConfig({
    num_attention_heads: 2,
    attention_head_dim: 128,
    axes_dims_rope: [16, 56, 56],
    in_channels: 64,
    joint_attention_dim: 128,
    pooled_projection_dim: 64,
    num_layers: 1,
    num_single_layers: 2,
    guidance_embeds: true,
  });
}

/**
 * The engine's W4A4 mode (block linears: random packed W4A4 layers, rank 32, one smooth per input group; AdaNorm:
 * W4A16 from quantizeW4A16) vs the CPU forward with reference layers of the same parameters.
 */
export async function checkW4A4Small(B: number, St: number, Si: number, seed = 5): Promise<CheckResult> {
  const { cpu, engSrc, c } = await buildW4A4Small(seed);
  const inp = fluxInputs(c, B, St, Si, seed + 100);
  const ref = await cpu.forward(inp);
  // Noise floor: re-quantizing every W4A4 input makes the model discontinuous in its activations. The reference
  // run once on bf16-rounded and once on float32 activations (a bf16-level input perturbation) differs by this much;
  // the engine (bf16 activations throughout) may not differ from the reference by more than 1.5x that (and 3e-2).
  const { cpu: cpuF32 } = await buildW4A4Small(seed, false);
  const floor = relErr(await cpuF32.forward(inp), ref).relL2;
  await buildW4A4Small(seed); // restore the bf16-input reference layers for later checks
  const e = await FluxEngine.load(c, memorySource(engSrc));
  try {
    const got = e.step(inp);
    const tol = Math.max(3e-2, 1.5 * floor);
    return result(
      `flux-small W4A4 mode vs CPU reference layers B=${B} St=${St} Si=${Si} (noise floor ${floor.toExponential(2)})`,
      relErr(got, ref),
      tol,
    );
  } finally {
    e.free();
  }
}

/**
 * The small W4A4 model: its CPU model (reference layers; `roundInput` false feeds them float32 activations instead
 * of bf16-rounded ones) and the engine's tensor source.
 */
export async function buildW4A4Small(seed = 5, roundInput = true) {
  const c = smallW4A4Config();
  const { fluxParams, linearNamesOf } = await import("@svdquant/models");
  const r = rng(seed);
  const dense = new Map<string, Tensor>();
  const groupOf = (name: string) => {
    const m = /^(single_)?transformer_blocks\.(\d+)\.(attn\.(to_[qkv]|add_[qkv]_proj)|proj_mlp)$/.exec(name);
    if (!m) return name;
    return `${m[1] ?? ""}${m[2]}.${m[4]?.startsWith("add") ? "add" : "x"}`;
  };
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
  const parts = new ReferenceModelParts(r, roundInput);
  for (const name of linearNamesOf(fluxParams(c))) {
    if (!/transformer_blocks\./.test(name)) continue;
    const weight = dense.get(`${name}.weight`)!;
    const [N, K] = weight.shape as [number, number];
    const bias = dense.get(`${name}.bias`)!.toFloat32();
    if (/norm1(_context)?\.linear$|\.norm\.linear$/.test(name)) parts.w4a16(name, weight, bias);
    else parts.w4a4(name, N, K, bias, groupOf(name), /\.ff(_context)?\.net\.2$/.test(name));
  }
  const factory = new LinearFactory(parts.recipe());
  const cpu = await FluxTransformer.fromSource(c, memorySource(dense), { factory });
  return { cpu, engSrc: parts.engineSource(dense), c, refs: refLayers };
}

/**
 * Single engine linears of the small W4A4 model on one bf16 input each, vs the reference layers on the same
 * values: the fused q/k/v (stacked W4A4, rank 96 through cuBLAS), an unsigned FFN-down layer, a single block's
 * proj_out (K = 5D) and a W4A16 AdaNorm layer. Same input bits on both sides, so the activation codes agree and
 * only f32 summation order and the bf16 output rounding remain.
 */
export async function checkW4A4Layers(seed = 5): Promise<CheckResult[]> {
  const { engSrc, c } = await buildW4A4Small(seed);
  const e = await FluxEngine.load(c, memorySource(engSrc));
  const d = c.numAttentionHeads * c.attentionHeadDim;
  try {
    e.prepare(2, 7, 37);
    const p = "transformer_blocks.0.";
    return checkEngineLinears(
      e.raw,
      [
        {
          name: `${p}attn.qkv`,
          sources: ["to_q", "to_k", "to_v"].map((n) => `${p}attn.${n}`),
          N: 3 * d,
          K: d,
          M: 88,
          lo: -2,
        },
        { name: `${p}ff.net.2`, sources: [`${p}ff.net.2`], N: d, K: 4 * d, M: 88, lo: -0.17 },
        {
          name: "single_transformer_blocks.1.proj_out",
          sources: ["single_transformer_blocks.1.proj_out"],
          N: d,
          K: 5 * d,
          M: 88,
          lo: -2,
        },
        { name: `${p}norm1.linear`, sources: [`${p}norm1.linear`], N: 6 * d, K: d, M: 2, lo: -2 },
      ],
      rng(seed + 7),
    );
  } finally {
    e.free();
  }
}

// ---------------------------------------------------------------- int4p2 engine linear vs float64
const geluTanh = (v: number): number => 0.5 * v * (1 + Math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));

/** How an int4p2 layer sits on the device: the e4m3 operand (`.p2_weight`) or 4-bit codes + exponents (`.p2_codes`). */
export type P2Storage = "e4m3" | "int4";

/**
 * One int4p2 engine linear (cuBLAS low-rank down, svdq_p2_quantize_rows, for 4-bit storage eng_p2_expand, the
 * cuBLASLt FP8 GEMM with its bias or bias + GELU epilogue) against float64 on @svdquant/int4's int4p2 numerics: the
 * activation codes of quantize(x/λ, int4p2 "pow2"), the weight residual of quantize(W, int4p2) as packed by
 * @svdquant/kernels-cuda's p2WeightOperand (e4m3) or as packNibbles codes + p2Parts exponents + the operand's
 * low-rank columns (int4), and the exact low-rank branch x·lora_downᵀ·lora_upᵀ. Differences left: near-tie groups,
 * the E4M3 hi/lo split of the branch (about 2^-8 of it) and the bf16 output.
 */
export function checkP2Linear(
  M: number,
  K: number,
  N: number,
  gelu: boolean,
  storage: P2Storage = "e4m3",
  fastAccum = false,
  seed = 11,
) {
  const c = p2Case(M, K, N, gelu, seed);
  const how = `${storage} weights${fastAccum ? ", FP8 fast accumulation" : ""}`;
  return result(
    `int4p2 engine linear (${how}) M=${M} K=${K} N=${N}${gelu ? " +GELU" : ""} vs float64`,
    relErr(runP2Linear(c, storage, fastAccum), c.ref),
    1e-2,
  );
}

/**
 * The 4-bit-stored int4p2 layer gives the e4m3-stored layer's output bit for bit (the expansion kernel rebuilds the
 * operand exactly, then the same GEMM runs): tolerance 0.
 */
export function checkP2Storage(M: number, K: number, N: number, gelu: boolean, seed = 12): CheckResult {
  const c = p2Case(M, K, N, gelu, seed);
  return result(
    `int4p2 4-bit-stored weights == e4m3-stored, bit for bit, M=${M} K=${K} N=${N}${gelu ? " +GELU" : ""}`,
    relErr(runP2Linear(c, "int4"), runP2Linear(c, "e4m3")),
    0,
  );
}

interface P2Case {
  M: number;
  K: number;
  N: number;
  gelu: boolean;
  x: Float32Array;
  lam: Float32Array;
  down: Float32Array;
  bias: Float32Array;
  res: ReturnType<typeof quantize>;
  op: ReturnType<typeof p2WeightOperand>;
  ref: Float64Array;
}

function p2Case(M: number, K: number, N: number, gelu: boolean, seed: number): P2Case {
  const r = rng(seed);
  const R = 32;
  const x = uniformBf16(r, M * K, -2, 2);
  for (let m = 0; m < M; m++) for (let k = 5; k < K; k += 97) x[m * K + k] = bf(x[m * K + k]! * 12); // outlier channels
  const lam = uniformBf16(r, K, 0.6, 1.6);
  const w = new Float32Array(N * K);
  for (let i = 0; i < w.length; i++) w[i] = (2 * r() - 1) / Math.sqrt(K);
  const down = uniformBf16(r, R * K, -1 / Math.sqrt(K), 1 / Math.sqrt(K));
  const up = uniformBf16(r, N * R, -0.05, 0.05);
  const bias = uniformBf16(r, N, -0.1, 0.1);
  const res = quantize(w, N, K, specFor("int4p2"));
  const op = p2WeightOperand(res, up, R);
  // the kernel's v = x · (1/λ) in f32 (__frcp_rn then __fmul_rn)
  const xs = new Float32Array(M * K);
  for (let m = 0; m < M; m++)
    for (let k = 0; k < K; k++) xs[m * K + k] = Math.fround(x[m * K + k]! * Math.fround(1 / lam[k]!));
  const dqx = dequantize(quantize(xs, M, K, specFor("int4p2", { p2RowScale: "pow2" })));
  const dw = dequantize(res);
  const ref = new Float64Array(M * N);
  const lact = new Float64Array(M * R);
  for (let m = 0; m < M; m++)
    for (let q = 0; q < R; q++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k]! * down[q * K + k]!;
      lact[m * R + q] = s;
    }
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += dqx[m * K + k]! * dw[n * K + k]!;
      for (let q = 0; q < R; q++) s += lact[m * R + q]! * up[n * R + q]!;
      s += bias[n]!;
      ref[m * N + n] = gelu ? geluTanh(s) : s;
    }
  return { M, K, N, gelu, x, lam, down, bias, res, op, ref };
}

function runP2Linear(c: P2Case, storage: P2Storage, fastAccum = false): Float32Array {
  const { M, K, N, op } = c;
  const cfg = parseFluxConfig({ num_attention_heads: 2, attention_head_dim: 16, axes_dims_rope: [4, 6, 6] });
  const e = engineFor(cfg);
  try {
    if (fastAccum) e.raw.setInt("p2.fast_accum", 1); // read by prepare
    e.prepare(1, 8, M);
    const raw = e.raw;
    const put = (name: string, a: ArrayBufferView) => {
      raw.alloc(name, a.byteLength);
      raw.upload(name, a);
    };
    if (storage === "e4m3") put("p.lin.p2_weight", op.b8);
    else {
      put("p.lin.p2_codes", packNibbles(c.res.codes, N, K));
      put("p.lin.p2_exps", p2Parts(c.res).exponents);
      const lowrank = new Uint8Array(N * (op.Kx - K));
      for (let n = 0; n < N; n++) lowrank.set(op.b8.subarray(n * op.Kx + K, (n + 1) * op.Kx), n * (op.Kx - K));
      put("p.lin.p2_lowrank", lowrank);
    }
    put("p.lin.p2_wscale", op.sw);
    put("p.lin.p2_lr_shift", op.lrShift);
    put("p.lin.lora_down", bf16Bits(c.down));
    put("p.lin.smooth", bf16Bits(c.lam));
    put("p.lin.bias", bf16Bits(c.bias));
    put("p.x", bf16Bits(c.x));
    raw.alloc("p.y", M * N * 2);
    raw.fillRandom("p.y", "bytes", 9); // poison
    raw.linear("p.lin", N, K, "p.x", "p.y", M, c.gelu ? 1 : 0);
    return downloadBf16(raw, "p.y");
  } finally {
    e.free();
  }
}

// ---------------------------------------------------------------- calibration observer vs CalibrationRecorder
export interface ObserverCheck {
  name: string;
  layers: number;
  /** Worst layer: max over channels |absmax_gpu − absmax_cpu| / max absmax_cpu. */
  absmaxRelMax: number;
  /** Worst layer: rel-L2 of the reservoir rows (the same tokens when the decisions agree). */
  reservoirRelL2: number;
  /** Every layer: same tokensSeen and rows as the CPU recorder. */
  countsEqual: boolean;
  tol: number;
  ok: boolean;
}

/**
 * flux-tiny (BF16 fixture): the engine's observer in 16-bit mode vs @svdquant/models' CalibrationRecorder on the CPU
 * forward of the same weights and inputs, over `steps` forwards of changing token counts (the reservoir fills and
 * replaces within a batch). `layers`: the recorded subset (undefined: every linear).
 */
export async function checkObserverTiny(
  dir: string,
  opts: { reservoirSize: number; seed: number; layers?: string[]; shapes: [number, number, number][] },
): Promise<ObserverCheck> {
  const cpu = await FluxTransformer.fromFolder(dir);
  const folder = await openModelFolder(dir);
  const e = await FluxEngine.load(cpu.config, folder.weights);
  try {
    const want = opts.layers === undefined ? undefined : new Set(opts.layers);
    const rec = new CalibrationRecorder({
      reservoirSize: opts.reservoirSize,
      seed: opts.seed,
      ...(want ? { filter: (n: string) => want.has(n) } : {}),
    });
    const obs = e.observe({
      reservoirSize: opts.reservoirSize,
      seed: opts.seed,
      ...(opts.layers ? { layers: opts.layers } : {}),
    });
    for (const [i, [B, St, Si]] of opts.shapes.entries()) {
      const inp = fluxInputs(cpu.config, B, St, Si, 100 + i);
      // the engine computes on bf16 inputs: give the CPU the same rounded values
      const r = (a: Float32Array) => Float32Array.from(a, bf);
      const cin = {
        ...inp,
        hiddenStates: r(inp.hiddenStates),
        encoderHiddenStates: r(inp.encoderHiddenStates),
        pooledProjections: r(inp.pooledProjections),
      };
      await cpu.forward(cin, { observer: rec });
      e.step(inp);
    }
    const got = obs.stats();
    let absWorst = 0;
    let resWorst = 0;
    let counts = got.size === rec.names().length;
    for (const name of rec.names()) {
      const a = rec.get(name);
      const g = got.get(name);
      if (g === undefined || g.tokensSeen !== a.tokensSeen || g.rows !== a.rows || g.inFeatures !== a.inFeatures) {
        counts = false;
        continue;
      }
      const ea = relErr(g.absmax, a.absmax);
      absWorst = Math.max(absWorst, ea.finite ? ea.relMax : Number.POSITIVE_INFINITY);
      const n = a.rows * a.inFeatures;
      const er = relErr(g.reservoir.subarray(0, n), a.reservoir.subarray(0, n));
      resWorst = Math.max(resWorst, er.finite ? er.relL2 : Number.POSITIVE_INFINITY);
    }
    const tol = 3e-2; // bf16 forward of a 5-block model: inputs of the last layers within ~1e-2 (checkTinyBf16)
    const shapes = opts.shapes.map((s) => s.join("/")).join(", ");
    return {
      name: `observer vs CalibrationRecorder (${opts.layers ? `${opts.layers.length} layers` : "every layer"}, reservoir ${opts.reservoirSize}, B/St/Si ${shapes})`,
      layers: got.size,
      absmaxRelMax: absWorst,
      reservoirRelL2: resWorst,
      countsEqual: counts,
      tol,
      ok: counts && absWorst <= tol && resWorst <= tol,
    };
  } finally {
    e.free();
    await folder.weights.close();
  }
}

/** The observer cases of the GPU test and the device script: every layer, and the quantizer's kind of subset. */
export const OBSERVER_CASES: {
  label: string;
  reservoirSize: number;
  seed: number;
  layers?: string[];
  shapes: [number, number, number][];
}[] = [
  {
    label: "every layer, reservoir 16, batch 2, odd tokens",
    reservoirSize: 16,
    seed: 5,
    shapes: [
      [2, 9, 35],
      [1, 8, 16],
      [2, 9, 35],
    ],
  },
  {
    label: "one name per input group (to_q, add_q_proj, ...), reservoir 64",
    reservoirSize: 64,
    seed: 3,
    layers: [
      "transformer_blocks.0.attn.to_q",
      "transformer_blocks.1.attn.add_q_proj",
      "transformer_blocks.1.ff.net.2",
      "transformer_blocks.0.ff_context.net.0.proj",
      "single_transformer_blocks.2.attn.to_q",
      "single_transformer_blocks.0.proj_mlp",
      "single_transformer_blocks.1.proj_out",
      "time_text_embed.timestep_embedder.linear_2",
    ],
    shapes: [
      [1, 8, 16],
      [1, 8, 16],
      [1, 8, 16],
      [1, 8, 16],
      [1, 8, 16],
    ],
  },
];
