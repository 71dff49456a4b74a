// Seeded fuzz of model configs against the tiny fixture checkpoints (issue 18, "configs" class): every mutated
// config.json either loads or fails with one typed error (ModelError / TensorError), each case within a time limit and
// the whole run within a bounded RSS growth. SVDQ_FUZZ=full runs 10x the cases.
import { cp, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FluxTransformer, PixArtTransformer } from "../src/index.js";
import { FIXTURES } from "./helpers.js";

const CASES = (process.env.SVDQ_FUZZ === "full" ? 10 : 1) * 500;
const HOSTILE: unknown[] = [
  0,
  -1,
  1e7,
  2 ** 31,
  2 ** 53 + 2,
  1e308,
  0.5,
  "12",
  null,
  true,
  [],
  {},
  [1, 2, 3],
  "\u001b[2J",
];
const PROTO_KEYS = ["constructor", "toString", "__proto__", "hasOwnProperty", "valueOf"];

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe.each([
  ["flux-tiny-a", FluxTransformer],
  ["pixart-tiny-a", PixArtTransformer],
] as const)("config fuzz: %s", (model, Model) => {
  it(`${CASES} mutated configs: each loads or fails with one typed error, in bounded time and memory`, async () => {
    const dir = await mkdtemp(join(tmpdir(), "svdq-cfgfuzz-"));
    const src = join(FIXTURES, "models", model);
    await cp(join(src, "diffusion_pytorch_model.safetensors"), join(dir, "diffusion_pytorch_model.safetensors"));
    const base = JSON.parse(await readFile(join(src, "config.json"), "utf8")) as Record<string, unknown>;
    const keys = Object.keys(base).filter((k) => !k.startsWith("_"));
    const r = mulberry32(model.length * 7919);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const outcomes: Record<string, number> = {};
    const before = process.memoryUsage().rss;
    let peak = before;
    for (let i = 0; i < CASES; i++) {
      let text: string;
      const c: Record<string, unknown> = { ...base };
      const kind = Math.floor(r() * 4);
      if (kind <= 1) for (let j = 0; j <= kind; j++) c[pick(keys)] = pick(HOSTILE);
      if (kind === 2) text = JSON.stringify(c).replace(/^\{/, `{"${pick(PROTO_KEYS)}":1,`);
      else if (kind === 3)
        text = pick(["", "[]", "null", "{", `{"a":${"[".repeat(50_000)}`, JSON.stringify(c).slice(0, 20)]);
      else text = JSON.stringify(c);
      await writeFile(join(dir, "config.json"), text);
      const t0 = Date.now();
      let outcome = "loaded";
      try {
        const m = await Model.fromFolder(dir, { streaming: r() < 0.5 });
        await m.close();
      } catch (e) {
        const err = e as Error & { code?: unknown };
        expect(["ModelError", "TensorError"], `case ${i}: ${err.name}: ${err.message}`).toContain(err.name);
        expect(typeof err.code).toBe("string");
        outcome = `${err.name}:${err.code}`;
      }
      expect(Date.now() - t0, `case ${i}`).toBeLessThan(10_000);
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    console.log(
      `config fuzz ${model}: ${JSON.stringify(outcomes)}, RSS growth ${((peak - before) / 2 ** 20).toFixed(0)} MB`,
    );
    expect(peak - before).toBeLessThan(256 * 2 ** 20);
    expect(Object.keys(outcomes).length).toBeGreaterThan(1);
  }, 300_000);
});
