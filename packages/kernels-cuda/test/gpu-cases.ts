// GPU correctness cases, shared by test/cuda.test.ts (vitest, skipped without a GPU) and the device runner
// (tools/cuda-device-check.ts, bundled and run on the GPU machine). Each case throws with a message on failure
// and returns a one-line summary on success.
import { packW4A4Scales, packW4A4Weight } from "@svdquant/int4";
import {
  type CodeFormat,
  codeBytes,
  DeviceBuffer,
  type Dtype16,
  decodeE4M3,
  gemmCublas,
  gemmCublasInt8,
  gemmW4A4,
  gemmW4A4Next,
  padM,
  type QuantizedAct,
  quantizeAct,
  repackWeightWg,
  synchronize,
  unpackActCodes,
} from "../src/index.ts";
import { dec, enc, gemmRef, loraDownRef, quantizeRef, Rng, relErr, round16 } from "./reference.ts";

function assert(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

const u16 = (b: Uint8Array): Uint16Array => new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);

export interface QuantCase {
  dtype: Dtype16;
  M: number;
  K: number;
  R: number;
  unsigned: boolean;
  smooth: boolean;
  format: CodeFormat;
  seed: number;
}

/** Kernel 1 vs the float64 reference: codes, 16-bit scales, lora_act; poisoned outputs, padded rows zero. */
export function checkQuantize(c: QuantCase): string {
  const { dtype, M, K, R, unsigned } = c;
  const rng = new Rng(c.seed);
  const x = rng.halfs(dtype, M * K, 1.5, unsigned ? 0.3 : 0);
  // a few outliers per row, as in diffusion activations (SVDQuant §3)
  for (let i = 0; i < M; i++) x[i * K + rng.int(0, K - 1)] = enc(dtype, 20 * rng.normal());
  const smooth = c.smooth ? Uint16Array.from({ length: K }, () => enc(dtype, 0.5 + 1.5 * rng.next())) : undefined;
  const down = R > 0 ? rng.halfs(dtype, R * K, 0.05) : undefined;
  const Mp = padM(M);
  const bx = DeviceBuffer.from(x);
  const bs = smooth ? DeviceBuffer.from(smooth) : undefined;
  const bd = down ? DeviceBuffer.from(down) : undefined;
  const codes = new DeviceBuffer(codeBytes(c.format, Mp, K));
  const ascales = new DeviceBuffer(Mp * (K / 64) * 2);
  const loraAct = R > 0 ? new DeviceBuffer(Mp * R * 4) : undefined;
  codes.fill(0xff);
  ascales.fill(0xff);
  loraAct?.fill(0xff);
  try {
    const format = c.format;
    quantizeAct({
      dtype,
      M,
      K,
      R,
      x: bx,
      smooth: bs,
      loraDown: bd,
      actUnsigned: unsigned,
      codes,
      ascales,
      loraAct,
      format,
    });
    synchronize();
    const ref = quantizeRef(dtype, x, M, K, smooth, unsigned);
    const gotBytes = codes.download();
    const got = unpackActCodes(gotBytes, M, K, unsigned, format);
    for (let i = 0; i < M * K; i++) {
      assert(got[i] === ref.codes[i], `code [${Math.floor(i / K)}, ${i % K}] is ${got[i]}, reference ${ref.codes[i]}`);
    }
    const padCodes = unpackActCodes(gotBytes, Mp, K, unsigned, format);
    for (let i = M * K; i < Mp * K; i++) assert(padCodes[i] === 0, `padded row code ${i} is ${padCodes[i]}`);
    const sc = u16(ascales.download());
    const G = K / 64;
    for (let m = 0; m < Mp; m++)
      for (let g = 0; g < G; g++) {
        const v = dec(dtype, sc[g * Mp + m]);
        if (m >= M) {
          assert(v === 0, `padded row ${m} scale is ${v}`);
          continue;
        }
        const r = ref.scales[m * G + g];
        assert(v === r, `scale [${m}, ${g}] = ${v}, reference ${r}`);
      }
    let loraMsg = "";
    if (R > 0 && down && loraAct) {
      const la = loraAct.downloadF32();
      const lref = loraDownRef(dtype, x, M, K, down, R);
      const e = relErr(la.subarray(0, M * R), lref);
      assert(e <= 1e-3, `lora_act relative error ${e.toExponential(2)} > 1e-3`);
      for (let i = M * R; i < Mp * R; i++) assert(la[i] === 0, `padded lora_act[${i}] = ${la[i]}`);
      loraMsg = `, lora_act rel err ${e.toExponential(2)}`;
    }
    return `quantize ${dtype} ${format} M=${M} K=${K} R=${R} ${unsigned ? "unsigned" : "signed"}: codes and scales exact${loraMsg}`;
  } finally {
    for (const b of [bx, bs, bd, codes, ascales, loraAct]) b?.free();
  }
}

export interface GemmCase {
  dtype: Dtype16;
  M: number;
  N: number;
  K: number;
  R: number;
  unsigned: boolean;
  bias: boolean;
  gelu: boolean;
  format: CodeFormat;
  blockM?: number;
  /** also repack the weights for the sm_90a wgmma GEMM (repackWeightWg) and pass them: that path runs on sm_90 */
  wg?: boolean;
  seed: number;
}

/**
 * The "wg" layouts, written from their definition in kernels/cuda/svdq_cuda.h (independently of the CUDA repack
 * kernel): chunk (nt, kt) of 8192 bytes holds rows n = 0..127 of 64 bytes; logical byte kb = 32s + 16h + c of row n
 * is w[nt*128 + n][kt*64 + 32s + 8(c/4) + 2(c%4) + h], stored at n*64 + 16((kb/16) xor ((n/2)%4)) + kb%16 (64-byte
 * swizzle); scale (nt, kt, hf, t, j, e) = s_w[nt*128 + hf*64 + 8j + 2t + e][kt].
 */
export function wgLayoutRef(qw: Int8Array, sw: Float64Array, N: number, K: number): { q: Int8Array; s: Float64Array } {
  const KT = K / 64;
  const q = new Int8Array(N * K);
  const s = new Float64Array(N * KT);
  for (let nt = 0; nt < N / 128; nt++)
    for (let kt = 0; kt < KT; kt++) {
      const base = (nt * KT + kt) * 8192;
      for (let n = 0; n < 128; n++)
        for (let kb = 0; kb < 64; kb++) {
          const st = kb >> 5;
          const h = (kb >> 4) & 1;
          const c = kb & 15;
          const k = kt * 64 + 32 * st + 8 * (c >> 2) + 2 * (c & 3) + h;
          q[base + n * 64 + 16 * ((kb >> 4) ^ ((n >> 1) & 3)) + (kb & 15)] = qw[(nt * 128 + n) * K + k];
        }
      const sb = (nt * KT + kt) * 128;
      for (let hf = 0; hf < 2; hf++)
        for (let t = 0; t < 4; t++)
          for (let j = 0; j < 8; j++)
            for (let e = 0; e < 2; e++)
              s[sb + hf * 64 + t * 16 + j * 2 + e] = sw[(nt * 128 + hf * 64 + 8 * j + 2 * t + e) * KT + kt];
    }
  return { q, s };
}

/** Kernels 1+2 vs float64: GEMM on the device's own codes (exact contract), and end to end from x. */
/** Random inputs of a GEMM case (host arrays) in a fixed draw order: x, int4 weights, their scales, L_down, L_up, bias. */
function drawGemmInputs(c: Omit<GemmCase, "format" | "seed">, rng: Rng) {
  const { dtype, M, N, K, R, unsigned } = c;
  return {
    x: rng.halfs(dtype, M * K, 1, unsigned ? 0.2 : 0),
    qw: Int8Array.from({ length: N * K }, () => rng.int(-8, 7)),
    swBits: Uint16Array.from({ length: N * (K / 64) }, () => enc(dtype, (0.02 + 0.02 * rng.next()) / 8)),
    down: R > 0 ? rng.halfs(dtype, R * K, 0.05) : undefined,
    up: R > 0 ? rng.halfs(dtype, N * R, 0.05) : undefined,
    bias: c.bias ? rng.halfs(dtype, N, 0.1) : undefined,
  };
}

/** Uploads drawGemmInputs' arrays (weights in the checkpoint layouts); `keep` records each buffer for freeing. */
function uploadGemmInputs(
  h: ReturnType<typeof drawGemmInputs>,
  N: number,
  K: number,
  keep: <T extends DeviceBuffer | undefined>(b: T) => T,
) {
  return {
    bx: keep(DeviceBuffer.from(h.x)),
    bqw: keep(DeviceBuffer.from(packW4A4Weight(h.qw, N, K))),
    bsw: keep(DeviceBuffer.from(packW4A4Scales(h.swBits, N, K / 64))),
    bd: keep(h.down ? DeviceBuffer.from(h.down) : undefined),
    bu: keep(h.up ? DeviceBuffer.from(h.up) : undefined),
    bb: keep(h.bias ? DeviceBuffer.from(h.bias) : undefined),
  };
}

/**
 * The GEMM output `out` (downloaded, every element written and finite) against float64 on the device's own codes,
 * scales and lora_act (lora_act rounded to 16 bits, as the tensor-core epilogue consumes it): rel. err. <= 1e-2.
 */
function checkOutOnDeviceCodes(
  c: Omit<GemmCase, "seed">,
  host: ReturnType<typeof drawGemmInputs>,
  act: QuantizedAct,
  out: DeviceBuffer,
): { got: Float64Array; sw: Float64Array; e1: number } {
  const { dtype, M, N, K, R, unsigned } = c;
  const G = K / 64;
  const Mp = padM(M);
  const got = Float64Array.from(u16(out.download()), (b) => dec(dtype, b));
  for (let i = 0; i < got.length; i++)
    assert(Number.isFinite(got[i]), `out[${Math.floor(i / N)}, ${i % N}] unwritten/NaN`);
  const qa = unpackActCodes(act.codes.download(), M, K, unsigned, c.format);
  const sc = u16(act.ascales.download());
  const sa = new Float64Array(M * G);
  for (let m = 0; m < M; m++) for (let g = 0; g < G; g++) sa[m * G + g] = dec(dtype, sc[g * Mp + m]);
  const sw = Float64Array.from(host.swBits, (b) => dec(dtype, b));
  const la = act.loraAct ? Float64Array.from(act.loraAct.downloadF32(M * R), (v) => round16(dtype, v)) : undefined;
  const e1 = relErr(got, gemmRef(dtype, M, N, K, qa, sa, host.qw, sw, la, host.up, R, host.bias, c.gelu));
  assert(e1 <= 1e-2, `GEMM vs float64 on the device's codes: rel err ${e1.toExponential(2)} > 1e-2`);
  return { got, sw, e1 };
}

export function checkGemm(c: GemmCase): string {
  const { dtype, M, N, K, R, unsigned } = c;
  const G = K / 64;
  const rng = new Rng(c.seed);
  const host = drawGemmInputs(c, rng);
  const { x, qw, swBits, down, up, bias } = host;
  const bufs: (DeviceBuffer | undefined)[] = [];
  const keep = <T extends DeviceBuffer | undefined>(b: T): T => {
    bufs.push(b);
    return b;
  };
  try {
    const { bx, bqw, bsw, bd, bu, bb } = uploadGemmInputs(host, N, K, keep);
    const out = keep(new DeviceBuffer(M * N * 2));
    out.fill(0xff); // NaN in bf16 and f16: any unwritten element fails the check
    const act = quantizeAct({ dtype, M, K, R, x: bx, loraDown: bd, actUnsigned: unsigned, format: c.format });
    keep(act.codes);
    keep(act.ascales);
    keep(act.loraAct);
    let wgMsg = "";
    const wg = c.wg ? repackWeightWg({ dtype, N, K, qweight: bqw, wscales: bsw }) : undefined;
    if (wg) {
      keep(wg.qweight);
      keep(wg.wscales);
      const want = wgLayoutRef(
        qw,
        Float64Array.from(swBits, (b) => dec(dtype, b)),
        N,
        K,
      );
      const gq = wg.qweight.download();
      for (let i = 0; i < want.q.length; i++)
        assert(decodeE4M3(gq[i]) === want.q[i], `wg qweight byte ${i}: e4m3 0x${gq[i].toString(16)} != ${want.q[i]}`);
      const gs = wg.wscales.downloadF32(N * G);
      for (let i = 0; i < want.s.length; i++) assert(gs[i] === want.s[i], `wg wscales[${i}]: ${gs[i]} != ${want.s[i]}`);
      wgMsg = " wg (repack exact)";
    }
    gemmW4A4({
      wg,
      dtype,
      act,
      N,
      qweight: bqw,
      wscales: bsw,
      loraUp: bu,
      bias: bb,
      gelu: c.gelu,
      blockM: c.blockM,
      out,
    });
    synchronize();
    // (a) the GEMM contract on the device's own codes, scales and lora_act
    const { got, sw, e1 } = checkOutOnDeviceCodes(c, host, act, out);
    // (b) end to end from x through the float64 quantizer and low-rank reference
    const q = quantizeRef(dtype, x, M, K, undefined, unsigned);
    const laRef = down ? loraDownRef(dtype, x, M, K, down, R) : undefined;
    const ref2 = gemmRef(dtype, M, N, K, q.codes, q.scales, qw, sw, laRef, up, R, bias, c.gelu);
    const e2 = relErr(got, ref2);
    assert(e2 <= 1e-2, `end-to-end vs float64: rel err ${e2.toExponential(2)} > 1e-2`);
    return `gemm ${dtype} ${c.format} M=${M} N=${N} K=${K} R=${R}${unsigned ? " u4" : ""}${c.bias ? " bias" : ""}${c.gelu ? " gelu" : ""} bm=${c.blockM ?? "auto"}${wgMsg}: rel err ${e1.toExponential(2)} (codes), ${e2.toExponential(2)} (end to end)`;
  } finally {
    for (const b of bufs) b?.free();
  }
}

export interface GemmNextCase extends GemmCase {
  /** the next layer's quantization: rank, signedness, format, smoothing */
  nextR: number;
  nextUnsigned: boolean;
  nextFormat: CodeFormat;
  nextSmooth: boolean;
}

/**
 * The GEMM with its output quantized for the next layer (gemmW4A4Next) vs the oracle: kernel 1 (quantizeAct, itself
 * checked against float64 above) run on the GEMM's written 16-bit output with the same next-layer parameters. Codes
 * and scales must be byte-identical over all Mp rows (padded rows zero), lora_act equal up to f32 summation order.
 * Every next output is poisoned first; the output itself is checked against float64 too.
 */
export function checkGemmNext(c: GemmNextCase): string {
  const { dtype, M, N, K, R, unsigned } = c;
  const rng = new Rng(c.seed);
  const host = drawGemmInputs(c, rng);
  const nSmooth = c.nextSmooth ? Uint16Array.from({ length: N }, () => enc(dtype, 0.5 + 1.5 * rng.next())) : undefined;
  const nDown = c.nextR > 0 ? rng.halfs(dtype, c.nextR * N, 0.05) : undefined;
  const Mp = padM(M);
  const bufs: (DeviceBuffer | undefined)[] = [];
  const keep = <T extends DeviceBuffer | undefined>(b: T): T => {
    bufs.push(b);
    return b;
  };
  try {
    const { bx, bqw, bsw, bd, bu, bb } = uploadGemmInputs(host, N, K, keep);
    const bns = keep(nSmooth ? DeviceBuffer.from(nSmooth) : undefined);
    const bnd = keep(nDown ? DeviceBuffer.from(nDown) : undefined);
    const out = keep(new DeviceBuffer(M * N * 2));
    const nCodes = keep(new DeviceBuffer(codeBytes(c.nextFormat, Mp, N)));
    const nScales = keep(new DeviceBuffer(Mp * (N / 64) * 2));
    const nLora = keep(c.nextR > 0 ? new DeviceBuffer(Mp * c.nextR * 4) : undefined);
    for (const b of [out, nCodes, nScales, nLora]) b?.fill(0xff); // NaN / out-of-range bytes if left unwritten
    const act = quantizeAct({ dtype, M, K, R, x: bx, loraDown: bd, actUnsigned: unsigned, format: c.format });
    keep(act.codes);
    keep(act.ascales);
    keep(act.loraAct);
    // f8 codes run on the wgmma GEMM, which reads the repacked weights
    const wg = c.format === "f8" ? repackWeightWg({ dtype, N, K, qweight: bqw, wscales: bsw }) : undefined;
    keep(wg?.qweight);
    keep(wg?.wscales);
    const r = gemmW4A4Next({
      dtype,
      act,
      N,
      qweight: bqw,
      wscales: bsw,
      wg,
      loraUp: bu,
      bias: bb,
      gelu: c.gelu,
      blockM: c.blockM,
      out,
      next: {
        R: c.nextR,
        smooth: bns,
        loraDown: bnd,
        actUnsigned: c.nextUnsigned,
        format: c.nextFormat,
        codes: nCodes,
        ascales: nScales,
        loraAct: nLora,
      },
    });
    assert(r.out === out && r.next.codes === nCodes && r.next.K === N && r.next.R === c.nextR, "returned buffers");
    synchronize();
    // the output itself, vs float64 on the device's codes
    const { e1 } = checkOutOnDeviceCodes(c, host, act, out);
    // the oracle: kernel 1 on the written output
    const want = quantizeAct({
      dtype,
      M,
      K: N,
      R: c.nextR,
      x: out,
      smooth: bns,
      loraDown: bnd,
      actUnsigned: c.nextUnsigned,
      format: c.nextFormat,
    });
    keep(want.codes);
    keep(want.ascales);
    keep(want.loraAct);
    synchronize();
    const gc = nCodes.download();
    const wc = want.codes.download();
    const tileBytes = { s8: 1024, s4: 512, f8: 8192 }[c.nextFormat];
    for (let i = 0; i < wc.length; i++)
      assert(
        gc[i] === wc[i],
        `next codes byte ${i} (row tile ${Math.floor(i / tileBytes / (N / 64))}, group ${Math.floor(i / tileBytes) % (N / 64)}): ${gc[i]}, kernel 1 ${wc[i]}`,
      );
    const gs = u16(nScales.download());
    const ws = u16(want.ascales.download());
    for (let i = 0; i < ws.length; i++)
      assert(gs[i] === ws[i], `next scale [group ${Math.floor(i / Mp)}, row ${i % Mp}]: ${gs[i]}, kernel 1 ${ws[i]}`);
    // padded rows are zero (kernel 1's contract, checked here on the GEMM's own output as well)
    const padCodes = unpackActCodes(gc, Mp, N, c.nextUnsigned, c.nextFormat);
    for (let i = M * N; i < Mp * N; i++) assert(padCodes[i] === 0, `padded row next code ${i} is ${padCodes[i]}`);
    let loraMsg = "";
    if (c.nextR > 0 && nLora && want.loraAct) {
      const gl = nLora.downloadF32();
      const wl = want.loraAct.downloadF32();
      const e = relErr(gl.subarray(0, M * c.nextR), wl.subarray(0, M * c.nextR));
      assert(e <= 1e-5, `next lora_act vs kernel 1: rel err ${e.toExponential(2)} > 1e-5`);
      for (let i = M * c.nextR; i < Mp * c.nextR; i++) assert(gl[i] === 0, `padded next lora_act[${i}] = ${gl[i]}`);
      loraMsg = `, next lora_act rel err ${e.toExponential(2)}`;
    }
    return `gemm+next ${dtype} ${c.format} M=${M} N=${N} K=${K} R=${R}${c.gelu ? " gelu" : ""} bm=${c.blockM ?? "auto"} -> ${c.nextFormat} ${c.nextUnsigned ? "u4" : "s4"} R'=${c.nextR}${c.nextSmooth ? " smooth" : ""}: out rel err ${e1.toExponential(2)}, next codes and scales identical to kernel 1${loraMsg}`;
  } finally {
    for (const b of bufs) b?.free();
  }
}

/** cuBLAS peer vs float64. */
export function checkCublas(dtype: Dtype16, M: number, N: number, K: number, seed: number): string {
  const rng = new Rng(seed);
  const x = rng.halfs(dtype, M * K);
  const w = rng.halfs(dtype, N * K, 0.05);
  const bx = DeviceBuffer.from(x);
  const bw = DeviceBuffer.from(w);
  const out = new DeviceBuffer(M * N * 2);
  out.fill(0xff);
  try {
    gemmCublas({ dtype, M, N, K, x: bx, w: bw, out });
    synchronize();
    const got = Float64Array.from(u16(out.download()), (b) => dec(dtype, b));
    const ref = new Float64Array(M * N);
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += dec(dtype, x[m * K + k]) * dec(dtype, w[n * K + k]);
        ref[m * N + n] = s;
      }
    const e = relErr(got, ref);
    assert(e <= 1e-2, `cuBLAS rel err ${e.toExponential(2)}`);
    return `cublas ${dtype} M=${M} N=${N} K=${K}: rel err ${e.toExponential(2)}`;
  } finally {
    bx.free();
    bw.free();
    out.free();
  }
}

/** The cuBLAS INT8 peer vs an exact integer reference (full int8 range, so the int32 sums are exact too). */
export function checkCublasInt8(M: number, N: number, K: number, seed: number): string {
  const rng = new Rng(seed);
  const x = Int8Array.from({ length: M * K }, () => rng.int(-128, 127));
  const w = Int8Array.from({ length: N * K }, () => rng.int(-128, 127));
  const bx = DeviceBuffer.from(x);
  const bw = DeviceBuffer.from(w);
  const out = new DeviceBuffer(M * N * 4);
  out.fill(0x7f);
  try {
    gemmCublasInt8({ M, N, K, x: bx, w: bw, out });
    synchronize();
    const got = new Int32Array(out.download().buffer);
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
        assert(got[m * N + n] === s, `cuBLAS INT8 out[${m}, ${n}] = ${got[m * N + n]}, want ${s}`);
      }
    return `cublas int8 M=${M} N=${N} K=${K}: exact`;
  } finally {
    bx.free();
    bw.free();
    out.free();
  }
}

/** The case list: random shapes from a seeded PRNG, M not a multiple of any tile included. */
export function quantCases(): QuantCase[] {
  const rng = new Rng(1234);
  const out: QuantCase[] = [];
  for (const dtype of ["bf16", "f16"] as const)
    for (const R of [0, 16, 32, 64])
      for (const unsigned of [false, true]) {
        out.push({
          dtype,
          M: rng.int(1, 300),
          K: 64 * rng.int(1, 12),
          R,
          unsigned,
          smooth: rng.next() < 0.5,
          format: (["s8", "s4", "f8"] as const)[out.length % 3],
          seed: rng.int(0, 1e9),
        });
      }
  return out;
}

export function gemmCases(): GemmCase[] {
  const rng = new Rng(5678);
  const out: GemmCase[] = [];
  for (const format of ["s8", "s4"] as const)
    for (const dtype of ["bf16", "f16"] as const)
      for (const blockM of [undefined, 32, 64, 128])
        for (const unsigned of [false, true]) {
          out.push({
            dtype,
            M: rng.int(1, 290),
            N: 128 * rng.int(1, 3),
            K: 64 * rng.int(1, 8),
            R: [0, 16, 32, 64][rng.int(0, 3)],
            unsigned,
            bias: rng.next() < 0.6,
            gelu: rng.next() < 0.4,
            format,
            blockM,
            seed: rng.int(0, 1e9),
          });
        }
  return out;
}

/**
 * Cases of the next-layer epilogue: every GEMM code format (f8: the wgmma path) x both dtypes x every block_m, M not a multiple of any
 * tile (77, 200) or random, each case a different mix of next format, signedness (unsigned with GELU, as after an
 * MLP's first layer), smoothing and next rank (0, 32).
 */
export function gemmNextCases(): GemmNextCase[] {
  const rng = new Rng(3456);
  const out: GemmNextCase[] = [];
  let i = 0;
  for (const format of ["s8", "s4", "f8"] as const)
    for (const dtype of ["bf16", "f16"] as const)
      for (const blockM of format === "f8" ? [64, 128] : [32, 64, 128]) {
        const nextUnsigned = (i & 1) === 1;
        out.push({
          dtype,
          M: [77, 200, rng.int(1, 300)][(i >> 1) % 3],
          N: 128 * rng.int(1, 3),
          K: 64 * rng.int(1, 6),
          R: [0, 32][rng.int(0, 1)],
          unsigned: rng.next() < 0.3,
          bias: rng.next() < 0.7,
          gelu: nextUnsigned || rng.next() < 0.3,
          format,
          blockM,
          nextR: [0, 32][(i >> 1) & 1],
          nextUnsigned,
          // the f8 GEMM cases chain into f8 (the fast path) and s8; the others into all three formats
          nextFormat: format === "f8" ? (["f8", "s8"] as const)[i % 2] : (["s8", "s4", "f8"] as const)[(i >> 2) % 3],
          nextSmooth: i % 3 !== 1,
          seed: rng.int(0, 1e9),
        });
        i++;
      }
  return out;
}

/**
 * Cases of the sm_90a wgmma GEMM ("f8" codes + repacked weights): both tile heights, K from one group (the peeled
 * last step only) to more groups than pipeline stages (stage reuse), M across several row tiles.
 */
export function gemmWgCases(): GemmCase[] {
  const rng = new Rng(9012);
  const out: GemmCase[] = [];
  const Ks = [64, 128, 192, 64 * 9, 64 * 17, 64 * 40];
  for (const dtype of ["bf16", "f16"] as const)
    for (const blockM of [undefined, 64, 128, 64])
      for (const unsigned of [false, true])
        out.push({
          dtype,
          M: rng.int(1, 300),
          N: 128 * rng.int(1, 3),
          K: Ks[rng.int(0, Ks.length - 1)],
          R: [0, 16, 32, 64][rng.int(0, 3)],
          unsigned,
          bias: rng.next() < 0.6,
          gelu: rng.next() < 0.4,
          format: "f8",
          blockM,
          wg: true,
          seed: rng.int(0, 1e9),
        });
  for (const K of Ks)
    for (const blockM of [64, 128])
      out.push({
        dtype: "bf16",
        M: 200,
        N: 256,
        K,
        R: 32,
        unsigned: false,
        bias: true,
        gelu: false,
        format: "f8",
        blockM,
        wg: true,
        seed: K + blockM,
      });
  return out;
}
