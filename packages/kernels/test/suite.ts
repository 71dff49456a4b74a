import { availableParallelism } from "node:os";
import { describe, expect, it } from "vitest";
import {
  attentionF32,
  backendInfo,
  gemmF32,
  gemmW4A4,
  gemmW4A16,
  gemmW8A8,
  KernelsError,
  NATIVE_ISAS,
  NF4_TABLE,
  packF32,
  packW4A4,
  packW4A16,
  packW8A8,
  prepareW4A4Layer,
  quantizeActivations,
  quantizeActivationsInt8,
  reference,
  setIsa,
  setThreads,
} from "../src/index.ts";
import { describePaths, maxAbs, rng, worst } from "./helpers.ts";
import { attentionInputs, gemmInputs, RAGGED_GEMM_SHAPES } from "./inputs.ts";

/** Defines the operator suite for the backend this test file loaded (native, or the TS fallback). */
export function defineSuite(): void {
  const info = backendInfo();
  /** Codes may differ from the float64 reference only where the unrounded value sits on a rounding tie (f32 vs f64). */
  function expectCodes(got: Int8Array, want: Int8Array, unrounded: Float64Array) {
    let mism = 0;
    for (let i = 0; i < got.length; i++) {
      if (got[i] === want[i]) continue;
      const frac = Math.abs(unrounded[i] - Math.floor(unrounded[i]) - 0.5);
      expect(Math.abs(got[i] - want[i]), `code ${i}`).toBe(1);
      expect(frac, `code ${i} differs away from a tie (unrounded ${unrounded[i]})`).toBeLessThan(1e-4);
      mism++;
    }
    expect(mism).toBeLessThan(Math.max(2, got.length * 1e-3));
  }

  // Every native path is tested wherever the CPU can run it; without the addon the TS path is tested.
  describePaths("kernels", info, (_isa, useIsa) => {
    it("quantizeActivations: codes, scales and low-rank down match the float64 reference (f32, bf16, int4, uint4)", () => {
      useIsa();
      const r = rng(11);
      for (const [M, K, R, fmt, bf] of [
        [1, 64, 0, "int4", false],
        [3, 192, 5, "int4", false],
        [7, 320, 32, "uint4", false],
        [13, 128, 3, "int4", true],
        [9, 64, 32, "uint4", true],
        // AVX-512 down-projection: two row tasks (32 + 13 rows), two K blocks, ranks in a 32 + 16 split
        [45, 640, 40, "int4", false],
      ] as const) {
        const x32 = r.f32(M * K, 2);
        for (let i = 0; i < x32.length; i += 37) x32[i] *= 20; // outliers
        const bits = new Uint16Array(M * K);
        if (bf) {
          const u = new Uint32Array(x32.buffer);
          for (let i = 0; i < bits.length; i++) bits[i] = u[i] >>> 16;
          for (let i = 0; i < bits.length; i++) x32[i] = reference.bf16ToNumber(bits[i]);
        }
        const smooth = r.pos(K, 0.25, 4);
        const ldown = R ? r.f32(R * K, 0.1) : undefined;
        const shift = fmt === "uint4" ? 0.171875 : 0;
        const q = quantizeActivations(bf ? bits : x32, M, K, {
          smooth,
          lowRankDown: ldown,
          rank: R,
          format: fmt,
          shift,
        });
        const ref = reference.refActQuant(x32, M, K, { smooth, ldown, R, format: fmt, shift });
        expectCodes(q.codes, ref.codes, ref.unrounded);
        expect(worst(q.scales, ref.scales, 1e-30, 1e-6)).toBeLessThanOrEqual(1);
        if (R) expect(worst(q.loraAct!, ref.loraAct, 1e-4 * maxAbs(ref.loraAct) + 1e-6, 1e-5)).toBeLessThanOrEqual(1);
        else expect(q.loraAct).toBeNull();
        const [lo, hi] = fmt === "int4" ? [-8, 7] : [0, 15];
        expect(Math.min(...q.codes)).toBeGreaterThanOrEqual(lo);
        expect(Math.max(...q.codes)).toBeLessThanOrEqual(hi);
      }
    });

    it("gemmW4A4: fused low-rank + bias (+GELU) matches the float64 reference over ragged shapes", () => {
      useIsa();
      const r = rng(22);
      for (const [M, K, N, R, gelu] of [
        [1, 64, 1, 0, false],
        [5, 192, 13, 3, true],
        [9, 128, 37, 32, false],
        [8, 64, 24, 1, true],
        [17, 256, 16, 32, true],
        // several AVX-512 micro-tiles (8 rows × 32 columns) and AMX blocks (32 × 32, tasks of 128 rows),
        // with a partial last block of rows and an odd number of 8-column panels
        [141, 320, 104, 32, true],
        [40, 128, 200, 8, false],
        // two AMX row tasks (256 + 44 rows), 32 × 64 blocks and a last 32 × 32 block (13 panels)
        [300, 192, 104, 4, false],
      ] as const) {
        const x = r.f32(M * K);
        const ldown = R ? r.f32(R * K, 0.2) : undefined;
        const act = quantizeActivations(x, M, K, { lowRankDown: ldown, rank: R });
        const wCodes = r.codes(N * K, -8, 7);
        const wScales = r.pos((N * K) / 64, 0.01, 0.05);
        const lup = R ? r.f32(N * R, 0.3) : undefined;
        const bias = r.f32(N);
        const w = packW4A4({ codes: wCodes, scales: wScales }, N, K, { lowRankUp: lup, rank: R, bias });
        const { y } = gemmW4A4(act, w, { gelu });
        const want = reference.refGemmW4A4({
          M,
          K,
          N,
          R,
          xCodes: act.codes,
          xScales: act.scales,
          loraAct: act.loraAct,
          wCodes,
          wScales,
          lowRankUp: lup,
          bias,
          gelu,
        });
        expect(worst(y, want, 2e-5 * maxAbs(want) + 1e-6, 1e-5)).toBeLessThanOrEqual(1);
        // A caller's output buffer (NaN-filled: every element must be written) gets the same bits.
        const out = new Float32Array(M * N).fill(Number.NaN);
        expect(gemmW4A4(act, w, { gelu, out }).y).toBe(out);
        expect(out).toEqual(y);
      }
    });

    it("gemmW4A4: the same result for activation codes at any byte offset (AMX reads an aligned copy)", () => {
      useIsa();
      const r = rng(23);
      const [M, K, N, R] = [37, 192, 40, 4];
      const act = quantizeActivations(r.f32(M * K), M, K, { lowRankDown: r.f32(R * K, 0.2), rank: R });
      const w = packW4A4({ codes: r.codes(N * K, -8, 7), scales: r.pos((N * K) / 64, 0.01, 0.05) }, N, K, {
        lowRankUp: r.f32(N * R, 0.3),
        rank: R,
        bias: r.f32(N),
      });
      const base = gemmW4A4(act, w).y;
      // offsets 0, 1, 16, 33 of a fresh buffer: at least one is 64-byte aligned and at least one is not
      for (const offset of [0, 1, 16, 33]) {
        const store = new Int8Array(M * K + 64);
        const codes = store.subarray(offset, offset + M * K);
        codes.set(act.codes);
        expect(Array.from(gemmW4A4({ ...act, codes }, w).y)).toEqual(Array.from(base));
      }
    });

    it("gemmW4A4: uint4 activations and the quantize-for-next-layer output", () => {
      useIsa();
      const r = rng(33);
      const [M, K, N] = [7, 128, 64];
      const x = Float32Array.from(r.f32(M * K), (v) => reference.geluTanh(v));
      const act = quantizeActivations(x, M, K, { format: "uint4", shift: 0.171875 });
      const wCodes = r.codes(N * K, -8, 7);
      const wScales = r.pos(N * 2, 0.01, 0.05);
      const w = packW4A4({ codes: wCodes, scales: wScales }, N, K);
      const smoothNext = r.pos(N);
      const ldNext = r.f32(4 * N, 0.1);
      const out = gemmW4A4(act, w, { gelu: true, next: { smooth: smoothNext, lowRankDown: ldNext, rank: 4 } });
      const want = reference.refGemmW4A4({
        M,
        K,
        N,
        R: 0,
        xCodes: act.codes,
        xScales: act.scales,
        wCodes,
        wScales,
        gelu: true,
      });
      expect(worst(out.y, want, 2e-5 * maxAbs(want) + 1e-6, 1e-5)).toBeLessThanOrEqual(1);
      const nref = reference.refActQuant(out.y, M, N, { smooth: smoothNext, ldown: ldNext, R: 4 });
      expectCodes(out.next!.codes, nref.codes, nref.unrounded);
      expect(worst(out.next!.loraAct!, nref.loraAct, 1e-4 * maxAbs(nref.loraAct), 1e-5)).toBeLessThanOrEqual(1);
    });

    it("prepareW4A4Layer: forward (quantize + low-rank + GEMM, reused buffers) matches the float64 reference", () => {
      useIsa();
      const r = rng(88);
      for (const [K, N, R, fmt] of [
        [192, 40, 32, "int4"],
        [128, 72, 4, "uint4"],
        [256, 24, 0, "int4"],
      ] as const) {
        const wCodes = r.codes(N * K, -8, 7);
        const wScales = r.pos((N * K) / 64, 0.01, 0.05);
        const lup = R ? r.f32(N * R, 0.3) : undefined;
        const ldown = R ? r.f32(R * K, 0.1) : undefined;
        const bias = r.f32(N);
        const smooth = r.pos(K, 0.25, 4);
        const shift = fmt === "uint4" ? 0.171875 : 0;
        const w = packW4A4({ codes: wCodes, scales: wScales }, N, K, { lowRankUp: lup, rank: R, bias });
        const layer = prepareW4A4Layer({ weight: w, smooth, lowRankDown: ldown, format: fmt, shift, name: "blk" });
        expect([layer.K, layer.N, layer.R]).toEqual([K, N, R]);
        // M grows then shrinks: the layer's activation buffers are reused as views
        for (const [M, gelu] of [
          [5, false],
          [37, true],
          [3, true],
        ] as const) {
          const x = fmt === "uint4" ? Float32Array.from(r.f32(M * K), (v) => reference.geluTanh(v)) : r.f32(M * K);
          const out = new Float32Array(M * N).fill(Number.NaN);
          const y = layer.forward(x, M, { gelu, out });
          expect(y).toBe(out);
          const q = reference.refActQuant(x, M, K, { smooth, ldown, R, format: fmt, shift });
          const want = reference.refGemmW4A4({
            M,
            K,
            N,
            R,
            xCodes: q.codes,
            xScales: q.scales,
            loraAct: R ? q.loraAct : undefined,
            wCodes,
            wScales,
            lowRankUp: lup,
            bias,
            gelu,
          });
          // the layer's codes equal the reference's except at f32-vs-f64 rounding ties; Y is then checked tightly
          // against the float64 GEMM on the layer's own codes (and loosely against the all-reference Y)
          const mine = layer.quantize(x, M);
          expectCodes(mine.codes, q.codes, q.unrounded);
          const wantOnMine = reference.refGemmW4A4({
            M,
            K,
            N,
            R,
            xCodes: mine.codes,
            xScales: mine.scales,
            loraAct: mine.loraAct ?? undefined,
            wCodes,
            wScales,
            lowRankUp: lup,
            bias,
            gelu,
          });
          expect(worst(y, wantOnMine, 2e-5 * maxAbs(wantOnMine) + 1e-6, 1e-5)).toBeLessThanOrEqual(1);
          if (R) expect(worst(mine.loraAct!, q.loraAct, 1e-4 * maxAbs(q.loraAct) + 1e-6, 1e-5)).toBeLessThanOrEqual(1);
          expect(worst(y, want, 0.05 * maxAbs(want) + 1e-3, 0)).toBeLessThanOrEqual(1);
          // same result as the two-call API
          const two = gemmW4A4(
            quantizeActivations(x, M, K, { smooth, lowRankDown: ldown, rank: R, format: fmt, shift }),
            w,
            {
              gelu,
            },
          ).y;
          expect(Array.from(y)).toEqual(Array.from(two));
        }
      }
    });

    it("gemmF32: packed panels, bias and GELU match the float64 reference over ragged shapes", () => {
      useIsa();
      const r = rng(44);
      for (const [M, K, N, gelu] of [
        ...RAGGED_GEMM_SHAPES,
        [6, 256, 16, false],
        // several row blocks, K blocks and column tasks of the AVX-512 plan, partial tiles and panel groups
        [230, 700, 403, true],
        // AVX2 plan: 3 row blocks of 72/56 rows, tasks narrowed to 12 panels (12 + 12 + 2, the last 1 column wide),
        // a last K block of one column; and exactly two K blocks
        [200, 257, 401, true],
        [30, 512, 20, false],
      ] as const) {
        const { x, w, bias } = gemmInputs(r, M, K, N, 0.1);
        const y = gemmF32(x, M, packF32(w, N, K, { bias }), { gelu });
        const want = reference.refGemmF32(x, M, K, w, N, bias, gelu);
        expect(worst(y, want, 1e-5 * Math.sqrt(K) + 1e-6, 1e-5)).toBeLessThanOrEqual(1);
      }
    });

    it("gemmW4A16: INT4 and NF4 weights with any group size match the float64 reference", () => {
      useIsa();
      const r = rng(55);
      for (const [M, K, N, G, fmt] of [
        [3, 64, 5, 32, "int4"],
        [8, 384, 19, 128, "nf4"],
        [7, 320, 32, 64, "nf4"],
        [2, 256, 40, 256, "int4"],
        [130, 640, 70, 64, "int4"],
      ] as const) {
        const x = r.f32(M * K);
        const codes = fmt === "int4" ? r.codes(N * K, -8, 7) : r.codes(N * K, 0, 15);
        const scales = r.pos((N * K) / G, 0.01, 0.1);
        const bias = r.f32(N);
        const y = gemmW4A16(x, M, packW4A16({ codes, scales }, N, K, { format: fmt, groupSize: G, bias }));
        const wd = reference.refDequant4(codes, scales, N, K, G, fmt === "nf4" ? NF4_TABLE : null);
        const want = reference.refGemmF32(x, M, K, wd, N, bias);
        expect(worst(y, want, 2e-5 * Math.sqrt(K) + 1e-6, 1e-5)).toBeLessThanOrEqual(1);
      }
    });

    it("attentionF32: online-softmax attention matches the float64 reference (ragged blocks, key bias)", () => {
      useIsa();
      const r = rng(99);
      for (const [B, Sq, Skv, H, Dh, withBias] of [
        [1, 1, 1, 1, 16, false],
        [2, 19, 70, 3, 32, true], // partial query (128) and key (128) blocks, a partial 32-key score chunk
        [1, 40, 130, 2, 64, false],
        [1, 150, 300, 2, 128, true], // two query tasks, several key blocks, the last one partial (44 keys)
        [1, 13, 1, 3, 24, true], // one key; Dh = 8 mod 16 (AVX2 block, also on AVX-512 CPUs); 6-query tiles + 1
        [1, 131, 257, 2, 72, true], // PixArt-Σ's head size 72: 16-column passes and an 8-column tail (AVX2)
        [1, 5, 9, 2, 12, true], // Dh not a multiple of 8: the scalar block on every path
      ] as const) {
        const { q, k, v, bias } = attentionInputs(r, { B, Sq, Skv, H, Dh, withBias });
        const out = attentionF32(q, k, v, { B, Sq, Skv, heads: H, headDim: Dh, bias });
        const want = reference.refAttention(q, k, v, B, Sq, Skv, H, Dh, bias);
        expect(
          worst(out, want, 2e-5 * maxAbs(want) + 1e-6, 1e-5),
          `B=${B} Sq=${Sq} Skv=${Skv} H=${H} Dh=${Dh}`,
        ).toBeLessThanOrEqual(1);
      }
    });

    it("W8A8: per-token INT8 quantization and the INT8 GEMM match the float64 reference", () => {
      useIsa();
      const r = rng(66);
      for (const [M, K, N] of [
        [1, 4, 1],
        [9, 260, 21],
        [5, 512, 16],
        [70, 448, 72], // AVX-512/AMX tiles: partial 32-row block, 9 panels of 8 columns
        [33, 1028, 40], // K not a multiple of 64: the AMX path runs its VNNI kernel
        [417, 1152, 419], // AMX blocked plan (M > 128): ragged 384-row/column tasks, 3 K chunks of partial sums
        [130, 12288, 33], // blocked plan at K = 12288 (24 chunks), a partial last row block, one column task
      ] as const) {
        const x = r.f32(M * K);
        const act = quantizeActivationsInt8(x, M, K);
        const ref = reference.refActQuantInt8(x, M, K);
        expectCodes(act.codes, ref.codes, ref.unrounded);
        expect(worst(act.scales, ref.scales, 1e-30, 1e-6)).toBeLessThanOrEqual(1);
        const poisoned = Float32Array.from(x);
        poisoned[Math.min(M - 1, 2) * K + (K - 1)] = Number.NaN; // last element: the vector tail on SIMD paths
        expect(() => quantizeActivationsInt8(poisoned, M, K)).toThrow(
          new RegExp(`row ${Math.min(M - 1, 2)} of X .* NaN or Inf`),
        );
        const codes = r.codes(N * K, -127, 127);
        const scales = r.pos(N, 0.001, 0.01);
        const bias = r.f32(N);
        const pw = packW8A8({ codes, scales }, N, K, { bias });
        const y = gemmW8A8(act, pw);
        const want = reference.refGemmW8A8(act.codes, act.scales, M, K, codes, scales, N, bias);
        expect(worst(y, want, 1e-5 * maxAbs(want) + 1e-6, 1e-5)).toBeLessThanOrEqual(1);
        // A caller's output buffer (NaN-filled: every element must be written) gets the same bits.
        const out = new Float32Array(M * N).fill(Number.NaN);
        expect(gemmW8A8(act, pw, { out })).toBe(out);
        expect(out).toEqual(y);
      }
    });
  });

  describe("threads and dispatch", () => {
    // Thread count only exists for the native pool (the TS fallback is single-threaded).
    if (info.native)
      it("results do not depend on the thread count", () => {
        setIsa("auto");
        const r = rng(77);
        const [M, K, N, R] = [70, 192, 72, 8];
        const act = quantizeActivations(r.f32(M * K), M, K, { lowRankDown: r.f32(R * K), rank: R });
        const w = packW4A4({ codes: r.codes(N * K, -8, 7), scales: r.pos(N * 3) }, N, K, {
          lowRankUp: r.f32(N * R),
          rank: R,
        });
        const before = backendInfo().threads;
        expect(setThreads(1)).toBe(1);
        const y1 = gemmW4A4(act, w).y;
        const many = Math.min(3, availableParallelism()); // setThreads is capped at the available parallelism
        expect(setThreads(many)).toBe(many);
        const y3 = gemmW4A4(act, w).y;
        setThreads(before);
        expect(Array.from(y3)).toEqual(Array.from(y1));
      });

    it("reports the backend", () => {
      expect(["amx", "avx512", "avx2", "scalar", "typescript"]).toContain(info.isa);
      if (info.native) {
        expect(info.supportedIsas[0]).toBe("scalar");
        expect(info.supportedIsas).toContain(info.isa);
        expect(info.supportedIsas.includes("avx2")).toBe(info.cpuHasAvx2Fma);
        const unsupported = NATIVE_ISAS.find((i) => !info.supportedIsas.includes(i));
        if (unsupported) expect(() => setIsa(unsupported)).toThrow(/cannot run/);
      }
      if (!info.native) expect(info.reason).not.toBe("");
      expect(() => setIsa("sse" as never)).toThrow(KernelsError);
    });
  });
}
