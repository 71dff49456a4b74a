// Issue 18: malformed or hostile safetensors inputs end in one TensorError, never a crash, a hang or unbounded
// memory. One test per finding; the fuzz suite (packages/cli/test/fuzz) covers the classes at volume.
import { spawnSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { freemem } from "node:os";
import { join } from "node:path";
import {
  escapeForTerminal,
  firstNonFinite,
  jsonForTerminal,
  MAX_HEADER_ENTRIES,
  openCheckpoint,
  SafetensorsFile,
  ShardedCheckpoint,
  Tensor,
  writeSafetensors,
} from "@svdquant/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkfifoSync } from "./fifo.js";
import { rng, tempDir } from "./helpers.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await tempDir("svdq-hard-")));
afterAll(() => cleanup());

/** A safetensors file from header text and data bytes. */
async function rawFile(name: string, header: string | Buffer, data = new Uint8Array(0)): Promise<string> {
  const h = typeof header === "string" ? Buffer.from(header, "utf8") : header;
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  const p = join(dir, name);
  await writeFile(p, Buffer.concat([len, h, data]));
  return p;
}

const TWO_GIB_NEEDS = 5 * 2 ** 30; // the child holds the 2 GiB tensor once, plus Node itself

describe("reads of 2 GiB and more (finding 1)", () => {
  it.skipIf(freemem() < TWO_GIB_NEEDS)(
    `reads a 2 GiB + 8 byte tensor of a sparse file in chunks (skipped below ${TWO_GIB_NEEDS / 2 ** 30} GiB free memory)`,
    () => {
      const r = spawnSync(
        process.execPath,
        [
          "--conditions=@svdquant/source",
          "--import",
          "tsx",
          join(import.meta.dirname, "sparse-child.ts"),
          join(dir, "sparse.safetensors"),
        ],
        { encoding: "utf8", cwd: join(import.meta.dirname, ".."), timeout: 120_000 },
      );
      expect(r.signal, r.stderr).toBeNull();
      expect(r.status, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ length: 2 ** 31 + 8, marks: [11, 22, 33, 44, 55], sampledNonzero: 2 });
    },
    180_000,
  );
});

describe("header scanner (findings 4, 11)", () => {
  it("rejects a header nested millions of arrays deep before JSON.parse, in bounded memory", async () => {
    const depth = 20_000_000;
    const p = await rawFile("deep.safetensors", `{"a":${"[".repeat(depth)}${"]".repeat(depth)}}`);
    const before = process.memoryUsage().rss;
    await expect(SafetensorsFile.open(p)).rejects.toMatchObject({
      code: "E_HEADER_JSON",
      message: expect.stringMatching(/deep\.safetensors: header nests deeper than 3 levels/),
    });
    // the header itself is 40 MB of text; parsing it would need GBs
    expect(process.memoryUsage().rss - before).toBeLessThan(400 * 2 ** 20);
  });

  it("rejects more entries than MAX_HEADER_ENTRIES, and arrays longer than a shape can be", async () => {
    const keys = Array.from({ length: MAX_HEADER_ENTRIES + 1 }, (_, i) => `"t${i}":0`).join(",");
    await expect(SafetensorsFile.open(await rawFile("wide.safetensors", `{${keys}}`))).rejects.toMatchObject({
      code: "E_HEADER_SIZE",
    });
    const long = `{"a":{"dtype":"U8","shape":[${Array(100).fill(1).join(",")}],"data_offsets":[0,1]}}`;
    await expect(SafetensorsFile.open(await rawFile("long.safetensors", long, Uint8Array.of(1)))).rejects.toMatchObject(
      {
        code: "E_HEADER_JSON",
        tensor: "a",
      },
    );
  });

  it("rejects a UTF-8 byte order mark before the header", async () => {
    const body = Buffer.from(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`);
    const p = await rawFile(
      "bom.safetensors",
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), body]),
      Uint8Array.of(7),
    );
    await expect(SafetensorsFile.open(p)).rejects.toMatchObject({ code: "E_HEADER_JSON", message: /byte order mark/ });
  });

  it("rejects a key repeated inside an entry (JSON.parse would keep the last silently)", async () => {
    const h = `{"a":{"dtype":"U8","shape":[1],"shape":[2],"data_offsets":[0,2]}}`;
    await expect(SafetensorsFile.open(await rawFile("dupk.safetensors", h, Uint8Array.of(1, 2)))).rejects.toMatchObject(
      { code: "E_DUPLICATE", tensor: "a", message: /"shape" twice/ },
    );
    const top = `{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`;
    await expect(SafetensorsFile.open(await rawFile("dupt.safetensors", top, Uint8Array.of(1)))).rejects.toMatchObject({
      code: "E_DUPLICATE",
      tensor: "a",
    });
  });
});

describe("JSON inputs (finding 4, for configs and shard indexes)", () => {
  it("a config.json or shard index nested millions deep fails before JSON.parse, in bounded memory", async () => {
    const deep = `{"a":${"[".repeat(4_000_000)}${"]".repeat(4_000_000)}}`; // 8 MB; JSON.parse needed ~0.5 GB
    const folder = join(dir, "deep-model");
    await mkdir(folder);
    await writeSafetensors(join(folder, "model.safetensors"), { w: Tensor.fromFloats("F32", [1], [1]) });
    await writeFile(join(folder, "config.json"), deep);
    const index = join(dir, "deep.safetensors.index.json");
    await writeFile(index, deep);
    const before = process.memoryUsage().rss;
    await expect(openCheckpoint(folder)).rejects.toMatchObject({
      code: "E_TOO_LARGE",
      message: expect.stringMatching(/config\.json: JSON nests deeper than 16 levels/),
    });
    await expect(ShardedCheckpoint.open(index)).rejects.toMatchObject({ code: "E_TOO_LARGE" });
    expect(process.memoryUsage().rss - before).toBeLessThan(200 * 2 ** 20);
  });
});

describe("U16/U32/U64 (finding 11)", () => {
  it("reads the unsigned dtypes the format defines, little-endian, and writes them back", async () => {
    const r = rng(18);
    const u16 = Array.from({ length: 6 }, () => r.u32() & 0xffff);
    const u32 = Array.from({ length: 6 }, () => r.u32());
    const u64 = Array.from({ length: 3 }, () => (BigInt(r.u32()) << 32n) | BigInt(r.u32()));
    const data = Buffer.alloc(12 + 24 + 24);
    // data order of the reference writer: U64, U32, U16
    for (const [i, v] of u64.entries()) data.writeBigUInt64LE(v, i * 8);
    for (const [i, v] of u32.entries()) data.writeUInt32LE(v, 24 + i * 4);
    for (const [i, v] of u16.entries()) data.writeUInt16LE(v, 48 + i * 2);
    const h = JSON.stringify({
      c: { dtype: "U64", shape: [3], data_offsets: [0, 24] },
      b: { dtype: "U32", shape: [2, 3], data_offsets: [24, 48] },
      a: { dtype: "U16", shape: [6], data_offsets: [48, 60] },
    });
    const p = await rawFile("unsigned.safetensors", h, data);
    const f = await SafetensorsFile.open(p);
    expect(Array.from((await f.read("a")).data as Uint16Array)).toEqual(u16);
    expect(Array.from((await f.read("b")).data as Uint32Array)).toEqual(u32);
    expect(Array.from((await f.read("c")).data as BigUint64Array)).toEqual(u64);
    expect(Array.from((await f.read("b")).toFloat64())).toEqual(u32);
    const again = join(dir, "unsigned2.safetensors");
    await writeSafetensors(again, { a: await f.read("a"), b: await f.read("b"), c: await f.read("c") });
    await f.close();
    const g = await SafetensorsFile.open(again);
    expect(g.dataStart).toBeGreaterThan(8);
    expect(g.infos().map((i) => [i.name, i.dataOffsets])).toEqual([
      ["a", [48, 60]],
      ["b", [24, 48]],
      ["c", [0, 24]],
    ]);
    await g.close();
    expect(() => Tensor.fromFloats("U16", [1], [65536])).toThrow(/does not fit U16/);
    expect(() => Tensor.fromFloats("U64", [1], [-1])).toThrow(/does not fit U64/);
  });
});

describe("non-regular inputs (finding 7)", () => {
  it("a FIFO as a checkpoint, a shard index, a shard or a config.json fails at once with E_NOT_FILE", async () => {
    const t0 = Date.now();
    const fifo = join(dir, "pipe.safetensors");
    mkfifoSync(fifo);
    await expect(SafetensorsFile.open(fifo)).rejects.toMatchObject({ code: "E_NOT_FILE", message: /FIFO/ });
    await expect(openCheckpoint(fifo)).rejects.toMatchObject({ code: "E_NOT_FILE" });
    const idx = join(dir, "pipe.safetensors.index.json");
    mkfifoSync(idx);
    await expect(ShardedCheckpoint.open(idx)).rejects.toMatchObject({ code: "E_NOT_FILE" });
    const folder = join(dir, "model");
    await mkdir(folder);
    await writeSafetensors(join(folder, "model.safetensors"), { w: Tensor.fromFloats("F32", [1], [1]) });
    mkfifoSync(join(folder, "config.json"));
    await expect(openCheckpoint(folder)).rejects.toMatchObject({ code: "E_NOT_FILE" });
    const index = join(dir, "ok.safetensors.index.json");
    await writeFile(index, JSON.stringify({ weight_map: { w: "pipe.safetensors" } }));
    await expect(ShardedCheckpoint.open(index)).rejects.toMatchObject({ code: "E_NOT_FILE" });
    expect(Date.now() - t0).toBeLessThan(3000);
  }, 10_000);
});

describe("terminal escapes (finding 10)", () => {
  it("escapes C0, DEL, C1 and bidi controls, keeps printable Unicode, and stays unambiguous", () => {
    expect(escapeForTerminal("a\x1b[2Jb")).toBe("a\\x1b[2Jb");
    expect(escapeForTerminal("x\r\ny\t\x7f\u009b")).toBe("x\\r\\ny\\t\\x7f\\x9b");
    expect(escapeForTerminal("evil\u202etxt.exe")).toBe("evil\\u202etxt.exe");
    expect(escapeForTerminal("λ-ü-日本")).toBe("λ-ü-日本");
    expect(escapeForTerminal("a\\x1b")).toBe("a\\\\x1b"); // a literal backslash cannot fake an escape
    const j = jsonForTerminal({ "k\u009b": "v\u202e\x1b" }, 2);
    expect([...j].some((c) => c === "\u009b" || c === "\u202e" || c === "\x1b")).toBe(false);
    expect(JSON.parse(j)).toEqual({ "k\u009b": "v\u202e\x1b" });
  });
});

describe("firstNonFinite (finding 6)", () => {
  it("finds NaN/Inf in the stored bits of every float dtype, and nothing in finite data", () => {
    const r = rng(6);
    for (const dtype of ["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"] as const) {
      const vals = Array.from({ length: 257 }, () => r.normal());
      expect(firstNonFinite(Tensor.fromFloats(dtype, [257], vals))).toBe(-1);
      for (const bad of dtype === "F8_E4M3" ? [Number.NaN] : [Number.NaN, Number.POSITIVE_INFINITY, -Infinity]) {
        const at = r.int(257);
        const v = vals.slice();
        v[at] = bad;
        const t = Tensor.fromFloats(dtype, [257], v, { fp8Overflow: "nan-or-inf" });
        expect(firstNonFinite(t), `${dtype} ${bad}`).toBe(at);
      }
    }
    expect(firstNonFinite(Tensor.fromFloats("I32", [2], [1, 2]))).toBe(-1);
  });
});
