// The normalization kernels on the TypeScript fallback (what runs when the native build is impossible).
// Test files run in separate processes, so this env var only affects this file.
process.env.SVDQ_KERNELS_NATIVE = "0";
const { defineNormSuite } = await import("./norm-suite.ts");
defineNormSuite();
