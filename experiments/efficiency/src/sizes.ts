/** Exact model sizes from parameter manifests, under every storage scheme (@svdquant/pipeline modelSizes). */
import { ExperimentError } from "@svdquant/experiment-common";
import { parseModelConfig } from "@svdquant/models";
import { modelSizes, parseQuantizeConfig } from "@svdquant/pipeline";
import { MAX_JSON_FILE_BYTES, readInputFile } from "@svdquant/tensor";

export interface SizeRow {
  readonly name: string;
  readonly parameters: number;
  readonly bf16Bytes: number;
  readonly nf4Bytes: number;
  readonly svdquantInt4Bytes: number;
  readonly svdquantNvfp4Bytes: number;
}

/** A manifest: { class, config, num_parameters, parameters: name → shape } (fixtures/manifests). */
export async function sizeRow(name: string, manifestPath: string, rank: number): Promise<SizeRow> {
  let m: { class?: unknown; config?: unknown; num_parameters?: unknown };
  try {
    m = JSON.parse((await readInputFile(manifestPath, MAX_JSON_FILE_BYTES)).toString("utf8"));
  } catch (e) {
    throw new ExperimentError("E_IO", `${manifestPath}: cannot read the manifest: ${(e as Error).message}`);
  }
  if (typeof m.class !== "string" || typeof m.config !== "object" || m.config === null)
    throw new ExperimentError("E_CONFIG", `${manifestPath}: a manifest needs "class" and "config"`);
  const config = parseModelConfig({ ...(m.config as object), _class_name: m.class }, manifestPath);
  const int4 = modelSizes(config, parseQuantizeConfig({ format: "int4", rank }));
  const fp4 = modelSizes(config, parseQuantizeConfig({ format: "nvfp4", rank }));
  if (typeof m.num_parameters === "number" && m.num_parameters !== int4.parameters)
    throw new ExperimentError(
      "E_CONFIG",
      `${manifestPath}: num_parameters ${m.num_parameters} differs from the config's ${int4.parameters}`,
    );
  return {
    name,
    parameters: int4.parameters,
    bf16Bytes: int4.bf16Bytes,
    nf4Bytes: int4.nf4Bytes,
    svdquantInt4Bytes: int4.svdquantBytes,
    svdquantNvfp4Bytes: fp4.svdquantBytes,
  };
}
