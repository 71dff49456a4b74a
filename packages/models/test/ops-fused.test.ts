import { describe, expect, it } from "vitest";
import {
  applyRope,
  fluxRope,
  layerNormModulate,
  layerNormRows,
  modulate,
  rmsNormHeads,
  rmsNormRopeHeads,
} from "../src/ops.js";
import { rng } from "./helpers.js";

function normals(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r.normal());
}

// The fused passes the forwards use must give exactly what the separate passes (checked against the diffusers
// fixtures on their own) give, float32 rounding for rounding.
describe("fused elementwise passes", () => {
  it("layerNormModulate = layerNormRows then modulate, bit for bit (batch 2, modulation at an offset)", () => {
    const [b, s, d, stride] = [2, 7, 48, 6 * 48];
    const x = normals(b * s * d, 1);
    const mod = normals(b * stride, 2);
    const want = layerNormRows(x, b * s, d, 1e-6);
    modulate(want, b, s, d, mod, 4 * d, mod, 3 * d, stride);
    const got = layerNormModulate(x, b, s, d, 1e-6, mod, 4 * d, mod, 3 * d, stride);
    expect(Array.from(got)).toEqual(Array.from(want));
  });

  it("rmsNormRopeHeads = rmsNormHeads then applyRope on the joint sequence, bit for bit (image rows from St)", () => {
    const [b, st, si, heads, dh] = [2, 3, 5, 2, 16];
    const ids = normals((st + si) * 3, 3).map((v) => Math.round(v * 4));
    const { cos, sin } = fluxRope(ids, st + si, [4, 6, 6]);
    const w = normals(dh, 4);
    const txt = normals(b * st * heads * dh, 5);
    const img = normals(b * si * heads * dh, 6);
    // separate: norm each part, concatenate [text; image] per batch item, rotate the joint sequence
    const nt = txt.slice();
    const ni = img.slice();
    rmsNormHeads(nt, b * st, heads, dh, w, 1e-6);
    rmsNormHeads(ni, b * si, heads, dh, w, 1e-6);
    const d = heads * dh;
    const joint = new Float32Array(b * (st + si) * d);
    for (let bi = 0; bi < b; bi++) {
      joint.set(nt.subarray(bi * st * d, (bi + 1) * st * d), bi * (st + si) * d);
      joint.set(ni.subarray(bi * si * d, (bi + 1) * si * d), (bi * (st + si) + st) * d);
    }
    applyRope(joint, b, st + si, heads, dh, cos, sin);
    // fused: each part with its rope rows
    rmsNormRopeHeads(txt, b, st, heads, dh, w, 1e-6, cos, sin, 0);
    rmsNormRopeHeads(img, b, si, heads, dh, w, 1e-6, cos, sin, st);
    for (let bi = 0; bi < b; bi++) {
      expect(Array.from(txt.subarray(bi * st * d, (bi + 1) * st * d))).toEqual(
        Array.from(joint.subarray(bi * (st + si) * d, (bi * (st + si) + st) * d)),
      );
      expect(Array.from(img.subarray(bi * si * d, (bi + 1) * si * d))).toEqual(
        Array.from(joint.subarray((bi * (st + si) + st) * d, (bi + 1) * (st + si) * d)),
      );
    }
  });
});
