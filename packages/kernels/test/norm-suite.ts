// layerNormModulateF32 / rmsNormRopeHeadsF32 (norm.ts, kernels/cpu/norm_f32.cc) on every path this process can run:
// each native ISA path forced in turn, or the TypeScript fallback. Fresh seeded inputs, ragged shapes; against the
// models' TypeScript formulas (within one f32 ulp) and float64 math without the intermediate f32 roundings.
import { expect, it } from "vitest";
import { backendInfo, KernelsError, layerNormModulateF32, rmsNormRopeHeadsF32 } from "../src/index.ts";
import { describePaths, rng } from "./helpers.ts";

const f32 = Math.fround;

/** Largest |a − b| in units of the f32 spacing at b (a value of 1 = one ulp). */
function ulps(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let w = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i]! - b[i]!) / (Math.abs(b[i]!) * 2 ** -23 + 2 ** -149);
    if (!(e <= w)) w = e;
  }
  return w;
}

export function defineNormSuite(): void {
  const info = backendInfo();
  describePaths("normalizations", info, (_isa, useIsa) => {
    it("layerNormModulateF32: the models' formula within one ulp, float64 within 2⁻²² (batch rows, offsets)", () => {
      useIsa();
      const r = rng(0x1a7e);
      for (const [B, S, D] of [
        [1, 1, 8],
        [2, 37, 768], // the AVX-512 rows (D a multiple of 8), two batch rows of modulation
        [3, 5, 13], // D not a multiple of 8: the scalar rows on every path
      ] as const) {
        const stride = 6 * D + 3;
        const x = Float32Array.from(r.f32(B * S * D, 2), (v, i) => v + (i % 5)); // a mean far from 0
        const mod = r.f32(B * stride, 0.3);
        const [scaleOff, shiftOff] = [D + 1, 2];
        const out = layerNormModulateF32(x, {
          B,
          S,
          D,
          eps: 1e-6,
          scale: mod,
          scaleOff,
          shift: mod,
          shiftOff,
          stride,
        });
        const ts = new Float64Array(B * S * D);
        const f64 = new Float64Array(B * S * D);
        for (let b = 0; b < B; b++)
          for (let t = 0; t < S; t++) {
            const o = (b * S + t) * D;
            let mean = 0;
            for (let i = 0; i < D; i++) mean += x[o + i]!;
            mean /= D;
            let v = 0;
            for (let i = 0; i < D; i++) v += (x[o + i]! - mean) * (x[o + i]! - mean);
            const inv = 1 / Math.sqrt(v / D + 1e-6);
            for (let i = 0; i < D; i++) {
              const sc = 1 + mod[b * stride + scaleOff + i]!;
              const sh = mod[b * stride + shiftOff + i]!;
              ts[o + i] = f32(f32((x[o + i]! - mean) * inv) * sc + sh);
              f64[o + i] = (x[o + i]! - mean) * inv * sc + sh;
            }
          }
        expect(ulps(out, ts), `B=${B} S=${S} D=${D}`).toBeLessThanOrEqual(1);
        let worst = 0; // |out − f64| / (|f64| + 4), in units of 2⁻²²
        for (let i = 0; i < out.length; i++)
          worst = Math.max(worst, Math.abs(out[i]! - f64[i]!) / (2 ** -22 * (Math.abs(f64[i]!) + 4)));
        expect(worst).toBeLessThanOrEqual(1);
      }
    });

    it("rmsNormRopeHeadsF32: in place, the models' formula within one ulp (rope rows from an offset)", () => {
      useIsa();
      const r = rng(0x1a7f);
      for (const [B, S, H, Dh, row0] of [
        [1, 1, 1, 8, 0],
        [2, 21, 3, 128, 5], // the AVX-512 heads, the rope rows of the image tokens after 5 text rows
        [1, 4, 2, 6, 1], // Dh not a multiple of 8: the scalar heads
      ] as const) {
        const x = r.f32(B * S * H * Dh, 3);
        const w = Float32Array.from(r.f32(Dh, 0.2), (v) => 1 + v);
        const ang = r.f32((row0 + S) * Dh, 3);
        const cos = Float32Array.from(ang, Math.cos);
        const sin = Float32Array.from(ang, Math.sin);
        const want = new Float64Array(x.length);
        for (let b = 0; b < B; b++)
          for (let t = 0; t < S; t++)
            for (let h = 0; h < H; h++) {
              const p = ((b * S + t) * H + h) * Dh;
              const ro = (row0 + t) * Dh;
              let ss = 0;
              for (let i = 0; i < Dh; i++) ss += x[p + i]! * x[p + i]!;
              const inv = 1 / Math.sqrt(ss / Dh + 1e-6);
              for (let i = 0; i < Dh; i += 2) {
                const a = f32(x[p + i]! * inv * w[i]!);
                const c = f32(x[p + i + 1]! * inv * w[i + 1]!);
                want[p + i] = f32(a * cos[ro + i]! - c * sin[ro + i]!);
                want[p + i + 1] = f32(c * cos[ro + i + 1]! + a * sin[ro + i + 1]!);
              }
            }
        rmsNormRopeHeadsF32(x, { B, S, heads: H, headDim: Dh, weight: w, eps: 1e-6, cos, sin, ropeRow0: row0 });
        expect(ulps(x, want), `B=${B} S=${S} H=${H} Dh=${Dh}`).toBeLessThanOrEqual(1);
      }
    });
  });

  it("rejects short or mistyped tensors and bad shapes, naming them", () => {
    const x = new Float32Array(2 * 3 * 8);
    const mod = new Float32Array(8 * 3);
    const ln = (o: object) =>
      layerNormModulateF32(x, {
        B: 2,
        S: 3,
        D: 8,
        eps: 1e-6,
        scale: mod,
        scaleOff: 8,
        shift: mod,
        shiftOff: 0,
        stride: 16,
        ...o,
      });
    expect(() => ln({})).toThrow(/tensor "scale": needs at least 32 elements, got 24/);
    expect(() => ln({ stride: 8, scale: new Float64Array(24) })).toThrow(/tensor "scale": expected a Float32Array/);
    expect(() => ln({ stride: 8, out: new Float32Array(5) })).toThrow(/tensor "out"/);
    expect(() => ln({ stride: -1 })).toThrow(KernelsError);
    const cs = new Float32Array(3 * 8);
    const rope = (o: object) =>
      rmsNormRopeHeadsF32(x, {
        B: 2,
        S: 3,
        heads: 1,
        headDim: 8,
        weight: new Float32Array(8),
        eps: 1e-6,
        cos: cs,
        sin: cs,
        ropeRow0: 0,
        ...o,
      });
    expect(() => rope({ ropeRow0: 1 })).toThrow(/tensor "cos": needs at least 32 elements/);
    expect(() => rope({ headDim: 7 })).toThrow(/headDim|needs/);
    expect(() => rope({ weight: new Float32Array(4) })).toThrow(/tensor "weight"/);
  });
}
