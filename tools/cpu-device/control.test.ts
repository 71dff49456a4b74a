// The control bundle of tools/cpu-device.sh: counts known in advance (3 passed, 4 failed, 3 skipped), so a runner
// that loses tests, cannot fail or mistimes shows up. Not a vitest test file (the root config includes only
// packages/*/test, experiments/*/test and tools/test).
import { afterAll, describe, expect, it } from "vitest";

const seen: string[] = [];
describe("passes", () => {
  it("toEqual on typed arrays and objects", () => {
    expect({ a: Float32Array.of(1, 2.5), b: [1, { c: "x" }] }).toEqual({
      a: Float32Array.of(1, 2.5),
      b: [1, { c: "x" }],
    });
  });
  it.each([
    { n: 3, sq: 9 },
    { n: -4, sq: 16 },
  ])("each with $n", ({ n, sq }) => {
    seen.push(`${n}`);
    expect(n * n).toBe(sq);
  });
  afterAll(() => {
    if (seen.join() !== "3,-4") throw new Error(`each rows ran as ${seen.join()}`);
  });
});
describe("fails", () => {
  it("toEqual sees one element off", () => {
    expect(Float32Array.of(1, 2, 3)).toEqual(Float32Array.of(1, 2, 3.0001));
  });
  it("toBeCloseTo at 9 digits", () => {
    expect(0.1 + 0.2).toBeCloseTo(0.3000001, 9);
  });
  it("toThrow when nothing throws", () => {
    expect(() => 1).toThrow(/x/);
  });
  it("times out", () => new Promise((r) => setTimeout(r, 2000)), 50);
});
describe.skip("skipped suite", () => {
  it("never runs", () => {
    throw new Error("ran");
  });
});
describe("skips", () => {
  it.skipIf(true)("skipIf(true)", () => {
    throw new Error("ran");
  });
  it("ctx.skip", (ctx: { skip(reason: string): void }) => {
    ctx.skip("the context's skip");
    throw new Error("ran past skip");
  });
});
