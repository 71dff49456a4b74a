// The NVFP4 code and scale tables of the fused packer (src/lut.ts) against an independent reference: E2M1 by
// nearest candidate (exact distances |x − v·s|, ties to the even code), E4M3 scale codes by @svdquant/tensor's
// f32ToE4m3Bits. bf16: every bit pattern under every scale code it can meet; float32: every value within a few
// ulps of every decision point (ties included) under every scale code, and random values.
import { packW4A4MicroScales, packW4A4Weight, quantize, quantizePackW4A4 } from "@svdquant/int4";
import { bf16BitsToF32, e4m3BitsToF32, f32ToBf16Bits, f32ToE4m3Bits } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { NVFP4_TAB_LEN, nvfp4AmaxF32Thresholds, nvfp4AmaxToE4m3, nvfp4Bf16Table, nvfp4F32Table } from "../src/lut.ts";
import { mulberry32 } from "./prng.js";

const FP4 = [0, 0.5, 1, 1.5, 2, 3, 4, 6]; // E2M1 magnitudes by code (OCP MX v1.0 §5.3.3)
/** E2M1 decision points (midpoints of neighbours) and the code a value exactly there gets (ties to even). */
const MIDPOINTS: [number, number][] = [
  [0.25, 0],
  [0.75, 2],
  [1.25, 2],
  [1.75, 4],
  [2.5, 4],
  [3.5, 6],
  [5, 6],
];

/** Reference E2M1 code of x under scale s > 0: nearest v·s by exact distance, ties to the even code. */
function refCode(x: number, s: number): number {
  const a = Math.abs(x);
  if (a >= 6 * s) return x < 0 ? 15 : 7; // saturation (satfinite); also keeps the float64 distances below exact
  let best = 0;
  let bestD = a;
  for (let c = 1; c < 8; c++) {
    const d = Math.abs(a - FP4[c]! * s);
    if (d < bestD || (d === bestD && c % 2 === 0)) {
      best = c;
      bestD = d;
    }
  }
  return best !== 0 && x < 0 ? best | 8 : best;
}

const f1 = new Float32Array(1);
const u1 = new Uint32Array(f1.buffer);
const f32Of = (bits: number) => {
  u1[0] = bits;
  return f1[0]!;
};
const bitsOf = (v: number) => {
  f1[0] = v;
  return u1[0]!;
};
/** Index of float32 bits in nvfp4F32Table before the scale offset (as src/fused.ts f32Key). */
const f32Key = (v: number) => (v >>> 15) | (((v & 0x7fff) + 0x7fff) >>> 15);

/** Reference NVFP4 scale code of a group amax (float32 value): E4M3 of fround(amax / 6), saturating at 448. */
const refScaleCode = (amax: number) => f32ToE4m3Bits(Math.fround(amax / 6));

/** For each scale code e, the largest bf16 magnitude pattern whose group amax maps to e (−1 if none). */
function largestAmaxBits(): Int32Array {
  const m = new Int32Array(128).fill(-1);
  for (let a = 0; a < 0x7f80; a++) m[refScaleCode(bf16BitsToF32(a))] = a;
  return m;
}

describe("NVFP4 code tables of the fused packer", () => {
  it("bf16 amax → scale code table equals E4M3(amax / 6) for every finite bf16 magnitude", () => {
    const t = nvfp4AmaxToE4m3();
    for (let a = 0; a < 0x7f80; a++) expect(t[a]).toBe(refScaleCode(bf16BitsToF32(a)));
  });

  it("bf16 table: every bit pattern (both signs) under every scale code it can meet equals the reference", () => {
    const { tab, base } = nvfp4Bf16Table();
    const top = largestAmaxBits();
    let checked = 0;
    let bad = "";
    for (let e = 0; e < 127; e++) {
      if (top[e]! < 0) continue;
      const s = e4m3BitsToF32(e);
      expect(base[e]! + 0xffff).toBeLessThan(tab.length);
      for (let a = 0; a <= top[e]!; a++)
        for (const sign of [0, 0x8000]) {
          const bits = a | sign;
          const want = s === 0 ? 0 : refCode(bf16BitsToF32(bits), s);
          const got = tab[base[e]! + bits]!;
          checked++;
          if (got !== want && bad === "") bad = `e ${e} bits 0x${bits.toString(16)}: ${got} ≠ ${want}`;
        }
    }
    expect(bad).toBe("");
    expect(checked).toBeGreaterThan(3_000_000);
    expect(tab.length).toBe(9 * NVFP4_TAB_LEN);
  });

  it("every decision point t·s is a bf16 value, and the bf16 table gives the tie-to-even code there", () => {
    const { tab, base } = nvfp4Bf16Table();
    for (let e = 1; e < 127; e++) {
      const s = e4m3BitsToF32(e);
      for (const [t, code] of MIDPOINTS) {
        const b = f32ToBf16Bits(t * s);
        expect(bf16BitsToF32(b)).toBe(t * s);
        expect(tab[base[e]! + b]).toBe(code);
        expect(tab[base[e]! + (b | 0x8000)]).toBe(code === 0 ? 0 : code | 8); // a zero result is code 0 (+0)
      }
    }
  });

  it("float32 table: every value within 3 ulps of every decision point under every scale code, both signs", () => {
    const tab = nvfp4F32Table();
    const { base } = nvfp4Bf16Table();
    let bad = "";
    let checked = 0;
    for (let e = 1; e < 127; e++) {
      const s = e4m3BitsToF32(e);
      for (const [t, code] of MIDPOINTS) {
        const tb = bitsOf(t * s);
        expect(f32Of(tb)).toBe(t * s); // exact in float32
        expect(tab[2 * base[e]! + f32Key(tb)]).toBe(code); // the tie itself
        for (let d = -3; d <= 3; d++)
          for (const sign of [0, 0x80000000]) {
            const bits = ((tb + d) | sign) >>> 0;
            const want = refCode(f32Of(bits), s);
            const got = tab[2 * base[e]! + f32Key(bits)]!;
            checked++;
            if (got !== want && bad === "") bad = `e ${e} t ${t} d ${d} sign ${sign}: ${got} ≠ ${want}`;
          }
      }
    }
    expect(bad).toBe("");
    expect(checked).toBe(126 * 7 * 7 * 2);
  });

  it("float32 table: random values (random low bits, each exponent offset) under every scale code", () => {
    const tab = nvfp4F32Table();
    const { base } = nvfp4Bf16Table();
    const top = largestAmaxBits();
    const r = mulberry32(77);
    let bad = "";
    for (let e = 1; e < 127; e++) {
      const s = e4m3BitsToF32(e);
      // up to the next bf16 pattern above the largest bf16 amax of e (the largest finite float32 for e = 126)
      const amaxMax = Math.min(bf16BitsToF32(top[e]! + 1), 3.4028234663852886e38);
      for (let i = 0; i < 2000; i++) {
        // magnitude log-uniform over [amaxMax·2^-12, amaxMax), random sign
        const x = Math.fround(amaxMax * 2 ** (-12 * r()) * (r() < 0.5 ? -1 : 1));
        if (Math.abs(x) >= amaxMax) continue;
        const bits = bitsOf(x);
        const want = refCode(x, s);
        const got = tab[2 * base[e]! + f32Key(bits)]!;
        if (got !== want && bad === "") bad = `e ${e} x ${x}: ${got} ≠ ${want}`;
      }
    }
    expect(bad).toBe("");
  });

  it("float32 amax → scale code: bf16-truncation code stepped by the thresholds equals E4M3(amax / 6)", () => {
    const t8 = nvfp4AmaxToE4m3();
    const thr = nvfp4AmaxF32Thresholds();
    const code = (bits: number) => {
      let e = t8[bits >>> 16]!;
      while (bits >= thr[e + 1]!) e++; // as src/fused.ts nvfp4F32Group
      return e;
    };
    const r = mulberry32(78);
    const samples: number[] = [];
    for (let c = 1; c < 127; c++) for (let d = -3; d <= 3; d++) samples.push(thr[c]! + d); // every step, ± 3 ulps
    for (let i = 0; i < 20000; i++) samples.push(Math.floor(r() * 0x7f800000)); // any finite magnitude
    for (let i = 0; i < 20000; i++) samples.push(bitsOf(2 ** (-20 + 32 * r()))); // the usual weight range
    let bad = "";
    for (const bits of samples) {
      const want = refScaleCode(f32Of(bits));
      if (code(bits) !== want && bad === "") bad = `amax bits 0x${bits.toString(16)}: ${code(bits)} ≠ ${want}`;
    }
    expect(bad).toBe("");
  });
});

describe("quantizePackW4A4 nvfp4 at every decision point equals quantize → pack", () => {
  const bytes = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  /** quantizePackW4A4 of x (float32) and of its bf16 rounding equal quantize → packW4A4Weight/MicroScales. */
  function expectSame(x: Float32Array, N: number, K: number) {
    const bits = Uint16Array.from(x, (v) => f32ToBf16Bits(v));
    const xb = Float32Array.from(bits, bf16BitsToF32);
    for (const [input, ref] of [
      [x, x],
      [bits, xb],
    ] as const) {
      const q = quantize(ref, N, K, { format: "nvfp4", groupSize: 16 });
      const p = quantizePackW4A4(input, N, K, { format: "nvfp4" });
      expect(bytes(p.qweight).equals(bytes(packW4A4Weight(q.codes, N, K)))).toBe(true);
      const e4 = Uint8Array.from(q.scales, (s) => f32ToE4m3Bits(s));
      expect(Array.from(p.wscales)).toEqual(Array.from(packW4A4MicroScales(e4, N, K / 16)));
    }
  }

  it("group amax at every position and at every scale step (± 2 ulps), float32 and bf16", () => {
    const N = 128;
    const K = 128;
    const r = mulberry32(80);
    const thr = nvfp4AmaxF32Thresholds();
    const x = new Float32Array(N * K);
    for (let g = 0; g < (N * K) / 16; g++) {
      // amax on a scale step of the float32 path (or a random value), at position g % 16, with a neighbour
      // one bf16 step below it in the other half of its 32-bit word (the packed max compares both lanes)
      const c = 1 + (g % 126);
      const amax = g % 3 === 2 ? Math.fround(r() * 100) : f32Of(thr[c]! + Math.floor(r() * 5) - 2);
      const p = g % 16;
      for (let i = 0; i < 16; i++) x[g * 16 + i] = Math.fround(amax * (r() * 2 - 1));
      x[g * 16 + p] = r() < 0.5 ? -amax : amax;
      x[g * 16 + (p ^ 1)] = bf16BitsToF32(f32ToBf16Bits(amax) - 1);
    }
    expectSame(x, N, K);
  });

  it("float32 and bf16 groups of values at and next to t·s for many scales", () => {
    const N = 128;
    const K = 256;
    const r = mulberry32(79);
    const x = new Float32Array(N * K);
    for (let g = 0; g < (N * K) / 16; g++) {
      // amax = 6·s for a random E4M3 scale s (so the scale code is exactly s), then 15 boundary values
      const s = e4m3BitsToF32(1 + Math.floor(r() * 126));
      x[g * 16] = (r() < 0.5 ? -6 : 6) * s;
      for (let i = 1; i < 16; i++) {
        const [t] = MIDPOINTS[Math.floor(r() * 7)]!;
        const v = bitsOf(t * s) + Math.floor(r() * 5) - 2; // t·s ± 2 ulps (float32)
        x[g * 16 + i] = f32Of(v) * (r() < 0.5 ? -1 : 1);
      }
    }
    expectSame(x, N, K);
  });
});
