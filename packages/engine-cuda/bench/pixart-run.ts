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
import {
  engineAvailability,
  fnv1a32,
  PixArtEngine,
  type PixArtStepOptions,
  randomRule,
  randomValue,
} from "../src/index.js";
import { checkTinyBf16, checkW4A4Layers } from "../test/gpu-checks.js";
import { relErr } from "../test/helpers.js";
import {
  checkPixArtBatchOfTwins,
  checkPixArtFusedVsUnfused,
  checkPixArtTinyBf16,
  checkPixArtW4A4Layers,
  checkPixArtW4A4Small,
  PIXART_SIGMA_BLOCK,
} from "../test/pixart-checks.js";
import { benchSteps, CheckRun, printProfile, readPeerOutput } from "./report.js";

const out = process.env.OUT ?? "/tmp";

/** Fused-step piece sets the checks and the bench compare: every piece but one, and none. */
const PART_SETS = [
  { rows: false, split: true, modulation: true },
  { rows: true, split: false, modulation: true },
  { rows: true, split: true, modulation: false },
  { rows: false, split: false, modulation: false },
];

async function check(): Promise<boolean> {
  const c = new CheckRun();
  // 7 x 5 = 35 image tokens (odd), 13 text tokens, item 1 keeps 6 of them
  await c.run("pixart tiny bf16 B=2", () => checkPixArtTinyBf16(2, 13, 14, 10, [13, 6]));
  await c.run("pixart tiny bf16 B=1", () => checkPixArtTinyBf16(1, 9, 10, 18, [9]));
  await c.run("pixart w4a4 layers", () => checkPixArtW4A4Layers());
  await c.run("pixart w4a4 small B=2", () => checkPixArtW4A4Small(2, 13, 14, 10, [13, 6]));
  // the fused element-wise passes (pixart_ops.cu, the default) vs the separate ones, and the options
  await c.run("pixart tiny bf16 unfused", () => checkPixArtTinyBf16(2, 13, 14, 10, [13, 6], 21, { fused: false }));
  await c.run("pixart w4a4 small next-quant", () =>
    checkPixArtW4A4Small(2, 13, 14, 10, [13, 6], 31, { nextQuant: true }),
  );
  await c.run("pixart w4a4 small unfused", () => checkPixArtW4A4Small(2, 13, 14, 10, [13, 6], 31, { fused: false }));
  await c.run("pixart bf16 fused vs unfused", () => checkPixArtFusedVsUnfused("bf16", 2, 13, 14, 10, [13, 6]));
  await c.run("pixart bf16 fused vs unfused B=1", () => checkPixArtFusedVsUnfused("bf16", 1, 9, 10, 18, [9]));
  await c.run("pixart bf16 fused (GELU pass) vs unfused", () =>
    checkPixArtFusedVsUnfused("bf16", 2, 13, 14, 10, [13, 6], 41, { ltGelu: false }),
  );
  // batch 2 of one item twice vs the item alone (per-item indexing), with and without a text mask
  for (const kind of ["bf16", "w4a4"] as const)
    for (const kept of [13, 6]) {
      await c.run(`pixart ${kind} twins kept ${kept}`, () => checkPixArtBatchOfTwins(kind, kept));
      await c.run(`pixart ${kind} twins kept ${kept} unfused`, () =>
        checkPixArtBatchOfTwins(kind, kept, 51, { fused: false }),
      );
    }
  // every fused piece but one (that one through the engine_ops passes), and none: vs the unfused step (GELU pass)
  // and vs the CPU forward (defaults otherwise), 16-bit and W4A4, batch 2 with a text mask
  for (const fusedParts of PART_SETS) {
    const tag = JSON.stringify(fusedParts);
    await c.run(`pixart bf16 fused parts ${tag} vs unfused`, () =>
      checkPixArtFusedVsUnfused("bf16", 2, 13, 14, 10, [13, 6], 41, { ltGelu: false, fusedParts }),
    );
    await c.run(`pixart w4a4 fused parts ${tag} vs unfused`, () =>
      checkPixArtFusedVsUnfused("w4a4", 2, 13, 14, 10, [13, 6], 41, { fusedParts }),
    );
    await c.run(`pixart tiny bf16 parts ${tag}`, () => checkPixArtTinyBf16(2, 13, 14, 10, [13, 6], 21, { fusedParts }));
    await c.run(`pixart w4a4 small parts ${tag}`, () =>
      checkPixArtW4A4Small(2, 13, 14, 10, [13, 6], 31, { fusedParts }),
    );
  }
  await c.run("pixart bf16 fused vs unfused, no text mask", () =>
    checkPixArtFusedVsUnfused("bf16", 2, 13, 14, 10, [13, 13], 41, {
      ltGelu: false,
      fusedParts: { rows: true, split: true, modulation: true },
    }),
  );
  await c.run("pixart w4a4 fused vs unfused", () => checkPixArtFusedVsUnfused("w4a4", 2, 13, 14, 10, [13, 6]));
  await c.run("pixart w4a4 fused+next-quant vs unfused", () =>
    checkPixArtFusedVsUnfused("w4a4", 2, 13, 14, 10, [13, 6], 41, { nextQuant: true }),
  );
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
  const baseOut = new Map<string, Float32Array>();
  let ok = true;
  // $MODES is shared with device-run.ts (FLUX); the PixArt engine's random weights come in bf16 and w4a4 only
  const modes = (process.env.MODES ?? "bf16,w4a4").split(",");
  const skipped = modes.filter((m) => m !== "bf16" && m !== "w4a4");
  if (skipped.length) console.log(`PixArt: modes ${skipped.join(", ")} are FLUX-only here, skipped`);
  // each mode before (the separate element-wise passes) and after (fused; W4A4 also with ff.net.2's quantize in
  // ff.net.0.proj's epilogue), one engine per mode re-prepared per variant, all in this process
  const variants: { name: string; step: PixArtStepOptions; w4a4Only?: boolean; bf16Only?: boolean }[] = [
    { name: "unfused", step: { fused: false, nextQuant: false, ltGelu: false } },
    { name: "fused, GELU pass", step: { fused: true, nextQuant: false, ltGelu: false }, bf16Only: true },
    { name: "fused", step: { fused: true, nextQuant: false, ltGelu: true } },
    ...PART_SETS.slice(0, 3).map((fusedParts) => ({
      name: `fused ${Object.entries(fusedParts)
        .filter(([, v]) => v)
        .map(([k]) => k)
        .join("+")}`,
      step: { fused: true, nextQuant: false, ltGelu: true, fusedParts },
    })),
    { name: "fused + next-quant", step: { fused: true, nextQuant: true, ltGelu: true }, w4a4Only: true },
    {
      name: "fused rows+modulation + next-quant",
      step: { fused: true, nextQuant: true, ltGelu: true, fusedParts: PART_SETS[1] },
      w4a4Only: true,
    },
  ];
  for (const mode of modes.filter((m): m is "bf16" | "w4a4" => m === "bf16" || m === "w4a4")) {
    const t0 = Date.now();
    const e = PixArtEngine.random(SIGMA_1024, { mode, rank: 32 });
    try {
      e.setInputs(inp);
      const tInit = Date.now() - t0;
      for (const v of variants) {
        if ((v.w4a4Only && mode !== "w4a4") || (v.bf16Only && mode !== "bf16")) continue;
        e.setStepOptions({ fusedParts: { rows: true, split: true, modulation: true }, ...v.step });
        const {
          out: outF,
          prof,
          row,
        } = benchSteps(e, iters, () => e.output(), `ours ${mode.toUpperCase()} PixArt-Σ (${v.name})`, tInit);
        const finite = row.finite as boolean;
        row.outAbsMean = outF.reduce((a, x) => a + Math.abs(x), 0) / outF.length;
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
        // the variants against the first (unfused) output of this mode
        const base = baseOut.get(mode);
        if (base) row.vsUnfusedRelL2 = relErr(outF, base).relL2;
        else baseOut.set(mode, outF);
        if (!finite) ok = false;
        table.push(row);
        console.log(JSON.stringify(row));
        printProfile(prof, `PixArt ${mode} ${v.name}`);
      }
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
