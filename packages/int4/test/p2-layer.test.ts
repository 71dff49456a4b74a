// The int4p2 layer at the file boundary (p2-layer.ts) and its low-rank FP8 columns (p2.ts p2LowRankColumns),
// against references written from the definitions: E4M3 values from @svdquant/tensor's decoder table, nearest-value
// search over every finite E4M3 code, c_r by search on powers of two.
import { bf16BitsToF32, e4m3BitsToF32, encodeFloats, type Tensor } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import {
  activationSpecFor,
  dequantize,
  P2_LAYER_TENSORS,
  p2LowRankColumns,
  packP2Layer,
  QuantError,
  type QuantizedLinear,
  quantize,
  specFor,
  unpackP2Layer,
} from "../src/index.js";
import { mulberry32, randomMatrix } from "./prng.js";

/** Every finite E4M3 value (bits 0x00..0x7e and their negatives). */
const E4M3_VALUES = Array.from({ length: 0x7f }, (_, b) => e4m3BitsToF32(b));
/** Distance from v to the nearest finite E4M3 value (brute force). */
const nearestDist = (v: number) => Math.min(...E4M3_VALUES.map((e) => Math.abs(Math.abs(v) - e)));

const bf16 = (a: Float32Array): Float32Array => {
  const bits = encodeFloats("BF16", a) as Uint16Array;
  return Float32Array.from(bits, (b) => bf16BitsToF32(b));
};

describe("p2LowRankColumns", () => {
  const [N, R] = [40, 32];
  const up = randomMatrix(3, N, R, 0.05, 0.05);
  const sw = Float32Array.from({ length: N }, (_, n) => (n === 7 ? 0 : 1e-3 * (1 + (n % 5))));
  // rank 5 is all zero: its shift is 0 and its columns are 0
  for (let n = 0; n < N; n++) up[n * R + 5] = 0;
  const { columns, shift } = p2LowRankColumns(up, sw, R);

  it("c_r puts the largest |lowRankUp / S_w|·2^c_r in (32, 64]; b_hi, b_lo are nearest E4M3 values", () => {
    expect(columns.length).toBe(N * 3 * R);
    let worst = 0;
    for (let r = 0; r < R; r++) {
      let mx = 0;
      for (let n = 0; n < N; n++) if (sw[n]! > 0) mx = Math.max(mx, Math.abs(up[n * R + r]! / sw[n]!));
      if (mx === 0) {
        expect(shift[r]).toBe(0);
        for (let n = 0; n < N; n++) for (let j = 0; j < 3; j++) expect(columns[n * 3 * R + j * R + r]).toBe(0);
        continue;
      }
      let c = 0;
      while (mx * 2 ** c > 64) c--;
      while (mx * 2 ** c <= 32) c++;
      expect(shift[r]).toBe(c);
      for (let n = 0; n < N; n++) {
        const b = sw[n]! > 0 ? Math.fround((up[n * R + r]! / sw[n]!) * 2 ** c) : 0;
        const hi = e4m3BitsToF32(columns[n * 3 * R + r]!);
        const lo = e4m3BitsToF32(columns[n * 3 * R + R + r]!);
        expect(columns[n * 3 * R + 2 * R + r]).toBe(columns[n * 3 * R + r]);
        expect(Math.abs(b - hi)).toBe(nearestDist(b)); // hi is a nearest E4M3 value of b
        expect(Math.abs(b - hi - lo)).toBeLessThanOrEqual(nearestDist(b - hi) + 1e-12);
        if (sw[n] === 0) expect(hi).toBe(0);
        worst = Math.max(worst, Math.abs(b - hi - lo) / 64);
      }
    }
    expect(worst).toBeLessThan(2 ** -8);
    expect(worst).toBeGreaterThan(0); // float32 ratios need more than hi + lo: the check can fail
  });

  it("bad input: a lowRankUp of another size, a non-finite value", () => {
    expect(() => p2LowRankColumns(up.subarray(1), sw, R, "L")).toThrowError(/tensor "L": lowRankUp holds 1279/);
    const bad = Float32Array.from(up);
    bad[3 * R + 2] = Number.NaN;
    expect(() => p2LowRankColumns(bad, sw, R)).toThrowError(/NaN at \[3, 2\]/);
  });
});

/** A random int4p2 layer (bf16 λ, branch and bias as a checkpoint holds them). */
function randomLayer(seed: number, N: number, K: number, R: number): QuantizedLinear {
  const rnd = mulberry32(seed);
  const w = randomMatrix(seed, N, K, 0.05, 0.02);
  // one all-zero group and one all-zero row: exponent −9, scale 0, S = 0
  for (let k = 64; k < 128; k++) w[2 * K + k] = 0;
  w.fill(0, 5 * K, 6 * K);
  const residual = quantize(w, N, K, specFor("int4p2"));
  return {
    name: "blk.qkv",
    residual,
    rank: R,
    lowRankDown: bf16(randomMatrix(seed + 1, R, K, 0.1)),
    lowRankUp: bf16(randomMatrix(seed + 2, N, R, 0.1)),
    bias: bf16(randomMatrix(seed + 3, 1, N, 0.02)),
    smooth: bf16(Float32Array.from({ length: K }, () => 0.5 + 2 * rnd())),
    act: activationSpecFor("int4p2"),
  };
}

describe("packP2Layer / unpackP2Layer", () => {
  const [N, K, R] = [24, 256, 32];
  const layer = randomLayer(11, N, K, R);
  const t = packP2Layer(layer);

  it("writes the table's tensors: names, dtypes, shapes, nibble order", () => {
    expect(Object.keys(t)).toEqual([...P2_LAYER_TENSORS]);
    const shapes = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, [v.dtype, v.shape]]));
    expect(shapes).toEqual({
      p2_codes: ["U8", [N, K / 2]],
      p2_exponents: ["I8", [N, K / 64]],
      p2_wscale: ["F32", [N]],
      proj_down: ["BF16", [R, K]],
      proj_up: ["BF16", [N, R]],
      smooth_factor: ["BF16", [K]],
      bias: ["BF16", [N]],
    });
    const bytes = t.p2_codes!.data as Uint8Array;
    const c = layer.residual.codes;
    for (const i of [0, 1, 77, N * K - 2]) {
      const b = bytes[i / 2]!;
      expect(((b & 15) << 28) >> 28).toBe(c[i]); // low nibble: even k, sign-extended
      expect((b << 24) >> 28).toBe(c[i + 1]);
    }
  });

  it("reads back the same layer: codes, exponents, row scales, decoded scales, branch, λ, bias", () => {
    const back = unpackP2Layer(t, { name: "blk.qkv" });
    const q = layer.residual;
    expect(back.residual.codes).toEqual(q.codes);
    expect(back.residual.exponents).toEqual(q.exponents);
    expect(back.residual.rowScales).toEqual(q.rowScales);
    expect(back.residual.scales).toEqual(q.scales);
    expect(q.scales[2 * (K / 64) + 1]).toBe(0); // the zero group of the fixture
    expect(q.rowScales![5]).toBe(0);
    expect(dequantize(back.residual)).toEqual(dequantize(q));
    expect(back.lowRankDown).toEqual(layer.lowRankDown);
    expect(back.lowRankUp).toEqual(layer.lowRankUp);
    expect(back.smooth).toEqual(layer.smooth);
    expect(back.bias).toEqual(layer.bias);
    expect(back.rank).toBe(R);
    expect(back.act).toEqual({ format: "int4p2", groupSize: 64, shift: 0 });
    const again = packP2Layer(back);
    for (const k of Object.keys(t))
      expect(Buffer.compare(Buffer.from(again[k]!.bytes()), Buffer.from(t[k]!.bytes())), k).toBe(0);
  });

  it("rank 0 and no λ / bias: only the residual's three tensors", () => {
    const l0: QuantizedLinear = {
      residual: layer.residual,
      rank: 0,
      lowRankDown: new Float32Array(0),
      lowRankUp: new Float32Array(0),
      act: activationSpecFor("int4p2"),
    };
    const p = packP2Layer(l0);
    expect(Object.keys(p)).toEqual(["p2_codes", "p2_exponents", "p2_wscale"]);
    const b = unpackP2Layer(p);
    expect(b.rank).toBe(0);
    expect(b.smooth).toBeUndefined();
    expect(dequantize(b.residual)).toEqual(dequantize(layer.residual));
  });

  it("bad input: one QuantError line naming the layer's tensor", () => {
    const int4: QuantizedLinear = { ...layer, residual: quantize(randomMatrix(1, N, K), N, K, specFor("int4")) };
    expect(() => packP2Layer(int4)).toThrowError(/an int4p2 layer needs an int4p2 residual, got int4/);
    const s = Float32Array.from(layer.smooth!);
    s[9] = 1 + 2 ** -12;
    expect(() => packP2Layer({ ...layer, smooth: s })).toThrowError(/smooth value 1\.000244140625 at 9 is not a BF16/);
    const without = (k: string) => Object.fromEntries(Object.entries(t).filter(([n]) => n !== k));
    expect(() => unpackP2Layer(without("p2_wscale"), { name: "L" })).toThrowError(
      /tensor "L\.p2_wscale": missing tensor/,
    );
    expect(() => unpackP2Layer(without("proj_up"), { name: "L" })).toThrowError(/proj_down and proj_up come together/);
    const with_ = (k: string, v: Tensor) => ({ ...t, [k]: v });
    const e = Int8Array.from(t.p2_exponents!.data as Int8Array);
    e[4] = 6;
    const bad = (k: string, v: Tensor, re: RegExp) => {
      const err = (() => {
        try {
          unpackP2Layer(with_(k, v), { name: "L" });
        } catch (x) {
          return x;
        }
      })();
      expect(err).toBeInstanceOf(QuantError);
      expect((err as Error).message).toMatch(re);
    };
    const T = t.p2_exponents!.constructor as new (d: string, s: number[], a: ArrayLike<number>) => Tensor;
    bad("p2_exponents", new T("I8", [N, K / 64], e), /"L\.p2_exponents": exponent 6 at 4 is outside \[-9, 5\]/);
    bad("proj_up", new T("BF16", [N, 16], new Uint16Array(N * 16)), /"L\.proj_up": BF16 \[24, 16\], expected/);
    const ws = Float32Array.from(t.p2_wscale!.data as Float32Array);
    ws[3] = -1;
    bad("p2_wscale", new T("F32", [N], ws), /"L\.p2_wscale": row scale -1 at 3/);
    bad("p2_codes", new T("U8", [N, 40], new Uint8Array(N * 40)), /K = 80 is not a multiple of the group size 64/);
  });
});
