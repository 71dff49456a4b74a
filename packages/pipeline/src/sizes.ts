/**
 * Exact tensor bytes of a model under each storage scheme, from its config alone (the layout and the packing
 * rules; no weights): what `quantizeModel` writes, BF16, and bitsandbytes NF4.
 *
 * | scheme        | per linear [N, K] of a quantized layer                                                   |
 * | ------------- | ---------------------------------------------------------------------------------------- |
 * | W4A4 INT4     | Np·Kp/2 codes + Kp/64·Np BF16 scales + (Kp + Np)·Rp BF16 branch + 2·Kp BF16 λ + Np BF16 bias |
 * | W4A4 NVFP4    | Np·Kp/2 codes + Kp/16·Np E4M3 scales + branch, λ, bias as INT4 + BF16 wtscale + Np BF16 wcscales |
 * | W4A4 int4p2   | N·Kg/2 codes + N·Kg/64 I8 exponents + 4N F32 row scales + (Kg + N)·R BF16 branch + Kg BF16 λ + N BF16 bias |
 * | W4A16 (AWQ)   | N·Kp/2 codes + 2·Gp·N BF16 scales and zeros + N BF16 bias                                 |
 * | NF4 (bnb)     | N·K/2 codes + N·K/64 F32 absmax (blocksize 64, no double quantization), bias BF16         |
 * | BF16          | 2 bytes a parameter                                                                      |
 * Np = roundUp(N, 128), Kp = roundUp(K, 128), Rp = roundUp(R, 16), Gp = w4a16GroupRows(Kp, 64), Kg = roundUp(K, 64);
 * int4p2 units of one input share one branch, so R = min(rank, Kg, ΣN of the group), and a unit has a bias when
 * any unit of its group has one (int4p2's layout: layoutOf(config, "int4p2")). Everything else
 * (embedders, norms, the final projection) BF16. NF4 quantizes every nn.Linear weight of the transformer.
 */
import { w4a16GroupRows } from "@svdquant/int4";
import { type ModelConfig, modelParams } from "@svdquant/models";
import type { QuantizeConfig } from "./config.js";
import { recipeOf, treatmentOfLayer } from "./config.js";
import { layoutOf, type UnitSpec } from "./layout.js";
import { roundUp } from "./quantize-units.js";

export interface ModelSizes {
  readonly parameters: number;
  readonly bf16Bytes: number;
  readonly nf4Bytes: number;
  readonly svdquantBytes: number;
  /** Bytes by storage kind of the SVDQuant checkpoint. */
  readonly svdquant: { readonly w4a4: number; readonly w4a16: number; readonly dense: number };
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

export function modelSizes(config: ModelConfig, q: QuantizeConfig): ModelSizes {
  const params = modelParams(config);
  const shape = new Map(params.map((p) => [p.name, p.shape]));
  const parameters = params.reduce((a, p) => a + numel(p.shape), 0);
  // NF4: every linear (2-D weight) 4-bit + F32 absmax per 64; other parameters BF16
  let nf4 = 0;
  for (const p of params)
    nf4 +=
      p.name.endsWith(".weight") && p.shape.length === 2
        ? numel(p.shape) / 2 + (numel(p.shape) / 64) * 4
        : numel(p.shape) * 2;
  const recipe = recipeOf(q);
  const layout = layoutOf(config, q.format);
  const covered = new Set<string>();
  let w4a4 = 0;
  let w4a16 = 0;
  const rowsOf = (prefix: string, u: UnitSpec) =>
    u.members.reduce((a, m) => a + shape.get(`${prefix}${m}.weight`)![0]!, 0);
  const biased = (prefix: string, u: UnitSpec) => u.members.some((m) => shape.has(`${prefix}${m}.bias`));
  const unitBytes = (prefix: string, u: UnitSpec, units: readonly UnitSpec[]) => {
    const ts = u.members.map((m) => treatmentOfLayer(recipe, prefix + m));
    if (ts[0]!.kind === "dense") return;
    for (const m of u.members) {
      covered.add(`${prefix}${m}.weight`);
      covered.add(`${prefix}${m}.bias`);
    }
    const n = u.members.reduce((a, m) => a + shape.get(`${prefix}${m}.weight`)![0]!, 0);
    const kFull = numel(shape.get(`${prefix}${u.members[0]}.weight`)!.slice(1));
    const k = u.kSlice ? u.kSlice[1] - u.kSlice[0] : kFull;
    if (ts[0]!.kind === "w4a16") {
      const kp = roundUp(k, 64);
      const hasBias = u.members.some((m) => shape.has(`${prefix}${m}.bias`)) || u.adaNorm !== undefined;
      w4a16 += (n * kp) / 2 + 2 * 2 * w4a16GroupRows(kp, 64) * n + (hasBias ? 2 * n : 0);
      return;
    }
    if (q.format === "int4p2") {
      const group = units.filter(
        (v) => v.input === u.input && treatmentOfLayer(recipe, prefix + v.members[0]!).kind === "w4a4",
      );
      const kg = roundUp(k, 64);
      const r = Math.min(
        q.rank,
        kg,
        group.reduce((a, v) => a + rowsOf(prefix, v), 0),
      );
      const bias = group.some((v) => biased(prefix, v)) ? 2 * n : 0;
      w4a4 += (n * kg) / 2 + (n * kg) / 64 + 4 * n + (kg + n) * r * 2 + 2 * kg + bias;
      return;
    }
    const np = roundUp(n, 128);
    const kp = roundUp(k, 128);
    const r = Math.min(q.rank, roundUp(k, 64), n);
    const rp = roundUp(Math.max(r, 1), 16);
    const fp4 = q.format === "nvfp4";
    const scales = fp4 ? (kp / 16) * np : (kp / 64) * np * 2;
    const hasBias =
      (u.kSlice === undefined || u.kSlice[0] === 0) && u.members.some((m) => shape.has(`${prefix}${m}.bias`));
    const biasBytes = hasBias || u.unsigned === true ? np * 2 : 0; // unsigned layers carry the shift in a bias
    w4a4 += (np * kp) / 2 + scales + (kp + np) * rp * 2 + 2 * kp * 2 + biasBytes + (fp4 ? 2 + np * 2 : 0);
  };
  for (const b of layout.blocks)
    for (let i = 0; i < b.count; i++) for (const u of b.units) unitBytes(b.prefix(i), u, b.units);
  for (const u of layout.head) unitBytes("", u, layout.head);
  let dense = 0;
  for (const p of params) if (!covered.has(p.name)) dense += numel(p.shape) * 2;
  return {
    parameters,
    bf16Bytes: parameters * 2,
    nf4Bytes: nf4,
    svdquantBytes: w4a4 + w4a16 + dense,
    svdquant: { w4a4, w4a16, dense },
  };
}
