// Child process of hardening.test.ts: reads one tensor of 2 GiB + 8 bytes from a sparse file (a crash here,
// e.g. the SIGABRT of a single oversized positional read, is reported by the parent as this child's exit status).
import { open } from "node:fs/promises";
import { SafetensorsFile } from "@svdquant/tensor";

const path = process.argv[2]!;
const n = 2 ** 31 + 8;
const header = Buffer.from(JSON.stringify({ big: { dtype: "U8", shape: [n], data_offsets: [0, n] } }).padEnd(64, " "));
const h = await open(path, "w");
const len = Buffer.alloc(8);
len.writeBigUInt64LE(BigInt(header.length));
await h.write(len, 0, 8, 0);
await h.write(header, 0, header.length, 8);
const data = 8 + header.length;
// markers on both sides of the 1 GiB chunk boundaries and at the very end; the rest is a hole (reads as zeros):
// of the sampled bytes (every 4096th), only those at 0 and 2^30 are marks
const marks: [number, number][] = [
  [0, 11],
  [2 ** 30 - 1, 22],
  [2 ** 30, 33],
  [2 ** 31 - 1, 44],
  [n - 1, 55],
];
for (const [at, v] of marks) await h.write(Uint8Array.of(v), 0, 1, data + at);
await h.close();
const f = await SafetensorsFile.open(path);
const t = await f.read("big");
await f.close();
const bytes = t.data as Uint8Array;
let nonzero = 0;
for (let i = 0; i < bytes.length; i += 4096) if (bytes[i] !== 0) nonzero++;
process.stdout.write(
  JSON.stringify({ length: bytes.length, marks: marks.map(([at]) => bytes[at]), sampledNonzero: nonzero }),
);
