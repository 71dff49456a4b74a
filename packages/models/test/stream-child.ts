// Child process of streaming.test.ts: loads a FLUX checkpoint resident or streaming, runs one forward,
// and prints JSON with RSS numbers. Run with --expose-gc so the baseline is measured after a collection.
import { FluxTransformer } from "@svdquant/models";

const [dir, mode] = process.argv.slice(2) as [string, "stream" | "resident"];
const gc = (globalThis as { gc?: () => void }).gc;
gc?.();
const rss0 = process.memoryUsage().rss;
const model = await FluxTransformer.fromFolder(dir, { streaming: mode === "stream" });
const c = model.config;
const b = 1;
const si = 16;
const st = 8;
const fill = (n: number, f: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * f));
const ids = new Float32Array(si * 3);
for (let i = 0; i < si; i++) {
  ids[i * 3 + 1] = Math.floor(i / 4);
  ids[i * 3 + 2] = i % 4;
}
const samples: number[] = [];
const blocks: string[] = [];
const out = await model.forward(
  {
    batch: b,
    imgTokens: si,
    txtTokens: st,
    hiddenStates: fill(si * c.inChannels, 0.37),
    encoderHiddenStates: fill(st * c.jointAttentionDim, 0.11),
    pooledProjections: fill(c.pooledProjectionDim, 0.7),
    timestep: [0.4],
    imgIds: ids,
    txtIds: new Float32Array(st * 3),
  },
  {
    onBlockEnd: (p) => {
      blocks.push(p);
      samples.push(process.memoryUsage().rss - rss0);
    },
  },
);
await model.close();
const peak = process.resourceUsage().maxRSS * 1024 - rss0;
let sum = 0;
for (const v of out) sum += v;
process.stdout.write(JSON.stringify({ mode, peak, samples, blocks, checksum: sum }));
