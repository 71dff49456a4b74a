// Without the native addon (disabled here; test files run in separate processes) the Fréchet distance keeps the
// TypeScript linear algebra and says why.
process.env.SVDQ_KERNELS_NATIVE = "0";
const { describe, expect, it } = await import("vitest");
const { featureStats, frechetDistance, getFrechetLinalg, kernelsFrechetLinalg, useKernelsFrechet } = await import(
  "../src/index.js"
);

describe("Fréchet distance without the native kernels", () => {
  it("kernelsFrechetLinalg gives null with the reason; useKernelsFrechet keeps TypeScript", async () => {
    const k = await kernelsFrechetLinalg();
    expect(k.linalg).toBeNull();
    expect(k.reason).toMatch(/no native addon: disabled by SVDQ_KERNELS_NATIVE=0/);
    const choice = await useKernelsFrechet();
    expect(choice.linalg.name).toBe("typescript");
    expect(choice.reason).toBe(k.reason);
    expect(getFrechetLinalg().name).toBe("typescript");
    const x = Float64Array.from({ length: 40 }, (_, i) => Math.sin(i * 1.7) + (i % 4));
    const y = Float64Array.from({ length: 40 }, (_, i) => Math.cos(i * 0.9) * 2);
    const r = frechetDistance(featureStats(x, 10, 4), featureStats(y, 10, 4));
    expect(r.linalg).toBe("typescript");
    expect(r.value).toBeGreaterThan(0);
  });
});
