// Seeded generators of malformed inputs for the fuzz suite (issue 18). Each generator starts from a valid input and
// applies one or more mutations chosen from a list of the ways files go wrong: random bytes, truncation, hostile
// sizes, deep nesting, duplicate keys, control characters. Everything is a function of the seed.
import { crc32, deflateSync } from "node:zlib";
import jpeg from "jpeg-js";

/** mulberry32 (Tommy Ettinger, public domain): a small seeded PRNG. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  float(): number {
    return this.u32() / 2 ** 32;
  }
  int(n: number): number {
    return Math.floor(this.float() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.int(256));
  }
}

/** Numbers that break size arithmetic: zero, negatives, huge, fractional, beyond 2^53, non-numbers. */
export function hostileNumber(r: Rng): unknown {
  return r.pick<unknown>([
    0,
    -1,
    1e7,
    2 ** 31,
    2 ** 32 + 1,
    2 ** 53 + 2,
    1e308,
    -1e308,
    0.5,
    "12",
    null,
    true,
    [],
    {},
    "\u001b[2J",
    Number.MAX_SAFE_INTEGER,
  ]);
}

/** Strings with terminal escapes, bidi overrides, NUL and very long runs. */
export function hostileString(r: Rng): string {
  return r.pick([
    "\u001b[31mred\u001b[0m",
    "\u001b]52;c;ZXZpbA==\u0007",
    "a\rb",
    "evil\u202etxt",
    "\u009b2J",
    "nul\u0000byte",
    "x".repeat(10_000),
    "__proto__",
    "constructor",
    "",
  ]);
}

function mutateBytes(r: Rng, b: Uint8Array, protectPrefix = 0): Uint8Array {
  const out = Buffer.from(b);
  switch (r.int(5)) {
    case 0: // flip a few bytes
      for (let i = 0, n = 1 + r.int(8); i < n; i++)
        out[protectPrefix + r.int(Math.max(1, out.length - protectPrefix))] ^= 1 << r.int(8);
      return out;
    case 1: // truncate
      return out.subarray(0, r.int(out.length));
    case 2: // append garbage
      return Buffer.concat([out, r.bytes(1 + r.int(64))]);
    case 3: // overwrite a run with random bytes
      {
        const at = r.int(out.length);
        out.set(r.bytes(Math.min(out.length - at, 1 + r.int(32))), at);
        return out;
      }
    default: {
      // duplicate a slice in the middle
      const at = r.int(out.length);
      return Buffer.concat([out.subarray(0, at), out.subarray(at, at + r.int(64)), out.subarray(at)]);
    }
  }
}

// ------------------------------------------------------------------------------------------------ safetensors

const DTYPES = ["F32", "F16", "BF16", "I64", "U8", "F8_E4M3", "U16", "BOOL"] as const;
const SIZE: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I64: 8, U8: 1, F8_E4M3: 1, U16: 2, BOOL: 1 };

function safetensorsFile(headerText: string | Uint8Array, data: Uint8Array, lenOverride?: bigint): Uint8Array {
  const h = typeof headerText === "string" ? Buffer.from(headerText, "utf8") : Buffer.from(headerText);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

/** A malformed (or, rarely, valid) safetensors file. */
export function malformedSafetensors(r: Rng): Uint8Array {
  const header: Record<string, unknown> = {};
  let offset = 0;
  const count = 1 + r.int(4);
  for (let i = 0; i < count; i++) {
    const dtype = r.pick(DTYPES);
    const shape = Array.from({ length: r.int(3) }, () => 1 + r.int(4));
    const bytes = shape.reduce((a, b) => a * b, 1) * SIZE[dtype]!;
    header[`t${i}`] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  if (r.int(2)) header.__metadata__ = { format: "pt" };
  const data = r.bytes(offset);
  const entries = Object.keys(header).filter((k) => k !== "__metadata__");
  const victim = header[r.pick(entries)] as Record<string, unknown>;
  switch (r.int(14)) {
    case 0:
      return mutateBytes(r, safetensorsFile(JSON.stringify(header), data), 8);
    case 1: // header length field: huge, past the end, tiny
      return safetensorsFile(
        JSON.stringify(header),
        data,
        r.pick([2n ** 64n - 1n, 2n ** 40n, 99_999_999n, 0n, 1n, 7n]),
      );
    case 2: // deep nesting inside an entry or at the top
      {
        const d = r.pick([4, 100, 100_000, 2_000_000]);
        const text = r.int(2) ? `{"a":${"[".repeat(d)}${"]".repeat(d)}}` : `${"{".repeat(d)}`;
        return safetensorsFile(text, data);
      }
    case 3: // a shape array or a metadata object far wider than valid
      victim.shape = Array.from({ length: r.pick([65, 1000, 100_000]) }, () => 1);
      return safetensorsFile(JSON.stringify(header), data);
    case 4: // hostile numbers in shape / offsets
      if (r.int(2)) victim.shape = [hostileNumber(r), 1];
      else victim.data_offsets = [hostileNumber(r), hostileNumber(r)];
      return safetensorsFile(JSON.stringify(header), data);
    case 5: // unknown dtype, or a missing field
      if (r.int(2)) victim.dtype = r.pick(["F128", "f32", "", "C64", "F8_E8M0", hostileString(r)]);
      else delete victim[r.pick(["dtype", "shape", "data_offsets"])];
      return safetensorsFile(JSON.stringify(header), data);
    case 6: // duplicate keys, at the top or inside an entry
      {
        const text = JSON.stringify(header);
        return safetensorsFile(
          r.int(2)
            ? text.replace(/^\{/, `{"t0":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},`)
            : text.replace('"dtype"', '"shape":[1],"dtype"'),
          data,
        );
      }
    case 7: // BOM, or invalid UTF-8 in the header
      return safetensorsFile(
        Buffer.concat([
          r.int(2) ? Buffer.from([0xef, 0xbb, 0xbf]) : Buffer.from([0xc3, 0x28]),
          Buffer.from(JSON.stringify(header)),
        ]),
        data,
      );
    case 8: // data shorter or longer than the header says
      return safetensorsFile(
        JSON.stringify(header),
        r.int(2) ? data.subarray(0, r.int(data.length + 1)) : Buffer.concat([data, r.bytes(1 + r.int(16))]),
      );
    case 9: // overlapping or out-of-order offsets
      victim.data_offsets = [0, (victim.data_offsets as number[])[1]];
      header.zz = { dtype: "U8", shape: [1], data_offsets: [0, 1] };
      return safetensorsFile(JSON.stringify(header), data);
    case 10: // hostile names and metadata (printed by inspect)
      header[hostileString(r)] = { dtype: "U8", shape: [0], data_offsets: [offset, offset] };
      header.__metadata__ = { [hostileString(r)]: hostileString(r) };
      return safetensorsFile(JSON.stringify(header), data);
    case 11: // metadata of the wrong type
      header.__metadata__ = r.pick<unknown>([[], 1, { a: 1 }, { a: { b: "c" } }, null]);
      return safetensorsFile(JSON.stringify(header), data);
    case 12: // not JSON at all / top-level not an object
      return safetensorsFile(r.pick(["[]", "1", "null", '"x"', "{", "{}}", r.bytes(40) as unknown as string]), data);
    default: // a shape whose byte size overflows 2^53
      victim.shape = [2 ** 26, 2 ** 26, 2 ** 4];
      return safetensorsFile(JSON.stringify(header), data);
  }
}

// ------------------------------------------------------------------------------------------------ images

function pngChunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0);
  return Buffer.concat([head, data, crc]);
}

const SIG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** A valid 8-bit RGB PNG of random pixels (filter 0 rows), built by hand: IHDR, one IDAT, IEND. */
export function validPng(r: Rng, w: number, h: number): Buffer {
  const d = Buffer.alloc(13);
  d.writeUInt32BE(w, 0);
  d.writeUInt32BE(h, 4);
  d[8] = 8;
  d[9] = 2;
  const raw = Buffer.alloc(h * (1 + 3 * w));
  for (let y = 0; y < h; y++) raw.set(r.bytes(3 * w), y * (1 + 3 * w) + 1);
  return Buffer.concat([
    SIG,
    pngChunk("IHDR", d),
    pngChunk("IDAT", deflateSync(raw)),
    pngChunk("IEND", new Uint8Array(0)),
  ]);
}

/** A malformed PNG: hostile IHDR, bombs, short or corrupt image data, broken chunk structure. */
export function malformedPng(r: Rng): Uint8Array {
  const w = 1 + r.int(24);
  const h = 1 + r.int(24);
  const ihdr = (W: number, H: number, depth = 8, color = 2, interlace = 0): Buffer => {
    const d = Buffer.alloc(13);
    d.writeUInt32BE(W >>> 0, 0);
    d.writeUInt32BE(H >>> 0, 4);
    d[8] = depth;
    d[9] = color;
    d[12] = interlace;
    return pngChunk("IHDR", d);
  };
  const raw = (W: number, H: number, rows = H): Buffer => Buffer.alloc(rows * (1 + 3 * W));
  const iend = pngChunk("IEND", new Uint8Array(0));
  switch (r.int(9)) {
    case 0:
      return mutateBytes(r, validPng(r, w, h), 8);
    case 1: // claims a huge image with a tiny stream
      {
        const [W, H] = r.pick([
          [65536, 32768],
          [20000, 20000],
          [2 ** 31 - 1, 1],
          [0, 10],
          [10, 0],
          [2 ** 32 - 1, 2 ** 32 - 1],
        ])!;
        return Buffer.concat([SIG, ihdr(W, H), pngChunk("IDAT", deflateSync(Buffer.alloc(64))), iend]);
      }
    case 2: // a complete stream of fewer rows than declared
      return Buffer.concat([SIG, ihdr(w, h + 1 + r.int(8)), pngChunk("IDAT", deflateSync(raw(w, h))), iend]);
    case 3: // a stream that inflates past the declared size (a bomb within the limits)
      return Buffer.concat([SIG, ihdr(w, h), pngChunk("IDAT", deflateSync(raw(w, h + 1000))), iend]);
    case 4: // invalid depth/colour type/interlace
      return Buffer.concat([
        SIG,
        ihdr(w, h, r.pick([0, 3, 7, 32]), r.pick([1, 5, 7, 2]), r.pick([0, 2, 255])),
        pngChunk("IDAT", deflateSync(raw(w, h))),
        iend,
      ]);
    case 5: // corrupt zlib with valid CRCs
      return Buffer.concat([SIG, ihdr(w, h), pngChunk("IDAT", r.bytes(8 + r.int(64))), iend]);
    case 6: // chunk length running past the end
      {
        const f = Buffer.from(validPng(r, w, h));
        f.writeUInt32BE(2 ** 31 + r.int(1000), 33);
        return f;
      }
    case 7: // no IDAT, or no IEND
      return r.int(2)
        ? Buffer.concat([SIG, ihdr(w, h), iend])
        : Buffer.concat([SIG, ihdr(w, h), pngChunk("IDAT", deflateSync(raw(w, h)))]);
    default: // signature only, or a JPEG/PNG magic on garbage
      return r.int(2) ? SIG : Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), r.bytes(r.int(100))]);
  }
}

export function validJpeg(r: Rng, w: number, h: number): Buffer {
  return jpeg.encode({ width: w, height: h, data: Buffer.from(r.bytes(w * h * 4)) }, 80).data;
}

/** A malformed JPEG: hostile SOF dimensions, truncation, broken segment lengths, random bytes. */
export function malformedJpeg(r: Rng): Uint8Array {
  const w = 8 + r.int(24);
  const h = 8 + r.int(24);
  const good = Buffer.from(validJpeg(r, w, h));
  const sof = good.indexOf(Buffer.from([0xff, 0xc0]));
  switch (r.int(5)) {
    case 0:
      return mutateBytes(r, good, 3);
    case 1: // huge or zero dimensions in SOF
      {
        const f = Buffer.from(good);
        const [W, H] = r.pick([
          [65535, 65535],
          [65535, 1],
          [0, 16],
          [16, 0],
          [40000, 40000],
        ])!;
        f.writeUInt16BE(H, sof + 5);
        f.writeUInt16BE(W, sof + 7);
        return f;
      }
    case 2: // truncated inside the scan or the headers
      return good.subarray(0, r.int(good.length));
    case 3: // a segment length pointing past the end
      {
        const f = Buffer.from(good);
        f.writeUInt16BE(0xfff0, sof + 2);
        return f;
      }
    default: // SOI then garbage
      return Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), r.bytes(r.int(200))]);
  }
}

// ------------------------------------------------------------------------------------------------ configs

/** A small valid ablation config (runs in well under a second when a mutation happens to leave it valid). */
export function baseExperimentConfig(): Record<string, unknown> {
  return {
    runner: "ablation-layer",
    seed: 0,
    methods: ["fp"],
    generated: [{ name: "g", seed: 1, n: 16, k: 64, tokens: 16 }],
    fixtures: [],
    fixtureTokens: 8,
    rank: 4,
    rankSweep: { method: "fp", layer: "g", ranks: [0] },
    figureLayer: "none",
    out: "out",
  };
}

function setPath(obj: Record<string, unknown>, path: (string | number)[], v: unknown): void {
  let o = obj as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) {
    const next = o[k];
    if (next === null || typeof next !== "object") return; // an earlier mutation replaced the parent
    o = next as Record<string | number, unknown>;
  }
  o[path[path.length - 1]!] = v;
}

const CONFIG_PATHS: (string | number)[][] = [
  ["seed"],
  ["rank"],
  ["fixtureTokens"],
  ["methods"],
  ["generated"],
  ["generated", 0, "n"],
  ["generated", 0, "k"],
  ["generated", 0, "tokens"],
  ["generated", 0, "outlierChannels"],
  ["generated", 0, "weightOutlierChannels"],
  ["generated", 0, "headRank"],
  ["generated", 0, "outlierRange"],
  ["generated", 0, "seed"],
  ["fixtures"],
  ["rankSweep"],
  ["rankSweep", "ranks"],
  ["rankSweep", "method"],
  ["out"],
  ["runner"],
  ["sharedInputs"],
];

/** The text of a malformed experiment config.json. */
export function malformedExperimentConfig(r: Rng): string {
  const c = baseExperimentConfig();
  switch (r.int(6)) {
    case 0:
    case 1:
    case 2: // one field replaced by a hostile value
      setPath(c, r.pick(CONFIG_PATHS), r.int(3) ? hostileNumber(r) : hostileString(r));
      return JSON.stringify(c);
    case 3: // several at once
      for (let i = 0; i < 3; i++) setPath(c, r.pick(CONFIG_PATHS), hostileNumber(r));
      return JSON.stringify(c);
    case 4: // not JSON, deeply nested, or not an object
      return r.pick(["", "{", "[]", "null", "1", `${"[".repeat(100_000)}`, `{"runner":${"[".repeat(10_000)}}`]);
    default: // prototype-named keys and byte mutations of the text
      return r.int(2)
        ? JSON.stringify(c).replace('"seed"', `"__proto__":{"polluted":1},"constructor":1,"seed"`)
        : Buffer.from(mutateBytes(r, Buffer.from(JSON.stringify(c)))).toString("latin1");
  }
}

// ------------------------------------------------------------------------------------------------ CLI options

/** A random command line: real commands and options with hostile values, unknown options, missing arguments. */
export function hostileArgv(r: Rng, paths: { file: string; dir: string; fifo: string; missing: string }): string[] {
  const val = (): string =>
    r.pick([
      "0",
      "-1",
      "2000",
      "1e309",
      "NaN",
      "0x10",
      " 3 ",
      "1.5",
      "abc",
      "",
      "\u001b[2J",
      "9".repeat(400),
      paths.fifo,
      paths.dir,
      paths.missing,
      paths.file,
    ]);
  switch (r.int(5)) {
    case 0:
      return [
        "eval",
        "--ref",
        r.pick([paths.dir, paths.missing, paths.fifo]),
        "--test",
        r.pick([paths.dir, paths.file]),
        r.pick(["--threads", "--batch"]),
        val(),
        "--no-progress",
      ];
    case 1:
      return [
        "eval",
        "--ref",
        paths.dir,
        "--test",
        paths.dir,
        "--out",
        r.pick([paths.dir, `${paths.missing}/x/y.json`, paths.fifo, "", "\u0000"]),
        "--no-progress",
        "--threads",
        "1",
      ];
    case 2:
      return [
        "inspect",
        r.pick([paths.fifo, paths.dir, paths.missing, paths.file, val()]),
        ...(r.int(2) ? ["--json"] : []),
      ];
    case 3:
      return [
        "experiment",
        "run",
        r.pick([paths.missing, paths.fifo, paths.file, val()]),
        ...(r.int(2) ? ["--quiet"] : []),
      ];
    default:
      return Array.from({ length: 1 + r.int(4) }, () =>
        r.pick(["--help-me", "-x", "inspect", "eval", "--threads", val(), hostileString(r)]),
      );
  }
}
