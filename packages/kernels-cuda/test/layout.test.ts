import { join } from "node:path";
import {
  packLoraDown,
  packLoraUp,
  packW4A4Scales,
  packW4A4Weight,
  unpackLoraDown,
  unpackLoraUp,
  unpackW4A4Scales,
  unpackW4A4Weight,
} from "@svdquant/int4";
import { SafetensorsFile } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { CudaKernelError, decodeE4M3, unpackActCodes } from "../src/index.ts";
import { Rng } from "./reference.ts";

const FIX = join(import.meta.dirname, "../../../fixtures/nunchaku-pack/case-a.safetensors");

async function fixture() {
  const f = await SafetensorsFile.open(FIX);
  const get = async (n: string) => (await f.read(n)).bytes().slice();
  const t = {
    q: new Int32Array((await get("int4_weight")).buffer),
    scales: new Uint16Array((await get("scales")).buffer),
    down: new Uint16Array((await get("lora_down_rk")).buffer),
    up: new Uint16Array((await get("lora_up_nr")).buffer),
    pq: await get("packed_qweight"),
    ps: new Uint16Array((await get("packed_wscales")).buffer),
    pd: new Uint16Array((await get("packed_lora_down")).buffer),
    pu: new Uint16Array((await get("packed_lora_up")).buffer),
  };
  await f.close();
  return t;
}

describe("nunchaku checkpoint layouts (byte-exact against the reference packer's fixture)", () => {
  it("qweight [256,256] int4 -> packed_qweight, and back (int4's packer, the one the kernels read)", async () => {
    const t = await fixture();
    const packed = packW4A4Weight(Int8Array.from(t.q), 256, 256);
    expect(Buffer.compare(Buffer.from(packed.buffer, packed.byteOffset, packed.byteLength), Buffer.from(t.pq))).toBe(0);
    expect(Array.from(unpackW4A4Weight(t.pq, 256, 256, true))).toEqual(Array.from(t.q));
  });
  it("wscales [256,4] -> packed_wscales, and back (int4's packer)", async () => {
    const t = await fixture();
    expect(Array.from(packW4A4Scales(t.scales, 256, 4))).toEqual(Array.from(t.ps));
    expect(Array.from(unpackW4A4Scales(t.ps, 256, 4))).toEqual(Array.from(t.scales));
  });
  it("lora_down [32,256] and lora_up [256,32] -> packed, and back (int4's packer, the one the kernels read)", async () => {
    const t = await fixture();
    expect(Array.from(packLoraDown(t.down, 32, 256))).toEqual(Array.from(t.pd));
    expect(Array.from(unpackLoraDown(t.pd, 32, 256))).toEqual(Array.from(t.down));
    expect(Array.from(packLoraUp(t.up, 256, 32))).toEqual(Array.from(t.pu));
    expect(Array.from(unpackLoraUp(t.pu, 256, 32))).toEqual(Array.from(t.up));
  });
  it("rejects activation codes off the 64-channel grid", () => {
    expect(() => unpackActCodes(new Uint8Array(10), 3, 100, false)).toThrow(CudaKernelError);
  });
});

/**
 * E4M3 bytes of the integers -8..15, written out from the OCP FP8 spec (bias 7: 1 = 0x38, 2 = 0x40, 3 = 1.5·2 =
 * 0x44, ..., 8 = 0x50, 15 = 1.875·8 = 0x57; the sign is bit 7).
 */
const E4M3_OF: Record<number, number> = {
  0: 0x00,
  1: 0x38,
  2: 0x40,
  3: 0x44,
  4: 0x48,
  5: 0x4a,
  6: 0x4c,
  7: 0x4e,
  8: 0x50,
  9: 0x51,
  10: 0x52,
  11: 0x53,
  12: 0x54,
  13: 0x55,
  14: 0x56,
  15: 0x57,
  [-1]: 0xb8,
  [-2]: 0xc0,
  [-3]: 0xc4,
  [-4]: 0xc8,
  [-5]: 0xca,
  [-6]: 0xcc,
  [-7]: 0xce,
  [-8]: 0xd0,
};

describe("decodeE4M3", () => {
  it("decodes the spec's landmarks and every code", () => {
    expect(decodeE4M3(0x7e)).toBe(448); // largest finite E4M3FN
    expect(decodeE4M3(0x01)).toBe(2 ** -9); // smallest subnormal
    expect(decodeE4M3(0x08)).toBe(2 ** -6); // smallest normal
    expect(decodeE4M3(0x7f)).toBeNaN();
    expect(decodeE4M3(0xff)).toBeNaN();
    for (const [v, b] of Object.entries(E4M3_OF)) expect(decodeE4M3(b)).toBe(Number(v));
  });
});

/**
 * Independent writer of the "f8" layout from its definition in svdq_cuda.h: blocks of 128 rows x 64 k (8192 B),
 * row r at r*64, logical byte kb = 32s + 16h + c holds k = 32s + 8(c/4) + 2(c%4) + h, stored at
 * 16((kb/16) xor ((r/2)%4)) + kb%16; each byte the E4M3 encoding of the code.
 */
function writeF8Codes(q: Int8Array, M: number, K: number): Uint8Array {
  const Mp = Math.ceil(M / 128) * 128;
  const KT = K / 64;
  const out = new Uint8Array(Mp * K);
  for (let m = 0; m < M; m++)
    for (let kt = 0; kt < KT; kt++) {
      const r = m % 128;
      const base = (Math.floor(m / 128) * KT + kt) * 8192 + r * 64;
      for (let kb = 0; kb < 64; kb++) {
        const s = kb >> 5,
          h = (kb >> 4) & 1,
          c = kb & 15;
        const k = kt * 64 + 32 * s + 8 * (c >> 2) + 2 * (c & 3) + h;
        out[base + 16 * ((kb >> 4) ^ ((r >> 1) & 3)) + (kb & 15)] = E4M3_OF[q[m * K + k]];
      }
    }
  return out;
}

/** Independent writer of the activation fragment layouts, from the table in svdq_cuda.h. */
function writeActCodes(q: Int8Array, M: number, K: number, format: "s4" | "s8" | "f8"): Uint8Array {
  if (format === "f8") return writeF8Codes(q, M, K);
  const Mp = Math.ceil(M / 128) * 128;
  const out = new Uint8Array(format === "s4" ? (Mp * K) / 2 : Mp * K);
  const KT = K / 64;
  for (let mt = 0; mt < Mp / 16; mt++)
    for (let kt = 0; kt < KT; kt++)
      for (let lane = 0; lane < 32; lane++) {
        const g = lane >> 2,
          t = lane & 3;
        // words w0..w3: (row g, k 8t..), (row g+8, k 8t..), (row g, k 32+8t..), (row g+8, k 32+8t..)
        const words = [0, 0, 0, 0].map((_, w) => {
          const row = mt * 16 + g + (w & 1) * 8;
          const k0 = kt * 64 + (w >> 1) * 32 + t * 8;
          let v = 0;
          for (let j = 0; j < 8; j++) v |= ((row < M ? q[row * K + k0 + j] : 0) & 15) << (4 * j);
          return v >>> 0;
        });
        const base = (mt * KT + kt) * (format === "s4" ? 512 : 1024) + lane * (format === "s4" ? 16 : 32);
        const dv = new DataView(out.buffer);
        if (format === "s4") {
          words.forEach((w, i) => {
            dv.setUint32(base + 4 * i, w, true);
          });
        } else {
          const lo = (w: number) => ((w << 4) & 0xf0f0f0f0) >>> 0;
          const hi = (w: number) => (w & 0xf0f0f0f0) >>> 0;
          const seq = [
            lo(words[0]),
            lo(words[1]),
            hi(words[0]),
            hi(words[1]),
            lo(words[2]),
            lo(words[3]),
            hi(words[2]),
            hi(words[3]),
          ];
          seq.forEach((w, i) => {
            dv.setUint32(base + 4 * i, w, true);
          });
        }
      }
  return out;
}

describe("activation fragment layouts", () => {
  for (const format of ["s4", "s8", "f8"] as const)
    for (const unsigned of [false, true])
      it(`${format} ${unsigned ? "unsigned" : "signed"} codes decode to what was written (M not a multiple of 16)`, () => {
        const rng = new Rng({ s4: 11, s8: 12, f8: 13 }[format]);
        const M = format === "f8" ? 301 : 37,
          K = 192;
        const q = Int8Array.from({ length: M * K }, () => (unsigned ? rng.int(0, 15) : rng.int(-8, 7)));
        const bytes = writeActCodes(q, M, K, format);
        expect(Array.from(unpackActCodes(bytes, M, K, unsigned, format))).toEqual(Array.from(q));
      });
});
