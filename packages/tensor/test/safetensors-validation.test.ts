// One test per validation rule of the safetensors reader, plus the lazy-read cost.
import { open, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { MAX_HEADER_BYTES, SafetensorsFile, Tensor, TensorError, writeSafetensors } from "@svdquant/tensor";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { rng, tempDir } from "./helpers.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await tempDir()));
afterAll(() => cleanup());

/** Raw file bytes: u64 LE length (or `len`), the header bytes, the data bytes. */
function raw(header: string | Uint8Array, data: Uint8Array | number = 0, len?: bigint): Buffer {
  const h = typeof header === "string" ? Buffer.from(header, "utf8") : Buffer.from(header);
  const d = typeof data === "number" ? new Uint8Array(data).fill(0x3c) : data;
  const out = Buffer.alloc(8 + h.length + d.length);
  out.writeBigUInt64LE(len ?? BigInt(h.length), 0);
  h.copy(out, 8);
  out.set(d, 8 + h.length);
  return out;
}

let counter = 0;
async function openBytes(bytes: Uint8Array): Promise<{ path: string; err: TensorError | undefined }> {
  const path = join(dir, `case-${counter++}.safetensors`);
  await writeFile(path, bytes);
  try {
    const f = await SafetensorsFile.open(path);
    for (const n of f.names()) await f.read(n);
    await f.close();
    return { path, err: undefined };
  } catch (e) {
    if (!(e instanceof TensorError)) throw e;
    return { path, err: e };
  }
}

const entry = (dtype: string, shape: unknown, offsets: unknown) =>
  JSON.stringify({ dtype, shape, data_offsets: offsets });

/** Expect a TensorError with `code` whose message names the file and (if given) the tensor. */
async function expectRejected(bytes: Uint8Array, code: string, tensor?: string): Promise<TensorError> {
  const { path, err } = await openBytes(bytes);
  expect(err, "expected a TensorError").toBeInstanceOf(TensorError);
  expect(err!.code).toBe(code);
  expect(err!.message).toContain(path);
  expect(err!.file).toBe(path);
  if (tensor !== undefined) {
    expect(err!.message).toContain(`"${tensor}"`);
    expect(err!.tensor).toBe(tensor);
  }
  return err!;
}

describe("header length (u64 LE, bytes 0..8)", () => {
  it("accepts a minimal valid file (empty header object, no tensors)", async () => {
    expect((await openBytes(raw("{}"))).err).toBeUndefined();
    expect((await openBytes(raw("{}      "))).err).toBeUndefined(); // space padding
  });
  it("rejects a file shorter than 8 bytes", async () => {
    await expectRejected(new Uint8Array(5), "E_HEADER_SIZE");
  });
  it(`rejects a length above the ${MAX_HEADER_BYTES}-byte bound before allocating`, async () => {
    const err = await expectRejected(raw("{}", 0, BigInt(MAX_HEADER_BYTES) + 1n), "E_HEADER_SIZE");
    expect(err.message).toContain("limit");
    await expectRejected(raw("{}", 0, 2n ** 64n - 1n), "E_HEADER_SIZE");
  });
  it("rejects a length running past the end of the file", async () => {
    const err = await expectRejected(raw("{}", 0, 1000n), "E_HEADER_SIZE");
    expect(err.message).toContain("past the end");
  });
  it("rejects a length too small for a JSON object", async () => {
    await expectRejected(raw("{}", 0, 0n), "E_HEADER_SIZE");
  });
});

describe("header JSON", () => {
  it("rejects invalid UTF-8", async () => {
    const bytes = Buffer.from('{"a\xff":1}', "latin1");
    const err = await expectRejected(raw(bytes), "E_HEADER_JSON");
    expect(err.message).toContain("UTF-8");
  });
  it("rejects invalid JSON", async () => {
    await expectRejected(raw('{"w":{"dtype":"F32",'), "E_HEADER_JSON");
    await expectRejected(raw("{} x"), "E_HEADER_JSON");
  });
  it.each(["[]", "null", "12", '"str"', "true"])("rejects the non-object %s", async (h) => {
    const err = await expectRejected(raw(h), "E_HEADER_JSON");
    expect(err.message).toContain("JSON object");
  });
  it("rejects an entry that is not an object", async () => {
    await expectRejected(raw('{"w":[1,2]}'), "E_HEADER_JSON", "w");
  });
  it("rejects duplicate tensor names (JSON.parse would keep the last silently)", async () => {
    const e = entry("F32", [1], [0, 4]);
    await expectRejected(raw(`{"w":${e},"w":${e}}`, 4), "E_DUPLICATE", "w");
    // a repeated key inside an entry or a string value that looks like a key is not a duplicate name
    expect((await openBytes(raw(`{"w":${e},"v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8))).err).toBe(
      undefined,
    );
  });
});

describe("entries", () => {
  it.each([["F17"], ["f32"], [7], [null]])("rejects dtype %j", async (dtype) => {
    const h = `{"w":${JSON.stringify({ dtype, shape: [1], data_offsets: [0, 4] })}}`;
    await expectRejected(raw(h, 4), "E_DTYPE", "w");
  });
  it("rejects a missing dtype", async () => {
    await expectRejected(raw('{"w":{"shape":[1],"data_offsets":[0,4]}}', 4), "E_DTYPE", "w");
  });
  it.each([[[-1]], [[1.5]], [["2"]], ["2"], [null], [[2 ** 53]], [[2 ** 30, 2 ** 30]]])(
    "rejects shape %j",
    async (shape) => {
      await expectRejected(raw(`{"w":${entry("F32", shape, [0, 4])}}`, 4), "E_SHAPE", "w");
    },
  );
  it.each([[[0]], [[0, 4, 8]], [[-4, 0]], [["0", "4"]], [null], [[0.5, 4]], [[8, 4]]])(
    "rejects malformed data_offsets %j",
    async (offsets) => {
      await expectRejected(raw(`{"w":${entry("F32", [1], offsets)}}`, 8), "E_OFFSETS", "w");
    },
  );
  it("rejects (end - begin) != numel * itemsize", async () => {
    const err = await expectRejected(raw(`{"w":${entry("F32", [2, 3], [0, 20])}}`, 20), "E_OFFSETS", "w");
    expect(err.message).toContain("needs 24");
    await expectRejected(raw(`{"w":${entry("BF16", [3], [0, 4])}}`, 4), "E_OFFSETS", "w");
  });
  it("rejects offsets past the end of the data", async () => {
    const err = await expectRejected(raw(`{"w":${entry("F32", [2], [0, 8])}}`, 4), "E_OFFSETS", "w");
    expect(err.message).toContain("past the end");
  });
  it("rejects overlapping tensors", async () => {
    const h = `{"a":${entry("F32", [2], [0, 8])},"b":${entry("F32", [2], [4, 12])}}`;
    await expectRejected(raw(h, 12), "E_OVERLAP", "b");
  });
  it("rejects a hole between tensors", async () => {
    const h = `{"a":${entry("F32", [1], [0, 4])},"b":${entry("F32", [1], [8, 12])}}`;
    const err = await expectRejected(raw(h, 12), "E_OFFSETS", "b");
    expect(err.message).toContain("hole");
  });
  it("rejects a hole at the start", async () => {
    await expectRejected(raw(`{"a":${entry("F32", [1], [4, 8])}}`, 8), "E_OFFSETS", "a");
  });
  it("rejects trailing bytes after the last tensor", async () => {
    const h = `{"a":${entry("F32", [1], [0, 4])},"b":${entry("U8", [2], [4, 6])}}`;
    const err = await expectRejected(raw(h, 9), "E_OFFSETS", "b");
    expect(err.message).toContain("trailing");
  });
  it("accepts zero-size tensors at the boundaries and a scalar", async () => {
    const h = `{"s":${entry("F64", [], [0, 8])},"z":${entry("F32", [0, 3], [8, 8])}}`;
    expect((await openBytes(raw(h, 8))).err).toBeUndefined();
  });
});

describe("__metadata__", () => {
  it.each([
    ['"x"', "string"],
    ["[]", "array"],
    ["null", "null"],
    ['{"k":1}', "number value"],
    ['{"k":{"n":"v"}}', "object value"],
    ['{"k":null}', "null value"],
  ])("rejects %s (%s)", async (meta) => {
    const err = await expectRejected(raw(`{"__metadata__":${meta}}`), "E_METADATA");
    expect(err.message).toContain("__metadata__");
  });
  it("reads string -> string metadata", async () => {
    const { path } = await openBytes(raw('{"__metadata__":{"format":"pt","x":"1"}}'));
    const f = await SafetensorsFile.open(path);
    expect({ ...f.metadata }).toEqual({ format: "pt", x: "1" });
    await f.close();
  });
});

describe("reads", () => {
  it("names a missing tensor, and a file truncated after opening", async () => {
    const path = join(dir, "trunc.safetensors");
    const r = rng(3);
    await writeSafetensors(path, {
      a: Tensor.fromFloats(
        "F32",
        [256],
        Array.from({ length: 256 }, () => r.normal()),
      ),
      b: Tensor.fromFloats(
        "F32",
        [256],
        Array.from({ length: 256 }, () => r.normal()),
      ),
    });
    const f = await SafetensorsFile.open(path);
    await expect(f.read("nope")).rejects.toMatchObject({ code: "E_NOT_FOUND", tensor: "nope" });
    expect(() => f.info("nope")).toThrow(/"nope"/);
    await truncate(path, f.dataStart + 100);
    const err = await f.read("b").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TensorError);
    expect(err).toMatchObject({ code: "E_IO", file: path, tensor: "b" });
    await f.close();
    await expect(f.read("a")).rejects.toMatchObject({ code: "E_IO" });
  });
  it("rejects a missing file with E_IO and a directory with E_NOT_FILE", async () => {
    await expect(SafetensorsFile.open(join(dir, "missing.safetensors"))).rejects.toMatchObject({ code: "E_IO" });
    await expect(SafetensorsFile.open(dir)).rejects.toMatchObject({ code: "E_NOT_FILE" });
  });
});

describe("lazy reads", () => {
  it("reading one tensor costs about that tensor's bytes", async () => {
    const path = join(dir, "lazy.safetensors");
    const r = rng(11);
    const tensors = new Map<string, Tensor>();
    for (let i = 0; i < 16; i++) {
      // 16 tensors of 1 MiB each, random contents
      const t = new Tensor("U8", [1024, 1024]);
      for (let j = 0; j < t.data.length; j += 4) new DataView(t.data.buffer).setUint32(j, r.u32());
      tensors.set(`t${i}`, t);
    }
    await writeSafetensors(path, tensors);
    // Count the bytes every FileHandle.read returns while opening and reading one tensor.
    const probe = await open(path, "r");
    const proto = Object.getPrototypeOf(probe) as { read: (...args: unknown[]) => Promise<{ bytesRead: number }> };
    await probe.close();
    let bytesRead = 0;
    const orig = proto.read;
    const spy = vi.spyOn(proto, "read").mockImplementation(async function (this: unknown, ...args: unknown[]) {
      const res = await orig.apply(this, args);
      bytesRead += res.bytesRead;
      return res;
    });
    try {
      const f = await SafetensorsFile.open(path);
      const headerBytes = bytesRead;
      expect(headerBytes).toBe(f.dataStart); // the length field and the header, nothing else
      const t = await f.read("t7");
      expect(bytesRead - headerBytes).toBe(1024 * 1024);
      expect(Buffer.compare(Buffer.from(t.bytes()), Buffer.from(tensors.get("t7")!.bytes()))).toBe(0);
      await f.close();
    } finally {
      spy.mockRestore();
    }
  });

  it("browses a 23 GB (sparse) checkpoint by reading only its header and one tensor", async () => {
    const path = join(dir, "huge.safetensors");
    // 92 tensors of [3072, 3072*... ] bf16 filling 23 GB: the data is a hole in a sparse file.
    const header: Record<string, unknown> = {};
    const per = 3072 * 3072 * 2 * 13; // 245 MB per tensor, [3072*13, 3072] BF16
    let off = 0;
    for (let i = 0; i < 94; i++) {
      header[`blocks.${i}.weight`] = { dtype: "BF16", shape: [3072 * 13, 3072], data_offsets: [off, off + per] };
      off += per;
    }
    header["tiny.bias"] = { dtype: "F32", shape: [8], data_offsets: [off, off + 32] };
    off += 32;
    const h = Buffer.from(JSON.stringify(header));
    await writeFile(path, raw(h));
    await truncate(path, 8 + h.length + off);
    expect(off).toBeGreaterThan(23e9);
    const before = process.memoryUsage().rss;
    const f = await SafetensorsFile.open(path);
    expect(f.names()).toHaveLength(95);
    const t = await f.read("tiny.bias");
    expect([...t.toFloat32()]).toEqual(new Array(8).fill(0));
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 2 ** 20);
    await f.close();
  });
});
