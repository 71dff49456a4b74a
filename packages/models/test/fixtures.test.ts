import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  FluxTransformer,
  type GemmBackend,
  getGemmBackend,
  PixArtTransformer,
  setGemmBackend,
  useKernelsGemm,
} from "../src/index.js";
import { FIXTURES, fluxTinyInputs, pixartTinyInputs, readIo, relErr } from "./helpers.js";

describe.each([
  ["the TypeScript GEMM", false, false],
  ["@svdquant/kernels' native f32 GEMM", true, false],
  ["the native f32 GEMM on weights packed once by model.prepare() (GELU in the GEMM epilogue)", true, true],
])("forward matches the reference fixtures with %s", (_label, native, prepared) => {
  let previous: GemmBackend | undefined;
  beforeAll(async () => {
    if (!native) return;
    const before = getGemmBackend();
    const choice = await useKernelsGemm();
    // pnpm build compiles the addon; a missing native GEMM here is a build failure, not a reason to skip.
    expect(choice.reason).toBe("");
    expect(choice.backend.name).toMatch(/^kernels-f32-/);
    previous = before;
  });
  afterAll(() => {
    if (previous) setGemmBackend(previous);
  });

  it("flux-tiny-a: float32 compute within 1e-5 relative of expected_float64", async () => {
    const io = await readIo("flux-tiny-a");
    const model = await FluxTransformer.fromFolder(join(FIXTURES, "models/flux-tiny-a"));
    // every linear layer of the fixture is dense: all are packed on a backend with prepare, none on the TS GEMM
    if (prepared) expect(model.prepare()).toBe(model.linearNames().length);
    else if (!native) expect(model.prepare()).toBe(0);
    const out = await model.forward(fluxTinyInputs(io));
    const err = relErr(out, io.expected_float64!.data);
    console.log("flux-tiny-a rel err vs float64:", err, "vs float32:", relErr(out, io.expected_float32!.data));
    expect(err).toBeLessThan(1e-5);
  });

  it("pixart-tiny-a: float32 compute within 1e-5 relative of expected_float64 (padded text mask)", async () => {
    const io = await readIo("pixart-tiny-a");
    const model = await PixArtTransformer.fromFolder(join(FIXTURES, "models/pixart-tiny-a"));
    if (prepared) expect(model.prepare()).toBe(model.linearNames().length);
    const out = await model.forward(pixartTinyInputs(io));
    const err = relErr(out, io.expected_float64!.data);
    console.log("pixart-tiny-a rel err vs float64:", err);
    expect(err).toBeLessThan(1e-5);
  });
});
