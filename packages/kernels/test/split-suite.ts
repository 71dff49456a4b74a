// The split-bf16 f32 GEMM (split.ts, kernels/cpu/gemm_f32_amx.cc) on every path this process can run: each native
// ISA path forced in turn (amx: AMX-BF16 tiles; the others: f32 panels rebuilt from the parts), or the TypeScript
// fallback. Fresh seeded inputs, ragged shapes, against float64 references.
import { describe, expect, it } from "vitest";
import {
  attentionF32,
  backendInfo,
  f32SplitElems,
  f32SplitInfo,
  gemmF32,
  gemmF32Split,
  KernelsError,
  type PackedF32Split,
  packF32,
  packF32Split,
  reference,
  setIsa,
  splitBf16,
  unpackF32Split,
} from "../src/index.ts";
import { describePaths, maxAbs, rng, worst } from "./helpers.ts";
import { attentionInputs, gemmInputs, RAGGED_GEMM_SHAPES } from "./inputs.ts";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bf16 = (b: number) => {
  u32[0] = b << 16;
  return f32[0]!;
};

/** Largest |y − ref| / Σ_k |x_mk·w_nk| (+ |bias|) over the outputs: the error relative to the product's own scale. */
function scaledError(
  y: Float32Array,
  x: Float32Array,
  w: Float32Array,
  bias: Float32Array | undefined,
  M: number,
  K: number,
  N: number,
  gelu: boolean,
): number {
  const ref = reference.refGemmF32(x, M, K, w, N, bias, gelu);
  let worst = 0;
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = bias ? Math.abs(bias[n]!) : 0;
      for (let k = 0; k < K; k++) s += Math.abs(x[m * K + k]! * w[n * K + k]!);
      const e = Math.abs(y[m * N + n]! - ref[m * N + n]!) / (s + 1e-30);
      if (!(e <= worst)) worst = e; // NaN propagates
    }
  return worst;
}

// Bounds on |y − ref| / Σ|x·w| (GELU'(v) ≤ 1.13, so GELU outputs share them). S = 3 drops part products ≤ 2⁻²⁴
// relative and sums in f32: 2⁻²¹ is 4x above the worst seen on the dev Xeon (2⁻²²·¹ on the rebuilt-f32 paths,
// 2⁻²³·³ on AMX) and fails 2-part results (2⁻²⁰ at K ≥ 300). S = 2 drops x₁w₁ and the rests of both splits: at most
// 2⁻¹⁸ + 2·2⁻¹⁷ per product (a single product, K = 1, reaches 2⁻¹⁷·⁴; longer sums cancel to ≈ 2⁻²⁰).
const BOUND = { 3: 2 ** -21, 2: 2.5 * 2 ** -17 } as const;

export function defineSplitSuite(): void {
  const info = backendInfo();

  describe("split-bf16 weights", () => {
    it("packF32Split: round-to-nearest-even parts in the tile layout; 3 parts sum exactly to W", () => {
      const r = rng(0x5b11);
      for (const [N, K] of [
        [1, 1],
        [17, 45],
        [40, 70],
      ] as const) {
        const w = r.f32(N * K, 0.3);
        // rounding ties (bit 15 set, bits 0-14 clear, both parities of bit 16), tiny and large magnitudes
        const wu = new Uint32Array(w.buffer);
        for (let i = 0; i < w.length; i += 5) wu[i] = (wu[i]! & 0xffff0000) | 0x8000;
        for (let i = 3; i < w.length; i += 11) w[i]! *= 2 ** -90;
        for (let i = 7; i < w.length; i += 13) w[i]! *= 2 ** 100;
        for (const S of [2, 3] as const) {
          const p = packF32Split(w, N, K, { splits: S });
          expect(p.wsplit.length).toBe(f32SplitElems(N, K, S));
          const CH = Math.ceil(K / 32);
          let nonzeroPad = 0;
          for (let n = 0; n < Math.ceil(N / 32) * 32; n++)
            for (let k = 0; k < CH * 32; k++)
              for (let s = 0; s < S; s++) {
                const at =
                  ((n >> 4) * CH + (k >> 5)) * S * 512 + s * 512 + ((k & 31) >> 1) * 32 + (n & 15) * 2 + (k & 1);
                if (n >= N || k >= K) nonzeroPad += p.wsplit[at] === 0 ? 0 : 1;
                else expect(p.wsplit[at], `W[${n}, ${k}] part ${s}`).toBe(splitBf16(w[n * K + k]!, S)[s]);
              }
          expect(nonzeroPad).toBe(0);
          const back = unpackF32Split(p);
          if (S === 3) expect(Array.from(back)).toEqual(Array.from(w));
          else
            for (let i = 0; i < w.length; i++)
              expect(Math.abs(back[i]! - w[i]!)).toBeLessThanOrEqual(Math.abs(w[i]!) * 2 ** -17);
        }
      }
    });

    it("splitBf16: the reference rounding (to nearest even, ties to even, exact rests)", () => {
      expect(splitBf16(1, 3)).toEqual([0x3f80, 0, 0]);
      // 1 + 2⁻⁸ is a tie between 1 and 1 + 2⁻⁷: even mantissa → 1, rest 2⁻⁸
      expect(splitBf16(1 + 2 ** -8, 2).map(bf16)).toEqual([1, 2 ** -8]);
      // 1 + 3·2⁻⁸ ties between 1 + 2⁻⁷ and 1 + 2·2⁻⁷: even → 1 + 2·2⁻⁷ = 1.015625, rest −2⁻⁸
      expect(splitBf16(1 + 3 * 2 ** -8, 2).map(bf16)).toEqual([1.015625, -(2 ** -8)]);
      const v = Math.fround(Math.PI);
      const parts = splitBf16(v, 3).map(bf16);
      expect(parts[0]! + parts[1]! + parts[2]!).toBe(v);
    });

    it("rejects bad splits, non-finite and bf16-overflowing weights, and wrong lengths, naming the tensor", () => {
      const w = new Float32Array(12).fill(0.5);
      expect(() => packF32Split(w, 3, 4, { splits: 4 as never })).toThrow(/splits must be 2 or 3, got 4/);
      w[5] = Number.NaN;
      expect(() => packF32Split(w, 3, 4, { name: "blk.q" })).toThrow(/non-finite value NaN at flat index 5/);
      w[5] = 3.4e38;
      try {
        packF32Split(w, 3, 4, { name: "blk.q" });
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(KernelsError);
        expect((e as Error).message).toMatch(/blk\.q\.weight.*rounds to ±Inf in bf16|rounds to ±Inf in bf16.*blk\.q/);
      }
      w[5] = 0.5;
      expect(() => packF32Split(w, 4, 4)).toThrow(/needs 16 elements, got 12/);
      const p = packF32Split(w, 3, 4);
      const short: PackedF32Split = { ...p, wsplit: p.wsplit.subarray(1) };
      expect(() => gemmF32Split(new Float32Array(8), 2, short)).toThrow(KernelsError);
      expect(() => gemmF32Split(new Float32Array(7), 2, p)).toThrow(/needs 8 elements, got 7/);
      expect(() => gemmF32Split(new Float32Array(8), 2, p, { out: new Float32Array(5) })).toThrow(/needs 6 elements/);
      expect(() => gemmF32Split(new Float32Array(8), 2, packF32(w, 3, 4) as never)).toThrow(/PackedF32Split/);
    });
  });

  describePaths("split-bf16 f32 GEMM", info, (isa, useIsa) => {
    it("gemmF32Split: 3 and 2 parts, bias and GELU within their bounds of the float64 product (ragged shapes)", () => {
      useIsa();
      const r = rng(0x5b12);
      for (const [M, K, N, gelu] of [
        ...RAGGED_GEMM_SHAPES,
        [32, 64, 32, false],
        // two slabs of X (192 rows), K blocks of 768 (partial sums between them), ragged tiles, GELU epilogue
        [230, 1000, 77, true],
        // more tasks than columns blocks: rows split inside a slab
        [97, 96, 40, false],
      ] as const) {
        const { x, w, bias } = gemmInputs(r, M, K, N, 1 / Math.sqrt(K), N % 2 === 1);
        for (const S of [3, 2] as const) {
          const p = packF32Split(w, N, K, { splits: S, bias });
          const out = new Float32Array(M * N).fill(Number.NaN); // poisoned: every element must be written
          gemmF32Split(x, M, p, { gelu, out });
          const e = scaledError(out, x, w, bias, M, K, N, gelu);
          expect(e, `S=${S} M=${M} K=${K} N=${N}`).toBeLessThanOrEqual(BOUND[S]);
        }
      }
    });

    it("gemmF32Split with 3 parts: off AMX, bit-identical to gemmF32 on the same weight (the parts rebuild W)", () => {
      useIsa();
      if (f32SplitInfo().amx) return; // on the tile path the products differ in rounding: covered above
      const r = rng(0x5b13);
      for (const [M, K, N] of [
        [9, 200, 31],
        [70, 777, 50],
      ] as const) {
        const { x, w, bias } = gemmInputs(r, M, K, N, 0.2);
        const a = gemmF32Split(x, M, packF32Split(w, N, K, { bias }));
        const b = gemmF32(x, M, packF32(w, N, K, { bias }));
        if (info.native) expect(Array.from(a)).toEqual(Array.from(b));
        else expect(scaledError(a, x, w, bias, M, K, N, false)).toBeLessThanOrEqual(1e-7);
      }
    });

    it("attentionF32 (split tiles on amx: Dh a multiple of 32, Skv ≤ 8192) matches the float64 reference", () => {
      useIsa();
      const r = rng(0x5b14);
      for (const [B, Sq, Skv, H, Dh, withBias] of [
        [1, 1, 1, 1, 32, false],
        [2, 70, 333, 3, 64, true], // two query tasks (64 + 6), keys padded to 352, key bias with masked keys
        [1, 150, 300, 2, 128, false],
        [1, 3, 8193, 1, 32, true], // over the split kernel's key limit: the AVX-512/scalar kernels
        [1, 9, 40, 2, 48, false], // Dh not a multiple of 32: the AVX-512/scalar kernels
      ] as const) {
        const { q, k, v, bias } = attentionInputs(r, { B, Sq, Skv, H, Dh, withBias });
        const out = attentionF32(q, k, v, { B, Sq, Skv, heads: H, headDim: Dh, bias });
        const want = reference.refAttention(q, k, v, B, Sq, Skv, H, Dh, bias);
        // worst seen on the dev Xeon: 1.1e-6 of max |out| (amx and avx512 alike)
        expect(
          worst(out, want, 4e-6 * maxAbs(want) + 1e-7),
          `B=${B} Sq=${Sq} Skv=${Skv} H=${H} Dh=${Dh}`,
        ).toBeLessThanOrEqual(1);
        if (info.native && isa === "amx" && f32SplitInfo().amx && Dh % 32 === 0 && Skv <= 8192 && Sq > 1) {
          // a different kernel ran: the AVX-512 kernel's result is not bit-identical
          setIsa("avx512");
          const other = attentionF32(q, k, v, { B, Sq, Skv, heads: H, headDim: Dh, bias });
          setIsa(isa);
          expect(Array.from(out)).not.toEqual(Array.from(other));
        }
      }
    });

    it("reports whether it runs on AMX-BF16 tiles", () => {
      useIsa();
      const s = f32SplitInfo();
      expect(s.amx).toBe(info.native && isa === "amx" && s.amxBf16);
    });
  });
}
