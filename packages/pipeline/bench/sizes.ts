/**
 * Exact checkpoint sizes of the published models under BF16, NF4 and SVDQuant INT4 / NVFP4 / int4p2 (rank 32), from the
 * manifests' configs and the packing rules (src/sizes.ts). Run: `pnpm --filter @svdquant/pipeline sizes`.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parseModelConfig } from "@svdquant/models";
import { modelSizes, parseQuantizeConfig } from "../src/index.ts";

const manifests = join(import.meta.dirname, "../../../fixtures/manifests");
const GiB = 2 ** 30;
const f = (b: number) => (b / GiB).toFixed(2);
console.log(
  "| model | parameters | BF16 GiB | NF4 GiB | SVDQuant INT4 GiB (x smaller) | SVDQuant NVFP4 GiB | SVDQuant int4p2 GiB |",
);
console.log("|---|---|---|---|---|---|---|");
for (const name of ["flux.1-dev", "flux.1-schnell", "pixart-sigma-xl-2-1024-ms"]) {
  const m = JSON.parse(await readFile(join(manifests, `${name}.json`), "utf8"));
  const config = parseModelConfig({ ...m.config, _class_name: m.class }, name);
  const int4 = modelSizes(config, parseQuantizeConfig({ format: "int4" }));
  const fp4 = modelSizes(config, parseQuantizeConfig({ format: "nvfp4" }));
  const p2 = modelSizes(config, parseQuantizeConfig({ format: "int4p2" }));
  console.log(
    `| ${name} | ${int4.parameters.toLocaleString("en-US")} | ${f(int4.bf16Bytes)} | ${f(int4.nf4Bytes)} | ${f(int4.svdquantBytes)} (${(int4.bf16Bytes / int4.svdquantBytes).toFixed(2)}x) | ${f(fp4.svdquantBytes)} | ${f(p2.svdquantBytes)} |`,
  );
}
