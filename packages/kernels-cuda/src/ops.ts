import { CudaKernelError } from "./errors.js";
import { loadAddon, type NativeAddon, type NativeDeviceBuffer } from "./native.js";

/** 16-bit activation / output dtype of the kernels. */
export type Dtype16 = "bf16" | "f16";
/**
 * Activation-code format, which also picks the GEMM path: "f8" (FP8 E4M3 fragments for the sm_90a wgmma GEMM, the
 * fast one on Hopper; needs the weights repacked once by {@link repackWeightWg}), "s8" (int8 fragments, IMMA s8
 * mma.sync, sm_90 only, checkpoint weights as they are) or "s4" (4-bit fragments, native mma s4 on sm_80/86/89;
 * runs emulated, slow but exact, on sm_90).
 */
export type CodeFormat = "s8" | "s4" | "f8";

/** Bytes of the activation codes of Mp (padded) rows: 4-bit fragments for "s4", one byte per code otherwise. */
export function codeBytes(format: CodeFormat, Mp: number, K: number): number {
  return format === "s4" ? (Mp * K) / 2 : Mp * K;
}

let defaultFormatCache: CodeFormat | undefined;
/** The fast format on the current device that runs on checkpoint-layout weights ("s8" on sm_90+, else "s4"). */
export function defaultCodeFormat(): CodeFormat {
  defaultFormatCache ??= addon().deviceInfo().defaultFormat ?? "s4";
  return defaultFormatCache;
}

function addon(): NativeAddon {
  const { addon, reason } = loadAddon();
  if (!addon) throw new CudaKernelError("E_NO_ADDON", reason ?? "CUDA addon unavailable");
  return addon;
}

function native<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof CudaKernelError) throw e;
    const msg = (e as Error).message;
    const code = /^(cuda|cublas|dlopen|dlsym)/i.test(msg) ? "E_CUDA" : "E_SHAPE";
    throw new CudaKernelError(code, msg, { cause: e });
  }
}

/** Tokens rounded up to the 128-row tile: the row count of codes, scales and lora_act buffers. */
export function padM(m: number): number {
  return Math.ceil(m / 128) * 128;
}

/**
 * A device allocation owned by this object. Release it with free() (or `using`); an unreleased buffer is freed by
 * the garbage collector, which is late but not leaked.
 */
export class DeviceBuffer {
  readonly native: NativeDeviceBuffer;

  constructor(byteLength: number) {
    if (!Number.isInteger(byteLength) || byteLength <= 0) {
      throw new CudaKernelError("E_SHAPE", `DeviceBuffer: byteLength must be a positive integer, got ${byteLength}`);
    }
    const A = addon();
    this.native = native(() => new A.DeviceBuffer(byteLength));
  }

  /** Allocates a buffer of data.byteLength bytes and uploads data. */
  static from(data: ArrayBufferView): DeviceBuffer {
    const b = new DeviceBuffer(data.byteLength);
    b.upload(data);
    return b;
  }

  get byteLength(): number {
    return this.native.byteLength;
  }
  get freed(): boolean {
    return this.native.freed;
  }
  upload(data: ArrayBufferView, byteOffset = 0): void {
    native(() => this.native.upload(data, byteOffset));
  }
  /** Copies the first `bytes` bytes (default all) back to the host. */
  download(bytes?: number): Uint8Array {
    return new Uint8Array(native(() => this.native.download(bytes)));
  }
  downloadU16(count?: number): Uint16Array {
    return new Uint16Array(this.download(count === undefined ? undefined : count * 2).buffer);
  }
  downloadF32(count?: number): Float32Array {
    return new Float32Array(this.download(count === undefined ? undefined : count * 4).buffer);
  }
  /** Sets every byte to `byte` (used to poison outputs in tests). */
  fill(byte: number): void {
    native(() => this.native.fill(byte));
  }
  free(): void {
    native(() => this.native.free());
  }
  [Symbol.dispose](): void {
    this.free();
  }
}

function need(name: string, b: DeviceBuffer | undefined, bytes: number): void {
  if (b === undefined) throw new CudaKernelError("E_SHAPE", "missing device buffer", { tensor: name });
  if (b.freed) throw new CudaKernelError("E_SHAPE", "device buffer was freed", { tensor: name });
  if (b.byteLength < bytes) {
    throw new CudaKernelError("E_SHAPE", `holds ${b.byteLength} bytes, the shapes need ${bytes}`, { tensor: name });
  }
}

function dims(op: string, d: Record<string, number>): void {
  for (const [k, v] of Object.entries(d)) {
    if (!Number.isInteger(v) || v < 0) throw new CudaKernelError("E_SHAPE", `${op}: ${k}=${v} must be an integer >= 0`);
  }
}

export interface QuantizeActArgs {
  dtype: Dtype16;
  M: number;
  K: number;
  /** Low-rank branch rank: 0, 16, 32 or 64. */
  R: number;
  /** x [M, K] 16-bit, row-major. */
  x: DeviceBuffer;
  /** λ [K] 16-bit smoothing factor; the codes are of x/λ. */
  smooth?: DeviceBuffer;
  /** lora_down [R, K] 16-bit (rank x in), applied to the raw x. */
  loraDown?: DeviceBuffer;
  /** Unsigned codes of (x + 0.171875)/λ in [0, 15] (inputs after GELU), else signed codes in [-8, 7]. */
  actUnsigned?: boolean;
  /** Code format (default: the device's fast one). */
  format?: CodeFormat;
  /** Outputs, allocated when absent: codes (Mp*K or Mp*K/2 bytes), ascales [K/64, Mp] 16-bit, loraAct [Mp, R] f32. */
  codes?: DeviceBuffer;
  ascales?: DeviceBuffer;
  loraAct?: DeviceBuffer;
}

export interface QuantizedAct {
  M: number;
  K: number;
  R: number;
  codes: DeviceBuffer;
  ascales: DeviceBuffer;
  loraAct: DeviceBuffer | undefined;
  actUnsigned: boolean;
  format: CodeFormat;
}

/** Kernel 1: per-token, per-64 INT4 codes of x/λ with 16-bit scales, and lora_act = x · lora_downᵀ, one read of x. */
export function quantizeAct(a: QuantizeActArgs): QuantizedAct {
  const { M, K, R } = a;
  dims("quantizeAct", { M, K, R });
  if (M === 0 || K === 0 || K % 64 !== 0) {
    throw new CudaKernelError("E_SHAPE", `quantizeAct: x [${M}, ${K}]: M > 0 and K a positive multiple of 64 needed`);
  }
  if (![0, 16, 32, 64].includes(R))
    throw new CudaKernelError("E_SHAPE", `quantizeAct: rank R=${R} not in {0,16,32,64}`);
  need("x", a.x, M * K * 2);
  const q = quantTargets("quantizeAct", "", a, M, K);
  const { format, codes, ascales, loraAct } = q;
  native(() =>
    addon().quantizeAct({
      dtype: a.dtype,
      M,
      K,
      R,
      actUnsigned: a.actUnsigned === true,
      format,
      x: a.x.native,
      smooth: a.smooth?.native,
      loraDown: R > 0 ? a.loraDown?.native : undefined,
      codes: codes.native,
      ascales: ascales.native,
      loraAct: loraAct?.native,
    }),
  );
  return q;
}

/**
 * The quantizer's weights and outputs for M rows of K channels (kernel 1, or the GEMM's next-layer epilogue with
 * K = N): checks the given buffers' sizes and the format, allocates missing outputs. Names carry `prefix`.
 */
function quantTargets(op: string, prefix: string, a: NextQuantArgs, M: number, K: number): QuantizedAct {
  const { R } = a;
  const Mp = padM(M);
  if (a.smooth) need(`${prefix}smooth`, a.smooth, K * 2);
  if (R > 0) need(`${prefix}loraDown`, a.loraDown, R * K * 2);
  const format = a.format ?? defaultCodeFormat();
  if (format !== "s8" && format !== "s4" && format !== "f8")
    throw new CudaKernelError("E_SHAPE", `${op}: ${prefix}format ${String(format)} is not "s4", "s8" or "f8"`);
  const nCode = codeBytes(format, Mp, K);
  const codes = a.codes ?? new DeviceBuffer(nCode);
  const ascales = a.ascales ?? new DeviceBuffer(Mp * (K / 64) * 2);
  const loraAct = R > 0 ? (a.loraAct ?? new DeviceBuffer(Mp * R * 4)) : undefined;
  need(`${prefix}codes`, codes, nCode);
  need(`${prefix}ascales`, ascales, Mp * (K / 64) * 2);
  if (loraAct) need(`${prefix}loraAct`, loraAct, Mp * R * 4);
  return { M, K, R, codes, ascales, loraAct, actUnsigned: a.actUnsigned === true, format };
}

export interface GemmW4A4Args {
  dtype: Dtype16;
  act: QuantizedAct;
  N: number;
  /** nunchaku checkpoint layout: N*K/2 bytes (@svdquant/int4's packW4A4Weight). */
  qweight: DeviceBuffer;
  /** nunchaku checkpoint layout: N*K/64 16-bit values (@svdquant/int4's packW4A4Scales). */
  wscales: DeviceBuffer;
  /** lora_up [N, R] 16-bit, row-major; needed when act.R > 0 and useLowRank is not false. */
  loraUp?: DeviceBuffer;
  useLowRank?: boolean;
  bias?: DeviceBuffer;
  gelu?: boolean;
  /** Rows per block: 32, 64 or 128 on the mma.sync path, 64 or 128 on the wgmma path (0/absent: chosen to fill the device). */
  blockM?: number;
  /**
   * The same weights repacked by {@link repackWeightWg}: required with "f8" codes (the sm_90a wgmma GEMM, the fast
   * one on Hopper), ignored with "s8" / "s4" codes.
   */
  wg?: WgWeights;
  /** out [M, N] 16-bit; allocated when absent. */
  out?: DeviceBuffer;
}

/** Kernel 2: out = Σ_groups (codes·qweight) s_x s_w + lora_act · lora_upᵀ + bias, optional GELU, 16-bit out. */
export function gemmW4A4(a: GemmW4A4Args): DeviceBuffer {
  return gemmImpl(a, undefined).out;
}

/**
 * The next layer's quantization parameters for {@link gemmW4A4Next}. The next layer's input is this GEMM's output
 * [M, N], so its K is N.
 *
 * | tensor   | shape / bytes                    | dtype  | layout                                            |
 * |----------|----------------------------------|--------|---------------------------------------------------|
 * | smooth   | [N]                              | 16-bit | λ' of the next layer (optional: λ' = 1)          |
 * | loraDown | [R', N]                          | 16-bit | row-major, applied to the raw output              |
 * | codes    | Mp*N (s8, f8) or Mp*N/2 (s4) B   | 4/8-bit| code layout with K = N, as quantizeAct writes     |
 * | ascales  | [N/64, Mp]                       | 16-bit | group-major                                       |
 * | loraAct  | [Mp, R']                         | f32    | out · loraDownᵀ; rows >= M are 0                  |
 */
export type NextQuantArgs = Omit<QuantizeActArgs, "dtype" | "M" | "K" | "x">;

/**
 * Kernel 2 with its output also quantized for the next layer, in the GEMM's epilogue: `next` is exactly what
 * {@link quantizeAct} would return for x = out with the next layer's smooth, loraDown, rank, signedness and format
 * (codes and scales byte-identical, loraAct up to f32 summation order). Runs on every GEMM path (the code format
 * of `act` picks it) and writes any of the three next formats.
 */
export function gemmW4A4Next(a: GemmW4A4Args & { next: NextQuantArgs }): { out: DeviceBuffer; next: QuantizedAct } {
  const r = gemmImpl(a, a.next);
  if (!r.next) throw new CudaKernelError("E_SHAPE", "gemmW4A4Next: next missing");
  return { out: r.out, next: r.next };
}

function gemmImpl(a: GemmW4A4Args, nx: NextQuantArgs | undefined): { out: DeviceBuffer; next?: QuantizedAct } {
  const { M, K } = a.act;
  const N = a.N;
  dims("gemmW4A4", { N });
  if (N === 0 || N % 128 !== 0) throw new CudaKernelError("E_SHAPE", `gemmW4A4: N=${N} must be a multiple of 128`);
  const R = a.useLowRank === false ? 0 : a.act.R;
  if (nx) {
    dims("gemmW4A4Next", { "next.R": nx.R });
    if (![0, 16, 32, 64].includes(nx.R))
      throw new CudaKernelError("E_SHAPE", `gemmW4A4Next: next rank next.R=${nx.R} not in {0,16,32,64}`);
  }
  need("qweight", a.qweight, (N * K) / 2);
  need("wscales", a.wscales, N * (K / 64) * 2);
  if (R > 0) need("loraUp", a.loraUp, N * R * 2);
  if (a.bias) need("bias", a.bias, N * 2);
  if (a.act.format === "f8" && !a.wg) {
    throw new CudaKernelError("E_SHAPE", "gemmW4A4: f8 activation codes need the repacked weights (repackWeightWg)", {
      tensor: "wg",
    });
  }
  if (a.wg) {
    need("wg.qweight", a.wg.qweight, N * K);
    need("wg.wscales", a.wg.wscales, N * (K / 64) * 4);
  }
  let next: QuantizedAct | undefined;
  if (nx) {
    next = quantTargets("gemmW4A4Next", "next.", nx, M, N);
  }
  const out = a.out ?? new DeviceBuffer(M * N * 2);
  need("out", out, M * N * 2);
  native(() =>
    addon().gemmW4A4({
      dtype: a.dtype,
      M,
      N,
      K,
      R,
      actUnsigned: a.act.actUnsigned,
      gelu: a.gelu === true,
      format: a.act.format,
      blockM: a.blockM ?? 0,
      codes: a.act.codes.native,
      ascales: a.act.ascales.native,
      qweight: a.qweight.native,
      wscales: a.wscales.native,
      loraAct: R > 0 ? a.act.loraAct?.native : undefined,
      loraUp: R > 0 ? a.loraUp?.native : undefined,
      bias: a.bias?.native,
      out: out.native,
      qweightWg: a.wg?.qweight.native,
      wscalesWg: a.wg?.wscales.native,
      ...(next && nx
        ? {
            nextCodes: next.codes.native,
            nextFormat: next.format,
            nextAscales: next.ascales.native,
            nextLoraAct: next.loraAct?.native,
            nextSmooth: nx.smooth?.native,
            nextLoraDown: nx.R > 0 ? nx.loraDown?.native : undefined,
            nextR: nx.R,
            nextUnsigned: next.actUnsigned,
          }
        : {}),
    }),
  );
  return { out, next };
}

/**
 * Weights in the "wg" layouts of the sm_90a wgmma GEMM (kernels/cuda/svdq_cuda.h):
 *
 * | tensor  | shape / bytes         | dtype | layout                                                              |
 * |---------|-----------------------|-------|---------------------------------------------------------------------|
 * | qweight | N*K bytes             | e4m3  | chunks of 128 n x 64 k (8192 B), wgmma core matrices in f8 code order |
 * | wscales | N*K/64 values (x4 B)  | f32   | chunks of 128 per (n tile, k group), ordered for float4 loads       |
 */
export interface WgWeights {
  qweight: DeviceBuffer;
  wscales: DeviceBuffer;
}

/** Load-time repack of checkpoint-layout weights (int4's packW4A4Weight / packW4A4Scales) into the wgmma layouts (on the device). */
export function repackWeightWg(a: {
  dtype: Dtype16;
  N: number;
  K: number;
  qweight: DeviceBuffer;
  wscales: DeviceBuffer;
}): WgWeights {
  const { N, K } = a;
  dims("repackWeightWg", { N, K });
  if (N === 0 || N % 128 !== 0)
    throw new CudaKernelError("E_SHAPE", `repackWeightWg: N=${N} must be a multiple of 128`);
  if (K === 0 || K % 64 !== 0) throw new CudaKernelError("E_SHAPE", `repackWeightWg: K=${K} must be a multiple of 64`);
  need("qweight", a.qweight, (N * K) / 2);
  need("wscales", a.wscales, N * (K / 64) * 2);
  const qweight = new DeviceBuffer(N * K);
  const wscales = new DeviceBuffer(N * (K / 64) * 4);
  native(() =>
    addon().repackWeightWg({
      dtype: a.dtype,
      N,
      K,
      qweight: a.qweight.native,
      wscales: a.wscales.native,
      qweightWg: qweight.native,
      wscalesWg: wscales.native,
    }),
  );
  return { qweight, wscales };
}

/** out [M, N] = x [M, K] · w [N, K]ᵀ through cuBLAS (16-bit in and out, f32 accumulation). */
export function gemmCublas(a: {
  dtype: Dtype16;
  M: number;
  N: number;
  K: number;
  x: DeviceBuffer;
  w: DeviceBuffer;
  out?: DeviceBuffer;
}): DeviceBuffer {
  dims("gemmCublas", { M: a.M, N: a.N, K: a.K });
  need("x", a.x, a.M * a.K * 2);
  need("w", a.w, a.N * a.K * 2);
  const out = a.out ?? new DeviceBuffer(a.M * a.N * 2);
  need("out", out, a.M * a.N * 2);
  native(() =>
    addon().gemmCublas({ dtype: a.dtype, M: a.M, N: a.N, K: a.K, x: a.x.native, w: a.w.native, out: out.native }),
  );
  return out;
}

/**
 * out [M, N] int32 = x [M, K] int8 · w [N, K]ᵀ int8 through cuBLAS (IMMA tensor cores): the INT8 peer of the
 * W4A4 GEMM in benchmarks. K and N must be multiples of 4 (cuBLAS IMMA alignment).
 */
export function gemmCublasInt8(a: {
  M: number;
  N: number;
  K: number;
  x: DeviceBuffer;
  w: DeviceBuffer;
  out?: DeviceBuffer;
}): DeviceBuffer {
  dims("gemmCublasInt8", { M: a.M, N: a.N, K: a.K });
  if (a.K % 4 !== 0 || a.N % 4 !== 0)
    throw new CudaKernelError("E_SHAPE", `gemmCublasInt8: K=${a.K} and N=${a.N} must be multiples of 4`);
  need("x", a.x, a.M * a.K);
  need("w", a.w, a.N * a.K);
  const out = a.out ?? new DeviceBuffer(a.M * a.N * 4);
  need("out", out, a.M * a.N * 4);
  native(() => addon().gemmCublasInt8({ M: a.M, N: a.N, K: a.K, x: a.x.native, w: a.w.native, out: out.native }));
  return out;
}

/** Waits for all queued device work; surfaces asynchronous kernel faults as E_CUDA. */
export function synchronize(): void {
  native(() => addon().synchronize());
}

/**
 * Milliseconds per replay of the device work `fn` enqueues, captured once into a CUDA graph (no host launch
 * overhead in the number). `fn` must only enqueue kernels (no allocation, no copies to or from the host).
 */
export function timeGraphMs(fn: () => void, iterations: number): number {
  return native(() => addon().timeGraphMs(fn, iterations));
}

/** Milliseconds per call of `fn` (which enqueues device work), between CUDA events around `iterations` calls. */
export function timeMs(fn: () => void, iterations: number): number {
  return native(() => addon().timeMs(fn, iterations));
}

/**
 * K values of the int4p2 activation kernel (tested: FLUX.1 3072, 12288, 15360; PixArt-Σ 1152, 4608; and 1024).
 * The kernel takes K at run time; the list is what the tests and the harness cover.
 */
export const P2_SUPPORTED_K: readonly number[] = [1024, 1152, 3072, 4608, 12288, 15360];

/** int4p2 activations on the device ("pow2" row scales; layouts in kernels/cuda/p2_fp8.h). */
export interface P2Act {
  M: number;
  K: number;
  /** K + 3R with the low-rank columns (lrShift given), else K. */
  Kx: number;
  /** 32 when the operand carries the low-rank columns or loraAct was computed, else 0. */
  R: number;
  /** [M, Kx] E4M3: q·2^e of the codes, then the 3R low-rank columns. */
  a8: DeviceBuffer;
  /** [M] f32 per-token scale S_x = 2^E. */
  sx: DeviceBuffer;
  /** [M, R] f32 x · lora_downᵀ (R > 0). */
  loraAct: DeviceBuffer | undefined;
}

function p2Shape(op: string, M: number, K: number): void {
  dims(op, { M, K });
  if (M === 0 || !P2_SUPPORTED_K.includes(K))
    throw new CudaKernelError("E_SHAPE", `${op}: x [${M}, ${K}]: M > 0 and K in ${P2_SUPPORTED_K.join(", ")}`, {
      tensor: "x",
    });
}

/**
 * int4p2 activations of x [M, K] (bf16): the low-rank down lora_act = x · lora_downᵀ (R = 32) through cuBLAS (f32
 * out), then {@link quantizeRowsP2}'s kernel (one read of x, one write of the operand): the codes of x/λ as the FP8
 * GEMM operand and the per-token scale, with lora_act written into 3R extra operand columns when `lrShift` (the
 * weights' per-rank power-of-two shifts, from {@link p2WeightOperand}) is given. Needs sm_89+.
 */
export function quantizeActP2(a: {
  M: number;
  K: number;
  R: 0 | 32;
  x: DeviceBuffer;
  smooth?: DeviceBuffer;
  loraDown?: DeviceBuffer;
  lrShift?: DeviceBuffer;
}): P2Act {
  const { M, K, R } = a;
  p2Shape("quantizeActP2", M, K);
  if (R !== 0 && R !== 32) throw new CudaKernelError("E_SHAPE", `quantizeActP2: rank R=${R} must be 0 or 32`);
  if (a.lrShift !== undefined && R === 0)
    throw new CudaKernelError("E_SHAPE", "quantizeActP2: lrShift (low-rank columns) needs R = 32", {
      tensor: "lrShift",
    });
  need("x", a.x, M * K * 2);
  if (a.smooth) need("smooth", a.smooth, K * 2);
  if (R > 0) need("loraDown", a.loraDown, R * K * 2);
  if (a.lrShift) need("lrShift", a.lrShift, R * 4);
  const Kx = K + (a.lrShift ? 3 * R : 0);
  const a8 = new DeviceBuffer(M * Kx);
  const sx = new DeviceBuffer(M * 4);
  const loraAct = R > 0 ? new DeviceBuffer(M * R * 4) : undefined;
  native(() =>
    addon().quantizeActP2({
      M,
      K,
      R,
      x: a.x.native,
      smooth: a.smooth?.native,
      loraDown: R > 0 ? a.loraDown?.native : undefined,
      lrShift: a.lrShift?.native,
      a8: a8.native,
      sx: sx.native,
      loraAct: loraAct?.native,
    }),
  );
  return { M, K, Kx, R, a8, sx, loraAct };
}

/**
 * The int4p2 activation kernel alone, for callers that compute lora_act [M, 32] (f32) themselves (the engine: one
 * cuBLAS GEMM): x [M, K] (bf16) read once, a8 [M, Kx] and sx [M] written once; with `loraAct` and `lrShift` the 3R
 * low-rank columns too (Kx = K + 96). `reference` runs the reference kernel (conversion instructions; the same
 * bytes, slower: for tests). `a8` / `sx` reuse caller buffers. The returned loraAct is the caller's buffer.
 */
export function quantizeRowsP2(a: {
  M: number;
  K: number;
  x: DeviceBuffer;
  smooth?: DeviceBuffer;
  loraAct?: DeviceBuffer;
  lrShift?: DeviceBuffer;
  reference?: boolean;
  a8?: DeviceBuffer;
  sx?: DeviceBuffer;
}): P2Act {
  const { M, K } = a;
  p2Shape("quantizeRowsP2", M, K);
  if ((a.loraAct === undefined) !== (a.lrShift === undefined))
    throw new CudaKernelError("E_SHAPE", "quantizeRowsP2: loraAct and lrShift go together (the 3R low-rank columns)", {
      tensor: a.loraAct === undefined ? "loraAct" : "lrShift",
    });
  const R = a.lrShift ? 32 : 0;
  const Kx = K + 3 * R;
  need("x", a.x, M * K * 2);
  if (a.smooth) need("smooth", a.smooth, K * 2);
  if (a.loraAct) need("loraAct", a.loraAct, M * 32 * 4);
  if (a.lrShift) need("lrShift", a.lrShift, 32 * 4);
  if (a.a8) need("a8", a.a8, M * Kx);
  if (a.sx) need("sx", a.sx, M * 4);
  const a8 = a.a8 ?? new DeviceBuffer(M * Kx);
  const sx = a.sx ?? new DeviceBuffer(M * 4);
  native(() =>
    addon().quantizeRowsP2({
      M,
      K,
      x: a.x.native,
      smooth: a.smooth?.native,
      loraAct: a.loraAct?.native,
      lrShift: a.lrShift?.native,
      a8: a8.native,
      sx: sx.native,
      reference: a.reference === true,
    }),
  );
  return { M, K, Kx, R, a8, sx, loraAct: a.loraAct };
}

/**
 * out[m, n] (row stride `ldo`, default N) = gelu?(S_x[m]·S_w[n]·Σ_k a8[m, k]·b8[n, k] + bias[n]) over Kx columns,
 * computed in f32 and rounded once to bf16: the int4p2 layer (with its low-rank branch when both operands carry the
 * 3R columns) as one cuBLASLt FP8 GEMM with outer-vector scales and its epilogue (bias bf16 [N]; GELU in its tanh
 * form), f32 accumulation (`fastAccum` off by default). Columns N..ldo of each output row are left as they are.
 * The first call of a shape times cuBLASLt's cluster shapes and custom options for it and keeps the fastest (output
 * bit-identical; a one-time cost of up to 3 calls per candidate, kernels/cuda/p2_fp8.cu `tune_plan`).
 * Needs sm_89+ and libcublasLt.so.13.
 */
export function gemmP2(a: {
  act: P2Act;
  N: number;
  /** [N, Kx] E4M3 weight operand and [N] f32 scales (upload {@link p2WeightOperand}'s arrays). */
  b8: DeviceBuffer;
  sw: DeviceBuffer;
  fastAccum?: boolean;
  out?: DeviceBuffer;
  /** Output row stride in elements (>= N, a multiple of 8; default N). */
  ldo?: number;
  /** bf16 [N], added before the activation. */
  bias?: DeviceBuffer;
  /** GELU (tanh approximation) after the bias. */
  gelu?: boolean;
}): DeviceBuffer {
  const { M, Kx } = a.act;
  const N = a.N;
  const ldo = a.ldo ?? N;
  dims("gemmP2", { M, N, Kx, ldo });
  if (N === 0 || N % 8 !== 0) throw new CudaKernelError("E_SHAPE", `gemmP2: N=${N} must be a positive multiple of 8`);
  if (ldo < N || ldo % 8 !== 0)
    throw new CudaKernelError("E_SHAPE", `gemmP2: ldo=${ldo} must be >= N=${N} and a multiple of 8`, { tensor: "out" });
  if (Kx === 0 || Kx % 16 !== 0)
    throw new CudaKernelError("E_SHAPE", `gemmP2: Kx=${Kx} must be a positive multiple of 16`, { tensor: "a8" });
  need("b8", a.b8, N * Kx);
  need("sw", a.sw, N * 4);
  if (a.bias) need("bias", a.bias, N * 2);
  const outBytes = M === 0 ? 0 : ((M - 1) * ldo + N) * 2;
  const out = a.out ?? new DeviceBuffer(M * ldo * 2);
  need("out", out, outBytes);
  native(() =>
    addon().gemmP2({
      M,
      N,
      Kx,
      ldo,
      a8: a.act.a8.native,
      sx: a.act.sx.native,
      b8: a.b8.native,
      sw: a.sw.native,
      out: out.native,
      bias: a.bias?.native,
      gelu: a.gelu === true,
      fastAccum: a.fastAccum === true,
    }),
  );
  return out;
}
