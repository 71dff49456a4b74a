// The operator suite on the native addon: AVX2+FMA and the portable scalar path (both when the CPU has AVX2).
import { expect, it } from "vitest";
import { backendInfo } from "../src/index.ts";
import { defineLinalgSuite } from "./linalg-suite.ts";
import { defineSuite } from "./suite.ts";

it("the native addon is built and loaded (pnpm build compiles it)", () => {
  const info = backendInfo();
  expect(info.reason).toBe("");
  expect(info.native).toBe(true);
});

defineSuite();
defineLinalgSuite();
