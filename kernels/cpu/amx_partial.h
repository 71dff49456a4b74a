// The 2×2 C tiles (tile registers 0–3, 16 × 16 int32 or f32 each) of the K-chunked AMX GEMMs (gemm_p2_amx.cc,
// gemm_w8a8_x86.cc): a 32 × 32 output block's partial sums between K chunks live in a 4 KiB buffer, the four tiles
// 256 elements apart, 64 bytes per tile row. Both GEMMs configure every tile register with full_tiles() (common.h).
#pragma once
#include "x86.h"

#if SVDQ_X86
namespace svdq {

#define SVDQ_TARGET_AMX_TILE __attribute__((target("amx-tile")))

// Starts a block's K chunk: zeroed tiles for the first chunk, else the partial sums parked in cb.
template <typename T>
SVDQ_TARGET_AMX_TILE inline void c_tiles_resume(const T* cb, bool first) {
  if (first) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    return;
  }
  _tile_loadd(0, cb, 64);
  _tile_loadd(1, cb + 256, 64);
  _tile_loadd(2, cb + 512, 64);
  _tile_loadd(3, cb + 768, 64);
}

// Parks the block's partial sums in cb until its next K chunk.
template <typename T>
SVDQ_TARGET_AMX_TILE inline void c_tiles_park(T* cb) {
  _tile_stored(0, cb, 64);
  _tile_stored(1, cb + 256, 64);
  _tile_stored(2, cb + 512, 64);
  _tile_stored(3, cb + 768, 64);
}

}  // namespace svdq
#endif  // SVDQ_X86
