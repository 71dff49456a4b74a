// Without the native addon the int4p2 layer has no kernel to run: prepareP2Layer says so with one typed error
// (E_NATIVE, naming why the addon is not loaded) instead of a slow or partial fallback.
// Test files run in separate processes, so this env var only affects this file.
process.env.SVDQ_KERNELS_NATIVE = "0";
const { expect, it } = await import("vitest");
const { KernelsError, p2GemmPath, prepareP2Layer } = await import("../src/index.ts");

it("prepareP2Layer throws E_NATIVE naming the reason, p2GemmPath() is null", () => {
  const N = 4;
  const K = 64;
  const spec = {
    N,
    K,
    codes: new Int8Array(N * K).fill(3),
    exponents: new Int8Array(N).fill(-2),
    rowScales: new Float32Array(N).fill(0.01),
  };
  expect(p2GemmPath()).toBeNull();
  try {
    prepareP2Layer(spec);
    expect.fail("no error");
  } catch (e) {
    expect(e).toBeInstanceOf(KernelsError);
    expect((e as InstanceType<typeof KernelsError>).code).toBe("E_NATIVE");
    expect((e as Error).message).toMatch(/needs the native kernels \(disabled by SVDQ_KERNELS_NATIVE=0\)/);
  }
});
