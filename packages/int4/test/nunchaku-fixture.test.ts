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
import { SafetensorsFile, type Tensor } from "@svdquant/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const FIX = join(import.meta.dirname, "../../../fixtures/nunchaku-pack/case-a.safetensors");

describe("nunchaku W4A4 packing is byte-exact against fixtures/nunchaku-pack/case-a", () => {
  const t = new Map<string, Tensor>();
  beforeAll(async () => {
    const f = await SafetensorsFile.open(FIX);
    for (const n of f.names()) t.set(n, await f.read(n));
    await f.close();
  });
  afterAll(() => t.clear());
  const bytes = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

  it("qweight: int4 codes [256, 256] → int8 [256, 128]", () => {
    const w = t.get("int4_weight")!;
    expect(w.dtype).toBe("I32");
    const codes = Int8Array.from(w.data as Int32Array);
    const packed = packW4A4Weight(codes, 256, 256);
    const want = t.get("packed_qweight")!;
    expect(want.shape).toEqual([256, 128]);
    expect(bytes(packed).equals(bytes(want.data))).toBe(true);
    expect(Array.from(unpackW4A4Weight(want.data as Int8Array, 256, 256, true))).toEqual(Array.from(codes));
  });

  it("wscales: bf16 [256, 4] → [4, 256]", () => {
    const s = t.get("scales")!;
    const packed = packW4A4Scales(s.data as Uint16Array, 256, 4);
    const want = t.get("packed_wscales")!;
    expect(bytes(packed).equals(bytes(want.data))).toBe(true);
    expect(bytes(unpackW4A4Scales(want.data as Uint16Array, 256, 4)).equals(bytes(s.data))).toBe(true);
  });

  it("lora_down: bf16 [R=32, K=256] → proj_down [256, 32]", () => {
    const d = t.get("lora_down_rk")!;
    const packed = packLoraDown(d.data as Uint16Array, 32, 256);
    const want = t.get("packed_lora_down")!;
    expect(bytes(packed).equals(bytes(want.data))).toBe(true);
    expect(bytes(unpackLoraDown(want.data as Uint16Array, 32, 256)).equals(bytes(d.data))).toBe(true);
  });

  it("lora_up: bf16 [N=256, R=32] → proj_up [256, 32]", () => {
    const u = t.get("lora_up_nr")!;
    const packed = packLoraUp(u.data as Uint16Array, 256, 32);
    const want = t.get("packed_lora_up")!;
    expect(bytes(packed).equals(bytes(want.data))).toBe(true);
    expect(bytes(unpackLoraUp(want.data as Uint16Array, 256, 32)).equals(bytes(u.data))).toBe(true);
  });
});
