// The task plan of the K-chunked AMX int4p2 GEMMs (gemm_p2_amx.cc on tdpbf16ps, gemm_p2_int8_amx.cc on tdpbssd):
// tasks of up to kTaskRows × kTaskCols outputs over the whole K, cut into K chunks of about `chunk_steps` tile steps,
// partial sums parked between chunks (amx_partial.h). Measured on the dev Xeon (1 thread, thread CPU time,
// M = 1024, K = N = 3072; docs/benchmarks.md "AMX GEMMs blocked for L3"): 384 × 384 tasks with 8-step chunks
// 542–545 GMAC/s; 256 × 512 / 512 × 256 tasks 498–533.
#pragma once
#include <algorithm>
#include <cstdint>

namespace svdq {

constexpr int64_t kAmxTaskRows = 384, kAmxTaskCols = 384, kAmxChunkSteps = 8;
constexpr int64_t kAmxSkinnyRows = 128;  // at most this many rows: the skinny plan

struct AmxPlan {
  int64_t task_rows, task_cols;  // multiples of 32
  int64_t csteps;                // tile steps per K chunk
  int64_t chunks;
  bool rows_outer;  // row blocks outer (activation chunk reused from L1) or column blocks outer
  bool prefetch;    // prefetch the next K chunk into L2
};

// The plan before tuning overrides, for `rows` × `cols` outputs (multiples of 32). Few rows: the weights dominate the
// traffic and are read once either way; long chunks of `skinny_chunk_steps` with the weight block reused from L2 by
// the (≤ 4) row blocks (0.94 vs 1.41 ms at M = 1, K = N = 3072 and 0.24 vs 0.50 ms at M = 70, K = 12288, N = 96
// against the 384 × 384 plan on tdpbf16ps; 1 thread, thread CPU time).
inline AmxPlan amx_plan(int64_t rows, int64_t cols, int64_t skinny_chunk_steps) {
  AmxPlan p{std::min(kAmxTaskRows, rows), std::min(kAmxTaskCols, cols), kAmxChunkSteps, 0, true, true};
  if (rows <= kAmxSkinnyRows) {
    p.task_cols = std::min<int64_t>(256, cols);
    p.csteps = skinny_chunk_steps;
    p.rows_outer = false;
    p.prefetch = false;
  }
  return p;
}

// Splits the tasks until each of `threads` has one (columns first) and cuts `ksteps` tile steps into even chunks of
// about p.csteps: a K of up to 1.5 chunks runs in one (no partial sums), and a last chunk of ≤ 1/4 chunk joins the
// one before (its own pass of partial-sum resume / park over every block cost more than the step: 19.3–19.7 vs
// 17.8 ms for 1 of 97 steps more; M = 1024, K = N = 3072, 1 thread, kernel_times p2layer).
inline void amx_plan_split(AmxPlan& p, int64_t rows, int64_t cols, int64_t ksteps, int64_t threads) {
  auto tasks = [&] { return ((rows + p.task_rows - 1) / p.task_rows) * ((cols + p.task_cols - 1) / p.task_cols); };
  auto half = [](int64_t v) { return (v / 2 + 31) / 32 * 32; };
  while (tasks() < threads && (p.task_cols > 64 || p.task_rows > 64)) {
    if (p.task_cols >= p.task_rows)
      p.task_cols = half(p.task_cols);
    else
      p.task_rows = half(p.task_rows);
  }
  const int64_t cs = p.csteps;
  p.chunks = ksteps <= cs * 3 / 2 ? 1 : (ksteps + cs - 1) / cs;
  p.csteps = (ksteps + p.chunks - 1) / p.chunks;
  if (p.chunks > 1 && ksteps - (p.chunks - 1) * p.csteps <= p.csteps / 4) --p.chunks;
}

}  // namespace svdq
