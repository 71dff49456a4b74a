// Reading every tensor of a generated 1 GiB safetensors file with SafetensorsFile, against fs.readFile of the
// same file (and fs.readFileSync), in the same process. Prints GB/s of each and the ratio to fs.readFile. The file lives in os.tmpdir() and is
// deleted afterwards. Set SVDQ_BENCH_GB to change the size (default 1).
//
//   pnpm --filter @svdquant/tensor bench
import { randomFillSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile, rm, stat } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { SafetensorsFile, Tensor, type TensorEntry, writeSafetensors } from "@svdquant/tensor";
import { Bench } from "tinybench";

const GIB = 2 ** 30;
const sizeGiB = Number(process.env.SVDQ_BENCH_GB ?? 1);
// FLUX-like: BF16 weights of 16 MiB each ([4096, 2048]), plus small F32 biases.
const WEIGHT: [number, number] = [4096, 2048];
const weightBytes = WEIGHT[0] * WEIGHT[1] * 2;
const nWeights = Math.round((sizeGiB * GIB) / weightBytes);

const path = join(tmpdir(), `svdq-read-bench-${process.pid}.safetensors`);

async function generate(): Promise<number> {
  const entries: TensorEntry[] = [];
  for (let i = 0; i < nWeights; i++) {
    entries.push({
      name: `blocks.${i}.weight`,
      dtype: "BF16",
      shape: WEIGHT,
      data: () => {
        const t = new Tensor("BF16", WEIGHT);
        randomFillSync(t.bytes());
        return t;
      },
    });
    entries.push({
      name: `blocks.${i}.bias`,
      dtype: "F32",
      shape: [WEIGHT[0]],
      data: () => {
        const t = new Tensor("F32", [WEIGHT[0]]);
        randomFillSync(t.bytes());
        return t;
      },
    });
  }
  await writeSafetensors(path, entries, { format: "pt" });
  return (await stat(path)).size;
}

async function readAllSequential(): Promise<number> {
  const f = await SafetensorsFile.open(path);
  let bytes = 0;
  for (const name of f.names()) bytes += (await f.read(name)).byteLength;
  await f.close();
  return bytes;
}

async function readAllConcurrent(lanes: number): Promise<number> {
  const f = await SafetensorsFile.open(path);
  const names = f.names();
  let next = 0;
  let bytes = 0;
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < names.length) bytes += (await f.read(names[next++]!)).byteLength;
    }),
  );
  await f.close();
  return bytes;
}

try {
  const t0 = performance.now();
  const fileBytes = await generate();
  console.log(
    `generated ${(fileBytes / 1e9).toFixed(3)} GB (${nWeights * 2} tensors) in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${path}`,
  );
  // Sanity: both ways see all the data.
  const tensorBytes = await readAllSequential();
  const whole = (await readFile(path)).byteLength;
  if (whole !== fileBytes || tensorBytes > fileBytes || tensorBytes < fileBytes - 1e6) throw new Error("size mismatch");

  const bench = new Bench({ iterations: 8, time: 0, warmupIterations: 1, warmupTime: 0 });
  bench
    .add("fs.readFile (whole file)", async () => {
      await readFile(path);
    })
    .add("fs.readFileSync (whole file)", () => {
      readFileSync(path);
    })
    .add("SafetensorsFile: read every tensor, in order", async () => {
      await readAllSequential();
    })
    .add("SafetensorsFile: read every tensor, 4 concurrent", async () => {
      await readAllConcurrent(4);
    });
  await bench.run();

  const gbps = (name: string, bytes: number): number => {
    const r = bench.getTask(name)!.result as { latency?: { mean: number } };
    if (r.latency === undefined) throw new Error(`${name} did not complete`);
    return bytes / 1e9 / (r.latency.mean / 1000);
  };
  const peer = gbps("fs.readFile (whole file)", fileBytes);
  const rows = [
    ["fs.readFile (whole file)", peer],
    ["fs.readFileSync (whole file)", gbps("fs.readFileSync (whole file)", fileBytes)],
    ["SafetensorsFile: read every tensor, in order", gbps("SafetensorsFile: read every tensor, in order", tensorBytes)],
    [
      "SafetensorsFile: read every tensor, 4 concurrent",
      gbps("SafetensorsFile: read every tensor, 4 concurrent", tensorBytes),
    ],
  ] as const;
  console.log(`\nnode ${process.version}, ${cpus().length} cpus, ${cpus()[0]?.model ?? "?"}; file in page cache`);
  console.log("| method | GB/s | ratio vs fs.readFile |");
  console.log("|---|---:|---:|");
  for (const [name, v] of rows) console.log(`| ${name} | ${v.toFixed(2)} | ${(v / peer).toFixed(2)} |`);
} finally {
  await rm(path, { force: true });
}
