/**
 * The int4p2 layer (prepareP2Layer) on every native path this CPU has, forced one by one: its activation codes,
 * exponents and row scales equal @svdquant/int4's quantizer ("pow2" row scale, e / e − 1 search) byte for byte,
 * and its output matches a float64 int4p2 fake-quant layer built from @svdquant/int4 (dequantized codes in float64,
 * x·L_downᵀ·L_upᵀ in float64; for branch precision "bf16" the branch of reference.refP2BranchBf16: inputs rounded
 * to bf16 as specified, then float64), with every path also checked against the others. On `amx` both GEMMs run:
 * the AMX-INT8 band path (the default where the CPU has AMX-INT8) and AMX-BF16 (`amxInt8: false`).
 */
import { dequantize, fakeQuantize, type Quantized, quantize, specFor } from "@svdquant/int4";
import { describe, expect, it } from "vitest";
import {
  backendInfo,
  KernelsError,
  type P2BranchPrecision,
  type P2LayerSpec,
  p2GemmPath,
  prepareP2Layer,
  reference as ref64,
  setIsa,
  setThreads,
} from "../src/index.ts";
import { describePaths, type Rng, rng } from "./helpers.ts";

const info = backendInfo();
const ACT = specFor("int4p2", { p2RowScale: "pow2" }); // the engine's activation quantizer (p2.ts)

interface Case {
  M: number;
  N: number;
  K: number;
  R: number;
  bias: boolean;
  smooth: boolean;
  gelu?: boolean;
  /** Exponents spread over more than 5 levels in some weight rows and tokens (the int8 path's shadow rows). */
  spread?: boolean;
}

/** Weights quantized by @svdquant/int4 ("max" row scale), one all-zero row, outlier rows; branch and bias. */
function makeLayer(r: Rng, c: Case): { spec: P2LayerSpec; q: Quantized; w: Float32Array } {
  const { N, K, R } = c;
  const w = r.f32(N * K, 0.05);
  for (let k = 0; k < K; k++) w[(N > 2 ? 1 : 0) * K + k] *= 20; // an outlier row
  if (N > 3) w.fill(0, 2 * K, 3 * K); // S_w = 0
  if (c.spread)
    for (
      let n = 3;
      n < N;
      n += 6 // groups 2^-6 and 2^-12 below the row's others: 3 exponent bands
    )
      for (let k = 0; k < K; k++) if ((k >> 6) % 3 !== 0) w[n * K + k]! *= (k >> 6) % 3 === 1 ? 2 ** -6 : 2 ** -12;
  const q = quantize(w, N, K, specFor("int4p2"));
  return {
    q,
    w,
    spec: {
      N,
      K,
      codes: q.codes,
      exponents: q.exponents!,
      rowScales: q.rowScales!,
      ...(c.smooth ? { smooth: r.pos(K, 0.25, 4) } : {}),
      ...(R > 0 ? { lowRankDown: r.f32(R * K, 0.05), lowRankUp: r.f32(N * R, 0.05) } : {}),
      ...(c.bias ? { bias: r.f32(N) } : {}),
    },
  };
}

/** Inputs with outlier channels, an all-zero row, a zero group, and rows far below/above 1 (both row paths). */
function makeX(r: Rng, M: number, K: number, spread = false): Float32Array {
  const x = r.f32(M * K);
  if (spread)
    for (
      let m = 7;
      m < M;
      m += 2 // one group 2^-7, another 2^-13 below the rest of the token
    )
      for (let k = 0; k < Math.min(K, 128); k++) x[m * K + ((k + 64 * m) % K)]! *= k < 64 ? 2 ** -7 : 2 ** -13;
  const outliers = Array.from({ length: Math.max(1, K >> 8) }, () => r.int(0, K - 1));
  for (let m = 0; m < M; m++) for (const k of outliers) x[m * K + k]! *= 40;
  if (M > 2) x.fill(0, 2 * K, 3 * K);
  if (M > 3) x.fill(0, 3 * K, 3 * K + 64);
  if (M > 4) for (let k = 0; k < K; k++) x[4 * K + k]! *= 1e-36; // S ≈ 2^-125: the scalar row of the AVX-512 path
  if (M > 5) for (let k = 0; k < K; k++) x[5 * K + k]! *= 1e33; // S ≈ 2^106
  if (M > 6) for (let k = 0; k < K; k++) x[6 * K + k] = r.int(-7, 7) * 0.25; // codes on the grid
  return x;
}

const gelu = (v: number) => 0.5 * v * (1 + Math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));

function invSmooth(spec: P2LayerSpec): Float32Array | null {
  return spec.smooth ? Float32Array.from(spec.smooth, (v) => 1 / v) : null;
}

/** The float64 residual part Σ_k q_x·q_w with the kernel's activation definition v = f32(x·f32(1/λ)), and Σ|q_x·q_w|. */
function residualPart(spec: P2LayerSpec, q: Quantized, x: Float32Array, M: number) {
  const { N, K } = spec;
  const inv = invSmooth(spec);
  const v = Float32Array.from(x, (t, i) => (inv ? Math.fround(t * inv[i % K]!) : t));
  const qa = dequantize(quantize(v, M, K, ACT));
  const qw = dequantize(q);
  const s = new Float64Array(M * N);
  const abs = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let t = 0;
      let a = 0;
      for (let k = 0; k < K; k++) {
        const p = qa[m * K + k]! * qw[n * K + k]!;
        t += p;
        a += Math.abs(p);
      }
      s[m * N + n] = t;
      abs[m * N + n] = a;
    }
  return { s, abs };
}

/** Bound on a bf16 layer's loraAct against the float64 sum of its bf16 products (f32 sums of exact products). */
const LACT_TOL = 1e-6;

/**
 * The float64 layer: y, and per element the bound c_res·Σ_k|q_x·q_w| + c_lr·Σ_r|lact·L_up| + c_y·|y| for the f32
 * sums (residual), the branch and the epilogue. Branch "f32": x·L_downᵀ·L_upᵀ in float64 (the kernel's bf16 parts
 * give ≈ 2^-23 relative per product, plus its f32 down-projection); "bf16": reference.refP2BranchBf16, plus where a
 * lora_act within LACT_TOL of a bf16 rounding boundary may round either way (yAmbig).
 */
function reference(
  spec: P2LayerSpec,
  res: { s: Float64Array; abs: Float64Array },
  x: Float32Array,
  M: number,
  useGelu: boolean,
  branch: P2BranchPrecision,
) {
  const { N, K } = spec;
  const R = spec.lowRankUp ? spec.lowRankUp.length / N : 0;
  const y = new Float64Array(M * N);
  const tol = new Float64Array(M * N);
  let lr: Float64Array = new Float64Array(M * N);
  let labs: Float64Array = new Float64Array(M * N);
  let ambig: Float64Array = new Float64Array(M * N);
  let lact: Float64Array = new Float64Array(M * R);
  let lactAbs: Float64Array = new Float64Array(M * R);
  if (R > 0 && branch === "bf16") {
    const b = ref64.refP2BranchBf16({
      x,
      M,
      K,
      lowRankDown: spec.lowRankDown!,
      R,
      lowRankUp: spec.lowRankUp!,
      N,
      upScale: Float64Array.from(spec.rowScales, (v) => (v > 0 ? v : 1)),
      lactTol: LACT_TOL,
    });
    ({ lact, lactAbs } = b);
    lr = b.y;
    labs = b.yAbs;
    ambig = b.yAmbig;
  } else if (R > 0) {
    for (let m = 0; m < M; m++)
      for (let r = 0; r < R; r++) {
        let s = 0;
        let a = 0;
        for (let k = 0; k < K; k++) {
          const p = x[m * K + k]! * spec.lowRankDown![r * K + k]!;
          s += p;
          a += Math.abs(p);
        }
        lact[m * R + r] = s;
        lactAbs[m * R + r] = a;
      }
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let s = 0;
        let a = 0;
        for (let r = 0; r < R; r++) {
          const p = lact[m * R + r]! * spec.lowRankUp![n * R + r]!;
          s += p;
          a += Math.abs(p);
        }
        lr[m * N + n] = s;
        labs[m * N + n] = a;
      }
  }
  for (let i = 0; i < M * N; i++) {
    const pre = res.s[i]! + lr[i]! + (spec.bias?.[i % N] ?? 0);
    y[i] = useGelu ? gelu(pre) : pre;
    // relative also for the 1e-36 row
    // the bound on the pre-activation carries through GELU times its slope, at most 1.13 (tanh form, near v = 1.5)
    tol[i] = (1e-5 * res.abs[i]! + 1e-6 * labs[i]! + ambig[i]! + 2e-6 * Math.abs(pre)) * (useGelu ? 1.13 : 1) + 1e-42;
  }
  return { y, tol, lact, lactAbs };
}

/** Index of the first element outside the bound (−1 when none) and the worst ratio. */
function check(got: Float32Array, want: Float64Array, tol: Float64Array): { first: number; worst: number } {
  let first = -1;
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const e = Math.abs(got[i]! - want[i]!) / tol[i]!;
    if (!(e <= 1) && first < 0) first = i;
    if (!(e <= worst)) worst = e;
  }
  return { first, worst };
}

function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return -2;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

const CASES: Case[] = [
  { M: 1, N: 1, K: 64, R: 0, bias: false, smooth: false },
  { M: 7, N: 17, K: 128, R: 5, bias: true, smooth: true },
  { M: 33, N: 50, K: 192, R: 32, bias: true, smooth: true },
  { M: 40, N: 33, K: 1152, R: 32, bias: false, smooth: true }, // PixArt-Σ hidden size
  { M: 70, N: 40, K: 3072, R: 32, bias: true, smooth: true }, // FLUX.1 hidden size
  { M: 9, N: 20, K: 12288, R: 32, bias: true, smooth: true }, // FLUX.1 MLP down-projection
  { M: 20, N: 96, K: 256, R: 0, bias: true, smooth: false },
  { M: 37, N: 45, K: 320, R: 11, bias: true, smooth: true, gelu: true },
  // R > 32: the bf16 branch's AMX tiles run two rank groups (the second of one 16-rank block)
  { M: 50, N: 24, K: 256, R: 48, bias: true, smooth: true },
  // the AMX path's blocked plan (M > 128, gemm_p2_amx.cc): 384-row/column tasks with ragged last ones, 6 K chunks
  // of partial sums and the L2 prefetch of the next chunk
  { M: 417, N: 419, K: 1152, R: 32, bias: true, smooth: true, gelu: true },
  // the blocked plan at K = 12288 (52 chunks), the task split into two row tasks for the pool's threads
  { M: 130, N: 33, K: 12288, R: 32, bias: true, smooth: false },
  // exponents over 2–3 bands of 5 levels in weight rows and tokens: shadow rows and columns on the int8 path
  { M: 45, N: 70, K: 320, R: 8, bias: true, smooth: true, gelu: true, spread: true },
  { M: 300, N: 100, K: 1152, R: 32, bias: true, smooth: false, spread: true },
];

describe("reference.roundBf16 (the bf16 variant's reference rounding)", () => {
  it("equals the f32 bit rounding (add 0x7fff + lsb, truncate) on random, tie, subnormal and huge f32 values", () => {
    const r = rng(5);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    const bits = (v: number) => {
      f[0] = v;
      u[0] = ((u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) & 0xffff0000) >>> 0;
      return f[0]!;
    };
    const vals: number[] = [];
    for (let i = 0; i < 20000; i++) {
      f[0] = 0;
      u[0] = (r.int(0, 0xffff) << 16) | r.int(0, 0xffff); // any bit pattern
      if (Number.isFinite(f[0]!)) vals.push(f[0]!);
    }
    for (let i = 0; i < 2000; i++) vals.push((r.int(-2000, 2000) + 0.5) * 2 ** (r.int(-140, 100) - 8)); // ties
    vals.push(3.3961e38, 3.4e38, -3.4e38, 2 ** -133, 1.5 * 2 ** -134, 2 ** -149);
    for (const v of vals) {
      const w = Math.fround(v);
      if (ref64.roundBf16(w) !== bits(w)) expect.fail(`roundBf16(${w}) = ${ref64.roundBf16(w)}, bits ${bits(w)}`);
    }
  });
});

if (!info.native)
  describe.skip(`int4p2 layer: skipped, the native addon is not loaded (${info.reason})`, () => {
    it("needs the addon", () => {});
  });
else {
  // outputs of every path per case, for the cross-path check (the last path tested compares with all before it)
  const outputs = new Map<number, Float32Array[]>();

  describePaths("int4p2 layer", info, (isa) => {
    it("reports its GEMM path", () => {
      setIsa(isa);
      const r = rng(1);
      const { spec } = makeLayer(r, { M: 1, N: 4, K: 64, R: 0, bias: false, smooth: false });
      const layer = prepareP2Layer(spec);
      const want = { amx: "amx-int8", avx512: "avx512-f32", avx2: "avx2-int8", scalar: "scalar-f32" }[isa];
      expect(layer.path).toBe(want);
      expect(p2GemmPath()).toBe(want);
      expect(layer.int8Weight !== null).toBe(isa === "amx");
      expect(layer.avx2Weight !== null).toBe(isa === "avx2");
      if (isa === "avx2") expect(prepareP2Layer({ ...spec, avx2Int8: false }).path).toBe("avx2-f32");
      if (isa === "amx") {
        expect(prepareP2Layer({ ...spec, amxInt8: false }).path).toBe("amx-bf16");
        // every row with exponents over 3 bands of 5 levels: 2N shadow columns, more than the int8 GEMM gains
        const K = 192;
        const w = r.f32(8 * K);
        for (let k = 0; k < 8 * K; k++) w[k]! *= 2 ** (-6 * ((k >> 6) % 3));
        const q = quantize(w, 8, K, specFor("int4p2"));
        const wide = prepareP2Layer({ N: 8, K, codes: q.codes, exponents: q.exponents!, rowScales: q.rowScales! });
        expect(wide.int8Weight).toBeNull();
        expect(wide.path).toBe("amx-bf16");
        // K = 2^17: 128·128·K would overflow the int32 sums
        const big = 131072;
        const qb = quantize(r.f32(big, 0.05), 1, big, specFor("int4p2"));
        const long = { N: 1, K: big, codes: qb.codes, exponents: qb.exponents!, rowScales: qb.rowScales! };
        expect(prepareP2Layer(long).path).toBe("amx-bf16");
        expect(
          prepareP2Layer({ ...long, K: big - 64, codes: qb.codes.subarray(64), exponents: qb.exponents!.subarray(1) })
            .path,
        ).toBe("amx-int8");
      }
      setIsa("auto");
    });

    it("picks e or e − 1 as int4's quantizer does on near ties (the AVX-512 row's f32 / float64 pre-decisions)", () => {
      setIsa(isa);
      try {
        // Groups of integers times a power of two, 1..7 steps wide, so that both scales' grids hold most of them
        // (the squared errors of e and e − 1 often equal), some moved by 2^-20 or 2^-12 of a step (near ties).
        const r = rng(7);
        const M = 48;
        const K = 1024;
        const x = new Float32Array(M * K);
        for (let m = 0; m < M; m++)
          for (let k = 0; k < K; k++) {
            const step = 2 ** ((m % 5) - 3);
            const g = k >> 6;
            let v = r.int(-(1 + ((g + m) % 7)), 1 + ((g + m) % 7)) * step;
            if ((m + g) % 3 === 1 && k % 17 === 0) v += step * 2 ** (m % 2 ? -20 : -12) * r.int(-3, 3);
            x[m * K + k] = v;
          }
        const { spec } = makeLayer(r, { M, N: 32, K, R: 0, bias: false, smooth: false });
        const a = prepareP2Layer(spec).quantize(x, M);
        const ref = quantize(x, M, K, ACT);
        expect(firstDiff(a.codes, ref.codes), "codes").toBe(-1);
        expect(firstDiff(a.exponents, ref.exponents!), "exponents").toBe(-1);
        expect(firstDiff(a.rowScales, ref.rowScales!), "row scales").toBe(-1);
      } finally {
        setIsa("auto");
      }
    });

    // on amx: the AMX-INT8 band GEMM (default) and the AMX-BF16 one; on avx2: the AVX2 integer GEMM (default) and
    // the f32 FMA one on the bf16 operand
    const variants = isa === "amx" || isa === "avx2" ? [true, false] : [true];
    const variantName = (int: boolean) =>
      isa === "amx"
        ? int
          ? " (amx-int8)"
          : " (amx-bf16)"
        : isa === "avx2"
          ? int
            ? " (avx2-int8)"
            : " (avx2-f32)"
          : "";
    for (const amxInt8 of variants)
      CASES.forEach((c, ci) => {
        it(`M=${c.M} N=${c.N} K=${c.K} R=${c.R}${c.bias ? " bias" : ""}${c.smooth ? " λ" : ""}${c.gelu ? " GELU" : ""}${c.spread ? " spread" : ""}${variantName(amxInt8)}: codes equal int4's, y matches float64 (branch f32 and bf16)`, () => {
          setIsa(isa);
          try {
            const r = rng(100 + ci);
            const { spec, q } = makeLayer(r, c);
            const x = makeX(r, c.M, c.K, c.spread);
            const res = residualPart(spec, q, x, c.M);
            const ys: Partial<Record<P2BranchPrecision, Float32Array>> = {};
            const wants: Partial<Record<P2BranchPrecision, { y: Float64Array; tol: Float64Array }>> = {};
            for (const branch of ["f32", "bf16"] as const) {
              const layer = prepareP2Layer({ ...spec, branch, amxInt8, avx2Int8: amxInt8 });
              expect(layer.branch).toBe(branch);
              if (isa === "avx2") expect(layer.path).toBe(amxInt8 ? "avx2-int8" : "avx2-f32");
              if (isa === "amx" && amxInt8) {
                expect(layer.path).toBe("amx-int8");
                // the spread cases need shadow columns (and rows: checked through y against the float64 layer)
                if (c.spread) expect(layer.int8Weight!.shadowColumns).toBeGreaterThan(0);
              }
              const want = reference(spec, res, x, c.M, !!c.gelu, branch);
              wants[branch] = want;
              // activations, byte for byte
              const a = layer.quantize(x, c.M);
              const inv = invSmooth(spec);
              const v = Float32Array.from(x, (t, i) => (inv ? Math.fround(t * inv[i % c.K]!) : t));
              const qref = quantize(v, c.M, c.K, ACT);
              expect(firstDiff(a.codes, qref.codes), "codes").toBe(-1);
              expect(firstDiff(a.exponents, qref.exponents!), "exponents").toBe(-1);
              expect(firstDiff(a.rowScales, qref.rowScales!), "row scales").toBe(-1);
              // the branch's down-projection (f32: of x and L_down; bf16: of their bf16 roundings)
              if (c.R > 0) {
                for (let i = 0; i < c.M * c.R; i++) {
                  const got = a.loraAct![i]!;
                  if (!(Math.abs(got - want.lact[i]!) <= LACT_TOL * want.lactAbs[i]! + 1e-40))
                    // relative also for the 1e-36 row
                    expect.fail(`${branch}: loraAct[${i}] = ${got}, float64 ${want.lact[i]} (Σ|·| ${want.lactAbs[i]})`);
                }
              } else expect(a.loraAct).toBeNull();
              // the layer
              const y = layer.forward(x, c.M, { gelu: !!c.gelu });
              const { first, worst } = check(y, want.y, want.tol);
              expect(
                first,
                `${branch}: y[${first}] = ${y[first]}, float64 ${want.y[first]} (bound ${want.tol[first]}); worst ${worst}`,
              ).toBe(-1);
              // reused output buffer, same values
              const out = new Float32Array(c.M * c.N).fill(Number.NaN);
              layer.forward(x, c.M, { gelu: !!c.gelu, out });
              expect(firstDiff(out, y)).toBe(-1);
              ys[branch] = y;
            }
            // the two precisions are told apart: each layer's y leaves the other's bound (a branch worth measuring)
            if (c.R >= 8) {
              expect(check(ys.f32!, wants.bf16!.y, wants.bf16!.tol).first, "f32 y within the bf16 bound").not.toBe(-1);
              expect(check(ys.bf16!, wants.f32!.y, wants.f32!.tol).first, "bf16 y within the f32 bound").not.toBe(-1);
            }
            // the other paths run before this one: within twice the bound of each other
            const seen = outputs.get(ci) ?? [];
            for (const [k, o] of seen.entries()) {
              const branch = k % 2 === 0 ? "f32" : "bf16";
              const y = ys[branch]!;
              const both = Float64Array.from(wants[branch]!.tol, (t) => 2 * t);
              const d = check(y, Float64Array.from(o), both);
              expect(d.first, `${branch}: paths differ at ${d.first}: ${y[d.first]} vs ${o[d.first]}`).toBe(-1);
            }
            seen.push(ys.f32!, ys.bf16!);
            outputs.set(ci, seen);
          } finally {
            setIsa("auto");
          }
        });
      });

    if (isa === "avx2")
      for (const branch of ["f32", "bf16"] as const)
        it(`avx2-int8: operands shared within a unit and refused by an avx2-f32 layer; y the same on 1 and 2 threads and within the float64 bound (branch ${branch})`, () => {
          setIsa(isa);
          try {
            const r = rng(23);
            const c: Case = { M: 61, N: 44, K: 448, R: 8, bias: true, smooth: true };
            const { spec: a, q } = makeLayer(r, c);
            const b = makeLayer(r, { ...c, N: 24 }).spec;
            const la = prepareP2Layer({ ...a, branch });
            const lb = prepareP2Layer({ ...b, smooth: a.smooth, lowRankDown: a.lowRankDown, branch });
            const lf = prepareP2Layer({ ...a, branch, avx2Int8: false });
            expect([la.path, lb.path, lf.path]).toEqual(["avx2-int8", "avx2-int8", "avx2-f32"]);
            const x = makeX(r, c.M, c.K, true);
            const op = la.quantizeOperand(x, c.M);
            expect(op.a2).toBeDefined();
            expect(firstDiff(la.forwardOperand(op), la.forward(x, c.M))).toBe(-1);
            expect(firstDiff(lb.forwardOperand(op, { gelu: true }), lb.forward(x, c.M, { gelu: true }))).toBe(-1);
            expect(() => lf.forwardOperand(op)).toThrowError(/"avx2-int8" path; this layer runs "avx2-f32"/);
            // an avx2-f32 layer's operand (the bf16 one) is read by the avx2-int8 layer's bf16-operand GEMM
            const opf = lf.quantizeOperand(x, c.M);
            expect(opf.a2).toBeUndefined();
            expect(firstDiff(la.forwardOperand(opf), lf.forward(x, c.M))).toBe(-1);
            const want = reference(a, residualPart(a, q, x, c.M), x, c.M, false, branch);
            const y2 = la.forward(x, c.M);
            expect(check(y2, want.y, want.tol).first).toBe(-1);
            setThreads(1);
            try {
              expect(firstDiff(la.forward(x, c.M), y2)).toBe(-1);
            } finally {
              setThreads(0);
            }
          } finally {
            setIsa("auto");
          }
        });

    it("a branch far above the row scale (its power of two moves into S_x): y equal to the unscaled layer's", () => {
      setIsa(isa);
      try {
        // L_down·2^66 and L_up·2^-66: lora_act / S_x > 2^60 on every row, so each row's operand is scaled by 2^-c and
        // S_x by 2^c (p2_layer.h); every product scales by a power of two, so y is the same bits
        const r = rng(9);
        const c: Case = { M: 45, N: 40, K: 448, R: 32, bias: true, smooth: true };
        const { spec } = makeLayer(r, c);
        const x = r.f32(c.M * c.K); // |x| ≤ 1: x·L_down·2^66 stays inside f32 (makeX's 1e33 row would not)
        x.fill(0, 2 * c.K, 3 * c.K); // an all-zero row: no branch, c = 0
        const big = {
          ...spec,
          lowRankDown: Float32Array.from(spec.lowRankDown!, (v) => v * 2 ** 66),
          lowRankUp: Float32Array.from(spec.lowRankUp!, (v) => v * 2 ** -66),
        };
        for (const branch of ["f32", "bf16"] as const) {
          const y = prepareP2Layer({ ...spec, branch }).forward(x, c.M);
          const yb = prepareP2Layer({ ...big, branch }).forward(x, c.M);
          const i = firstDiff(yb, y);
          expect(i, `${branch}: y[${i}] = ${yb[i]} vs ${y[i]}`).toBe(-1);
        }
      } finally {
        setIsa("auto");
      }
    });

    it("agrees with the float64 fake-quant layer that quantizes x/λ in float64 (the pipeline's reference)", () => {
      setIsa(isa);
      try {
        const r = rng(7);
        const c: Case = { M: 24, N: 64, K: 1024, R: 32, bias: true, smooth: true };
        const { spec, q } = makeLayer(r, c);
        const x = r.f32(c.M * c.K);
        const y = prepareP2Layer(spec).forward(x, c.M);
        const p = Float64Array.from(x, (t, i) => t / spec.smooth![i % c.K]!);
        const qa = fakeQuantize(p, c.M, c.K, ACT);
        const qw = dequantize(q);
        let num = 0;
        let den = 0;
        for (let m = 0; m < c.M; m++)
          for (let n = 0; n < c.N; n++) {
            let s = spec.bias![n]!;
            for (let k = 0; k < c.K; k++) s += qa[m * c.K + k]! * qw[n * c.K + k]!;
            for (let rr = 0; rr < c.R; rr++) {
              let l = 0;
              for (let k = 0; k < c.K; k++) l += x[m * c.K + k]! * spec.lowRankDown![rr * c.K + k]!;
              s += l * spec.lowRankUp![n * c.R + rr]!;
            }
            num += (y[m * c.N + n]! - s) ** 2;
            den += s * s;
          }
        expect(Math.sqrt(num / den)).toBeLessThan(1e-5);
      } finally {
        setIsa("auto");
      }
    });
  });

  it("layers prepared with the same λ and L_down share one quantized operand (the members of a fused unit)", () => {
    const r = rng(21);
    const c: Case = { M: 19, N: 40, K: 192, R: 8, bias: true, smooth: true };
    const a = makeLayer(r, c).spec;
    const b = makeLayer(r, { ...c, N: 24 }).spec;
    const la = prepareP2Layer(a);
    const lb = prepareP2Layer({ ...b, smooth: a.smooth, lowRankDown: a.lowRankDown });
    const x = makeX(r, c.M, c.K);
    const op = la.quantizeOperand(x, c.M);
    expect(firstDiff(la.forwardOperand(op), la.forward(x, c.M))).toBe(-1);
    expect(firstDiff(lb.forwardOperand(op, { gelu: true }), lb.forward(x, c.M, { gelu: true }))).toBe(-1);
    const other = prepareP2Layer(b); // its own λ and L_down
    expect(() => other.forwardOperand(op)).toThrowError(/other smooth \/ lowRankDown/);
    // branch precision "bf16": shared likewise, and an operand of the other precision is refused
    const lab = prepareP2Layer({ ...a, branch: "bf16" });
    const lbb = prepareP2Layer({ ...b, smooth: a.smooth, lowRankDown: a.lowRankDown, branch: "bf16" });
    const opb = lab.quantizeOperand(x, c.M);
    expect(opb.branch).toBe("bf16");
    expect(firstDiff(lbb.forwardOperand(opb), lbb.forward(x, c.M))).toBe(-1);
    expect(() => lbb.forwardOperand(op)).toThrowError(/branch "bf16"/);
    expect(() => lb.forwardOperand(opb)).toThrowError(/branch "f32"/);
  });

  for (const branch of ["f32", "bf16"] as const)
    it(`amx-int8 and amx-bf16 layers of one unit share operands both ways; amx-int8 is the same on 1 and 2 threads (branch ${branch})`, (ctx) => {
      if (p2GemmPath() !== "amx-int8") ctx.skip(`needs the amx-int8 path (this CPU / ISA: ${p2GemmPath()})`);
      const r = rng(22);
      const c: Case = { M: 140, N: 72, K: 448, R: 8, bias: true, smooth: true };
      const { spec: a, q } = makeLayer(r, c);
      const la = prepareP2Layer({ ...a, branch }); // amx-int8
      const lb = prepareP2Layer({ ...a, branch, amxInt8: false }); // amx-bf16, same weights
      expect([la.path, lb.path]).toEqual(["amx-int8", "amx-bf16"]);
      const x = makeX(r, c.M, c.K, true);
      const opA = la.quantizeOperand(x, c.M); // carries the band operand
      const opB = lb.quantizeOperand(x, c.M); // bf16 only: la falls back to its bf16 GEMM for it
      expect(opA.bands).toBeDefined();
      expect(opB.bands).toBeUndefined();
      expect(firstDiff(la.forwardOperand(opA), la.forward(x, c.M))).toBe(-1);
      expect(firstDiff(lb.forwardOperand(opA), lb.forward(x, c.M))).toBe(-1);
      expect(firstDiff(la.forwardOperand(opB), lb.forward(x, c.M))).toBe(-1);
      const want = reference(a, residualPart(a, q, x, c.M), x, c.M, false, branch);
      expect(check(la.forward(x, c.M), want.y, want.tol).first).toBe(-1);
      const y2 = la.forward(x, c.M);
      setThreads(1);
      try {
        expect(firstDiff(la.forward(x, c.M), y2)).toBe(-1);
      } finally {
        setThreads(0);
      }
    });

  describe("int4p2 layer: bad input is one typed error naming the tensor", () => {
    const r = rng(3);
    const c: Case = { M: 3, N: 8, K: 128, R: 4, bias: true, smooth: true };
    const { spec } = makeLayer(r, c);
    const layer = prepareP2Layer({ ...spec, name: "blk.attn" });
    const err = (f: () => unknown, code: string, msg: RegExp) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(KernelsError);
        expect((e as KernelsError).code).toBe(code);
        expect((e as Error).message).toMatch(msg);
        return;
      }
      expect.fail("no error");
    };
    it("non-finite x/λ names the element", () => {
      const x = r.f32(c.M * c.K);
      x[1 * c.K + 77] = Number.NaN;
      err(() => layer.forward(x, c.M), "E_VALUE", /blk\.attn\.x.*non-finite x\/λ at \[1, 77\]/);
      err(() => layer.quantize(x, c.M), "E_VALUE", /at \[1, 77\]/);
      x[1 * c.K + 77] = 3e38; // finite x, x/λ overflows for λ < 1
      const s = Float32Array.from(spec.smooth!);
      s[77] = 0.5;
      err(() => prepareP2Layer({ ...spec, smooth: s }).forward(x, c.M), "E_VALUE", /at \[1, 77\]/);
    });
    it("a row whose scale leaves float32", () => {
      const x = r.f32(c.M * c.K);
      x.fill(2e-44, 2 * c.K, 3 * c.K); // max |x/λ| ≈ 57·2^-149: S = 2^-151
      err(() => layer.forward(x, c.M), "E_VALUE", /row 2 of x\/λ.*leaves float32/);
      const v = Float32Array.from(x, (t, i) => Math.fround(t * Math.fround(1 / spec.smooth![i % c.K]!)));
      expect(() => quantize(v, c.M, c.K, ACT)).toThrowError(/row 2: row scale .* leaves float32/);
    });
    it("a branch precision other than f32 / bf16", () => {
      err(
        () => prepareP2Layer({ ...spec, name: "blk.attn", branch: "fp16" as never }),
        "E_ARGUMENT",
        /blk\.attn\.branch.*"fp16".*"f32", "bf16"/,
      );
    });
    it("weights: codes, exponents, row scales, shapes, branch halves, λ", () => {
      const codes = Int8Array.from(spec.codes);
      codes[5] = 8;
      err(() => prepareP2Layer({ ...spec, codes }), "E_VALUE", /codes.*code 8 at flat index 5/);
      const exponents = Int8Array.from(spec.exponents);
      exponents[1] = 6;
      err(() => prepareP2Layer({ ...spec, exponents }), "E_VALUE", /exponents.*6/);
      const rowScales = Float32Array.from(spec.rowScales);
      rowScales[2] = -1;
      err(() => prepareP2Layer({ ...spec, rowScales }), "E_VALUE", /rowScales.*negative/);
      err(() => prepareP2Layer({ ...spec, K: 100 }), "E_SHAPE", /multiple of 64/);
      err(() => prepareP2Layer({ ...spec, codes: spec.codes.subarray(1) }), "E_LENGTH", /codes/);
      err(() => prepareP2Layer({ ...spec, lowRankUp: undefined }), "E_ARGUMENT", /lowRankUp/);
      const smooth = Float32Array.from(spec.smooth!);
      smooth[3] = 0;
      err(() => prepareP2Layer({ ...spec, smooth }), "E_VALUE", /smooth.*\[3\]/);
      err(() => layer.forward(r.f32(c.M * c.K - 1), c.M), "E_LENGTH", /blk\.attn\.x/);
    });
  });
}
