import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  activationSpecFor,
  dequantizeW4A16,
  loraTileIndex,
  nvfp4GlobalScale,
  packLoraDown,
  packLoraUp,
  packNibbles,
  packW4A4Layer,
  packW4A4MicroScales,
  packW4A4Scales,
  packW4A4Vector,
  packW4A4Weight,
  packW4A16Groups,
  packW4A16Layer,
  packW4A16Weight,
  QuantError,
  quantize,
  quantizeW4A16,
  unpackLoraDown,
  unpackLoraUp,
  unpackNibbles,
  unpackW4A4Layer,
  unpackW4A4MicroScales,
  unpackW4A4Scales,
  unpackW4A4Vector,
  unpackW4A4Weight,
  unpackW4A16Groups,
  unpackW4A16Layer,
  unpackW4A16Weight,
  w4a16GroupRows,
} from "@svdquant/int4";
import { bf16BitsToF32, f32ToBf16Bits, SafetensorsFile, type Tensor, writeSafetensors } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { permute } from "./permute.js";
import { mulberry32, randomMatrix } from "./prng.js";

const randCodes = (seed: number, n: number, lo: number, hi: number) => {
  const r = mulberry32(seed);
  return Int8Array.from({ length: n }, () => lo + Math.floor(r() * (hi - lo + 1)));
};
const randU16 = (seed: number, n: number) => {
  const r = mulberry32(seed);
  return Uint16Array.from({ length: n }, () => Math.floor(r() * 65536));
};
const randU8 = (seed: number, n: number) => {
  const r = mulberry32(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 127));
};

describe("plain nibble packing", () => {
  it("low nibble first, and unpack(pack(x)) == x for int4 and uint4", () => {
    expect(Array.from(packNibbles(Int8Array.of(1, 2, -1, -8, 7, 0), 1, 6))).toEqual([0x21, 0x8f, 0x07]);
    for (const [seed, rows, cols] of [
      [1, 3, 64],
      [2, 17, 6],
      [3, 1, 2],
    ] as const) {
      const s = randCodes(seed, rows * cols, -8, 7);
      expect(Array.from(unpackNibbles(packNibbles(s, rows, cols), rows, cols, true))).toEqual(Array.from(s));
      const u = randCodes(seed + 10, rows * cols, 0, 15);
      expect(Array.from(unpackNibbles(packNibbles(u, rows, cols), rows, cols, false))).toEqual(Array.from(u));
    }
    expect(() => packNibbles(new Int8Array(3), 1, 3, "w")).toThrowError(/even row length/);
  });
});

// Transcriptions of the reference packers' view/permute steps (nunchaku/lora/flux/packer.py, warp_n 128,
// bits 4; tinychat_utils.pack_w4), used to check the closed-form index maps in src/ independently.
function refPackWeight(codes: Int8Array, N: number, K: number): Int8Array {
  const v = permute(Array.from(codes), [N / 128, 8, 2, 8, 1, K / 64, 1, 2, 4, 8], [0, 5, 6, 1, 3, 8, 2, 7, 4, 9]);
  const out = new Int8Array((N * K) / 2);
  for (let w = 0; w < v.length / 8; w++) {
    let word = 0;
    for (let j = 0; j < 8; j++) word |= (v[w * 8 + j]! & 15) << (4 * j);
    for (let b = 0; b < 4; b++) out[w * 4 + b] = (word >>> (8 * b)) & 0xff;
  }
  return out;
}
const refPackScale = (s: ArrayLike<number>, N: number, G: number) =>
  permute(s, [N / 128, 1, 8, 2, 4, 2, G], [0, 6, 1, 2, 4, 3, 5]);
const refPackMicro = (s: ArrayLike<number>, N: number, G: number) =>
  permute(s, [N / 128, 1, 4, 4, 8, G / 4, 4], [0, 5, 1, 4, 3, 2, 6]);
function refPackLowrank(w: ArrayLike<number>, rows: number, cols: number, down: boolean): number[] {
  const t = down
    ? permute(w, [rows / 16, 16, cols / 16, 16], [2, 0, 1, 3]) // [R, K] → (K/16, R/16, 16, 16)
    : permute(w, [rows / 16, 16, cols / 16, 16], [0, 2, 1, 3]); // [N, R] → (N/16, R/16, 16, 16)
  const cp = down ? cols / 16 : rows / 16;
  const rp = down ? rows / 16 : cols / 16;
  return permute(t, [cp, rp, 2, 8, 1, 2, 4, 2], [0, 1, 3, 6, 2, 5, 4, 7]);
}
function refPackW4(codes: Int8Array, N: number, K: number): Int32Array {
  const u: number[] = [];
  for (let i = 0; i < N * K; i += 32)
    for (let j = 0; j < 8; j++)
      u.push(codes[i + j]! | (codes[i + 8 + j]! << 4) | (codes[i + 16 + j]! << 8) | (codes[i + 24 + j]! << 12));
  const p = permute(u, [N / 4, 4, K / 64, 16], [0, 2, 1, 3]);
  return new Int32Array(Uint16Array.from(p).buffer);
}

describe("nunchaku W4A4 layouts: literal packer transcription, index maps and round trips", () => {
  for (const [seed, N, K] of [
    [1, 128, 128],
    [2, 256, 384],
    [3, 384, 256],
  ] as const) {
    it(`[${N}, ${K}] qweight (int4 and E2M1 codes)`, () => {
      const s = randCodes(seed, N * K, -8, 7);
      const p = packW4A4Weight(s, N, K);
      expect(Array.from(p)).toEqual(Array.from(refPackWeight(s, N, K)));
      expect(Array.from(unpackW4A4Weight(p, N, K, true))).toEqual(Array.from(s));
      const u = randCodes(seed + 1, N * K, 0, 15);
      expect(Array.from(unpackW4A4Weight(packW4A4Weight(u, N, K), N, K, false))).toEqual(Array.from(u));
    });

    it(`[${N}, ${K}] g64 scales, 1-D vectors and NVFP4 micro-scales`, () => {
      const G = K / 64;
      const s = randU16(seed + 2, N * G);
      const p = packW4A4Scales(s, N, G);
      expect(Array.from(p)).toEqual(refPackScale(s, N, G));
      expect(Array.from(unpackW4A4Scales(p, N, G))).toEqual(Array.from(s));
      const v = randU16(seed + 3, N);
      expect(Array.from(packW4A4Vector(v))).toEqual(refPackScale(v, N, 1));
      expect(Array.from(unpackW4A4Vector(packW4A4Vector(v)))).toEqual(Array.from(v));
      const GM = K / 16;
      const m = randU8(seed + 4, N * GM);
      const pm = packW4A4MicroScales(m, N, GM);
      expect(Array.from(pm)).toEqual(refPackMicro(m, N, GM));
      expect(Array.from(unpackW4A4MicroScales(pm, N, GM))).toEqual(Array.from(m));
    });
  }

  it("documented examples of the scale orders (packer.py comments)", () => {
    const iota = (n: number) => Uint16Array.from({ length: n }, (_, i) => i);
    // g64 scales, warp_n 128: lane 0 holds channels 0 1 8 9, lane 1 2 3 10 11, lane 4 16 17 24 25.
    const p = packW4A4Scales(iota(128), 128, 1);
    expect(Array.from(p.subarray(0, 8))).toEqual([0, 1, 8, 9, 2, 3, 10, 11]);
    expect(Array.from(p.subarray(16, 20))).toEqual([16, 17, 24, 25]);
    expect(Array.from(p.subarray(124, 128))).toEqual([118, 119, 126, 127]);
    // micro-scales: lane 0 holds channels 0 32 64 96, lane 1 8 40 72 104, lane 4 1 33 65 97 (one group each).
    const ch = Uint8Array.from({ length: 128 * 4 }, (_, i) => (i >> 2) & 0xff); // value = channel, 4 groups
    const m = packW4A4MicroScales(ch, 128, 4);
    const lane = (l: number) => [0, 1, 2, 3].map((s) => m[(l * 4 + s) * 4]);
    expect(lane(0)).toEqual([0, 32, 64, 96]);
    expect(lane(1)).toEqual([8, 40, 72, 104]);
    expect(lane(4)).toEqual([1, 33, 65, 97]);
    expect(lane(31)).toEqual([31, 63, 95, 127]);
  });

  for (const [seed, R, K, N] of [
    [5, 16, 128, 128],
    [6, 32, 256, 384],
    [7, 48, 128, 256],
  ] as const) {
    it(`lora R=${R}: down [${R}, ${K}] and up [${N}, ${R}]`, () => {
      const d = randU16(seed, R * K);
      const pd = packLoraDown(d, R, K);
      expect(Array.from(pd)).toEqual(refPackLowrank(d, R, K, true));
      expect(Array.from(unpackLoraDown(pd, R, K))).toEqual(Array.from(d));
      const u = randU16(seed + 1, N * R);
      const pu = packLoraUp(u, N, R);
      expect(Array.from(pu)).toEqual(refPackLowrank(u, N, R, false));
      expect(Array.from(unpackLoraUp(pu, N, R))).toEqual(Array.from(u));
    });
  }

  it("loraTileIndex is a permutation of 0..255", () => {
    const seen = new Set<number>();
    for (let p = 0; p < 16; p++) for (let q = 0; q < 16; q++) seen.add(loraTileIndex(p, q));
    expect(seen.size).toBe(256);
    expect(Math.max(...seen)).toBe(255);
  });

  it("packs K in whole 64-channel chunks (the kernels' tiles; checkpoints pad K to 128): K = 192 round-trips", () => {
    const [N, K] = [256, 192];
    let x = 7;
    const q = Int8Array.from({ length: N * K }, () => ((x = (x * 1103515245 + 12345) >>> 0) >>> 28) - 8);
    const packed = packW4A4Weight(q, N, K);
    expect(packed.length).toBe((N * K) / 2);
    expect(Array.from(unpackW4A4Weight(packed, N, K, true))).toEqual(Array.from(q));
    // chunk (n/128, k/64) of 4096 bytes: the third 64-channel chunk of rows 0..127 is its own block
    const lastChunk = packed.subarray(2 * 4096, 3 * 4096);
    const only = new Int8Array(N * K);
    for (let n = 0; n < 128; n++) for (let k = 128; k < 192; k++) only[n * K + k] = q[n * K + k];
    expect(Array.from(packW4A4Weight(only, N, K).subarray(2 * 4096, 3 * 4096))).toEqual(Array.from(lastChunk));
  });

  it("rejects unpadded shapes with a clear error", () => {
    expect(() => packW4A4Weight(new Int8Array(100 * 128), 100, 128, "w")).toThrowError(/padded to N % 128 = 0/);
    expect(() => packW4A4Weight(new Int8Array(128 * 96), 128, 96, "w")).toThrowError(/K % 64 = 0/);
    expect(() => packW4A4MicroScales(new Uint8Array(128 * 6), 128, 6)).toThrowError(QuantError);
    expect(() => packLoraDown(new Uint16Array(20 * 128), 20, 128)).toThrowError(/multiples of 16/);
  });
});

describe("W4A4 layers (padding, names, dtypes) round-trip", () => {
  for (const [fmt, N, K, R] of [
    ["int4", 200, 192, 20],
    ["int4", 128, 256, 32],
    ["nvfp4", 136, 160, 32],
  ] as const) {
    it(`${fmt} N=${N} K=${K} R=${R}`, () => {
      const x = randomMatrix(N + K, N, K, 0.05);
      const gs = fmt === "nvfp4" ? nvfp4GlobalScale(x) : undefined;
      const weight = quantize(
        x,
        N,
        K,
        fmt === "int4" ? { format: "int4", groupSize: 64 } : { format: "nvfp4", groupSize: 16, globalScale: gs! },
      );
      const bf = (a: Float32Array) => a.map((v) => bf16BitsToF32(f32ToBf16Bits(v)));
      const layer = {
        residual: weight,
        act: activationSpecFor(fmt),
        rank: R,
        lowRankDown: bf(randomMatrix(1, R, K, 0.1)),
        lowRankUp: bf(randomMatrix(2, N, R, 0.1)),
        bias: bf(randomMatrix(3, 1, N)),
        smooth: bf(randomMatrix(4, 1, K).map(Math.abs)),
      };
      const t = packW4A4Layer(layer, { name: "blocks.0.ff" });
      const Np = Math.ceil(N / 128) * 128;
      const Kp = Math.ceil(K / 128) * 128;
      const Rp = Math.ceil(R / 16) * 16;
      expect(t.qweight!.shape).toEqual([Np, Kp / 2]);
      expect(t.qweight!.dtype).toBe("I8");
      expect(t.wscales!.shape).toEqual([Kp / (fmt === "int4" ? 64 : 16), Np]);
      expect(t.wscales!.dtype).toBe(fmt === "int4" ? "BF16" : "F8_E4M3");
      expect(t.proj_down!.shape).toEqual([Kp, Rp]);
      expect(t.proj_up!.shape).toEqual([Np, Rp]);
      expect(t.bias!.shape).toEqual([Np]);
      expect(t.smooth_factor!.shape).toEqual([Kp]);
      const back = unpackW4A4Layer(t, { N, K, rank: R });
      expect(back.residual.spec.format).toBe(fmt);
      expect(Array.from(back.residual.codes)).toEqual(Array.from(weight.codes));
      expect(Array.from(back.residual.scales)).toEqual(Array.from(weight.scales));
      expect(back.residual.spec.globalScale).toBe(weight.spec.globalScale);
      expect(Array.from(back.lowRankDown)).toEqual(Array.from(layer.lowRankDown));
      expect(Array.from(back.lowRankUp)).toEqual(Array.from(layer.lowRankUp));
      expect(Array.from(back.bias!)).toEqual(Array.from(layer.bias));
      expect(Array.from(back.smooth!)).toEqual(Array.from(layer.smooth));
    });
  }

  it("packed layers survive a safetensors write/read (dtypes I8, BF16, F8_E4M3, I32)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "int4-"));
    const x = randomMatrix(77, 128, 128, 0.05);
    const weight = quantize(x, 128, 128, { format: "nvfp4", groupSize: 16, globalScale: nvfp4GlobalScale(x) });
    const layer = {
      residual: weight,
      act: activationSpecFor("nvfp4"),
      rank: 16,
      lowRankDown: new Float32Array(16 * 128).fill(0.5),
      lowRankUp: new Float32Array(128 * 16).fill(-0.25),
    };
    const t = packW4A4Layer(layer);
    const w16 = packW4A16Layer(quantizeW4A16(x, 128, 128));
    const path = join(dir, "layer.safetensors");
    await writeSafetensors(path, {
      ...Object.fromEntries(Object.entries(t).map(([k, v]) => [`a.${k}`, v])),
      ...Object.fromEntries(Object.entries(w16).map(([k, v]) => [`b.${k}`, v])),
    });
    const f = await SafetensorsFile.open(path);
    const back: Record<string, Tensor> = {};
    const back16: Record<string, Tensor> = {};
    for (const n of f.names()) (n.startsWith("a.") ? back : back16)[n.slice(2)] = await f.read(n);
    await f.close();
    expect(back.wscales!.dtype).toBe("F8_E4M3");
    const l = unpackW4A4Layer(back, { rank: 16 });
    expect(Array.from(l.residual.codes)).toEqual(Array.from(weight.codes));
    expect(Array.from(l.residual.scales)).toEqual(Array.from(weight.scales));
    expect(Array.from(l.lowRankUp)).toEqual(Array.from(layer.lowRankUp));
    expect(Array.from(unpackW4A16Layer(back16).weight.codes)).toEqual(Array.from(quantizeW4A16(x, 128, 128).codes));
  });

  it("nvfp4GlobalScale puts the largest block scale at (not beyond) 448 and is a bf16 value", () => {
    const x = randomMatrix(8, 64, 64, 2);
    const gs = nvfp4GlobalScale(x);
    expect(bf16BitsToF32(f32ToBf16Bits(gs))).toBe(gs);
    const q = quantize(x, 64, 64, { format: "nvfp4", groupSize: 16, globalScale: gs });
    const top = Math.max(...Array.from(q.scales)) / gs;
    expect(top).toBeLessThanOrEqual(448);
    expect(top).toBeGreaterThan(400);
    const w = quantize(x, 64, 64, { format: "nvfp4", groupSize: 16, globalScale: 0.0031 });
    expect(() =>
      packW4A4Layer({
        residual: w,
        act: activationSpecFor("nvfp4"),
        rank: 16,
        lowRankDown: new Float32Array(16 * 64),
        lowRankUp: new Float32Array(64 * 16),
      }),
    ).toThrowError(/globalScale 0.0031 is not a BF16 value/);
  });

  it("refuses scales that are not representable in the storage dtype", () => {
    const x = randomMatrix(9, 128, 128);
    const weight = quantize(x, 128, 128, { format: "int4", groupSize: 64, scaleDtype: "F32" });
    expect(() =>
      packW4A4Layer(
        {
          residual: weight,
          act: activationSpecFor("int4"),
          rank: 16,
          lowRankDown: new Float32Array(16 * 128),
          lowRankUp: new Float32Array(128 * 16),
        },
        { name: "l" },
      ),
    ).toThrowError(/not a BF16 value/);
  });
});

describe("W4A16 (AdaNorm) layout and quantizer", () => {
  for (const [seed, N, K] of [
    [1, 4, 64],
    [2, 12, 192],
    [3, 128, 1024],
  ] as const) {
    it(`[${N}, ${K}] qweight matches the literal pack_w4 transcription and round-trips`, () => {
      const u = randCodes(seed, N * K, 0, 15);
      const p = packW4A16Weight(u, N, K);
      expect(p.length).toBe((N / 4) * (K / 2));
      expect(Array.from(p)).toEqual(Array.from(refPackW4(u, N, K)));
      expect(Array.from(unpackW4A16Weight(p, N, K))).toEqual(Array.from(u));
    });
  }

  it("group rows follow ceil_num_groups (g64: multiples of 16 groups)", () => {
    expect(w4a16GroupRows(3072, 64)).toBe(48);
    expect(w4a16GroupRows(256, 64)).toBe(16);
    expect(w4a16GroupRows(1152, 64)).toBe(32);
    expect(w4a16GroupRows(4096, 128)).toBe(32);
    const s = Float32Array.from({ length: 6 }, (_, i) => i + 1); // [N=3, G=2]
    const p = packW4A16Groups(s, 3, 2, 4);
    expect(Array.from(p)).toEqual([1, 3, 5, 2, 4, 6, 0, 0, 0, 0, 0, 0]);
    expect(Array.from(unpackW4A16Groups(p, 3, 2))).toEqual(Array.from(s));
  });

  it("asymmetric quantizer: x ≈ q·scale + zero within scale/2, against a float64 reference", () => {
    const N = 8;
    const K = 256;
    const x = randomMatrix(31, N, K, 0.3);
    for (let i = 0; i < K; i++) x[3 * K + i] = Math.abs(x[3 * K + i]!) + 0.5; // an all-positive row
    const q = quantizeW4A16(x, N, K);
    const dq = dequantizeW4A16(q);
    for (let n = 0; n < N; n++)
      for (let j = 0; j < K / 64; j++) {
        const grp = Array.from(x.subarray(n * K + j * 64, n * K + j * 64 + 64));
        const lo = Math.min(0, ...grp);
        const hi = Math.max(0, ...grp);
        const s = bf16BitsToF32(f32ToBf16Bits(Math.fround(Math.fround(hi - lo) / 15)));
        expect(q.scales[n * 4 + j]).toBe(s);
        const z = Math.min(15, Math.max(0, Math.round(-lo / s)));
        expect(q.zeros[n * 4 + j]).toBe(bf16BitsToF32(f32ToBf16Bits(-z * s)));
        for (let i = 0; i < 64; i++) {
          const k = n * K + j * 64 + i;
          expect(q.codes[k]).toBeGreaterThanOrEqual(0);
          expect(q.codes[k]).toBeLessThanOrEqual(15);
          // The zero is a rounded multiple of the scale; allow its bf16 rounding on top of half a step.
          expect(Math.abs(dq[k]! - x[k]!)).toBeLessThanOrEqual(s / 2 + Math.abs(z * s) * 2 ** -8 + 1e-7);
        }
      }
    const t = packW4A16Layer(
      q,
      Float32Array.from({ length: N }, (_, i) => i / 4),
      { name: "norm1.linear" },
    );
    expect(t.qweight!.dtype).toBe("I32");
    expect(t.qweight!.shape).toEqual([N / 4, K / 2]);
    expect(t.wscales!.shape).toEqual([16, N]);
    const back = unpackW4A16Layer(t);
    expect(Array.from(back.weight.codes)).toEqual(Array.from(q.codes));
    expect(Array.from(back.weight.scales)).toEqual(Array.from(q.scales));
    expect(Array.from(back.weight.zeros)).toEqual(Array.from(q.zeros));
    expect(Array.from(back.bias!)).toEqual([0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75]);
  });
});
