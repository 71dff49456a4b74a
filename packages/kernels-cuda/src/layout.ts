// Host-side layouts of the W4A4 kernels (tables in ../README.md and kernels/cuda/svdq_cuda.h).
// The checkpoint layouts below are the published nunchaku ones (facts from nunchaku's NunchakuWeightPacker with
// bits=4, warp_n=128; byte-exact against fixtures/nunchaku-pack/case-a.safetensors in the tests).
import { CudaKernelError } from "./errors.js";

function checkDims(what: string, n: number, k: number, nMul: number, kMul: number): void {
  if (!Number.isInteger(n) || !Number.isInteger(k) || n <= 0 || k <= 0 || n % nMul !== 0 || k % kMul !== 0) {
    throw new CudaKernelError("E_SHAPE", `${what}: [${n}, ${k}] needs multiples of [${nMul}, ${kMul}]`);
  }
}

// The checkpoint's qweight and wscales layouts have one packer: @svdquant/int4's packW4A4Weight /
// packW4A4Scales / unpackW4A4Weight / unpackW4A4Scales ([N, K] codes and [N, K/64] scales ↔ checkpoint layout).
// Likewise the low-rank branch's packed layout (lora_down / lora_up, 16×16 fragments): @svdquant/int4's
// packLoraDown / packLoraUp / unpackLoraDown / unpackLoraUp ([R, K] and [N, R] row-major ↔ checkpoint layout).

/**
 * Value of an FP8 E4M3 byte (OCP 8-bit floating point spec, "E4M3FN": sign, 4 exponent bits with bias 7, 3
 * mantissa bits, subnormals at exponent 0, 0x7F/0xFF are NaN, no infinities).
 */
export function decodeE4M3(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const e = (b >> 3) & 15,
    m = b & 7;
  if (e === 15 && m === 7) return Number.NaN;
  return sign * (e === 0 ? (m / 8) * 2 ** -6 : (1 + m / 8) * 2 ** (e - 7));
}

/**
 * Decodes activation codes in the kernels' fragment layouts (svdq_cuda.h) to int codes [M, K].
 * "s4": tile (m/16, k/64) at ((m/16)*(K/64) + k/64)*512, lane 4*(m%8) + (k%32)/8, word (k%64)/32*2 + (m%16)/8,
 * element k%8 in bits 4*(k%8). "s8": tiles of 1024 bytes, lane at *32, eight int8x4 words: even elements (x16) of
 * w0, w1, then odd elements of w0, w1, then the same for w2, w3. "f8": E4M3 bytes, K-major rows of 64 bytes with
 * the 64-byte swizzle (the wgmma A operand in shared memory), blocks of 128 rows x 64 k at ((m/128)*(K/64) +
 * k/64)*8192; row r = m%128 at r*64; logical byte kb = 32s + 16h + c holds k%64 = 32s + 8(c/4) + 2(c%4) + h and is
 * stored at 16*((kb/16) xor ((r/2)%4)) + kb%16 (the k order of the "wg" weights).
 */
export function unpackActCodes(
  bytes: Uint8Array,
  M: number,
  K: number,
  unsigned: boolean,
  format: "s8" | "s4" | "f8" = "s4",
): Int8Array {
  checkDims("unpackActCodes", M, K, 1, 64);
  const Mp = Math.ceil(M / 128) * 128;
  const need = format === "s4" ? (Mp * K) / 2 : Mp * K;
  if (bytes.length < need) throw new CudaKernelError("E_LAYOUT", `unpackActCodes: ${bytes.length} bytes < ${need}`);
  const out = new Int8Array(M * K);
  const KT = K / 64;
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < K; k++) {
      const kl = k & 63,
        j = k & 7;
      const half = kl >> 5,
        rowHalf = (m >> 3) & 1;
      const lane = (m & 7) * 4 + ((kl >> 3) & 3);
      const tile = (m >> 4) * KT + (k >> 6);
      let v: number;
      if (format === "f8") {
        const r = m & 127,
          s = kl >> 5,
          kk = kl & 31;
        const kb = 32 * s + 16 * (kk & 1) + 4 * (kk >> 3) + ((kk & 7) >> 1);
        const byte = ((m >> 7) * KT + (k >> 6)) * 8192 + r * 64 + 16 * ((kb >> 4) ^ ((r >> 1) & 3)) + (kb & 15);
        const b = bytes[byte];
        v = decodeE4M3(b);
        const lo = unsigned ? 0 : -8,
          hi = unsigned ? 15 : 7;
        if (!Number.isInteger(v) || v < lo || v > hi) {
          throw new CudaKernelError("E_LAYOUT", `unpackActCodes: f8 byte 0x${b.toString(16)} at ${byte} is not a code`);
        }
      } else if (format === "s4") {
        const byte = tile * 512 + lane * 16 + (half * 2 + rowHalf) * 4 + (j >> 1);
        v = (bytes[byte] >> ((j & 1) * 4)) & 15;
        if (!unsigned && v >= 8) v -= 16;
      } else {
        // word index inside the lane's 8: half*4 + (odd ? 2 : 0) + rowHalf; byte j>>1 of that word
        const byte = tile * 1024 + lane * 32 + (half * 4 + (j & 1) * 2 + rowHalf) * 4 + (j >> 1);
        const b = bytes[byte];
        v = unsigned ? b >> 4 : ((b << 24) >> 24) >> 4;
      }
      out[m * K + k] = v;
    }
  }
  return out;
}
