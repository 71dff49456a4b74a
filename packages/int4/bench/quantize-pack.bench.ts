// Quantize + pack a FLUX-sized weight (3072 × 12288, bf16 bits in, nunchaku W4A4 layout out), INT4 g64 and
// NVFP4 g16, against peers in the same process: a memcpy of the bf16 bytes (speed-of-light baseline), a bf16
// → f32 decode pass, and the unfused quantize → packW4A4Weight path. Reports M weights/s and ratios.
// Run: pnpm --filter @svdquant/int4 bench   (SVDQ_BENCH_QUICK=1 for a smaller matrix)
import { fakeQuantize, packW4A4Weight, quantize, quantizePackW4A4 } from "@svdquant/int4";
import { decodeToFloat32, encodeFloats } from "@svdquant/tensor";
import { Bench } from "tinybench";

const quick = process.env.SVDQ_BENCH_QUICK === "1";
const N = quick ? 768 : 3072;
const K = quick ? 3072 : 12288;
const numel = N * K;

// Seeded weights ~ N(0, 0.02²) with 1% outliers ×20, stored as bf16 like a FLUX checkpoint.
let seed = 12345;
const rand = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296;
const w32 = new Float32Array(numel);
for (let i = 0; i < numel; i++) {
  const g = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()) * 0.02;
  w32[i] = rand() < 0.01 ? g * 20 : g;
}
const bf16 = encodeFloats("BF16", w32) as Uint16Array;
const wf = decodeToFloat32("BF16", bf16);
const src = new Uint8Array(bf16.buffer);
const dst = new Uint8Array(src.length);

let sink = 0;
// The machine is shared: next to wall time, record each task's process CPU time (user + sys) per run, which
// shows how much of the wall time the process actually ran.
const cpu = new Map<string, { us: number; runs: number }>();
function timed(name: string, fn: () => void): [string, () => void] {
  cpu.set(name, { us: 0, runs: 0 });
  return [
    name,
    () => {
      const c0 = process.cpuUsage();
      fn();
      const c = process.cpuUsage(c0);
      const e = cpu.get(name)!;
      e.us += c.user + c.system;
      e.runs++;
    },
  ];
}
const bench = new Bench({ iterations: quick ? 5 : 4, time: 0, warmupIterations: 1 });
bench
  .add(
    ...timed("memcpy bf16 bytes (baseline)", () => {
      dst.set(src);
      sink += dst[7]!;
    }),
  )
  .add(
    ...timed("decode bf16 → f32", () => {
      sink += decodeToFloat32("BF16", bf16)[3]!;
    }),
  )
  .add(
    ...timed("fakeQuantize int4 g64 (f32 in)", () => {
      sink += fakeQuantize(wf, N, K, { format: "int4", groupSize: 64 })[5]!;
    }),
  )
  .add(
    ...timed("quantize → packW4A4Weight int4 (unfused, f32 in)", () => {
      const q = quantize(wf, N, K, { format: "int4", groupSize: 64 });
      sink += packW4A4Weight(q.codes, N, K)[9]!;
    }),
  )
  .add(
    ...timed("quantizePackW4A4 int4 g64 (bf16 in)", () => {
      sink += quantizePackW4A4(bf16, N, K, { format: "int4" }).qweight[11]!;
    }),
  )
  .add(
    ...timed("quantizePackW4A4 nvfp4 g16 (bf16 in)", () => {
      sink += quantizePackW4A4(bf16, N, K, { format: "nvfp4" }).qweight[13]!;
    }),
  )
  .add(
    ...timed("quantizePackW4A4 int4 g64 (f32 in, e.g. a residual)", () => {
      sink += quantizePackW4A4(wf, N, K, { format: "int4" }).qweight[15]!;
    }),
  )
  .add(
    ...timed("quantizePackW4A4 nvfp4 g16 (f32 in)", () => {
      sink += quantizePackW4A4(wf, N, K, { format: "nvfp4" }).qweight[17]!;
    }),
  );

await bench.run();
const rows = bench.tasks.map((t) => {
  const r = t.result;
  if (r.state !== "completed") throw new Error(`${t.name}: ${r.state}`);
  const c = cpu.get(t.name)!;
  return { name: t.name, ms: r.latency.mean, cpuMs: c.us / c.runs / 1000 };
});
const base = rows[0]!.ms;
const fq = rows[2]!.ms;
console.log(`weight [${N}, ${K}] = ${(numel / 1e6).toFixed(1)} M weights; node ${process.version}; sink ${sink !== 0}`);
console.log(
  "| task | wall ms | M weights/s (wall) | CPU ms | M weights/s (CPU) | × memcpy time | speed vs fakeQuantize |",
);
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const r of rows)
  console.log(
    `| ${r.name} | ${r.ms.toFixed(1)} | ${(numel / r.ms / 1e3).toFixed(0)} | ${r.cpuMs.toFixed(1)} | ${(numel / r.cpuMs / 1e3).toFixed(0)} | ${(r.ms / base).toFixed(1)} | ${(fq / r.ms).toFixed(2)}× |`,
  );
