import { fluxLinearInputs, linearNamesOf, type ModelConfig, pixartParams } from "@svdquant/models";

/**
 * In-features K of every linear of a model, by layer name: the width a calibration statistics file must have for
 * that layer's input. FLUX: from the forward's observer order (fluxLinearInputs); PixArt-Σ: the linear weights
 * [N, K] of the parameter list (the patch-embedding conv is no linear).
 */
export function linearInputWidths(config: ModelConfig): Map<string, number> {
  if (config.kind === "flux") return new Map(fluxLinearInputs(config, 1, 1, 1).map((c) => [c.name, c.k]));
  const params = pixartParams(config);
  const shapes = new Map(params.map((p) => [p.name, p.shape]));
  return new Map(linearNamesOf(params).map((name) => [name, shapes.get(`${name}.weight`)![1]!]));
}
