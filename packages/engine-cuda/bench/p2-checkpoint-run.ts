// Device script of the int4p2 checkpoint path (bundled by the p2ckpt device folder; see p2-checkpoint-checks.ts):
//   node p2-checkpoint-run.mjs    int4p2 layers packed into a file → convert → the engine's `linear` vs float64 at
//                                 small, FLUX.1 and PixArt-Σ sizes (K ∈ 1024, 1152, 3072, 4608, 12288, 15360) and bit for bit vs the same
//                                 layer uploaded as the FP8-expanded operand; a FLUX step (D = 1024) loaded from
//                                 int4p2 checkpoint tensors vs the CPU reference and vs the operand model bit for
//                                 bit; the addon's list of K; the one-line error for a K the kernels lack. Exit 1 on
//                                 any failure.
import { EngineError, engineAvailability, loadAddon } from "../src/index.js";
import { checkP2CheckpointLinear, checkP2Model } from "../test/p2-checkpoint-checks.js";

const av = engineAvailability();
console.log(`device: ${av.reason}; cublasLt ${av.info?.cublasLt ?? "?"}`);
if (!av.available) process.exit(1);
let ok = true;
const f = loadAddon().addon?.p2SupportedK;
console.log(
  `addon p2SupportedK: ${f === undefined ? "missing" : [1024, 1152, 2048, 3072, 4608, 12288, 15360].map((k) => `${k}:${f(k)}`).join(" ")}`,
);
if (f === undefined) ok = false;
for (const [M, K, N, gelu] of [
  [64, 1024, 256, false],
  [33, 3072, 136, true],
  [100, 3072, 3072, false],
  [17, 12288, 3072, false],
  [9, 15360, 3072, true],
  [77, 1152, 3456, false], // PixArt-Σ: attn1 q/k/v (D = 1152)
  [50, 4608, 1152, true], // PixArt-Σ: ff.net.2 (K = 4D)
] as const) {
  const t0 = Date.now();
  try {
    const r = await checkP2CheckpointLinear(M, K, N, gelu);
    ok &&= r.ok;
    console.log(
      `${r.ok ? "PASS" : "FAIL"} ${r.name}: rel-L2 ${r.relL2.toExponential(2)} rel-max ${r.relMax.toExponential(2)} (tol ${r.tol}); output ${r.sameAsOperand ? "==" : "!="} the FP8-operand upload bit for bit [${r.tensors.join(", ")}] ${Date.now() - t0} ms`,
    );
  } catch (e) {
    ok = false;
    console.log(`FAIL int4p2 checkpoint linear M=${M} K=${K} N=${N}: ${(e as Error).stack ?? e}`);
  }
}
// a FLUX step from int4p2 checkpoint layers (fused q/k/v from three layers; a single block's q/k/v + proj_mlp on
// one operand) vs the CPU reference, and bit for bit vs the same model as FP8-expanded operands
for (const [B, St, Si] of [
  [1, 7, 33],
  [2, 5, 16],
] as const) {
  const t0 = Date.now();
  try {
    const r = await checkP2Model(B, St, Si);
    ok &&= r.ok;
    console.log(
      `${r.ok ? "PASS" : "FAIL"} ${r.name}: rel-L2 ${r.relL2.toExponential(2)} rel-max ${r.relMax.toExponential(2)} (tol ${r.tol.toExponential(2)}); step ${r.sameAsOperand ? "==" : "!="} the FP8-operand model bit for bit; ${Date.now() - t0} ms`,
    );
  } catch (e) {
    ok = false;
    console.log(`FAIL int4p2 checkpoint model B=${B} St=${St} Si=${Si}: ${(e as Error).stack ?? e}`);
  }
}
// a K the kernels do not take: one EngineError line naming the layer, before any upload
const bad = await checkP2CheckpointLinear(8, 2048, 64, false).catch((e) => e);
const badOk =
  bad instanceof EngineError && /p\.lin: int4p2 layer with K = 2048/.test(bad.message) && !/\n/.test(bad.message);
ok &&= badOk;
console.log(`${badOk ? "PASS" : "FAIL"} K = 2048 refused: ${bad instanceof Error ? bad.message : JSON.stringify(bad)}`);
console.log(ok ? "ALL PASS" : "SOME FAILED");
process.exit(ok ? 0 : 1);
