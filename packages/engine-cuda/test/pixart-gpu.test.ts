import { describe, expect, it } from "vitest";
import { engineAvailability } from "../src/index.js";
import { checkPixArtTinyBf16, checkPixArtW4A4Layers, checkPixArtW4A4Small } from "./pixart-checks.js";

const av = engineAvailability();
const skip = av.available ? "" : ` (skipped: ${av.reason})`;

describe(`PixArt engine on the GPU${skip}`, () => {
  it.skipIf(!av.available)(
    `tiny PixArt 16-bit mode vs the CPU forward, batch 2, odd tokens, text mask${skip}`,
    async () => {
      const r = await checkPixArtTinyBf16(2, 13, 14, 10, [13, 6]);
      expect(r.relL2, r.name).toBeLessThanOrEqual(r.tol);
    },
  );
  it.skipIf(!av.available)(`single PixArt W4A4 / W4A16 engine linears vs reference layers${skip}`, async () => {
    for (const r of await checkPixArtW4A4Layers()) expect(r.relL2, r.name).toBeLessThanOrEqual(r.tol);
  });
  it.skipIf(!av.available)(
    `small PixArt W4A4 mode vs CPU reference layers, within the noise floor${skip}`,
    async () => {
      const r = await checkPixArtW4A4Small(2, 13, 14, 10, [13, 6]);
      expect(r.relL2, r.name).toBeLessThanOrEqual(r.tol);
    },
  );
});
