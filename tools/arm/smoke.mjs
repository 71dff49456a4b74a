// Runs a few operators of @svdquant/kernels on deterministic inputs and prints their outputs as JSON. check.sh runs it
// twice under qemu-aarch64 — with the aarch64 addon (native, `scalar` path) and without it (the TypeScript reference
// kernels) — and compares the two.
import * as k from "../../packages/kernels/dist/index.js";

let s = 12345;
const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5;
const rand = (n) => Float32Array.from({ length: n }, rnd);
const out = { backend: k.backendInfo() };
{
  // the README example: W4A4 layer with smoothing, rank-4 branch, bias and GELU
  const [M, K, N, R] = [5, 256, 24, 4];
  const codes = Int8Array.from({ length: N * K }, () => Math.floor((rnd() + 0.5) * 16) - 8);
  const w = k.packW4A4({ codes, scales: rand(N * (K / 64)).map(Math.abs) }, N, K, {
    lowRankUp: rand(N * R),
    rank: R,
    bias: rand(N),
  });
  const smooth = rand(K).map((v) => 1 + Math.abs(v));
  const act = k.quantizeActivations(rand(M * K), M, K, { smooth, lowRankDown: rand(R * K), rank: R });
  out.w4a4 = Array.from(k.gemmW4A4(act, w, { gelu: true }).y);
}
{
  const [M, K, N] = [7, 96, 40];
  out.f32 = Array.from(k.gemmF32(rand(M * K), M, k.packF32(rand(N * K), N, K, { bias: rand(N) })));
}
{
  const shape = { B: 1, Sq: 9, Skv: 13, heads: 2, headDim: 32 };
  out.attention = Array.from(k.attentionF32(rand(9 * 64), rand(13 * 64), rand(13 * 64), shape));
}
console.log(JSON.stringify(out));
