// Cross-check of the CUDA kernels against the CPU kernels of @svdquant/kernels (native addon, AVX2 or scalar): the
// same random inputs go through both, and the two outputs must agree (each is also checked against float64 in
// gpu-cases.ts). Used by the device runner (bench/device-run.ts `cross`) and by test/cuda.test.ts on a GPU.
import { packW4A4Scales, packW4A4Weight } from "@svdquant/int4";
import { backendInfo, gemmW4A4 as cpuGemmW4A4, quantizeActivations as cpuQuantize, packW4A4 } from "@svdquant/kernels";
import {
  DeviceBuffer,
  GELU_SHIFT,
  gemmW4A4,
  quantizeAct,
  repackWeightWg,
  synchronize,
  unpackActCodes,
} from "../src/index.ts";
import type { GemmCase } from "./gpu-cases.ts";
import { dec, enc, Rng, relErr } from "./reference.ts";

const u16 = (b: Uint8Array): Uint16Array => new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);

/** Which CPU kernels answer (native ISA or the TypeScript fallback). */
export function cpuBackend(): string {
  const b = backendInfo();
  return b.native ? `native ${b.isa}, ${b.threads} threads` : `TypeScript fallback (${b.reason})`;
}

/**
 * One layer (quantize + W4A4 GEMM + low-rank + bias [+ GELU]) through the CUDA kernels and through the CPU kernels
 * on the same inputs. Compares the activation codes (share of equal codes: scales are 16-bit on the GPU and f32 on
 * the CPU, so a code can differ by one at a rounding boundary) and the outputs (relative error).
 */
export function checkCrossCpu(c: GemmCase): string {
  const { dtype, M, N, K, R, unsigned } = c;
  const G = K / 64;
  const rng = new Rng(c.seed);
  const x = rng.halfs(dtype, M * K, 1, unsigned ? 0.2 : 0);
  // unsigned codes are for inputs >= -shift (GELU outputs): there both kernels take amax = max(x + shift); below
  // -shift the CUDA kernel uses max|x + shift| and the CPU one max(x + shift), so keep the inputs in the domain
  if (unsigned) for (let i = 0; i < x.length; i++) x[i] = enc(dtype, Math.max(dec(dtype, x[i]), -0.17));
  const qw = Int8Array.from({ length: N * K }, () => rng.int(-8, 7));
  const swBits = Uint16Array.from({ length: N * G }, () => enc(dtype, (0.02 + 0.02 * rng.next()) / 8));
  const down = R > 0 ? rng.halfs(dtype, R * K, 0.05) : undefined;
  const up = R > 0 ? rng.halfs(dtype, N * R, 0.05) : undefined;
  const bias = c.bias ? rng.halfs(dtype, N, 0.1) : undefined;
  const f32 = (b: Uint16Array): Float32Array => Float32Array.from(b, (v) => dec(dtype, v));
  // CPU
  const format = unsigned ? "uint4" : "int4";
  const cact = cpuQuantize(dtype === "bf16" ? x : f32(x), M, K, {
    lowRankDown: down ? f32(down) : undefined,
    rank: R || undefined,
    format,
    shift: unsigned ? GELU_SHIFT : 0,
  });
  const packed = packW4A4({ codes: qw, scales: f32(swBits), spec: { format: "int4", groupSize: 64 } }, N, K, {
    lowRankUp: up ? f32(up) : undefined,
    rank: R || undefined,
    bias: bias ? f32(bias) : undefined,
  });
  const cy = cpuGemmW4A4(cact, packed, { gelu: c.gelu }).y;
  // CUDA
  const bufs: (DeviceBuffer | undefined)[] = [];
  const keep = <T extends DeviceBuffer | undefined>(b: T): T => {
    bufs.push(b);
    return b;
  };
  try {
    const bqw = keep(DeviceBuffer.from(packW4A4Weight(qw, N, K)));
    const bsw = keep(DeviceBuffer.from(packW4A4Scales(swBits, N, G)));
    const act = quantizeAct({
      dtype,
      M,
      K,
      R,
      x: keep(DeviceBuffer.from(x)),
      loraDown: keep(down ? DeviceBuffer.from(down) : undefined),
      actUnsigned: unsigned,
      format: c.format,
    });
    keep(act.codes);
    keep(act.ascales);
    keep(act.loraAct);
    const wg = c.wg ? repackWeightWg({ dtype, N, K, qweight: bqw, wscales: bsw }) : undefined;
    keep(wg?.qweight);
    keep(wg?.wscales);
    const out = keep(new DeviceBuffer(M * N * 2));
    out.fill(0xff);
    gemmW4A4({
      dtype,
      act,
      N,
      qweight: bqw,
      wscales: bsw,
      loraUp: keep(up ? DeviceBuffer.from(up) : undefined),
      bias: keep(bias ? DeviceBuffer.from(bias) : undefined),
      gelu: c.gelu,
      out,
      wg,
    });
    synchronize();
    const gy = Float64Array.from(u16(out.download()), (b) => dec(dtype, b));
    const gcodes = unpackActCodes(act.codes.download(), M, K, unsigned, c.format);
    let same = 0;
    let maxd = 0;
    for (let i = 0; i < M * K; i++) {
      const d = Math.abs(gcodes[i] - cact.codes[i]);
      if (d === 0) same++;
      maxd = Math.max(maxd, d);
    }
    const e = relErr(gy, cy);
    // a code may differ by one where x/s sits at a rounding boundary (16-bit scales on the GPU, f32 on the CPU);
    // each such code moves the output by up to s_x·s_w·|w|, hence a looser bound for bf16 (8-bit mantissa scales)
    const tol = dtype === "bf16" ? 3e-2 : 1.5e-2;
    if (!(e <= tol)) throw new Error(`CUDA vs CPU output rel err ${e.toExponential(2)} > ${tol}`);
    if (maxd > 1) throw new Error(`CUDA vs CPU activation codes differ by ${maxd} (> 1)`);
    if (same < 0.99 * M * K) throw new Error(`only ${same}/${M * K} activation codes agree with the CPU kernel`);
    return `cross ${dtype} ${c.format}${c.wg ? " wg" : ""} M=${M} N=${N} K=${K} R=${R}${unsigned ? " u4" : ""}${c.gelu ? " gelu" : ""}: CUDA vs CPU out rel err ${e.toExponential(2)}, codes equal ${((100 * same) / (M * K)).toFixed(3)}%`;
  } finally {
    for (const b of bufs) b?.free();
  }
}

/** The cross-check cases: both code formats and the wgmma path, both dtypes, signed and unsigned. */
export function crossCases(): GemmCase[] {
  const rng = new Rng(4321);
  const out: GemmCase[] = [];
  for (const [format, wg] of [
    ["f8", true],
    ["s8", false],
    ["s4", false],
  ] as const)
    for (const dtype of ["bf16", "f16"] as const)
      for (const unsigned of [false, true])
        out.push({
          dtype,
          M: rng.int(1, 200),
          N: 128 * rng.int(1, 2),
          K: 64 * rng.int(1, 12),
          R: [0, 16, 32][rng.int(0, 2)],
          unsigned,
          bias: rng.next() < 0.6,
          gelu: rng.next() < 0.4,
          format,
          wg,
          seed: rng.int(0, 1e9),
        });
  return out;
}
