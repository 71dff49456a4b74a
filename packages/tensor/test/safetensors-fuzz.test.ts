// Fuzz: ≥ 10,000 random mutations of valid safetensors files (fixed seed). Every case must end in a TensorError
// or a valid read of every tensor; never another exception, a hang, or an allocation larger than the file.
import { writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { DTYPE_INFO, numelOf, SafetensorsFile, Tensor, TensorError, writeSafetensors } from "@svdquant/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rng, tempDir } from "./helpers.js";

const CASES = 10_000;

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await tempDir("svdq-fuzz-")));
afterAll(() => cleanup());

async function seeds(): Promise<Buffer[]> {
  const r = rng(2024);
  const rand = (n: number) => Array.from({ length: n }, () => r.normal());
  const files: Record<string, Tensor>[] = [
    {
      "blocks.0.attn.to_q.weight": Tensor.fromFloats("BF16", [8, 4], rand(32)),
      "blocks.0.attn.to_q.bias": Tensor.fromFloats("F32", [8], rand(8)),
      scale: Tensor.fromFloats("F8_E4M3", [2, 2], rand(4)),
      empty: new Tensor("F16", [0, 3]),
    },
    {
      a: Tensor.fromFloats("F64", [3], rand(3)),
      b: Tensor.fromFloats("I64", [2], [5, -7]),
      c: Tensor.fromFloats("BOOL", [5], [1, 0, 1, 1, 0]),
      d: Tensor.fromFloats("F8_E5M2", [7], rand(7)),
      "é/ü": Tensor.fromFloats("I16", [3], [1, -2, 3]),
    },
    {
      x: Tensor.fromFloats(
        "U8",
        [16],
        Array.from({ length: 16 }, (_, i) => i * 3),
      ),
    },
  ];
  const out: Buffer[] = [];
  for (const [i, t] of files.entries()) {
    const p = join(dir, `seed-${i}.safetensors`);
    await writeSafetensors(p, t, i === 0 ? { format: "pt", note: "seed" } : undefined);
    out.push(await readFile(p));
  }
  return out;
}

type Rng = ReturnType<typeof rng>;

/** A random number a header edit may put in place of another: small, huge, negative, fractional, exotic. */
function wildNumber(r: Rng): string {
  const pick = r.int(9);
  if (pick === 0) return String(-r.int(100));
  if (pick === 1) return String(2 ** (20 + r.int(50)));
  if (pick === 2) return `${r.int(100)}.5`;
  if (pick === 3) return "1e400";
  if (pick === 4) return "18446744073709551615";
  return String(r.int(64));
}

function mutate(seed: Buffer, r: Rng): Buffer {
  const headerLen = Number(seed.readBigUInt64LE(0));
  const kind = r.int(8);
  switch (kind) {
    case 0: {
      // flip 1-4 random bits anywhere
      const b = Buffer.from(seed);
      for (let i = 0, n = 1 + r.int(4); i < n; i++) b[r.int(b.length)]! ^= 1 << r.int(8);
      return b;
    }
    case 1: {
      // random byte values inside the header
      const b = Buffer.from(seed);
      for (let i = 0, n = 1 + r.int(3); i < n; i++) b[8 + r.int(headerLen)] = r.int(256);
      return b;
    }
    case 2: {
      // truncate
      return seed.subarray(0, r.int(seed.length));
    }
    case 3: {
      // edit the length field: small delta, random u64, or the boundary values
      const b = Buffer.from(seed);
      const v = [
        BigInt(headerLen + r.int(33) - 16),
        (BigInt(r.u32()) << 32n) | BigInt(r.u32()),
        BigInt(r.u32()),
        100_000_001n,
        0n,
      ][r.int(5)]!;
      b.writeBigUInt64LE(v < 0n ? 0n : v, 0);
      return b;
    }
    case 4:
    case 5: {
      // edit a number in the header JSON (shape, offsets), keep the length field consistent
      const text = seed.subarray(8, 8 + headerLen).toString("utf8");
      const nums = [...text.matchAll(/\d+/g)];
      if (nums.length === 0) return seed;
      const m = nums[r.int(nums.length)]!;
      const edited = text.slice(0, m.index) + wildNumber(r) + text.slice(m.index! + m[0].length);
      return rebuild(edited, seed.subarray(8 + headerLen), r);
    }
    case 6: {
      // structural JSON edits: dtype swap, key rename/duplicate, delete or insert a character
      const text = seed.subarray(8, 8 + headerLen).toString("utf8");
      const ops = [
        () => text.replace(/"(F32|BF16|F16|U8|I64|F64)"/, `"${["F17", "f32", "I8", "F8_E4M3", "", "BOOL"][r.int(6)]}"`),
        () => text.replace(/"data_offsets"/, r.int(2) ? '"data_offset"' : '"shape"'),
        () =>
          text.replace(
            /"shape":\[[^\]]*\]/,
            ['"shape":[]', '"shape":[-1]', '"shape":"3"', '"shape":[1,1,1]'][r.int(4)]!,
          ),
        () => {
          const i = r.int(text.length);
          return text.slice(0, i) + text.slice(i + 1);
        },
        () => {
          const i = r.int(text.length);
          return text.slice(0, i) + '{}[]",:0\\'[r.int(9)] + text.slice(i);
        },
        () => text.replace(/^\{("[^"]+":\{[^}]*\})/, "{$1,$1"), // duplicate the first entry
        () => {
          // move one tensor's data_offsets by a few bytes, keeping its length: overlaps and holes
          const all = [...text.matchAll(/"data_offsets":\[(\d+),(\d+)\]/g)];
          if (all.length === 0) return text;
          const m = all[r.int(all.length)]!;
          const d = [-8, -4, -2, -1, 1, 2, 4][r.int(7)]!;
          const b = Math.max(0, Number(m[1]) + d);
          const e = b + Number(m[2]) - Number(m[1]);
          return `${text.slice(0, m.index)}"data_offsets":[${b},${e}]${text.slice(m.index! + m[0].length)}`;
        },
        () => text.replace(/"__metadata__":\{[^}]*\}/, ['"__metadata__":[]', '"__metadata__":{"a":1}'][r.int(2)]!),
      ];
      return rebuild(ops[r.int(ops.length)]!(), seed.subarray(8 + headerLen), r);
    }
    default: {
      // append or remove data bytes
      return r.int(2)
        ? Buffer.concat([seed, Buffer.alloc(1 + r.int(16), r.int(256))])
        : seed.subarray(0, seed.length - 1 - r.int(8));
    }
  }
}

function rebuild(headerText: string, data: Buffer, r: Rng): Buffer {
  const h = Buffer.from(headerText, "utf8");
  const out = Buffer.alloc(8 + h.length + data.length);
  out.writeBigUInt64LE(BigInt(h.length + (r.int(10) === 0 ? r.int(5) - 2 : 0)), 0);
  h.copy(out, 8);
  data.copy(out, 8 + h.length);
  return out;
}

describe("safetensors reader fuzz", () => {
  it(`${CASES} mutated files: TensorError or a valid read, never anything else`, async () => {
    const base = await seeds();
    const r = rng(0xf022);
    const path = join(dir, "case.safetensors");
    // Track the reader's allocations: it allocates only through Buffer.alloc (length field, header) and
    // Buffer.allocUnsafeSlow (tensor data). Hooks are plain property swaps installed around reader calls.
    let maxAlloc = 0;
    const realAlloc = Buffer.alloc;
    const realAllocSlow = Buffer.allocUnsafeSlow;
    const trackedAlloc = ((size: number, fill?: string | number | Uint8Array, encoding?: BufferEncoding) => {
      maxAlloc = Math.max(maxAlloc, size);
      return realAlloc.call(Buffer, size, fill, encoding);
    }) as typeof Buffer.alloc;
    const trackedAllocSlow = ((size: number) => {
      maxAlloc = Math.max(maxAlloc, size);
      return realAllocSlow.call(Buffer, size);
    }) as typeof Buffer.allocUnsafeSlow;
    const tracked = async <T>(fn: () => Promise<T>): Promise<T> => {
      Buffer.alloc = trackedAlloc;
      Buffer.allocUnsafeSlow = trackedAllocSlow;
      try {
        return await fn();
      } finally {
        Buffer.alloc = realAlloc;
        Buffer.allocUnsafeSlow = realAllocSlow;
      }
    };
    const outcomes = { valid: 0, rejected: 0 } as Record<string, number>;
    const t0 = performance.now();
    let slowest = 0; // ms, the longest single case: no case may hang
    try {
      for (let i = 0; i < CASES; i++) {
        const seed = base[i % base.length]!;
        const bytes = mutate(seed, r);
        writeFileSync(path, bytes); // sync: a third of the time of fs/promises for tiny files
        maxAlloc = 0;
        const c0 = performance.now();
        let f: SafetensorsFile | undefined;
        try {
          f = await tracked(() => SafetensorsFile.open(path));
          let total = 0;
          for (const name of f.names()) {
            const info = f.info(name);
            const t = await tracked(() => f!.read(name));
            // A valid read: the declared dtype and shape, exactly the bytes of the file at its offsets.
            expect(t.dtype).toBe(info.dtype);
            expect(t.shape).toEqual(info.shape);
            const nbytes = numelOf(info.shape) * DTYPE_INFO[info.dtype].itemsize;
            const at = f.dataStart + info.dataOffsets[0];
            if (Buffer.compare(Buffer.from(t.bytes()), bytes.subarray(at, at + nbytes)) !== 0)
              expect.fail(`case ${i}: tensor ${name} differs from the file bytes`);
            total += nbytes;
          }
          expect(f.dataStart + total).toBe(bytes.length); // the tensors tile the file exactly
          outcomes.valid!++;
        } catch (e) {
          if (!(e instanceof TensorError)) {
            throw new Error(`case ${i} (${bytes.length} bytes) threw a non-TensorError: ${String(e)}`, { cause: e });
          }
          expect(e.message).toContain(path);
          outcomes.rejected!++;
          outcomes[e.code] = (outcomes[e.code] ?? 0) + 1;
        } finally {
          await f?.close();
        }
        slowest = Math.max(slowest, performance.now() - c0);
        if (maxAlloc > Math.max(bytes.length, 8))
          expect.fail(`case ${i}: allocated ${maxAlloc} > file ${bytes.length}`);
      }
    } finally {
      Buffer.alloc = realAlloc;
      Buffer.allocUnsafeSlow = realAllocSlow;
    }
    const seconds = (performance.now() - t0) / 1000;
    console.log(`fuzz: ${CASES} cases in ${seconds.toFixed(1)} s, slowest ${slowest.toFixed(1)} ms`, outcomes);
    expect(seconds).toBeLessThan(30);
    expect(slowest).toBeLessThan(2000);
    expect(outcomes.valid! + outcomes.rejected!).toBe(CASES);
    // The mutations reach every kind of rule, and some mutated files stay valid.
    for (const code of [
      "E_HEADER_SIZE",
      "E_HEADER_JSON",
      "E_DTYPE",
      "E_SHAPE",
      "E_OFFSETS",
      "E_OVERLAP",
      "E_DUPLICATE",
      "E_METADATA",
    ])
      expect(outcomes[code], code).toBeGreaterThan(0);
    expect(outcomes.valid).toBeGreaterThan(100);
  });
});
