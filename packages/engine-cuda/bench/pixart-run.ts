// The engine's PixArt device script (bundled with esbuild, run on the GPU machine):
//   node pixart-run.mjs check   correctness: tiny PixArt 16-bit mode vs the CPU forward (head dim 72, CFG batch 2,
//                               odd token counts, text mask), small W4A4 mode vs CPU reference layers, single W4A4 /
//                               W4A16 engine linears vs reference layers
//   node pixart-run.mjs bench   PixArt-Σ 1024² full size (28 blocks, D 1152 = 16 x 72, 4096 image + 300 text tokens,
//                               batch 2), random weights: ours BF16 and ours W4A4 (step ms eager and CUDA graph,
//                               weights, engine bytes, device memory, per-op breakdown); vs diffusers' output when
//                               $DIFFUSERS_OUT names the file tools/engine/pixart_diffusers.py wrote
import { existsSync, writeFileSync } from "node:fs";
import { type PixArtInputs, parsePixArtConfig } from "@svdquant/models";
import { engineAvailability, fnv1a32, PixArtEngine, randomRule, randomValue } from "../src/index.js";
import { checkTinyBf16, checkW4A4Layers } from "../test/gpu-checks.js";
import { relErr } from "../test/helpers.js";
import {
  checkPixArtTinyBf16,
  checkPixArtW4A4Layers,
  checkPixArtW4A4Small,
  PIXART_SIGMA_BLOCK,
} from "../test/pixart-checks.js";
import { benchSteps, CheckRun, printProfile, readPeerOutput } from "./report.js";

const out = process.env.OUT ?? "/tmp";

async function check(): Promise<boolean> {
  const c = new CheckRun();
  // 7 x 5 = 35 image tokens (odd), 13 text tokens, item 1 keeps 6 of them
  await c.run("pixart tiny bf16 B=2", () => checkPixArtTinyBf16(2, 13, 14, 10, [13, 6]));
  await c.run("pixart tiny bf16 B=1", () => checkPixArtTinyBf16(1, 9, 10, 18, [9]));
  await c.run("pixart w4a4 layers", () => checkPixArtW4A4Layers());
  await c.run("pixart w4a4 small B=2", () => checkPixArtW4A4Small(2, 13, 14, 10, [13, 6]));
  // FLUX on the refactored engine state (engine_core.h): the tiny BF16 fixture and the W4A4 layer checks
  const tiny = "fixtures/models/flux-tiny-a-bf16";
  if (existsSync(tiny)) await c.run("flux tiny bf16 B=2", () => checkTinyBf16(tiny, 2, 9, 35));
  else console.log(`SKIP flux-tiny: ${tiny} missing`);
  await c.run("flux w4a4 layers", () => checkW4A4Layers());
  return c.finish(`${out}/pixart-check.json`);
}

/** PixArt-Σ-XL-2-1024-MS (PixArt-alpha/PixArt-Sigma-XL-2-1024-MS transformer/config.json values). */
const SIGMA_RAW = {
  ...PIXART_SIGMA_BLOCK,
  num_attention_heads: 16,
  attention_head_dim: 72,
  num_layers: Number(process.env.PIXART_LAYERS ?? 28),
  cross_attention_dim: 1152,
  caption_channels: 4096,
  sample_size: 128,
  interpolation_scale: 2,
};
const SIGMA_1024 = parsePixArtConfig(SIGMA_RAW);

/** The benchmark's inputs, drawn with the engine's hash rule (pixart_diffusers.py draws the same values). */
export function benchInputs(B: number, L: number, size: number, kept: number[]): PixArtInputs {
  const c = SIGMA_1024;
  const draw = (name: string, n: number) => {
    const r = randomRule(name, [n]);
    const seed = fnv1a32(name);
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = randomValue(i, seed, r.center, r.scale);
    return a;
  };
  const mask = new Float32Array(B * L);
  for (let b = 0; b < B; b++) for (let j = 0; j < kept[b]!; j++) mask[b * L + j] = 1;
  return {
    batch: B,
    height: size,
    width: size,
    textTokens: L,
    hiddenStates: draw("in.hidden", B * c.inChannels * size * size),
    encoderHiddenStates: draw("in.encoder", B * L * c.captionChannels!),
    encoderAttentionMask: mask,
    timestep: Array.from({ length: B }, () => 500),
  };
}

async function bench(): Promise<boolean> {
  const B = 2;
  const L = 300;
  const size = 128; // latent 128² = 1024² pixels, 64² = 4096 patches
  const iters = Number(process.env.ITERS ?? 5);
  const inp = benchInputs(B, L, size, [300, 37]);
  const table: Record<string, unknown>[] = [];
  let ok = true;
  // $MODES is shared with device-run.ts (FLUX); the PixArt engine's random weights come in bf16 and w4a4 only
  const modes = (process.env.MODES ?? "bf16,w4a4").split(",");
  const skipped = modes.filter((m) => m !== "bf16" && m !== "w4a4");
  if (skipped.length) console.log(`PixArt: modes ${skipped.join(", ")} are FLUX-only here, skipped`);
  for (const mode of modes.filter((m): m is "bf16" | "w4a4" => m === "bf16" || m === "w4a4")) {
    const t0 = Date.now();
    const e = PixArtEngine.random(SIGMA_1024, { mode, rank: 32 });
    try {
      e.setInputs(inp);
      const {
        out: outF,
        prof,
        row,
      } = benchSteps(e, iters, () => e.output(), `ours ${mode.toUpperCase()} PixArt-Σ`, Date.now() - t0);
      const finite = row.finite as boolean;
      row.outAbsMean = outF.reduce((a, v) => a + Math.abs(v), 0) / outF.length;
      for (const [key, env] of [
        ["vsDiffusers", "DIFFUSERS_OUT"],
        ["vsF32", "DIFFUSERS_F32"],
      ] as const) {
        const f = process.env[env];
        if (mode !== "bf16" || !f || !existsSync(f)) continue;
        const ref = readPeerOutput(f, key === "vsF32" ? "f32" : "bf16");
        if (ref.length !== outF.length) {
          row[`${key}Error`] = `length ${ref.length} vs ${outF.length}`;
          continue;
        }
        const er = relErr(outF, ref);
        row[`${key}RelL2`] = er.relL2;
        row[`${key}RelMax`] = er.relMax;
        // the gate: ours BF16 vs the float32 model (diffusers BF16 itself is off by ~1.7e-2: bf16 residual stream)
        if (key === "vsF32" && !(er.relL2 <= 1e-2)) ok = false;
      }
      if (!finite) ok = false;
      table.push(row);
      console.log(JSON.stringify(row));
      printProfile(prof, `PixArt ${mode}`);
    } catch (err) {
      ok = false;
      console.log(`FAIL PixArt ${mode}: ${(err as Error).stack ?? err}`);
    } finally {
      e.free();
    }
  }
  writeFileSync(`${out}/pixart-bench.json`, JSON.stringify(table, null, 1));
  return ok;
}

/**
 * Self-attention alone at PixArt-Σ's shape (B 2, 16 heads, 4096 tokens) for head dims 72, 64 and 128 (same
 * tokens and heads): ms per call (host clock around 5 synchronized calls after a warm-up) and TFLOP/s
 * (4·B·H·S²·Dh), to show what head dim 72 costs.
 */
function attentionRates(): void {
  const e = PixArtEngine.random(
    parsePixArtConfig({ ...SIGMA_RAW, num_layers: 0, caption_channels: 16, in_channels: 4 }),
    { mode: "bf16" },
  );
  try {
    const [B, H, S] = [2, 16, 4096];
    for (const Dh of [72, 64, 128]) {
      const n = B * H * S * Dh;
      for (const t of ["a.q", "a.k", "a.v", "a.o"]) {
        e.raw.alloc(t, n * 2);
        e.raw.fillRandom(t, "bf16", fnv1a32(t), 0, 2);
      }
      e.raw.attention("a.q", "a.k", "a.v", "a.o", B, H, S, Dh);
      const t0 = performance.now();
      for (let i = 0; i < 5; i++) e.raw.attention("a.q", "a.k", "a.v", "a.o", B, H, S, Dh);
      const ms = (performance.now() - t0) / 5;
      console.log(
        `attention B=${B} H=${H} S=${S} Dh=${Dh}: ${ms.toFixed(3)} ms, ${((4 * B * H * S * S * Dh) / ms / 1e9).toFixed(0)} TFLOP/s`,
      );
    }
  } finally {
    e.free();
  }
}

const av = engineAvailability();
console.log(`engine: ${av.reason}${av.info?.cublas ? `, cuBLAS ${av.info.cublas}` : ""}`);
if (!av.available) process.exit(2);
const mode = process.argv[2] ?? "check";
if (mode === "bench") {
  try {
    attentionRates();
  } catch (err) {
    console.log(`attention rates failed: ${(err as Error).message}`);
  }
}
const ok = mode === "bench" ? await bench() : await check();
process.exit(ok ? 0 : 1);
