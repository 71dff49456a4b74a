import { Tensor } from "@svdquant/tensor";
import { f32GemmBackend } from "@svdquant/kernels";
import { type FluxInputs, FluxTransformer, fluxParams, parseFluxConfig, setGemmBackend } from "./src/index.js";
import { memorySource } from "./test/memory-source.js";
function rand(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0; const out = new Float32Array(n);
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; out[i] = (s / 4294967296 - 0.5) * 2 * scale; }
  return out;
}
function ids(h: number, w: number) { const a = new Float32Array(h*w*3); for (let i=0;i<h*w;i++){a[i*3+1]=Math.floor(i/w);a[i*3+2]=i%w;} return a; }
const config = parseFluxConfig({ _class_name: "FluxTransformer2DModel", num_layers: 2, num_single_layers: 4, num_attention_heads: 6, attention_head_dim: 128 });
const tensors = new Map<string, Tensor>();
fluxParams(config).forEach((p, i) => {
  const n = p.shape.reduce((a, c) => a * c, 1); const fan = p.shape.length === 2 ? p.shape[1]! : 1;
  const t = new Tensor("F32", p.shape, rand(n, 100 + i, p.shape.length === 2 ? 1 / Math.sqrt(fan) : 1));
  if (p.shape.length === 1 && p.name.includes("norm_")) t.data.fill(1);
  tensors.set(p.name, t);
});
const model = await FluxTransformer.fromSource(config, memorySource(tensors));
const inp: FluxInputs = { batch: 1, imgTokens: 1024, txtTokens: 256, hiddenStates: rand(1024*64, 6, 1), encoderHiddenStates: rand(256*4096, 7, 1), pooledProjections: rand(768, 8, 1), timestep: [0.5], imgIds: ids(32,32), txtIds: new Float32Array(256*3) };
const splits = Number(process.env.SPLITS ?? 3) as 0|2|3;
const base = f32GemmBackend({ amxSplits: splits });
let tg = 0, ta = 0; const per = new Map<string, number>();
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const be = { name: base.name, gemm: base.gemm,
  attention(...a: Parameters<typeof base.attention>) { const c = cpu(); base.attention(...a); ta += cpu() - c; },
  prepare(w: Float32Array, b: Float32Array | undefined, n: number, k: number) { const p = base.prepare(w, b, n, k); return { n: p.n, k: p.k, run(x: Float32Array, o: Float32Array, m: number, opts?: { gelu?: boolean }) { const c = cpu(); p.run(x, o, m, opts); const d = cpu() - c; tg += d; const key = `${m}x${k}x${n}${opts?.gelu ? 'g' : ''}`; per.set(key, (per.get(key) ?? 0) + d); } }; } };
setGemmBackend(be);
model.prepare();
for (let r = 0; r < 4; r++) {
  const pf0 = process.resourceUsage().minorPageFault; tg = 0; ta = 0; per.clear(); const c0 = cpu(); const t0 = performance.now();
  await model.forward(inp);
  const all = cpu() - c0;
  if (r) console.log(`${be.name}: wall ${(performance.now()-t0).toFixed(0)} cpu ${all.toFixed(0)} gemm ${tg.toFixed(0)} attn ${ta.toFixed(0)} rest ${(all-tg-ta).toFixed(0)} minor faults ${process.resourceUsage().minorPageFault - pf0} sys ${((process.cpuUsage().system)/1000).toFixed(0)}`);
  if (r === 3) console.log([...per].map(([k, v]) => `${k}: ${v.toFixed(0)}`).join(', '));
}
{
  const r = (n: number, s: number) => rand(n, s, 1);
  for (const [m, k, n] of [[1280, 768, 768], [1280, 3840, 768]] as const) {
    const p = base.prepare(rand(n * k, 5, 1 / Math.sqrt(k)), undefined, n, k);
    const x = r(m * k, 9); const o = new Float32Array(m * n);
    const ts: number[] = [];
    for (let i = 0; i < 12; i++) { const c = cpu(); p.run(x, o, m); ts.push(cpu() - c); }
    console.log(`hot ${m}x${k}x${n}: ${ts.map((t) => t.toFixed(1)).join(" ")}`);
  }
}
