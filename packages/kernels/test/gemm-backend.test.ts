// f32GemmBackend: the native f32 GEMM behind the unpacked nn.Linear contract of @svdquant/models.
import { describe, expect, it } from "vitest";
import {
  backendInfo,
  f32GemmBackend,
  f32SplitInfo,
  KernelsError,
  layerNormModulateF32,
  reference,
  rmsNormRopeHeadsF32,
  setIsa,
} from "../src/index.ts";
import { rng, worst } from "./helpers.ts";

describe("f32GemmBackend", () => {
  it("matches the float64 reference over random ragged shapes, reusing its scratch across shapes", () => {
    const r = rng(0x5eed_f32b);
    const be = f32GemmBackend();
    expect(be.name).toMatch(/^kernels-f32-/);
    for (let t = 0; t < 24; t++) {
      const m = r.int(1, 70);
      const k = r.int(1, 300);
      const n = r.int(1, 90);
      const x = r.f32(m * k);
      const w = r.f32(n * k, 0.1);
      const bias = t % 2 ? r.f32(n) : undefined;
      const out = new Float32Array(m * n).fill(Number.NaN); // poisoned: every element must be written
      be.gemm(x, w, bias, out, m, k, n);
      const ref = reference.refGemmF32(x, m, k, w, n, bias);
      expect(worst(out, ref, 1e-5, 1e-5), `M=${m} K=${k} N=${n}`).toBeLessThanOrEqual(1);
    }
  });

  it("never serves a stale packing when the caller rewrites the same weight array", () => {
    const r = rng(7);
    const be = f32GemmBackend();
    const [m, k, n] = [5, 40, 19];
    const x = r.f32(m * k);
    const w = r.f32(n * k);
    const out = new Float32Array(m * n);
    be.gemm(x, w, undefined, out, m, k, n);
    w.set(r.f32(n * k)); // same array object, new contents (attention's K panels do this)
    be.gemm(x, w, undefined, out, m, k, n);
    expect(worst(out, reference.refGemmF32(x, m, k, w, n), 1e-5, 1e-5)).toBeLessThanOrEqual(1);
  });

  it("writes into views (bf16 layers pass subarrays of their scratch) and accepts M = 0", () => {
    const r = rng(11);
    const be = f32GemmBackend();
    const [m, k, n] = [3, 64, 20];
    const big = new Float32Array(m * n + 8).fill(-1);
    const out = big.subarray(4, 4 + m * n);
    const x = r.f32(m * k);
    const w = r.f32(n * k);
    be.gemm(x, w, undefined, out, m, k, n);
    expect(worst(out, reference.refGemmF32(x, m, k, w, n), 1e-5, 1e-5)).toBeLessThanOrEqual(1);
    expect([big[3], big[4 + m * n]]).toEqual([-1, -1]);
    be.gemm(new Float32Array(0), w, undefined, new Float32Array(0), 0, k, n);
  });

  it("prepare: packs once (a copy), then runs with bias and the GELU epilogue on every path", () => {
    const r = rng(13);
    const be = f32GemmBackend();
    const [k, n] = [200, 37];
    const w = r.f32(n * k, 0.1);
    const bias = r.f32(n);
    const p = be.prepare(w, bias, n, k);
    const wCopy = Float32Array.from(w);
    w.fill(0); // the packed copy must not see this
    for (const isa of backendInfo().supportedIsas) {
      setIsa(isa);
      for (const [m, gelu] of [
        [1, false],
        [29, true],
      ] as const) {
        const x = r.f32(m * k);
        const out = new Float32Array(m * n).fill(Number.NaN);
        p.run(x, out, m, { gelu });
        const ref = reference.refGemmF32(x, m, k, wCopy, n, bias, gelu);
        expect(worst(out, ref, 1e-5 * Math.sqrt(k), 1e-5), `${isa} M=${m}`).toBeLessThanOrEqual(1);
      }
    }
    setIsa("auto");
    expect(() => p.run(r.f32(10), new Float32Array(n), 1)).toThrow(/tensor "x"/);
  });

  it("prepare splits weights into bf16 parts where AMX-BF16 runs (3 by default, 2 or 0 on request)", () => {
    const r = rng(17);
    const [m, k, n] = [40, 300, 45];
    const x = r.f32(m * k);
    const w = r.f32(n * k, 1 / Math.sqrt(k));
    const ref = reference.refGemmF32(x, m, k, w, n);
    const amx = f32SplitInfo().amx;
    const errs: number[] = [];
    for (const amxSplits of [undefined, 3, 2, 0] as const) {
      const be = f32GemmBackend(amxSplits === undefined ? {} : { amxSplits });
      const parts = amxSplits ?? 3;
      expect(be.name.endsWith(`-bf16split${parts}`)).toBe(amx && parts > 0);
      const out = new Float32Array(m * n);
      be.prepare(w, undefined, n, k).run(x, out, m);
      errs.push(worst(out, ref, 1e-5 * Math.sqrt(k), 1e-5));
      expect(errs.at(-1), `amxSplits ${amxSplits}`).toBeLessThanOrEqual(parts === 2 ? 8 : 1);
    }
    // two parts (≈ 16 bits) are measurably less accurate than three or f32 panels where they run
    if (amx) expect(errs[2]).toBeGreaterThan(4 * Math.max(errs[1]!, errs[3]!));
    expect(() => f32GemmBackend({ amxSplits: 1 as never })).toThrow(/amxSplits must be 0, 2 or 3, got 1/);
  });

  it("layerNormModulate / rmsNormRopeHeads take the models' argument order (the norm kernels, norm.ts)", () => {
    const r = rng(19);
    const be = f32GemmBackend();
    const [b, s, d] = [2, 5, 24];
    const x = r.f32(b * s * d);
    const mod = r.f32(b * 3 * d, 0.2);
    expect(Array.from(be.layerNormModulate(x, b, s, d, 1e-6, mod, d, mod, 0, 3 * d))).toEqual(
      Array.from(
        layerNormModulateF32(x, {
          B: b,
          S: s,
          D: d,
          eps: 1e-6,
          scale: mod,
          scaleOff: d,
          shift: mod,
          shiftOff: 0,
          stride: 3 * d,
        }),
      ),
    );
    const [h, dh] = [3, 8];
    const w = r.f32(dh);
    const cs = r.f32((2 + s) * dh);
    const sn = r.f32((2 + s) * dh);
    const q1 = r.f32(b * s * h * dh);
    const q0 = q1.slice();
    const q2 = q1.slice();
    be.rmsNormRopeHeads(q1, b, s, h, dh, w, 1e-6, cs, sn, 2);
    rmsNormRopeHeadsF32(q2, { B: b, S: s, heads: h, headDim: dh, weight: w, eps: 1e-6, cos: cs, sin: sn, ropeRow0: 2 });
    expect(Array.from(q1)).toEqual(Array.from(q2));
    expect(Array.from(q1)).not.toEqual(Array.from(q0)); // in place
  });

  it("rejects wrong shapes before the native call, naming the tensor", () => {
    const be = f32GemmBackend();
    const x = new Float32Array(6);
    const w = new Float32Array(12);
    expect(() => be.gemm(x, w, undefined, new Float32Array(5), 2, 3, 4)).toThrow(/out.*needs 8 elements, got 5/);
    expect(() => be.gemm(x, w, new Float32Array(3), new Float32Array(8), 2, 3, 4)).toThrow(KernelsError);
    expect(() => be.gemm(x, new Float32Array(11), undefined, new Float32Array(8), 2, 3, 4)).toThrow(/weight/);
  });
});
