import { defineConfig } from "vitest/config";

// Tests import sibling packages through their `exports` map; the "@svdquant/source" condition
// points those exports at src/*.ts so tests run on source without a build step.
export default defineConfig({
  resolve: { conditions: ["@svdquant/source", "import", "module", "node", "default"] },
  ssr: { resolve: { conditions: ["@svdquant/source"], externalConditions: ["@svdquant/source"] } },
  test: {
    include: ["packages/*/test/**/*.test.ts", "experiments/*/test/**/*.test.ts", "tools/test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    reporters: ["default"],
  },
});
