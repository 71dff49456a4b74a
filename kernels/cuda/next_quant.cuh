// Activation quantization of kernel 1 (svdq_quantize_act) as device functions, shared by quantize_kernel and the
// "quantized for the next layer" epilogue of the W4A4 GEMM (svdq_gemm_args.next_*), so that the two cannot drift
// apart: the codes and scales the GEMM writes are byte-identical to kernel 1's on the GEMM's 16-bit output.
//
// Included by w4a4.cu inside its anonymous namespace, after the 16-bit helpers (h2f, f2h), MAGIC_F, mma_h and
// nib_lo / nib_hi.
//
// Lane mapping (one warp, one tile of 16 rows x 64 k, lane = 4g + t): x[rh][kh] holds the 8 consecutive 16-bit
// values of row g + 8rh, k = 32kh + 8t .. 8t+7 (value j in bits 16(j%2) of word j/2): the 4-bit words of the
// "s4" fragment layout (svdq_cuda.h) w0 = (rh 0, kh 0), w1 = (1, 0), w2 = (0, 1), w3 = (1, 1).

// Reciprocal smoothing factors 1/λ[k0 + j], j = 0..7 (S == NULL: λ = 1).
template <bool BF16>
__device__ __forceinline__ void nq_inv_smooth(const uint16_t* S, int k0, float (&inv)[8]) {
  if (S != nullptr) {
    const uint4 s = __ldg(reinterpret_cast<const uint4*>(S + k0));
    const uint32_t sw[4] = {s.x, s.y, s.z, s.w};
#pragma unroll
    for (int j = 0; j < 8; j++) inv[j] = 1.0f / h2f<BF16>(uint16_t(sw[j >> 1] >> ((j & 1) * 16)));
  } else {
#pragma unroll
    for (int j = 0; j < 8; j++) inv[j] = 1.0f;
  }
}

// One row of a 16 x 64 tile (this lane's 16 values xr[kh], the row's other 48 with the lanes 4g..4g+3):
// v = (x [+ GELU shift]) / λ, amax over the row's 64 values, 16-bit scale amax / qmax, and the lane's two 4-bit
// words (element j of word kh: the code of k = 32kh + 8t + j); with F8 also the same codes as E4M3 bytes,
// f8[kh][h] = elements h, h+2, h+4, h+6 of word kh (byte i = element 2i + h). Padded rows (valid == false, x == 0)
// get scale 0 and codes 0, also when unsigned (no shift). All 32 lanes must call it (shuffles).
template <bool BF16, bool AU, bool F8>
__device__ __forceinline__ uint16_t nq_quantize_row(const uint4 (&xr)[2], const float (&inv)[2][8], bool valid,
                                                    uint32_t (&w)[2], uint32_t (&f8)[2][2]) {
  constexpr float QMAX = AU ? 15.f : 7.f;  // unsigned codes 0..15, signed -8..7 (INT4)
  constexpr float QLO = AU ? 0.f : -8.f;
  float v[2][8];
  float amax = 0.f;
#pragma unroll
  for (int kh = 0; kh < 2; kh++) {
    const uint4 q = xr[kh];
    const uint32_t qw[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int j = 0; j < 8; j++) {
      float f = h2f<BF16>(uint16_t(qw[j >> 1] >> ((j & 1) * 16)));
      if constexpr (AU) f += valid ? SVDQ_GELU_SHIFT : 0.f;
      f *= inv[kh][j];
      v[kh][j] = f;
      amax = fmaxf(amax, fabsf(f));
    }
  }
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
  amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
  const float scale = amax * (1.0f / QMAX);  // nunchaku: amax * (1/qmax)
  const float rs = amax > 0.f ? 1.0f / scale : 0.f;
#pragma unroll
  for (int kh = 0; kh < 2; kh++) {
    uint32_t word = 0;
    float qi[8];
#pragma unroll
    for (int j = 0; j < 8; j++) {
      // clamp, then round half to even by adding 1.5·2^23 (exact for |q| < 2^22): the low 4 bits of the sum's bits
      // are the two's-complement nibble. Same result as rintf + clamp, without the slow conversion pipe.
      const float q = fminf(fmaxf(v[kh][j] * rs, QLO), QMAX) + MAGIC_F;
      word |= (__float_as_uint(q) & 0xFu) << (4 * j);
      qi[j] = q - MAGIC_F;  // the code as an exact float
    }
    w[kh] = word;
    if constexpr (F8) {
      f8[kh][0] = e4m3x4_f(qi[0], qi[2], qi[4], qi[6]);
      f8[kh][1] = e4m3x4_f(qi[1], qi[3], qi[5], qi[7]);
    }
  }
  return f2h<BF16>(scale);
}

// Stores one 16 x 64 tile's codes (w[rh][kh], f8[rh][kh][h] from nq_quantize_row), tile (mt, kt) of K/64 = KT, in
// the "s8" (1024-byte tiles, pre-split x16 int8), "s4" (512-byte tiles) or "f8" (swizzled K-major E4M3 rows)
// layout (svdq_cuda.h).
template <int FMT>
__device__ __forceinline__ void nq_store_codes(uint8_t* codes, int mt, int kt, int KT, int lane, const uint32_t (&w)[2][2],
                                               const uint32_t (&f8)[2][2][2]) {
  const size_t tile = (size_t)mt * KT + kt;
  if constexpr (FMT == SVDQ_CODES_S8) {
    // int8 fragment layout: the A registers of the two m16n8k32 s8/u8 mmas, values x16 (see svdq_cuda.h)
    uint4* dst = reinterpret_cast<uint4*>(codes + tile * 1024 + lane * 32);
    dst[0] = make_uint4(nib_lo(w[0][0]), nib_lo(w[1][0]), nib_hi(w[0][0]), nib_hi(w[1][0]));
    dst[1] = make_uint4(nib_lo(w[0][1]), nib_lo(w[1][1]), nib_hi(w[0][1]), nib_hi(w[1][1]));
  } else if constexpr (FMT == SVDQ_CODES_F8) {
    // K-major rows of 64 E4M3 bytes with the 64-byte swizzle, 128-row blocks contiguous per k-group: the wgmma A
    // operand as it sits in shared memory. Logical byte 32·kh + 16·h + 4t + i of a row holds element 2i + h of the
    // lane's word kh; 16-byte piece 2·kh + h is stored at piece (2·kh + h) ^ ((row / 2) % 4).
    const int g = lane >> 2, t = lane & 3;
    uint8_t* blk = codes + ((size_t)(mt >> 3) * KT + kt) * 8192;
#pragma unroll
    for (int rh = 0; rh < 2; rh++) {
      const int r = (mt & 7) * 16 + g + 8 * rh;
#pragma unroll
      for (int kh = 0; kh < 2; kh++)
#pragma unroll
        for (int h = 0; h < 2; h++)
          *reinterpret_cast<uint32_t*>(blk + r * 64 + 16 * ((2 * kh + h) ^ ((r >> 1) & 3)) + 4 * t) = f8[rh][kh][h];
    }
  } else {
    *reinterpret_cast<uint4*>(codes + tile * 512 + lane * 16) = make_uint4(w[0][0], w[1][0], w[0][1], w[1][1]);
  }
}

// Scales of the tile's rows row0 + g and row0 + g + 8 into ascales [K/64, Mp] (lanes t == 0 store).
__device__ __forceinline__ void nq_store_scales(uint16_t* asc, int Mp, int kt, int row0, int g, int t,
                                                const uint16_t (&sc)[2]) {
  if (t == 0) {
    asc[(size_t)kt * Mp + row0 + g] = sc[0];
    asc[(size_t)kt * Mp + row0 + g + 8] = sc[1];
  }
}

// B operand of the low-rank down product for ranks r0..r0+7 and k = k0..k0+63: lora_down [R, K] row r0 + g,
// k = k0 + 8t .. +7 (l0) and k0 + 32 + 8t .. +7 (l1).
__device__ __forceinline__ void nq_load_lora_down(const uint16_t* L, int K, int r0, int k0, int g, int t, uint4& l0,
                                                  uint4& l1) {
  const uint16_t* lrow = L + (size_t)(r0 + g) * K + k0 + t * 8;
  l0 = __ldg(reinterpret_cast<const uint4*>(lrow));
  l1 = __ldg(reinterpret_cast<const uint4*>(lrow + 32));
}

// c[16 x 8] += x tile (16 x 64, raw 16-bit values) · lora_down[r0..r0+7, k0..k0+63]ᵀ on tensor cores, f32
// accumulate. The four k16 steps use k = 8t + {0..3}, 8t + {4..7}, 32 + 8t + {0..3}, 32 + 8t + {4..7}; A and B
// alike (a permutation of k inside the group, so the product is unchanged).
template <bool BF16>
__device__ __forceinline__ void nq_lora_mma(float (&c)[4], const uint4 (&x)[2][2], const uint4& l0, const uint4& l1) {
  mma_h<BF16>(c, x[0][0].x, x[1][0].x, x[0][0].y, x[1][0].y, l0.x, l0.y);
  mma_h<BF16>(c, x[0][0].z, x[1][0].z, x[0][0].w, x[1][0].w, l0.z, l0.w);
  mma_h<BF16>(c, x[0][1].x, x[1][1].x, x[0][1].y, x[1][1].y, l1.x, l1.y);
  mma_h<BF16>(c, x[0][1].z, x[1][1].z, x[0][1].w, x[1][1].w, l1.z, l1.w);
}

// ---- GEMM epilogue: quantize the block's 16-bit output tile for the next layer ----------------------------------
// Row stride (16-bit elements) of the output tile in shared memory: 128 columns + 8 (272 bytes): the 16-byte reads
// of a quarter warp (rows g, g+1) fall in distinct bank groups up to a 2-way conflict, the 32-bit writes of the
// accumulator layout (rows g, columns 2t) in distinct banks.
constexpr int NQ_LD = 128 + 8;

template <bool BF16, bool AU>
__device__ __forceinline__ void nq_tile(const svdq_gemm_args& p, int Mp, const uint16_t* sm, int m0, int n0, int mt,
                                        int half, int lane) {
  const int g = lane >> 2, t = lane & 3;
  const int KN = p.N;  // the next layer's K
  const int kt = n0 / 64 + half;
  uint4 x[2][2];
#pragma unroll
  for (int rh = 0; rh < 2; rh++)
#pragma unroll
    for (int kh = 0; kh < 2; kh++)
      x[rh][kh] = *reinterpret_cast<const uint4*>(sm + (mt * 16 + g + rh * 8) * NQ_LD + half * 64 + kh * 32 + t * 8);
  float inv[2][8];
  const uint16_t* S = static_cast<const uint16_t*>(p.next_smooth);
  nq_inv_smooth<BF16>(S, kt * 64 + t * 8, inv[0]);
  nq_inv_smooth<BF16>(S, kt * 64 + 32 + t * 8, inv[1]);
  const int row0 = m0 + mt * 16;
  uint32_t w[2][2], f8[2][2][2];
  uint16_t sc[2];
  uint8_t* codes = static_cast<uint8_t*>(p.next_codes);
  if (p.next_codes_format == SVDQ_CODES_F8) {
#pragma unroll
    for (int rh = 0; rh < 2; rh++)
      sc[rh] = nq_quantize_row<BF16, AU, true>(x[rh], inv, row0 + g + rh * 8 < p.M, w[rh], f8[rh]);
    nq_store_codes<SVDQ_CODES_F8>(codes, row0 / 16, kt, KN / 64, lane, w, f8);
  } else {
#pragma unroll
    for (int rh = 0; rh < 2; rh++)
      sc[rh] = nq_quantize_row<BF16, AU, false>(x[rh], inv, row0 + g + rh * 8 < p.M, w[rh], f8[rh]);
    if (p.next_codes_format == SVDQ_CODES_S8) nq_store_codes<SVDQ_CODES_S8>(codes, row0 / 16, kt, KN / 64, lane, w, f8);
    else nq_store_codes<SVDQ_CODES_S4>(codes, row0 / 16, kt, KN / 64, lane, w, f8);
  }
  nq_store_scales(static_cast<uint16_t*>(p.next_ascales), Mp, kt, row0, g, t, sc);
  // partial next lora_act = tile · lora_down'[:, k]ᵀ over this tile's 64 columns; the N/64 tiles of a row add up
  // in global memory (zeroed by the host before the launch)
  if (p.next_R > 0) {
    const uint16_t* L = static_cast<const uint16_t*>(p.next_lora_down);
    float* la = p.next_lora_act;
    const bool v0 = row0 + g < p.M, v1 = row0 + g + 8 < p.M;
    for (int r0 = 0; r0 < p.next_R; r0 += 8) {
      uint4 l0, l1;
      nq_load_lora_down(L, KN, r0, kt * 64, g, t, l0, l1);
      float c[4] = {0.f, 0.f, 0.f, 0.f};
      nq_lora_mma<BF16>(c, x, l0, l1);
      float* d = la + (size_t)(row0 + g) * p.next_R + r0 + t * 2;
      if (v0) {
        atomicAdd(d, c[0]);
        atomicAdd(d + 1, c[1]);
      }
      if (v1) {
        atomicAdd(d + 8 * p.next_R, c[2]);
        atomicAdd(d + 8 * p.next_R + 1, c[3]);
      }
    }
  }
}

// The block's output tile: RT*16 rows from m0 (a multiple of 16; rows >= M hold zeros) x 128 columns from n0 (a
// multiple of 128), 16-bit values exactly as stored to `out`, in shared memory `sm` with row stride NQ_LD. Its
// 2*RT tiles of 16 x 64 are shared among NW warps. Writes next_codes / next_ascales of these rows and columns and
// adds into next_lora_act. The caller synchronizes the block before (tile complete) and after (if it reuses sm).
template <bool BF16, int RT, int NW>
__device__ __forceinline__ void nq_block_epilogue(const svdq_gemm_args& p, int Mp, const uint16_t* sm, int m0, int n0,
                                                  int warp, int lane) {
  for (int i = warp; i < 2 * RT; i += NW) {
    const int mt = i % RT, half = i / RT;
    if (p.next_unsigned) nq_tile<BF16, true>(p, Mp, sm, m0, n0, mt, half, lane);
    else nq_tile<BF16, false>(p, Mp, sm, m0, n0, mt, half, lane);
  }
}
