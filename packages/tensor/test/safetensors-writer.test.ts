import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  DTYPE_INFO,
  DTYPES,
  type DType,
  SafetensorsFile,
  Tensor,
  type TensorEntry,
  TensorError,
  writeSafetensors,
} from "@svdquant/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rng, tempDir } from "./helpers.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await tempDir("svdq-writer-")));
afterAll(() => cleanup());

const r = rng(99);

/** A tensor of `dtype` with random raw storage bits (every pattern, NaNs included, for the float formats). */
function randomTensor(dtype: DType, shape: number[]): Tensor {
  const t = new Tensor(dtype, shape);
  const bytes = t.bytes();
  for (let i = 0; i < bytes.length; i++) bytes[i] = r.u32() & 0xff;
  if (dtype === "BOOL") for (let i = 0; i < bytes.length; i++) bytes[i]! &= 1;
  return t;
}

const sameBytes = (a: Tensor, b: Tensor) => Buffer.compare(Buffer.from(a.bytes()), Buffer.from(b.bytes())) === 0;

describe("writeSafetensors", () => {
  it("round-trips every dtype bit-exactly, with metadata, and re-writes byte-identically", async () => {
    const tensors = new Map<string, Tensor>();
    for (const [i, d] of DTYPES.entries()) {
      tensors.set(`t.${d}`, randomTensor(d, [3, 1 + i]));
      tensors.set(`s.${d}`, randomTensor(d, []));
    }
    tensors.set("z.empty", new Tensor("F32", [0, 4]));
    const path = join(dir, "all.safetensors");
    const meta = { format: "pt", "ü key": 'quote " and \\ backslash' };
    await writeSafetensors(path, tensors, meta);
    const f = await SafetensorsFile.open(path);
    expect({ ...f.metadata }).toEqual(meta);
    expect(f.names()).toEqual([...tensors.keys()].sort());
    // header padded so that the data starts at a multiple of 8 (as the reference writer does)
    expect(f.dataStart % 8).toBe(0);
    const back = new Map<string, Tensor>();
    for (const [name, t] of tensors) {
      const u = await f.read(name);
      expect(u.dtype).toBe(t.dtype);
      expect(u.shape).toEqual(t.shape);
      expect(sameBytes(u, t), name).toBe(true);
      back.set(name, u);
    }
    await f.close();
    const again = join(dir, "all-again.safetensors");
    await writeSafetensors(again, back, f.metadata);
    expect(Buffer.compare(await readFile(path), await readFile(again))).toBe(0);
  });

  it("lays data out as the reference writer: by dtype (wider first), then by name", async () => {
    const path = join(dir, "order.safetensors");
    await writeSafetensors(path, {
      b: randomTensor("F32", [2]),
      a: randomTensor("F32", [2]),
      c: randomTensor("BF16", [2]),
      d: randomTensor("I64", [1]),
      e: randomTensor("U8", [3]),
      f: randomTensor("F64", [1]),
    });
    const f = await SafetensorsFile.open(path);
    const byOffset = f.infos().sort((x, y) => x.dataOffsets[0] - y.dataOffsets[0]);
    expect(byOffset.map((i) => i.name)).toEqual(["d", "f", "a", "b", "c", "e"]);
    await f.close();
  });

  it("accepts a Map, a Record and entries with lazy producers", async () => {
    const t = randomTensor("F16", [4, 2]);
    const paths = ["m", "r", "e"].map((n) => join(dir, `forms-${n}.safetensors`));
    await writeSafetensors(paths[0]!, new Map([["w", t]]));
    await writeSafetensors(paths[1]!, { w: t });
    await writeSafetensors(paths[2]!, [{ name: "w", dtype: "F16", shape: [4, 2], data: async () => t }]);
    const bytes = await Promise.all(paths.map((p) => readFile(p)));
    expect(Buffer.compare(bytes[0]!, bytes[1]!)).toBe(0);
    expect(Buffer.compare(bytes[0]!, bytes[2]!)).toBe(0);
  });

  it("streams: lazy producers run one at a time, in data order, each after the previous tensor is on disk", async () => {
    const path = join(dir, "stream.safetensors");
    const specs: [string, DType, number[]][] = [
      ["w2", "BF16", [64, 32]],
      ["w1", "BF16", [16, 16]],
      ["bias", "F32", [64]],
      ["idx", "I64", [8]],
      ["q", "I8", [128]],
    ];
    const calls: string[] = [];
    let active = 0;
    let maxActive = 0;
    const tensors = new Map<string, Tensor>();
    const entries: TensorEntry[] = specs.map(([name, dtype, shape]) => ({
      name,
      dtype,
      shape,
      data: async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        calls.push(name);
        // Everything produced so far is already written to the temp file.
        const tmp = (await readdir(dir)).filter((f) => f.startsWith(".stream.safetensors.") && f.endsWith(".tmp"));
        expect(tmp).toHaveLength(1);
        const size = (await stat(join(dir, tmp[0]!))).size;
        const written = [...tensors.values()].reduce((s, t) => s + t.byteLength, 0);
        expect(size).toBeGreaterThanOrEqual(8 + written);
        await new Promise((res) => setTimeout(res, 2));
        const t = randomTensor(dtype, shape);
        tensors.set(name, t);
        active--;
        return t;
      },
    }));
    await writeSafetensors(path, entries);
    expect(maxActive).toBe(1);
    expect(calls).toEqual(["idx", "bias", "w1", "w2", "q"]); // I64, F32, BF16 (by name), I8
    const f = await SafetensorsFile.open(path);
    for (const [name, t] of tensors) expect(sameBytes(await f.read(name), t), name).toBe(true);
    await f.close();
  });

  it("is atomic: a failing producer leaves neither a file under the final name nor a temp file", async () => {
    const sub = join(dir, "atomic");
    await (await import("node:fs/promises")).mkdir(sub);
    const path = join(sub, "out.safetensors");
    const boom = new Error("producer failed");
    const entries: TensorEntry[] = [
      { name: "a", dtype: "F32", shape: [1024], data: randomTensor("F32", [1024]) },
      {
        name: "b",
        dtype: "F16",
        shape: [4],
        data: () => {
          throw boom;
        },
      },
    ];
    const err = await writeSafetensors(path, entries).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TensorError);
    expect(err).toMatchObject({ code: "E_ARGUMENT", file: path, tensor: "b", cause: boom });
    expect((err as TensorError).message).toContain(path);
    expect(await readdir(sub)).toEqual([]);

    // An existing file under the final name survives a failed write untouched.
    await writeFile(path, "previous content");
    const wrongShape: TensorEntry[] = [
      { name: "w", dtype: "F32", shape: [2, 2], data: () => randomTensor("F32", [4]) },
    ];
    await expect(writeSafetensors(path, wrongShape)).rejects.toMatchObject({ code: "E_SHAPE", tensor: "w" });
    expect(await readdir(sub)).toEqual(["out.safetensors"]);
    expect(await readFile(path, "utf8")).toBe("previous content");
  });

  it.each([
    [
      "a duplicate name",
      [
        { name: "w", dtype: "F32", shape: [1], data: new Tensor("F32", [1]) },
        { name: "w", dtype: "F32", shape: [1], data: new Tensor("F32", [1]) },
      ],
      "E_DUPLICATE",
    ],
    [
      "the reserved name __metadata__",
      [{ name: "__metadata__", dtype: "F32", shape: [1], data: new Tensor("F32", [1]) }],
      "E_ARGUMENT",
    ],
    ["an unknown dtype", [{ name: "w", dtype: "toString", shape: [1], data: new Tensor("F32", [1]) }], "E_DTYPE"],
    ["a negative dimension", [{ name: "w", dtype: "F32", shape: [-1], data: new Tensor("F32", [1]) }], "E_SHAPE"],
    ["a dtype mismatch", [{ name: "w", dtype: "F16", shape: [1], data: new Tensor("F32", [1]) }], "E_SHAPE"],
  ] as [string, TensorEntry[], string][])(
    "rejects %s, naming file and tensor, writing nothing",
    async (_, entries, code) => {
      const path = join(dir, `bad-${code}.safetensors`);
      const err = await writeSafetensors(path, entries).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TensorError);
      expect(err).toMatchObject({ code, file: path, tensor: entries.at(-1)!.name });
      expect((await readdir(dir)).filter((f) => f.startsWith(`bad-${code}`))).toEqual([]);
    },
  );

  it("rejects non-string metadata values", async () => {
    const path = join(dir, "badmeta.safetensors");
    await expect(
      writeSafetensors(path, { w: new Tensor("F32", [1]) }, { k: 1 as unknown as string }),
    ).rejects.toMatchObject({ code: "E_METADATA", file: path });
  });

  it("stores each dtype with the safetensors item size", () => {
    expect(Object.fromEntries(DTYPES.map((d) => [d, DTYPE_INFO[d].itemsize]))).toEqual({
      F64: 8,
      F32: 4,
      F16: 2,
      BF16: 2,
      F8_E4M3: 1,
      F8_E5M2: 1,
      I64: 8,
      I32: 4,
      I16: 2,
      I8: 1,
      U64: 8,
      U32: 4,
      U16: 2,
      U8: 1,
      BOOL: 1,
    });
  });
});
