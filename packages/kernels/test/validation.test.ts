import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  backendInfo,
  gemmF32,
  gemmW4A4,
  gemmW4A16,
  gemmW8A8,
  KernelsError,
  packF32,
  packW4A4,
  packW4A16,
  packW8A8,
  prepareW4A4Layer,
  quantizeActivations,
  quantizeActivationsInt8,
  unpackF32,
  unpackW4A4,
  unpackW4A16,
  unpackW8A8,
} from "../src/index.ts";
import { native } from "../src/native.ts";
import { rng } from "./helpers.ts";

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(KernelsError);
    return `${(e as KernelsError).code}: ${(e as Error).message}`;
  }
  throw new Error("expected a KernelsError");
}

describe("input validation (before anything reaches C++)", () => {
  const r = rng(5);
  it("rejects bad activations with the tensor and shape named", () => {
    expect(code(() => quantizeActivations(r.f32(3 * 100), 3, 100))).toMatch(
      /E_SHAPE: K = 100 must be a multiple of 64/,
    );
    expect(code(() => quantizeActivations(r.f32(3 * 64 - 1), 3, 64))).toMatch(
      /E_LENGTH: tensor "x": shape \[3, 64\] needs 192/,
    );
    expect(code(() => quantizeActivations(new Float64Array(3 * 64) as never, 3, 64))).toMatch(/E_DTYPE.*Float64Array/);
    expect(code(() => quantizeActivations(r.f32(128), 2, 64, { smooth: r.f32(63) }))).toMatch(/"x.smooth"/);
    expect(code(() => quantizeActivations(r.f32(128), 2, 64, { lowRankDown: r.f32(64 * 3 + 1), rank: 3 }))).toMatch(
      /E_LENGTH: tensor "x.lowRankDown"/,
    );
    expect(code(() => quantizeActivations(r.f32(128), 2, 64, { format: "int4", shift: 1 }))).toMatch(/E_ARGUMENT/);
    expect(code(() => quantizeActivations(r.f32(128), 2.5, 64))).toMatch(/E_SHAPE: dimension M/);
    const x = r.f32(4 * 64);
    x[2 * 64 + 5] = Number.NaN;
    expect(code(() => quantizeActivations(x, 4, 64))).toMatch(/E_VALUE: tensor "x": row 2 .* NaN or Inf/);
    x[2 * 64 + 5] = 1;
    const smooth = r.pos(64);
    smooth[9] = 0; // X/0 = Inf
    expect(code(() => quantizeActivations(x, 4, 64, { smooth }))).toMatch(/row 0/);
    expect(code(() => quantizeActivationsInt8(Float32Array.of(1, Number.POSITIVE_INFINITY, 0, 0), 1, 4))).toMatch(
      /E_VALUE/,
    );
  });

  it("rejects bad weights when packing", () => {
    expect(code(() => packW4A4({ codes: new Int8Array(128).fill(9), scales: r.pos(2) }, 2, 64))).toMatch(
      /E_VALUE: tensor "w4a4.codes": code 9 at flat index 0 is outside \[-8, 7\]/,
    );
    expect(code(() => packW4A4({ codes: new Int8Array(128), scales: r.pos(3) }, 2, 64))).toMatch(
      /E_LENGTH: tensor "w4a4.scales"/,
    );
    const s = r.pos(2);
    s[1] = Number.NaN;
    expect(code(() => packW4A4({ codes: new Int8Array(128), scales: s }, 2, 64, { name: "blocks.0.qkv" }))).toMatch(
      /"blocks.0.qkv.scales"/,
    );
    expect(
      code(() => packW4A16({ codes: new Int8Array(128), scales: r.pos(4) }, 2, 64, { format: "nf4", groupSize: 48 })),
    ).toMatch(/E_SHAPE/);
    expect(
      code(() =>
        packW4A16({ codes: new Int8Array(128).fill(-1), scales: r.pos(4) }, 2, 64, { format: "nf4", groupSize: 32 }),
      ),
    ).toMatch(/outside \[0, 15\]/);
    expect(code(() => packW8A8({ codes: new Int8Array(2 * 6), scales: r.pos(2) }, 2, 6))).toMatch(/multiple of 4/);
    expect(code(() => packW8A8({ codes: new Int8Array(8).fill(-128), scales: r.pos(2) }, 2, 4))).toMatch(/-128/);
    expect(code(() => packF32(r.f32(10), 3, 4))).toMatch(/E_LENGTH/);
  });

  it("rejects a bad prepared-layer spec or forward call, naming the layer", () => {
    const w = packW4A4({ codes: r.codes(8 * 128, -8, 7), scales: r.pos(16) }, 8, 128, {
      lowRankUp: r.f32(8 * 2),
      rank: 2,
    });
    expect(code(() => prepareW4A4Layer({ weight: w, name: "blocks.1.fc1" }))).toMatch(
      /E_ARGUMENT: tensor "blocks.1.fc1.lowRankDown": the weight has rank 2/,
    );
    expect(code(() => prepareW4A4Layer({ weight: w, lowRankDown: r.f32(3 * 128), name: "fc" }))).toMatch(
      /E_LENGTH: tensor "fc.x.lowRankDown"/,
    );
    expect(code(() => prepareW4A4Layer({ weight: w, lowRankDown: r.f32(256), smooth: r.pos(64), name: "fc" }))).toMatch(
      /E_LENGTH: tensor "fc.x.smooth"/,
    );
    expect(code(() => prepareW4A4Layer({ weight: { ...w, kind: "f32" } as never }))).toMatch(/expected a PackedW4A4/);
    const layer = prepareW4A4Layer({ weight: w, lowRankDown: r.f32(256), name: "fc" });
    expect(code(() => layer.forward(r.f32(2 * 128), 2, { out: new Float32Array(15) }))).toMatch(
      /E_LENGTH: tensor "fc.out": shape \[2, 8\]/,
    );
    expect(code(() => layer.forward(r.f32(2 * 127), 2))).toMatch(/E_LENGTH: tensor "fc.x"/);
    const x = r.f32(2 * 128);
    x[200] = Number.POSITIVE_INFINITY;
    expect(code(() => layer.forward(x, 2))).toMatch(/E_VALUE: tensor "fc.x": row 1/);
  });

  it("rejects mismatched operands of the GEMMs", () => {
    const w = packW4A4({ codes: r.codes(8 * 128, -8, 7), scales: r.pos(16) }, 8, 128, {
      lowRankUp: r.f32(8 * 2),
      rank: 2,
    });
    const a64 = quantizeActivations(r.f32(2 * 64), 2, 64);
    expect(code(() => gemmW4A4(a64, w))).toMatch(/E_SHAPE: activations \[2, 64\] do not match weight K = 128/);
    const a128 = quantizeActivations(r.f32(2 * 128), 2, 128);
    expect(code(() => gemmW4A4(a128, w))).toMatch(/rank 0 low-rank activations but the weight has rank 2/);
    expect(code(() => gemmW4A4({ ...a128, codes: a128.codes.subarray(1) }, w))).toMatch(/"activations.codes"/);
    const ar = quantizeActivations(r.f32(2 * 128), 2, 128, { lowRankDown: r.f32(2 * 128), rank: 2 });
    expect(code(() => gemmW4A4(ar, w, { out: new Float32Array(17) }))).toMatch(
      /E_LENGTH: tensor "out": shape \[2, 8\] needs 16 elements, got 17/,
    );
    expect(code(() => gemmF32(r.f32(5), 1, packF32(r.f32(8), 2, 4)))).toMatch(/E_LENGTH: tensor "x"/);
    expect(
      code(() =>
        gemmW4A16(
          r.f32(5),
          1,
          packW4A16({ codes: new Int8Array(64), scales: r.pos(1) }, 1, 64, { format: "int4", groupSize: 64 }),
        ),
      ),
    ).toMatch(/tensor "x"/);
    const w8 = packW8A8({ codes: new Int8Array(8), scales: r.pos(2) }, 2, 4);
    expect(code(() => gemmW8A8(quantizeActivationsInt8(r.f32(8), 1, 8), w8))).toMatch(/do not match weight K = 4/);
    const act8 = quantizeActivationsInt8(r.f32(12), 3, 4);
    act8.codes[9] = -128; // outside the symmetric INT8 range the quantizer produces
    expect(code(() => gemmW8A8(act8, w8))).toMatch(
      /E_VALUE: tensor "activations.codes": code -128 at flat index 9 is outside \[-127, 127\]/,
    );
    expect(code(() => gemmW8A8(quantizeActivationsInt8(r.f32(12), 3, 4), w8, { out: new Float32Array(5) }))).toMatch(
      /E_LENGTH: tensor "out": shape \[3, 2\] needs 6 elements, got 5/,
    );
    expect(
      code(() => gemmW8A8(quantizeActivationsInt8(r.f32(12), 3, 4), w8, { out: new Float64Array(6) as never })),
    ).toMatch(/E_DTYPE: tensor "out": expected a Float32Array, got Float64Array/);
    expect(code(() => gemmF32(r.f32(4), 1, w8 as never))).toMatch(/expected a PackedF32/);
  });
});

describe("layouts: packing is lossless (unpack ∘ pack = identity) for ragged N", () => {
  const r = rng(9);
  it.each([1, 7, 8, 17, 40])("N = %i", (N) => {
    const K = 192;
    const c4 = r.codes(N * K, -8, 7);
    const s64 = r.pos(N * 3);
    const lup = r.f32(N * 5);
    const u4 = unpackW4A4(packW4A4({ codes: c4, scales: s64 }, N, K, { lowRankUp: lup, rank: 5 }));
    expect(u4.codes).toEqual(c4);
    expect(u4.scales).toEqual(s64);
    expect(u4.lowRankUp).toEqual(lup);
    const wf = r.f32(N * K);
    expect(unpackF32(packF32(wf, N, K))).toEqual(wf);
    const nf = r.codes(N * K, 0, 15);
    const s32 = r.pos(N * 6);
    expect(unpackW4A16(packW4A16({ codes: nf, scales: s32 }, N, K, { format: "nf4", groupSize: 32 }))).toEqual({
      codes: nf,
      scales: s32,
    });
    expect(unpackW4A16(packW4A16({ codes: c4, scales: s64 }, N, K, { format: "int4", groupSize: 64 }))).toEqual({
      codes: c4,
      scales: s64,
    });
    const c8 = r.codes(N * K, -127, 127);
    const sN = r.pos(N);
    expect(unpackW8A8(packW8A8({ codes: c8, scales: sN }, N, K))).toEqual({ codes: c8, scales: sN });
  });
});

describe("native boundary", () => {
  it("native errors become JS exceptions with messages", () => {
    const nb = native();
    expect(nb).not.toBeNull();
    expect(() => nb!.gemmF32({ M: 1 })).toThrow(/@svdquant\/kernels native: argument 'K' must be a number/);
    expect(() => nb!.gemmF32({ M: 1, K: 4, N: 2, x: new Float32Array(3) })).toThrow(
      /argument 'x' holds 3 elements, expected 4/,
    );
    expect(() => nb!.gemmF32({ M: 1, K: 4, N: 2, x: new Float64Array(4) })).toThrow(/wrong typed-array type/);
  });

  it("a missing addon gives exactly one warning and the TypeScript results", () => {
    const script = `
      const k = await import(${JSON.stringify(fileURLToPath(new URL("../src/index.ts", import.meta.url)))});
      const x = new Float32Array(2 * 64).map((_, i) => Math.sin(i));
      const a = k.quantizeActivations(x, 2, 64);
      const w = k.packW4A4({ codes: new Int8Array(3 * 64).fill(3), scales: new Float32Array(3).fill(0.5) }, 3, 64);
      const y = k.gemmW4A4(a, w).y;
      k.gemmF32(x, 2, k.packF32(new Float32Array(64), 1, 64));
      console.log(JSON.stringify({ info: k.backendInfo(), y: Array.from(y) }));`;
    const res = spawnSync(
      process.execPath,
      ["--conditions=@svdquant/source", "--import", "tsx", "--input-type=module", "-e", script],
      {
        env: { ...process.env, SVDQ_KERNELS_ADDON: "/nonexistent/svdquant_kernels.node", SVDQ_KERNELS_NATIVE: "" },
        encoding: "utf8",
      },
    );
    expect(res.status, res.stderr).toBe(0);
    const warnings = res.stderr.split("\n").filter((l) => l.includes("SVDQ_KERNELS_FALLBACK"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/native addon unavailable.*Falling back to the \(slow\) TypeScript reference kernels/);
    const out = JSON.parse(res.stdout.trim().split("\n").pop()!);
    expect(out.info.native).toBe(false);
    expect(out.y).toHaveLength(6);
    expect(out.y.every((v: number) => Number.isFinite(v))).toBe(true);
  });

  it("SVDQ_KERNELS_ISA forces the path for the process; an unknown value is refused with the reason", () => {
    const info = backendInfo();
    if (!info.native) return; // the fallback has no paths to force (its own test above covers it)
    const index = JSON.stringify(fileURLToPath(new URL("../src/index.ts", import.meta.url)));
    const run = (isa: string) =>
      spawnSync(
        process.execPath,
        [
          "--conditions=@svdquant/source",
          "--import",
          "tsx",
          "--input-type=module",
          "-e",
          `const k = await import(${index}); console.log(JSON.stringify(k.backendInfo()));`,
        ],
        { env: { ...process.env, SVDQ_KERNELS_ISA: isa, SVDQ_KERNELS_NATIVE: "" }, encoding: "utf8" },
      );
    const forced = info.supportedIsas[1] ?? "scalar"; // the first SIMD path (avx2 on x86-64), else scalar
    const res = run(forced);
    expect(res.status, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout.trim().split("\n").pop()!).isa).toBe(forced);
    const bad = run("neon");
    expect(bad.status, bad.stderr).toBe(0);
    expect(JSON.parse(bad.stdout.trim().split("\n").pop()!).native).toBe(false);
    expect(bad.stderr).toMatch(/SVDQ_KERNELS_ISA=neon is not one of auto, scalar, avx2, avx512, amx/);
  });
});
