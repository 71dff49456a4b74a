// The engine's device script (bundled by tools/engine-bench.sh --prepare, run on the GPU machine):
//   node device-run.mjs check [fixtureDir]   correctness: attention, W4A16 GEMV and int4p2 linears vs float64,
//                                            flux-tiny 16-bit mode vs the CPU forward, flux-small W4A4 mode vs CPU
//                                            reference layers (CHECKS=gemv,p2: only those groups)
//   node device-run.mjs bench                FLUX.1-dev full size, random weights, 1024² (4096 + 512 tokens), batch 1:
//                                            ours BF16, W4A4 and int4p2 ($MODES: bf16,w4a4,w4a4p2[-e4m3][-fast]; step ms
//                                            eager and CUDA graph, weights, peak memory, per-op breakdown); vs
//                                            diffusers' output when $DIFFUSERS_OUT
//                                            names the file tools/engine/flux_diffusers.py wrote.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { parseFluxConfig } from "@svdquant/models";
import { engineAvailability, FluxEngine, fnv1a32, type RandomFluxOptions } from "../src/index.js";
import {
  checkAttention,
  checkGemvW4A16,
  checkP2Linear,
  checkP2Storage,
  checkTinyBf16,
  checkW4A4Layers,
  checkW4A4Small,
} from "../test/gpu-checks.js";
import { downloadBf16, relErr } from "../test/helpers.js";
import { benchSteps, CheckRun, printProfile, readPeerOutput } from "./report.js";

const out = process.env.OUT ?? "/tmp";

async function check(fixtures: string): Promise<boolean> {
  const c = new CheckRun();
  const only = process.env.CHECKS?.split(",");
  const want = (g: string) => !only || only.includes(g);
  if (want("attention"))
    for (const [B, H, S, Dh] of [
      [1, 2, 300, 128],
      [2, 3, 129, 72],
      [2, 4, 45, 16],
      [1, 2, 64, 64],
      [1, 1, 1, 128],
    ] as const)
      await c.run(`attention ${B} ${H} ${S} ${Dh}`, () => checkAttention(B, H, S, Dh));
  if (want("gemv"))
    for (const [M, K, N] of [
      [1, 256, 200],
      [2, 3072, 384],
      [3, 128, 64],
      [1, 3072, 1537],
      [4, 1088, 130],
      [8, 3072, 512],
      [5, 64, 7],
      [7, 1152, 70],
      [2, 5120, 33],
    ] as const)
      for (const v of K % 128 === 0 ? ([0, 1, 2, 3] as const) : ([0, 1, 2] as const))
        await c.run(`gemv ${M} ${K} ${N} v${v}`, () => checkGemvW4A16(M, K, N, 2, v));
  if (want("p2"))
    for (const [M, K, N, gelu] of [
      [64, 1024, 256, false],
      [33, 3072, 136, true],
      [9, 1024, 64, false],
    ] as const)
      for (const [storage, fast] of [
        ["e4m3", false],
        ["int4", false],
        ["int4", true],
      ] as const)
        await c.run(`p2 linear ${storage}${fast ? " fast" : ""} ${M} ${K} ${N}`, () =>
          checkP2Linear(M, K, N, gelu, storage, fast),
        );
  if (want("p2"))
    for (const [M, K, N, gelu] of [
      [17, 1024, 200, false],
      [40, 3072, 264, true],
    ] as const)
      await c.run(`p2 storage ${M} ${K} ${N}`, () => checkP2Storage(M, K, N, gelu));
  const tiny = `${fixtures}/flux-tiny-a-bf16`;
  if (!want("model")) {
    // only the op checks
  } else if (existsSync(tiny)) {
    await c.run("tiny 1", () => checkTinyBf16(tiny, 1, 8, 16));
    await c.run("tiny 2", () => checkTinyBf16(tiny, 2, 9, 35));
  } else console.log(`SKIP flux-tiny: ${tiny} missing`);
  if (want("model")) {
    await c.run("w4a4 layers", () => checkW4A4Layers());
    await c.run("w4a4 small 2", () => checkW4A4Small(2, 7, 37));
    await c.run("w4a4 small 1", () => checkW4A4Small(1, 16, 64));
  }
  return c.finish(`${out}/engine-check.json`);
}

/** FLUX.1-dev (black-forest-labs/FLUX.1-dev transformer/config.json values). */
const FLUX_DEV = parseFluxConfig({
  attention_head_dim: 128,
  axes_dims_rope: [16, 56, 56],
  guidance_embeds: true,
  in_channels: 64,
  joint_attention_dim: 4096,
  num_attention_heads: 24,
  num_layers: Number(process.env.FLUX_LAYERS ?? 19),
  num_single_layers: Number(process.env.FLUX_SINGLE_LAYERS ?? 38),
  patch_size: 1,
  pooled_projection_dim: 768,
});

function randomInputs(e: FluxEngine, St: number, Si: number): void {
  const raw = e.raw;
  for (const n of ["in.hidden", "in.encoder", "in.pooled"]) raw.fillRandom(n, "bf16", fnv1a32(n), 0, 2);
  raw.upload("in.timestep", new Float32Array([0.5]));
  raw.upload("in.guidance", new Float32Array([3.5]));
  const ids = new Float32Array((St + Si) * 3);
  const side = Math.sqrt(Si);
  for (let i = 0; i < Si; i++) {
    ids[(St + i) * 3 + 1] = Math.floor(i / side);
    ids[(St + i) * 3 + 2] = i % side;
  }
  raw.upload("in.ids", ids);
}

/**
 * Bytes the int4p2 activation quantizer moves in one FLUX.1-dev step (batch 1): per call x [M, K] bf16 read once,
 * the [M, K + 96] e4m3 operand and [M] f32 scales written, lora_act [M, 32] f32 read. Double blocks: image (Si rows)
 * and text (St rows) streams each quantize qkv, to_out, ff.net.0 (K = D) and ff.net.2 (K = 4D); single blocks quantize
 * once for attn.qkv + proj_mlp (K = D) and once for proj_out (K = 5D).
 */
function p2QuantBytes(St: number, Si: number): number {
  const D = FLUX_DEV.numAttentionHeads * FLUX_DEV.attentionHeadDim;
  const call = (M: number, K: number) => M * K * 2 + M * (K + 96) + M * 4 + M * 32 * 4;
  let b = 0;
  for (const M of [Si, St]) b += FLUX_DEV.numLayers * (3 * call(M, D) + call(M, 4 * D));
  b += FLUX_DEV.numSingleLayers * (call(St + Si, D) + call(St + Si, 5 * D));
  return b;
}

async function bench(): Promise<boolean> {
  const St = 512;
  const Si = 4096;
  const iters = Number(process.env.ITERS ?? 5);
  const table: Record<string, unknown>[] = [];
  let ok = true;
  // int4p2 modes: w4a4p2[-e4m3][-fast] (weights kept 4-bit unless -e4m3; cuBLASLt fast accumulation with -fast)
  const options = (mode: string): RandomFluxOptions => {
    if (mode === "bf16" || mode === "w4a4") return { mode, rank: 32 };
    const m = /^w4a4p2(-e4m3)?(-fast)?$/.exec(mode);
    if (!m) throw new Error(`unknown mode ${mode} (bf16, w4a4, w4a4p2[-e4m3][-fast])`);
    return { mode: "w4a4p2", p2Storage: m[1] ? "e4m3" : "int4", p2FastAccum: m[2] !== undefined };
  };
  for (const mode of (process.env.MODES ?? "bf16,w4a4").split(",")) {
    const t0 = Date.now();
    let e: FluxEngine;
    try {
      e = FluxEngine.random(FLUX_DEV, options(mode));
    } catch (err) {
      console.log(`FAIL ${mode}: ${(err as Error).message}`);
      ok = false;
      continue;
    }
    try {
      e.prepare(1, St, Si);
      randomInputs(e, St, Si);
      const {
        out: outF,
        prof,
        row,
      } = benchSteps(e, iters, () => downloadBf16(e.raw, "out"), `ours ${mode.toUpperCase()}`, Date.now() - t0);
      const finite = row.finite as boolean;
      const dOut = process.env.DIFFUSERS_OUT;
      if (mode === "bf16" && dOut && existsSync(dOut)) {
        const er = relErr(outF, readPeerOutput(dOut, "bf16"));
        row.vsDiffusersRelL2 = er.relL2;
        row.vsDiffusersRelMax = er.relMax;
      }
      // The accuracy verdict is against diffusers in float32 on the same weights: two BF16 implementations of the
      // 57-block model differ by as much as either one differs from float32 (measured 2026-12-06: diffusers BF16
      // vs its own float32 output rel-L2 0.105, ours BF16 5.1e-3: our residual stream is f32), so ours must be
      // within 1e-2 of float32 and no further from it than diffusers BF16 is.
      const f32 = process.env.DIFFUSERS_F32;
      if (mode === "bf16" && f32 && existsSync(f32)) {
        const er = relErr(outF, readPeerOutput(f32, "f32"));
        row.vsF32RelL2 = er.relL2;
        row.vsF32RelMax = er.relMax;
        const peerJson = `${out}/diffusers.json`;
        const peer = existsSync(peerJson)
          ? (JSON.parse(readFileSync(peerJson, "utf8")) as { bf16VsF32RelL2?: number | null })
          : {};
        const peerErr = peer.bf16VsF32RelL2 ?? Number.POSITIVE_INFINITY;
        row.diffusersBf16VsF32RelL2 = peer.bf16VsF32RelL2 ?? null;
        if (!(er.relL2 <= 1e-2 && er.relL2 <= peerErr)) ok = false;
        console.log(
          `${er.relL2 <= 1e-2 && er.relL2 <= peerErr ? "PASS" : "FAIL"} ours BF16 vs diffusers float32 rel-L2 ${er.relL2.toExponential(2)} (tol 1e-2; diffusers BF16 vs float32 ${peer.bf16VsF32RelL2?.toExponential(2) ?? "n/a"})`,
        );
      } else if (mode === "bf16" && dOut && existsSync(dOut))
        console.log("no float32 reference (SKIP_F32): the BF16 comparison is information only, not a verdict");
      if (!finite) ok = false;
      table.push(row);
      console.log(JSON.stringify(row));
      printProfile(prof, mode);
      const q = prof.find((p) => p.op === "p2 quantize");
      if (q) {
        const bytes = p2QuantBytes(St, Si);
        console.log(
          `  p2 quantize moves ${(bytes / 1e9).toFixed(2)} GB per step (bf16 x read, e4m3 operand + scales written, lora_act read): ${(bytes / q.ms / 1e6).toFixed(0)} GB/s`,
        );
      }
      writeFileSync(`${out}/engine-profile-${mode}.json`, JSON.stringify(prof, null, 1));
    } catch (err) {
      console.log(`FAIL ${mode}: ${(err as Error).stack ?? err}`);
      ok = false;
    } finally {
      e.free();
    }
  }
  writeFileSync(`${out}/engine-bench.json`, JSON.stringify(table, null, 1));
  return ok;
}

const av = engineAvailability();
console.log(`engine: ${av.reason}${av.info?.cublas ? `, cuBLAS ${av.info.cublas}` : ""}`);
if (!av.available) process.exit(2);
const mode = process.argv[2] ?? "check";
const ok = mode === "bench" ? await bench() : await check(process.argv[3] ?? "fixtures");
process.exit(ok ? 0 : 1);
